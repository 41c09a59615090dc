"""The run console (`/console`) in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver`) driven by Selenium against a live `lgql dev` serving the graphs of
`tests/fixtures/console/`, plus how it is served and whether its build is current. Each browser
test records a screenshot per step and writes them under its tmp dir when it fails
(`tests/console_harness.py`)."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.conftest import AUTH_CONFIG, ROOT, EngineUrls
from tests.console_harness import Browser, DevServer, lgql_dev, open_browser, server_events

CONSOLE_CONFIG = ROOT / "tests" / "fixtures" / "console" / "langgraph.json"
CONSOLE_SOURCES = ROOT / "console"
CONSOLE_BUILD = ROOT / "app" / "static" / "console"
CHAT_REPLY = "Hello there, how are you today?"  # tests/fixtures/graphs/agents/chat_model.py
SLOW_REPLY = " ".join(f"word{i:02d}" for i in range(1, 31))  # tests/fixtures/console/slow_chat.py
INITIAL_LOAD_BUDGET = 500 * 1024  # gzipped bytes, the bound


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def dev(engines: EngineUrls) -> Any:
    async with lgql_dev(engines, CONSOLE_CONFIG, "console") as server:
        yield server


@pytest.fixture
def browser(request: pytest.FixtureRequest, tmp_path: Path, dev: DevServer) -> Iterator[Browser]:
    yield from open_browser(request, tmp_path, dev)


def start_chat(b: Browser, graph: str, text: str) -> str:
    b.open(f"/console/assistants/{graph}")
    b.wait_css("[data-field='chat']").send_keys(text)
    b.step(f"{graph}: message typed")
    b.css("[data-action='send']").click()
    return b.run_id()


def start_with_input(b: Browser, graph: str, value: dict[str, Any]) -> str:
    b.open(f"/console/assistants/{graph}")
    b.wait_css("[data-field='input']")
    b.fill("[data-field='input']", json.dumps(value))
    b.step(f"{graph}: input written")
    b.css("[data-action='start-run']").click()
    return b.run_id()


# -- serving ----------------------------------------------------------------------------------


def test_console_is_served_compressed_cached_and_linked(dev: DevServer) -> None:
    with httpx.Client(base_url=dev.url, timeout=10) as http:
        moved = http.get("/console", follow_redirects=False)
        assert moved.status_code == 308 and moved.headers["location"] == "/console/"
        page = http.get("/console/")
        assert page.status_code == 200 and "no-cache" in page.headers["cache-control"]
        assert '<meta name="lgql-graphql" content="/graphql"' in page.text
        # Every view's URL opens the page itself (the app routes in the browser).
        for deep in ("runs/x", "threads/x", "assistants/x", "threads"):
            assert http.get(f"/console/{deep}").text == page.text
        assets = re.findall(r'(?:src|href)="/console/assets/([^"]+)"', page.text)
        assert len(assets) == 2, assets
        for asset in assets:
            got = http.get(f"/console/assets/{asset}", headers={"Accept-Encoding": "gzip"})
            assert got.status_code == 200
            assert got.headers["content-encoding"] == "gzip"
            assert "immutable" in got.headers["cache-control"]
        assert http.get("/console/assets/nothing-here.js").status_code == 404
        graphiql = http.get("/graphql", headers={"Accept": "text/html"})
        assert 'new URL("console/", endpoint)' in graphiql.text
    port = dev.url.rsplit(":", 1)[1]
    assert f"run console: http://127.0.0.1:{port}/console/" in dev.log_text()


def test_initial_load_is_under_budget() -> None:
    index = (CONSOLE_BUILD / "index.html").read_text()
    initial = [CONSOLE_BUILD / "index.html"]
    queue = [CONSOLE_BUILD / "assets" / a for a in re.findall(r'"\{\{ASSETS\}\}/([^"]+)"', index)]
    # What the entry imports statically loads with it; mermaid's chunks load on demand.
    while queue:
        path = queue.pop()
        if path in initial:
            continue
        initial.append(path)
        if path.suffix == ".js":
            for imported in re.findall(r'(?:from|import)\s*"(\./[^"]+\.js)"', path.read_text()):
                queue.append((path.parent / imported).resolve())
    size = sum(len(gzip.compress(p.read_bytes(), 9)) for p in initial)
    assert len(initial) >= 3 and size < INITIAL_LOAD_BUDGET, (size, initial)


def source_hash() -> str:
    """As console/build.mjs computes it."""
    files = ["build.mjs", "package.json", "package-lock.json", "tsconfig.json"]
    files += [
        p.relative_to(CONSOLE_SOURCES).as_posix()
        for p in (CONSOLE_SOURCES / "src").rglob("*")
        if p.is_file()
    ]
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0")
        digest.update((CONSOLE_SOURCES / name).read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def test_built_console_matches_its_sources() -> None:
    built = (CONSOLE_BUILD / "SOURCE_HASH").read_text().strip()
    assert built == source_hash(), (
        "app/static/console is stale: cd console && npm ci && npm run build, and commit it"
    )


# -- in the browser ---------------------------------------------------------------------------


def svg_texts(b: Browser) -> set[str]:
    texts = b.js(
        "return [...document.querySelectorAll('.graph-svg svg text, .graph-svg svg tspan')]"
        ".map(e => e.textContent.trim())"
    )
    return {t for t in texts if t}


def test_graph_is_drawn_as_an_svg_with_its_node_names(browser: Browser) -> None:
    b = browser
    b.open("/console/")
    b.wait_css("#graphs [data-graph='subgraph_parent'] a").click()
    b.wait_css(".graph-svg[data-graph-rendered='true'] svg")
    b.step("subgraph_parent drawn")
    assert re.search(r"/console/assistants/[0-9a-f-]{36}$", b.driver.current_url)
    assert {"__start__", "prepare", "child", "finish", "__end__"} <= svg_texts(b)
    assert '"value"' in b.css("[data-field='input']").get_attribute("value")  # from the schema
    b.css("[data-field='xray']").click()
    b.wait("the subgraph's nodes", lambda: {"inner_a", "inner_b"} <= svg_texts(b))
    b.step("with xray")


def test_streamed_tokens_appear_in_order(browser: Browser, dev: DevServer) -> None:
    b = browser
    run_id = start_chat(b, "chat_model", "hi")
    assert b.wait_ended() == "SUCCESS"
    b.step("chat_model ended")
    b.wait("the whole reply", lambda: b.chat_text() == CHAT_REPLY)
    assert b.chat_text("human") == "hi"
    events = b.stored_events(run_id)
    tokens = [e["data"][0]["content"] for e in events if e["event"] == "messages"]
    assert len(tokens) > 3 and "".join(tokens) == CHAT_REPLY
    assert b.event_ids() == [e["id"] for e in events]
    assert b.event_ids() == [e["id"] for e in server_events(dev, run_id)]
    assert b.all(".graph-svg g.node.lgql-done"), "the node that ran is marked on the graph"


def test_tokens_render_one_by_one_while_the_node_is_highlighted(browser: Browser) -> None:
    b = browser
    start_chat(b, "slow_chat", "hi")
    seen: list[str] = []
    highlighted = False
    end = time.monotonic() + 30
    while b.css("[data-run]").get_attribute("data-ended") != "true":
        text = b.chat_text()
        if text and (not seen or seen[-1] != text):
            seen.append(text)
            if len(seen) == 5:
                b.step("streaming")
        highlighted = highlighted or bool(b.all(".graph-svg g.node.lgql-active"))
        assert time.monotonic() < end, "the run never ended"
        time.sleep(0.05)
    b.wait("the whole reply", lambda: b.chat_text() == SLOW_REPLY)
    assert all(SLOW_REPLY.startswith(s) for s in seen), seen
    assert len(seen) >= 5, seen
    assert highlighted, "call_model highlighted while it streamed"


def _assert_complete_and_unique(b: Browser, dev: DevServer, run_id: str) -> None:
    b.wait("the whole reply", lambda: b.chat_text() == SLOW_REPLY)
    ids = b.event_ids()
    assert len(ids) == len(set(ids)), "no event shown twice"
    assert b.stats()["duplicates"] == 0, "the server sent nothing twice"
    assert ids == [e["id"] for e in server_events(dev, run_id)], "nothing missed"


def test_reload_mid_run_continues_the_stream_without_duplicates(
    browser: Browser, dev: DevServer
) -> None:
    b = browser
    run_id = start_chat(b, "slow_chat", "hi")
    b.wait("a few tokens", lambda: len(b.chat_text().split()) >= 5)
    before = b.event_ids()
    b.step("before reload")
    b.driver.refresh()
    b.wait_css("#events tbody tr")
    b.step("after reload")
    joins = b.stats()["joins"]
    assert joins and joins[0]["runId"] == run_id
    assert joins[0]["lastEventId"] in b.event_ids(), "rejoined after the last event kept"
    assert b.run_status() in ("RUNNING", "PENDING"), "reloaded mid-run"
    assert b.wait_ended() == "SUCCESS"
    b.step("ended")
    assert b.event_ids()[: len(before)] == before
    _assert_complete_and_unique(b, dev, run_id)


def test_lost_connection_rejoins_without_duplicates(browser: Browser, dev: DevServer) -> None:
    b = browser
    run_id = start_chat(b, "slow_chat", "hi")
    b.wait("a few tokens", lambda: len(b.chat_text().split()) >= 5)
    b.js("window.__lgqlConsole.dropConnection()")
    b.step("connection dropped")
    b.wait("more tokens after reconnecting", lambda: len(b.chat_text().split()) >= 10)
    assert b.wait_ended() == "SUCCESS"
    _assert_complete_and_unique(b, dev, run_id)


def test_interrupt_shows_its_value_and_resumes(browser: Browser) -> None:
    b = browser
    first = start_with_input(b, "interrupt", {"question": "Proceed with the launch?"})
    assert b.wait_ended() == "SUCCESS"
    panel = b.wait_css("#interrupt")
    b.wait("the interrupt's value", lambda: "Proceed with the launch?" in panel.text)
    b.step("interrupted")
    b.fill("[data-field='resume']", '"go"')
    b.css("[data-action='resume']").click()
    b.wait("the resumed run", lambda: b.run_id() != first)
    assert b.wait_ended() == "SUCCESS"
    b.step("resumed")
    values = [e["data"] for e in b.stored_events(b.run_id()) if e["event"] == "values"]
    assert values and values[-1]["answer"] == "go"
    assert not b.all("#interrupt")


def test_cancel_a_run(browser: Browser) -> None:
    b = browser
    start_with_input(b, "slow", {"seconds": 60})
    b.wait("the run to start", lambda: b.run_status() == "RUNNING")
    b.step("running")
    b.css("[data-action='cancel']").click()
    assert b.wait_ended() == "INTERRUPTED"
    b.step("cancelled")
    assert not b.all("[data-action='cancel']")


def test_thread_view_history_state_edit_fork_and_run_lists(browser: Browser) -> None:
    from selenium.webdriver.support.select import Select

    b = browser
    run_id = start_chat(b, "chat_model", "hi")
    assert b.wait_ended() == "SUCCESS"
    b.wait_css(
        f"a[href$='/threads/{b.css('[data-thread-id]').get_attribute('data-thread-id')}']"
    ).click()
    b.wait_css("#history li")
    b.step("thread")
    assert CHAT_REPLY in b.css("main").text
    assert b.all(f"#thread-runs a[href$='/runs/{run_id}']")
    entries = len(b.all("#history > li"))
    assert entries >= 2 and "call_model" in b.css("#history").text
    # Edit the state as a node: a new checkpoint, the values changed.
    b.css("#edit-state summary").click()
    b.fill("[data-field='state-values']", '{"messages": [{"role": "user", "content": "edited"}]}')
    b.css("[data-action='update-state']").click()
    b.wait("the edit in the history", lambda: len(b.all("#history > li")) == entries + 1)
    assert "edited" in b.css("main").text
    # Fork from the oldest checkpoint.
    b.all("#history > li")[-1].find_element("css selector", "[data-action='fork']").click()
    b.wait_css("#edit-state[open]")
    b.step("forking")
    b.css("[data-action='update-state']").click()
    b.wait("the fork in the history", lambda: len(b.all("#history > li")) >= entries + 2)
    # The thread's runs, by status.
    status = Select(b.css("[data-field='thread-run-status']"))
    status.select_by_visible_text("running")
    b.wait("the thread's filter", lambda: not b.all(f"#thread-runs a[href$='/runs/{run_id}']"))
    status.select_by_visible_text("success")
    b.wait_css(f"#thread-runs a[href$='/runs/{run_id}']")
    # The runs list, live, with its status filter.
    b.open("/console/runs")
    b.wait_css(f"#runs tr[data-run='{run_id}']")
    b.css("[data-field='run-status'] option[value='SUCCESS']").click()
    b.wait_css(f"#runs tr[data-run='{run_id}']")
    b.css("[data-field='run-status'] option[value='RUNNING']").click()
    b.wait("the filter", lambda: not b.all(f"#runs tr[data-run='{run_id}']"))
    b.step("runs filtered")
    b.open("/console/threads")
    b.wait_css("#threads tbody tr")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def auth_dev(engines: EngineUrls) -> Any:
    async with lgql_dev(engines, AUTH_CONFIG, "console_auth") as server:
        yield server


@pytest.fixture
def auth_browser(
    request: pytest.FixtureRequest, tmp_path: Path, auth_dev: DevServer
) -> Iterator[Browser]:
    yield from open_browser(request, tmp_path, auth_dev)


def sign_in(b: Browser, token: str) -> None:
    b.wait_css("#auth [data-field='credentials']")
    b.fill("#auth [data-field='credentials']", f"Bearer {token}")
    b.step(f"credentials for {token}")
    b.css("[data-action='save-credentials']").click()


def test_auth_asks_for_credentials_and_passes_them_on(auth_browser: Browser) -> None:
    b = auth_browser
    b.open("/console/")
    sign_in(b, "alice-token")  # asked for: the server answered UNAUTHENTICATED
    b.wait_css("#graphs [data-graph='echo']")
    # Queries over HTTP carried the header; the run's stream rides the WebSocket, whose
    # connection_init carried it.
    start_chat(b, "echo", "hello from alice")
    assert b.wait_ended() == "SUCCESS"
    b.wait("the echo", lambda: b.chat_text() == "hello from alice")
    thread_id = b.css("[data-thread-id]").get_attribute("data-thread-id")
    b.open(f"/console/threads/{thread_id}")
    b.wait_css("#history li")
    # Bob sees nothing of Alice's.
    b.css("[data-action='credentials']").click()
    sign_in(b, "bob-token")
    b.wait("bob's view", lambda: f"{thread_id} not found" in b.css("main").text)
    b.step("bob")
    b.open("/console/threads")
    b.wait_css("#threads")
    time.sleep(0.5)
    assert not b.all(f"#threads tr[data-thread='{thread_id}']")


def test_breakpoint_stops_the_run_and_continue_finishes_it(browser: Browser) -> None:
    b = browser
    b.open("/console/assistants/slow")
    b.wait_css("[data-field='input']")
    b.fill("[data-field='input']", '{"seconds": 0.1}')
    b.fill("[data-field='interrupt-before']", "wait")
    b.css("[data-action='start-run']").click()
    first = b.run_id()
    assert b.wait_ended() == "SUCCESS"
    b.wait("the breakpoint", lambda: "Stopped at a breakpoint" in b.css("#interrupt").text)
    b.step("at the breakpoint")
    b.css("[data-action='resume']").click()
    b.wait("the continued run", lambda: b.run_id() != first)
    assert b.wait_ended() == "SUCCESS"
    values = [e["data"] for e in b.stored_events(b.run_id()) if e["event"] == "values"]
    assert values and values[-1]["count"] == 1


def test_create_edit_and_version_an_assistant(browser: Browser) -> None:
    from selenium.webdriver.support.select import Select

    b = browser
    b.open("/console/")
    b.wait_css("#create-assistant summary").click()
    Select(b.css("#create-assistant [data-field='graph']")).select_by_visible_text("interrupt")
    b.fill("#create-assistant [data-field='name']", "asker")
    b.fill("#create-assistant [data-field='config']", '{"tags": ["console"]}')
    b.css("[data-action='create-assistant']").click()
    b.wait(
        "the new assistant", lambda: "asker" in b.css("h2").text and "version 1" in b.css("h2").text
    )
    b.step("created")
    b.css("#edit-assistant summary").click()
    b.fill("#edit-assistant [data-field='metadata']", '{"team": "blue"}')
    b.css("[data-action='save-assistant']").click()
    b.wait("version 2", lambda: "version 2" in b.css("h2").text)
    assert len(b.all("#versions tbody tr")) == 2
    b.step("edited")
    b.css("#versions [data-action='make-current']").click()
    b.wait("version 1 current again", lambda: "version 1" in b.css("h2").text)
    assert '"console"' in b.css("#edit-assistant [data-field='config']").get_attribute("value")


def test_graphiql_links_to_the_console(browser: Browser) -> None:
    b = browser
    b.open("/graphql")
    b.wait_css("#lgql-console-link").click()
    b.wait_css("#graphs [data-graph='chat_model']")
    assert b.driver.current_url.endswith("/console/")


def test_thread_view_follows_new_runs_live(browser: Browser, dev: DevServer) -> None:
    b = browser
    start_chat(b, "chat_model", "hi")
    assert b.wait_ended() == "SUCCESS"
    thread_id = b.css("[data-thread-id]").get_attribute("data-thread-id")
    b.open(f"/console/threads/{thread_id}")
    b.wait_css("#history li")
    created = httpx.post(
        dev.graphql_url,
        json={
            "query": "mutation($input: RunInput!) { createRun(input: $input) { id } }",
            "variables": {
                "input": {
                    "assistantId": "chat_model",
                    "threadId": thread_id,
                    "input": {"messages": [{"role": "user", "content": "from elsewhere"}]},
                }
            },
        },
        timeout=10,
    ).json()["data"]["createRun"]["id"]
    # Well before the 15 s fallback poll: threadStream told the page.
    b.wait("the new run", lambda: b.all(f"#thread-runs a[href$='/runs/{created}']"), timeout=6)
    b.wait("its values", lambda: "from elsewhere" in b.css("main").text, timeout=6)
    b.step("live thread")

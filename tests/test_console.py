"""The run console (`/console`) in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver`) driven by Selenium against a live `lgql dev` serving the graphs of
`tests/fixtures/console/`. Each test records a screenshot per step and writes them under its
tmp dir when it fails.

`lgql dev` runs as a child process (on the machine's Postgres and Redis when DATABASE_URI and
REDIS_URI are set, on a database of its own), so the browser and the server never share this
test's event loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gzip
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx
import pytest
import pytest_asyncio

from tests.conftest import ROOT, EngineUrls, free_port, scratch_database

CONSOLE_CONFIG = ROOT / "tests" / "fixtures" / "console" / "langgraph.json"
AUTH_CONFIG = ROOT / "tests" / "fixtures" / "auth" / "langgraph.json"
CONSOLE_SOURCES = ROOT / "console"
CONSOLE_BUILD = ROOT / "app" / "static" / "console"
CHAT_REPLY = "Hello there, how are you today?"  # tests/fixtures/graphs/agents/chat_model.py
SLOW_REPLY = " ".join(f"word{i:02d}" for i in range(1, 31))  # tests/fixtures/console/slow_chat.py
INITIAL_LOAD_BUDGET = 500 * 1024  # gzipped bytes, the bound
T = TypeVar("T")


# -- the server -------------------------------------------------------------------------------


@dataclass
class DevServer:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def graphql_url(self) -> str:
        return f"{self.url}/graphql"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A child in a session of its own (stopped with its whole group), logging to `log`."""
    with log.open("wb") as out:
        return subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


@contextlib.asynccontextmanager
async def lgql_dev(engines: EngineUrls, config: Path, name: str, **env: str) -> Any:
    """`lgql dev` on `config`, a database and a Redis prefix of its own; stopped afterwards."""
    async with scratch_database(engines.database_uri, prefix=f"lgql_{name}") as database_uri:
        port = free_port()
        log = Path(tempfile.mkdtemp(prefix=f"lgql-{name}-")) / "dev.log"
        scrub = ("DATABASE_URL", "POSTGRES_URI", "REDIS_URL", "LGQL_PORT", "LGQL_HOST")
        child_env = {k: v for k, v in os.environ.items() if k not in scrub}
        child_env.update(
            {
                "DATABASE_URI": database_uri,
                "REDIS_URI": engines.redis_uri,
                "REDIS_KEY_PREFIX": f"lgql_test_{name}_{port}",
                "LGQL_CONFIG": str(config),
                "LGQL_DB_POOL_SIZE": "4",
                "LGQL_DATA_DIR": str(log.parent / "data"),
                "PYTHONUNBUFFERED": "1",
                **env,
            }
        )
        proc = _spawn([sys.executable, "-m", "app", "dev", "--port", str(port)], child_env, log)
        server = DevServer(f"http://127.0.0.1:{port}", proc, log)
        try:
            async with httpx.AsyncClient(timeout=5) as http:
                deadline = time.monotonic() + 60
                while True:
                    if proc.poll() is not None:
                        raise RuntimeError(f"lgql dev exited:\n{server.log_text()[-3000:]}")
                    with contextlib.suppress(httpx.TransportError):
                        if (await http.get(f"{server.url}/ok")).status_code == 200:
                            break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"lgql dev never answered:\n{server.log_text()[-3000:]}")
                    await asyncio.sleep(0.1)
            yield server
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await asyncio.to_thread(proc.wait, 10)
            shutil.rmtree(log.parent, ignore_errors=True)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def dev(engines: EngineUrls) -> Any:
    async with lgql_dev(engines, CONSOLE_CONFIG, "console") as server:
        yield server


# -- the browser ------------------------------------------------------------------------------


def chromium_paths() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.fail(
            "the console tests need Chromium and its driver: "
            "apt-get install -y chromium chromium-driver (CI's .ci/run installs them)"
        )
    return browser, driver


@dataclass
class Browser:
    """A headless Chromium, with the steps of the test it serves."""

    driver: Any
    base: str
    shots: list[tuple[str, bytes]] = field(default_factory=list, repr=False)

    def step(self, name: str) -> None:
        """Remember how the page looks now (written out only if the test fails)."""
        with contextlib.suppress(Exception):
            self.shots.append((name, self.driver.get_screenshot_as_png()))

    def open(self, path: str) -> None:
        self.driver.get(f"{self.base}{path}")

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def css(self, selector: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def all(self, selector: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, selector))

    def wait(self, what: str, probe: Callable[[], T | None], timeout: float = 20) -> T:
        """Poll `probe` until it returns something truthy; fail naming `what` after `timeout`."""
        end = time.monotonic() + timeout
        while True:
            with contextlib.suppress(Exception):
                value = probe()
                if value:
                    return value
            if time.monotonic() > end:
                raise AssertionError(f"gave up waiting for {what} ({timeout:.0f} s)")
            time.sleep(0.05)

    def wait_css(self, selector: str, timeout: float = 20) -> Any:
        return self.wait(selector, lambda: self.all(selector) and self.all(selector)[0], timeout)

    def fill(self, selector: str, text: str) -> None:
        element = self.css(selector)
        # Set through the DOM and announce it as Preact listens for it: typing JSON with
        # send_keys fights the browser's auto-indentation of nothing, but is slow and flaky.
        self.js(
            "arguments[0].value = arguments[1];"
            "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));",
            element,
            text,
        )

    def run_id(self) -> str:
        return str(
            self.wait("a run page", lambda: self.css("[data-run]").get_attribute("data-run"))
        )

    def run_status(self) -> str:
        return str(self.css("[data-run]").get_attribute("data-run-status"))

    def wait_ended(self, timeout: float = 30) -> str:
        self.wait(
            "the run to end",
            lambda: self.css("[data-run]").get_attribute("data-ended") == "true",
            timeout,
        )
        return self.run_status()

    def chat_text(self, role: str = "ai") -> str:
        texts = [e.text for e in self.all(f"#chat .message[data-role='{role}'] .text")]
        return texts[-1] if texts else ""

    def event_ids(self) -> list[str]:
        return [str(e.get_attribute("data-event-id")) for e in self.all("#events tbody tr")]

    def stored_events(self, run_id: str) -> list[dict[str, Any]]:
        raw = self.js("return sessionStorage.getItem(arguments[0])", f"lgql.console.run.{run_id}")
        return list(json.loads(raw)["events"]) if raw else []

    def stats(self) -> dict[str, Any]:
        return dict(self.js("return window.__lgqlConsole || {}"))


@pytest.fixture
def browser(request: pytest.FixtureRequest, tmp_path: Path, dev: DevServer) -> Iterator[Browser]:
    yield from _browser(request, tmp_path, dev)


def _browser(
    request: pytest.FixtureRequest, tmp_path: Path, server: DevServer
) -> Iterator[Browser]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.set_page_load_timeout(30)
    b = Browser(driver, server.url)
    # The call's report is logged before teardown: a failure has counted by then.
    failures_before = request.session.testsfailed
    try:
        yield b
    finally:
        if request.session.testsfailed > failures_before:
            _write_shots(b, tmp_path)
        driver.quit()


def _write_shots(b: Browser, tmp_path: Path) -> None:
    b.step("failure")
    folder = tmp_path / "screenshots"
    folder.mkdir(exist_ok=True)
    for i, (name, png) in enumerate(b.shots):
        slug = re.sub(r"[^\w-]+", "-", name)
        (folder / f"{i:02d}-{slug}.png").write_bytes(png)
    print(f"console screenshots: {folder}")


def server_events(server: DevServer, run_id: str) -> list[dict[str, Any]]:
    """The run's events as the server replays them from the start (while retained)."""
    from tests.test_streaming import JOIN, collect

    def replay() -> list[dict[str, Any]]:
        # collect() needs only `graphql_url`, which DevServer has too.
        return asyncio.run(collect(cast(Any, server), JOIN, {"id": run_id}, "joinRunStream"))

    # In a thread of its own: asyncio.run must not touch the test session's event loop.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(replay).result(timeout=60)


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
    yield from _browser(request, tmp_path, auth_dev)


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

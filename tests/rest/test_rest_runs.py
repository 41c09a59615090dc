"""Runs over LangGraph Server's REST API, driven by the real `langgraph_sdk` clients (async and
sync): create (thread, stateless, batch), wait (result bodies, keep-alive), get, list, delete,
join, cancel (one, many), every run-create option, and the errors LangGraph Server answers."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio
from langgraph_sdk import get_client, get_sync_client
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import ConflictError, NotFoundError, UnprocessableEntityError

from tests.conftest import (
    ALICE,
    AUTH_CONFIG,
    BOB,
    ROOT,
    EngineUrls,
    LiveServer,
    make_settings,
    scratch_database,
    server_of_its_own,
    start_server,
)


@pytest_asyncio.fixture(loop_scope="session")
async def client(live_server: LiveServer) -> AsyncIterator[LangGraphClient]:
    sdk = get_client(url=live_server.url, timeout=60)
    try:
        yield sdk
    finally:
        await sdk.http.client.aclose()


def new_id() -> str:
    return str(uuid.uuid4())


async def wait_status(
    client: LangGraphClient, thread_id: str, run_id: str, statuses: set[str]
) -> dict[str, Any]:
    """The run once its status is one of `statuses` (a bound on hangs, not a timing check)."""
    for _ in range(600):
        run = await client.runs.get(thread_id, run_id)
        if run["status"] in statuses:
            return dict(run)
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} never reached {statuses}")


# --- create and wait ---------------------------------------------------------------------------


async def test_create_on_a_new_thread_then_join_returns_the_final_values(
    client: LangGraphClient,
) -> None:
    tid = new_id()
    created: list[Any] = []
    run = await client.runs.create(
        tid,
        "echo",
        input={"messages": [{"role": "user", "content": "hi"}]},
        if_not_exists="create",
        metadata={"origin": "rest"},
        on_run_created=created.append,
    )
    assert run["thread_id"] == tid
    assert run["status"] in ("pending", "running")
    assert run["metadata"]["origin"] == "rest"
    assert run["multitask_strategy"] == "enqueue"
    assert run["kwargs"]["input"] == {"messages": [{"role": "user", "content": "hi"}]}
    assert created and created[0]["run_id"] == run["run_id"]  # from Content-Location
    values = await client.runs.join(tid, run["run_id"])
    assert [m["content"] for m in values["messages"]] == ["hi", "hi"]
    done = await client.runs.get(tid, run["run_id"])
    assert done["status"] == "success"


async def test_stateless_wait_returns_the_values_and_deletes_its_thread(
    client: LangGraphClient, live_server: LiveServer
) -> None:
    created: list[Any] = []
    values = await client.runs.wait(
        None, "steps", input={"count": 0}, on_run_created=created.append
    )
    assert values == {"count": 5}
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        gone = await http.get(f"/threads/{created[0]['thread_id']}/runs/{created[0]['run_id']}")
    assert gone.status_code == 404


async def test_stateless_run_kept_with_on_completion_keep(client: LangGraphClient) -> None:
    created: list[Any] = []
    await client.runs.wait(
        None, "steps", input={"count": 0}, on_completion="keep", on_run_created=created.append
    )
    run = await client.runs.get(created[0]["thread_id"], created[0]["run_id"])
    assert run["status"] == "success"


async def test_wait_on_an_interrupt_returns_it_and_a_command_resumes(
    client: LangGraphClient,
) -> None:
    tid = new_id()
    first = await client.runs.wait(
        tid, "interrupt", input={"question": "Proceed?"}, if_not_exists="create"
    )
    assert first["question"] == "Proceed?"
    [pending] = first["__interrupt__"]
    assert pending["value"] == {"question": "Proceed?"}
    assert pending["id"]
    second = await client.runs.wait(tid, "interrupt", command={"resume": "yes"})
    assert second == {"question": "Proceed?", "answer": "yes"}


async def test_a_failed_run_waits_with_its_error_in_a_200(client: LangGraphClient) -> None:
    body = await client.runs.wait(None, "fail", input={"message": "kaput"}, raise_error=False)
    assert body == {"__error__": {"error": "ValueError", "message": "kaput"}}
    with pytest.raises(Exception, match="ValueError: kaput"):
        await client.runs.wait(None, "fail", input={"message": "kaput"})


async def test_a_slow_wait_is_kept_alive_with_newlines_and_says_where_to_join(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app import keep_alive

    monkeypatch.setattr(keep_alive, "KEEP_ALIVE_AFTER", 0.1)
    monkeypatch.setattr(keep_alive, "KEEP_ALIVE_EVERY", 0.1)
    tid = new_id()
    async with httpx.AsyncClient(base_url=live_server.url, timeout=0.5) as http:
        response = await http.post(
            f"/threads/{tid}/runs/wait",
            json={"assistant_id": "slow", "input": {"seconds": 1.5}, "if_not_exists": "create"},
        )
    assert response.status_code == 200
    assert response.content.startswith(b"\n") and response.content.count(b"\n") >= 3
    assert orjson.loads(response.content) == {"seconds": 1.5, "count": 1}
    location = response.headers["location"]
    assert location.startswith(f"/threads/{tid}/runs/") and location.endswith("/join")
    assert response.headers["content-location"] == location.removesuffix("/join")


async def test_batch_creates_stateless_runs(client: LangGraphClient) -> None:
    runs = await client.runs.create_batch(
        [
            {"assistant_id": "steps", "input": {"count": 0}, "on_completion": "keep"},
            {"assistant_id": "echo", "input": {"messages": []}, "on_completion": "keep"},
        ]
    )
    assert len(runs) == 2 and len({r["thread_id"] for r in runs}) == 2
    results = [await client.runs.join(r["thread_id"], r["run_id"]) for r in runs]
    assert results[0] == {"count": 5}


async def test_the_sync_client_waits_too(live_server: LiveServer) -> None:
    def call() -> Any:
        sync = get_sync_client(url=live_server.url, timeout=60)
        try:
            return sync.runs.wait(None, "steps", input={"count": 10})
        finally:
            sync.http.client.close()

    assert await asyncio.to_thread(call) == {"count": 15}


# --- read, list, delete ------------------------------------------------------------------------


async def test_get_list_and_delete_runs_of_a_thread(
    client: LangGraphClient, live_server: LiveServer
) -> None:
    tid = new_id()
    first = await client.runs.create(tid, "steps", input={"count": 0}, if_not_exists="create")
    await client.runs.join(tid, first["run_id"])
    second = await client.runs.create(tid, "steps", input={"count": 0})
    await client.runs.join(tid, second["run_id"])

    listed = await client.runs.list(tid)
    assert [r["run_id"] for r in listed] == [second["run_id"], first["run_id"]]  # newest first
    assert [r["run_id"] for r in await client.runs.list(tid, limit=1, offset=1)] == [
        first["run_id"]
    ]
    assert await client.runs.list(tid, status="pending") == []
    assert await client.runs.list(tid, select=["run_id", "status"]) == [
        {"run_id": second["run_id"], "status": "success"},
        {"run_id": first["run_id"], "status": "success"},
    ]

    await client.runs.delete(tid, first["run_id"])
    with pytest.raises(NotFoundError):
        await client.runs.get(tid, first["run_id"])
    with pytest.raises(NotFoundError):
        await client.runs.delete(tid, first["run_id"])
    # A run is found only under its own thread.
    with pytest.raises(NotFoundError):
        await client.runs.get(new_id(), second["run_id"])
    with pytest.raises(NotFoundError):
        await client.runs.list(new_id())
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        bad = await http.get(f"/threads/{tid}/runs/not-a-uuid")
        bad_select = await http.get(f"/threads/{tid}/runs", params={"select": "nope"})
    assert bad.status_code == 422 and "UUID" in bad.json()["detail"]
    assert bad_select.status_code == 422


async def test_deleting_an_active_run_is_a_conflict(client: LangGraphClient) -> None:
    tid = new_id()
    run = await client.runs.create(tid, "slow", input={"seconds": 30}, if_not_exists="create")
    with pytest.raises(ConflictError):
        await client.runs.delete(tid, run["run_id"])
    await client.runs.cancel(tid, run["run_id"], wait=True)


# --- errors -------------------------------------------------------------------------------------


async def test_bad_bodies_are_422_with_a_detail(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        cases = [
            ("/runs", {"input": {}}),  # no assistant_id
            ("/runs", {"assistant_id": "echo", "stream_mode": ["telepathy"]}),
            (f"/threads/{new_id()}/runs", {"assistant_id": "echo", "multitask_strategy": "x"}),
            ("/runs/wait", {"assistant_id": "echo", "durability": "forever"}),
            (
                "/runs",
                {"assistant_id": "echo", "config": {"configurable": {"a": 1}}, "context": {"b": 2}},
            ),
            ("/runs/batch", {"assistant_id": "echo"}),  # not a list
        ]
        for path, payload in cases:
            response = await http.post(path, json=payload)
            assert response.status_code == 422, (path, payload, response.text)
            assert isinstance(response.json()["detail"], str)


async def test_missing_assistant_or_thread_is_404(client: LangGraphClient) -> None:
    with pytest.raises(NotFoundError):
        await client.runs.create(None, "no-such-graph", input={})
    with pytest.raises(NotFoundError):
        await client.runs.create(new_id(), "echo", input={"messages": []})  # if_not_exists=reject


async def test_multitask_reject_is_a_conflict(client: LangGraphClient) -> None:
    tid = new_id()
    busy = await client.runs.create(tid, "slow", input={"seconds": 30}, if_not_exists="create")
    with pytest.raises(ConflictError):
        await client.runs.create(tid, "slow", input={}, multitask_strategy="reject")
    await client.runs.cancel(tid, busy["run_id"], wait=True)


# --- cancel -------------------------------------------------------------------------------------


async def test_cancel_and_wait_interrupts_the_run(client: LangGraphClient) -> None:
    tid = new_id()
    run = await client.runs.create(tid, "slow", input={"seconds": 30}, if_not_exists="create")
    await wait_status(client, tid, run["run_id"], {"running"})
    await client.runs.cancel(tid, run["run_id"], wait=True, action="interrupt")
    assert (await client.runs.get(tid, run["run_id"]))["status"] == "interrupted"
    # Nothing left to cancel: LangGraph Server answers 404.
    with pytest.raises(NotFoundError):
        await client.runs.cancel(tid, run["run_id"])


async def test_cancel_without_wait_is_accepted_and_rollback_deletes_the_run(
    client: LangGraphClient, live_server: LiveServer
) -> None:
    tid = new_id()
    run = await client.runs.create(tid, "slow", input={"seconds": 30}, if_not_exists="create")
    await wait_status(client, tid, run["run_id"], {"running"})
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        response = await http.post(
            f"/threads/{tid}/runs/{run['run_id']}/cancel", params={"action": "rollback"}
        )
        assert response.status_code == 202 and response.content == b""
        bad = await http.post(
            f"/threads/{tid}/runs/{run['run_id']}/cancel", params={"action": "explode"}
        )
        assert bad.status_code == 422
    for _ in range(600):
        try:
            await client.runs.get(tid, run["run_id"])
        except NotFoundError:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("a rolled back run is deleted")


async def test_cancel_many_by_ids_and_by_status(client: LangGraphClient) -> None:
    tid = new_id()
    running = await client.runs.create(tid, "slow", input={"seconds": 30}, if_not_exists="create")
    queued = await client.runs.create(tid, "slow", input={"seconds": 30})
    await client.runs.cancel_many(thread_id=tid, run_ids=[running["run_id"], queued["run_id"]])
    for run in (running, queued):
        await wait_status(client, tid, run["run_id"], {"interrupted"})
    with pytest.raises(NotFoundError):  # nothing left to cancel
        await client.runs.cancel_many(thread_id=tid, run_ids=[running["run_id"]])

    other = new_id()
    later = await client.runs.create(
        other, "steps", input={"count": 0}, if_not_exists="create", after_seconds=600
    )
    await client.runs.cancel_many(status="pending")
    await wait_status(client, other, later["run_id"], {"interrupted"})
    with pytest.raises(UnprocessableEntityError):
        await client.runs.cancel_many(status="pending", run_ids=[later["run_id"]])
    with pytest.raises(UnprocessableEntityError):
        await client.runs.cancel_many()


# --- options ------------------------------------------------------------------------------------


async def test_run_options_reach_the_run(client: LangGraphClient) -> None:
    tid = new_id()
    run = await client.runs.create(
        tid,
        "steps",
        input={"count": 0},
        if_not_exists="create",
        config={"tags": ["t1"], "recursion_limit": 50},
        stream_mode=["values", "updates"],
        stream_subgraphs=True,
        stream_resumable=True,
        interrupt_before=["step_3"],
        durability="sync",
        after_seconds=0.2,
    )
    kwargs = run["kwargs"]
    assert kwargs["stream_mode"] == ["values", "updates"]
    assert kwargs["subgraphs"] is True and kwargs["resumable"] is True
    assert kwargs["interrupt_before"] == ["step_3"]
    assert kwargs["durability"] == "sync"
    assert kwargs["config"]["tags"] == ["t1"]
    assert run["status"] == "pending"
    await client.runs.join(tid, run["run_id"])


async def test_static_breakpoints_stop_the_run_and_input_none_goes_on(
    client: LangGraphClient,
) -> None:
    tid = new_id()
    stopped = await client.runs.wait(
        tid, "steps", input={"count": 0}, if_not_exists="create", interrupt_after=["step_1"]
    )
    assert stopped == {"count": 1}  # the first node ran, then the breakpoint
    rest = await client.runs.wait(tid, "steps", input=None)
    assert rest == {"count": 5}
    assert [r["status"] for r in await client.runs.list(tid)] == ["success", "success"]


async def test_interrupt_after_star_stops_after_the_first_node(client: LangGraphClient) -> None:
    # LangGraph takes "*" as a string only; lgql stores it as ["*"] (GraphQL's form) and the
    # worker gives LangGraph the string (it read ["*"] as a node named "*" and never stopped).
    stopped = await client.runs.wait(
        new_id(), "steps", input={"count": 0}, if_not_exists="create", interrupt_after="*"
    )
    assert stopped == {"count": 1}


async def test_a_run_forked_from_an_earlier_checkpoint(client: LangGraphClient) -> None:
    tid = new_id()
    hi = {"messages": [{"role": "user", "content": "a"}]}
    await client.runs.wait(tid, "echo", input=hi, if_not_exists="create")
    await client.runs.wait(tid, "echo", input={"messages": [{"role": "user", "content": "b"}]})
    history = await client.threads.get_history(tid, limit=20)
    after_first = next(
        s for s in history if len(s["values"].get("messages", [])) == 2 and not s["next"]
    )
    checkpoint_id = after_first["checkpoint"]["checkpoint_id"]
    c = {"messages": [{"role": "user", "content": "c"}]}
    forked = await client.runs.wait(tid, "echo", input=c, checkpoint_id=checkpoint_id)
    assert [m["content"] for m in forked["messages"]] == ["a", "a", "c", "c"]
    d = {"messages": [{"role": "user", "content": "d"}]}
    again = await client.runs.wait(
        tid, "echo", input=d, checkpoint={"checkpoint_id": checkpoint_id}
    )
    assert [m["content"] for m in again["messages"]] == ["a", "a", "d", "d"]
    with pytest.raises(NotFoundError):
        await client.runs.create(tid, "echo", input=d, checkpoint_id=new_id())


async def test_context_and_config_reach_the_graph(client: LangGraphClient) -> None:
    greeted = await client.runs.wait(
        None, "ctx", input={}, context={"user_name": "Ada", "greeting": "Hi"}
    )
    assert greeted == {"greeting": "Hi, Ada!"}


# --- clients that leave -------------------------------------------------------------------------


async def test_a_wait_left_with_on_disconnect_cancel_cancels_the_run(
    client: LangGraphClient, live_server: LiveServer
) -> None:
    tid = new_id()
    # The client gives up long before the run ends: its connection closes.
    async with httpx.AsyncClient(base_url=live_server.url, timeout=1) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post(
                f"/threads/{tid}/runs/wait",
                json={
                    "assistant_id": "slow",
                    "input": {"seconds": 60},
                    "if_not_exists": "create",
                    "on_disconnect": "cancel",
                },
            )
    [run] = await client.runs.list(tid)
    await wait_status(client, tid, run["run_id"], {"interrupted"})


async def test_a_join_left_with_cancel_on_disconnect_cancels_the_run(
    client: LangGraphClient, live_server: LiveServer
) -> None:
    tid = new_id()
    run = await client.runs.create(tid, "slow", input={"seconds": 60}, if_not_exists="create")
    async with httpx.AsyncClient(base_url=live_server.url, timeout=1) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get(
                f"/threads/{tid}/runs/{run['run_id']}/join",
                params={"cancel_on_disconnect": "true"},
            )
    await wait_status(client, tid, run["run_id"], {"interrupted"})

    streamed = await client.runs.create(tid, "slow", input={"seconds": 60})
    async for _ in client.runs.join_stream(tid, streamed["run_id"], cancel_on_disconnect=True):
        break  # one event, then the client leaves
    await wait_status(client, tid, streamed["run_id"], {"interrupted"})


async def test_a_join_left_without_cancel_leaves_the_run_going(
    client: LangGraphClient, live_server: LiveServer
) -> None:
    tid = new_id()
    run = await client.runs.create(tid, "slow", input={"seconds": 1}, if_not_exists="create")
    async with httpx.AsyncClient(base_url=live_server.url, timeout=0.2) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get(f"/threads/{tid}/runs/{run['run_id']}/join")
    assert await client.runs.join(tid, run["run_id"]) == {"seconds": 1, "count": 1}


# --- two users ----------------------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def auth_server(engines: EngineUrls, redis_prefix: str) -> AsyncIterator[LiveServer]:
    async with server_of_its_own(engines, redis_prefix, "rest_runs_auth", AUTH_CONFIG) as server:
        yield server


async def test_bob_can_neither_see_nor_touch_alices_runs(auth_server: LiveServer) -> None:
    alice = get_client(url=auth_server.url, headers=ALICE, timeout=60)
    bob = get_client(url=auth_server.url, headers=BOB, timeout=60)
    try:
        thread = await alice.threads.create()
        tid = thread["thread_id"]
        done = await alice.runs.create(tid, "echo", input={"messages": []})
        await alice.runs.join(tid, done["run_id"])
        busy = await alice.runs.create(tid, "slow", input={"seconds": 60})
        rid = done["run_id"]

        for call in (
            bob.runs.get(tid, rid),
            bob.runs.join(tid, rid),
            bob.runs.list(tid),
            bob.runs.delete(tid, rid),
            bob.runs.cancel(tid, busy["run_id"]),
            bob.runs.create(tid, "echo", input={"messages": []}),
            bob.runs.wait(tid, "echo", input={"messages": []}),
        ):
            # join and wait reconnect on failure: their 404 comes as httpx's error.
            with pytest.raises((NotFoundError, httpx.HTTPStatusError)) as refused:
                await call
            assert refused.value.response.status_code == 404
        with pytest.raises(NotFoundError):
            await anext(aiter(bob.runs.join_stream(tid, rid)))
        with pytest.raises(NotFoundError):
            await anext(aiter(await bob.threads.join_stream(tid)))
        with pytest.raises(NotFoundError):
            await bob.runs.cancel_many(thread_id=tid, run_ids=[busy["run_id"]])
        await bob.runs.cancel_many(status="all")  # only Bob's runs: none
        assert (await alice.runs.get(tid, busy["run_id"]))["status"] in ("pending", "running")

        # Bob's own runs work.
        hello = {"messages": [{"role": "user", "content": "hello"}]}
        mine = await bob.runs.wait(None, "echo", input=hello)
        assert [m["content"] for m in mine["messages"]] == ["hello", "hello"]
        await alice.runs.cancel(tid, busy["run_id"], wait=True)
        assert (await alice.runs.get(tid, busy["run_id"]))["status"] == "interrupted"
        assert [r["run_id"] for r in await alice.runs.list(tid)][1] == rid
    finally:
        await alice.aclose()
        await bob.aclose()


# --- headers into the run's config ---------------------------------------------------------------


async def test_headers_named_in_langgraph_json_reach_the_runs_config(
    engines: EngineUrls, redis_prefix: str, tmp_path: Path
) -> None:
    from app.db.migrate import upgrade

    graphs = ROOT / "tests" / "fixtures" / "graphs"
    config = tmp_path / "langgraph.json"
    config.write_text(
        json.dumps(
            {
                "dependencies": [str(graphs)],
                "graphs": {"factory": f"{graphs}/agents/factory.py:make_graph"},
                "http": {
                    "configurable_headers": {"includes": ["prefix", "x-*"], "excludes": ["x-no-*"]}
                },
            }
        )
    )
    async with scratch_database(engines.database_uri, prefix="lgql_rest_headers") as url:
        await upgrade(url)
        server = await start_server(
            make_settings(f"{redis_prefix}_rest_headers", config=config),
            database_uri=url,
            redis_uri=engines.redis_uri,
        )
        sdk = get_client(
            url=server.url,
            headers={
                "prefix": "hey:",  # the factory graph builds its reply from configurable.prefix
                "x-team": "blue",
                "x-no-thanks": "hidden",
                "x-service-key": "secret",
                "x-request-id": "req-1",
            },
        )
        try:
            created: list[Any] = []
            answer = await sdk.runs.wait(
                None,
                "factory",
                input={"value": "v"},
                on_completion="keep",
                on_run_created=created.append,
            )
            assert answer == {"value": "v", "reply": "hey:v"}
            run = await sdk.runs.get(created[0]["thread_id"], created[0]["run_id"])
            configurable = run["kwargs"]["config"]["configurable"]
            assert configurable["x-team"] == "blue"
            assert configurable["langgraph_request_id"] == "req-1"
            assert "x-no-thanks" not in configurable and "x-service-key" not in configurable
            # A key of the request's own config wins over a header.
            own = await sdk.runs.wait(
                None, "factory", input={"value": "v"}, config={"configurable": {"prefix": "own:"}}
            )
            assert own["reply"] == "own:v"
        finally:
            await sdk.aclose()
            await server.stop()


# --- the same rules as GraphQL -------------------------------------------------------------------


async def test_double_texting_interrupt_and_enqueue_over_rest(client: LangGraphClient) -> None:
    tid = new_id()
    first = await client.runs.create(
        tid, "pipeline", input={"tag": "one", "seconds": 60}, if_not_exists="create"
    )
    await wait_status(client, tid, first["run_id"], {"running"})
    second = await client.runs.create(
        tid, "pipeline", input={"tag": "two", "seconds": 0}, multitask_strategy="interrupt"
    )
    third = await client.runs.create(
        tid, "pipeline", input={"tag": "three", "seconds": 0}, multitask_strategy="enqueue"
    )
    final = await client.runs.join(tid, third["run_id"])
    assert (await client.runs.get(tid, first["run_id"]))["status"] == "interrupted"
    assert (await client.runs.get(tid, second["run_id"]))["status"] == "success"
    assert final["log"] == ["first:one", "first:two", "after:two", "first:three", "after:three"]


async def test_webhooks_follow_the_servers_policy(live_server: LiveServer) -> None:
    # The same SSRF rules as GraphQL's createRun: a loopback target is refused at creation.
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        refused = await http.post(
            "/runs", json={"assistant_id": "echo", "webhook": "http://127.0.0.1:9/hook"}
        )
        relative_or_bad = await http.post(
            "/runs", json={"assistant_id": "echo", "webhook": "ftp://example.com/hook"}
        )
    assert refused.status_code == 422 and refused.json()["detail"]
    assert relative_or_bad.status_code == 422

"""Every REST route asks the `langgraph.json` auth handlers about the `(resource, action)` pairs
LangGraph Server asks about (reference/langgraph-server-behaviour.md §13), in the same order:
a recording handler (tests/fixtures/auth_actions/recorder.py) sees each call of the Python SDK."""

from __future__ import annotations

import inspect
import sys
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import pytest_asyncio
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from tests.conftest import (
    ROOT,
    EngineUrls,
    LiveServer,
    server_of_its_own,
)

FIXTURE = ROOT / "tests" / "fixtures" / "auth_actions"


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def recording_server(engines: EngineUrls, redis_prefix: str) -> AsyncIterator[LiveServer]:
    async with server_of_its_own(
        engines, redis_prefix, "auth_actions", FIXTURE / "langgraph.json"
    ) as server:
        yield server


def _seen() -> list[tuple[str, str]]:
    """The recorder's list, in the module the server loaded from the fixture's file."""
    path = (FIXTURE / "recorder.py").resolve()
    for module in list(sys.modules.values()):
        if getattr(module, "__file__", None) and Path(module.__file__).resolve() == path:
            seen: list[tuple[str, str]] = module.SEEN
            return seen
    raise AssertionError("the recording auth module is not loaded")


MISMATCHES: list[tuple[str, list[tuple[str, str]], list[tuple[str, str]]]] = []


async def check(call: Awaitable[Any], expected: list[tuple[str, str]]) -> Any:
    """Run `call` and note it when the pairs the handlers were asked about while it ran are not
    `expected`; returns what `call` returned."""
    seen = _seen()
    seen.clear()
    result = await call
    pairs = list(seen)
    seen.clear()
    if pairs != expected:
        MISMATCHES.append((getattr(call, "__qualname__", repr(call)), pairs, expected))
    return result


async def test_every_route_asks_langgraphs_resource_and_action(
    recording_server: LiveServer,
) -> None:
    client: LangGraphClient = get_client(url=recording_server.url)
    try:
        await _assistants(client)
        await _threads_runs_and_crons(client)
        await _store(client)
    finally:
        await client.aclose()
    assert MISMATCHES == [], "\n".join(map(str, MISMATCHES))


A_READ = [("assistants", "read")]
T_READ = [("threads", "read")]


async def _assistants(client: LangGraphClient) -> None:
    a = client.assistants
    made = await check(a.create("echo", name="mine"), [("assistants", "create")])
    aid = made["assistant_id"]
    await check(a.get(aid), A_READ)
    await check(a.update(aid, metadata={"v": 2}), [("assistants", "update")])
    await check(a.search(), [("assistants", "search")])
    await check(a.count(), [("assistants", "search")])
    await check(a.get_graph(aid, xray=True), A_READ)
    await check(a.get_schemas(aid), A_READ)
    await check(a.get_subgraphs(aid, recurse=True), A_READ)
    await check(a.get_versions(aid), A_READ)
    await check(a.set_latest(aid, 1), [("assistants", "update")])
    await check(a.delete(aid), [("assistants", "delete")])


async def _threads_runs_and_crons(client: LangGraphClient) -> None:
    t, r, c = client.threads, client.runs, client.crons
    made = await check(t.create(graph_id="echo"), [("threads", "create")])
    tid = made["thread_id"]
    await check(t.get(tid), T_READ)
    await check(t.update(tid, metadata={"v": 2}), [("threads", "update")])
    await check(t.search(), [("threads", "search")])
    await check(t.count(), [("threads", "search")])

    hi = {"messages": [{"role": "user", "content": "hi"}]}
    # A graph's own assistant is the system's: only the run is asked about.
    await check(r.wait(tid, "echo", input=hi), [("threads", "create_run")])
    await check(r.stream(tid, "echo", input=hi).__anext__(), [("threads", "create_run")])
    run = await check(
        r.create(tid, "echo", input=hi, multitask_strategy="enqueue"), [("threads", "create_run")]
    )
    rid = run["run_id"]
    await check(r.join(tid, rid), T_READ)
    await check(r.get(tid, rid), T_READ)
    # The thread is read first: a missing one is a 404, as on `langgraph dev`.
    await check(r.list(tid), [("threads", "read"), ("threads", "search")])
    await check(_first(r.join_stream(tid, rid)), T_READ)
    await check(_first(t.join_stream(tid)), T_READ)
    await check(r.delete(tid, rid), [("threads", "delete")])
    await check(r.wait(None, "echo", input=hi), [("threads", "create_run")])
    await check(
        r.create_batch(
            [{"assistant_id": "echo", "input": hi}, {"assistant_id": "echo", "input": hi}]
        ),
        [("threads", "create_run")] * 2,
    )

    slow = (await t.create(graph_id="slow"))["thread_id"]
    running = await r.create(slow, "slow", input={"seconds": 30})
    await check(r.cancel(slow, running["run_id"], wait=True), [("threads", "update")])
    # One `threads.update` for the whole request, whatever it cancels.
    await check(r.cancel_many(thread_id=slow, status="pending"), [("threads", "update")])
    two = [(await r.create(slow, "slow", input={"seconds": 30}))["run_id"] for _ in range(2)]
    await check(r.cancel_many(thread_id=slow, run_ids=two), [("threads", "update")])

    state = await check(t.get_state(tid), T_READ)
    checkpoint_id = state["checkpoint"]["checkpoint_id"]
    await check(t.get_state(tid, checkpoint_id=checkpoint_id), T_READ)
    await check(t.get_state(tid, checkpoint=state["checkpoint"]), T_READ)
    await check(t.get_history(tid, limit=2), T_READ)
    await check(t.update_state(tid, {"messages": []}, as_node="echo"), [("threads", "update")])
    await check(t.copy(tid), [("threads", "read"), ("threads", "create")])

    # lgql also asks whether the user may run on the thread the cron will run on.
    cron = await check(
        c.create_for_thread(tid, "echo", schedule="0 0 1 1 *"),
        [("crons", "create"), ("threads", "create_run")],
    )
    stateless_cron = await check(c.create("echo", schedule="0 0 1 1 *"), [("crons", "create")])
    await check(c.search(), [("crons", "search")])
    await check(c.count(), [("crons", "search")])
    await check(c.update(cron["cron_id"], schedule="0 0 2 1 *"), [("crons", "update")])
    for cid in (cron["cron_id"], stateless_cron["cron_id"]):
        await check(c.delete(cid), [("crons", "delete")])

    await check(t.prune([slow]), [("threads", "delete")])
    await check(t.delete(tid), [("threads", "delete")])


async def _store(client: LangGraphClient) -> None:
    s = client.store
    await check(s.put_item(["a", "b"], "k", {"v": 1}), [("store", "put")])
    await check(s.get_item(["a", "b"], "k"), [("store", "get")])
    await check(s.search_items(["a"]), [("store", "search")])
    await check(s.list_namespaces(prefix=["a"]), [("store", "list_namespaces")])
    await check(s.delete_item(["a", "b"], "k"), [("store", "delete")])


async def _first(stream: Any) -> Any:
    if inspect.isawaitable(stream):  # threads.join_stream is a coroutine of the iterator
        stream = await stream
    async for part in stream:
        return part
    return None

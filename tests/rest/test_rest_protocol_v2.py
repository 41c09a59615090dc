"""LangGraph's Protocol v2 event streaming (`POST /threads/{id}/stream/events`, `POST
/threads/{id}/commands`, the WebSocket at the stream's path) through the Python SDK's
`client.threads.stream(...)` over SSE and WebSocket, and raw httpx / websockets for the edges."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import websockets
from langgraph_sdk import get_client, get_sync_client

from app.rest.protocol_v2_events import ProtocolEvents, Source
from tests.clients.node_client import run_node_script
from tests.conftest import (
    ALICE,
    AUTH_CONFIG,
    BOB,
    EngineUrls,
    LiveServer,
    server_of_its_own,
)

ALL = ["values", "updates", "messages", "tools", "lifecycle", "input", "tasks", "custom"]
USER = {"messages": [{"role": "user", "content": "add 2 and 3"}]}
HANG_GUARD = 120.0  # only against hangs: a loaded machine may be slow


def is_root_end(event: dict[str, Any]) -> bool:
    params = event.get("params") or {}
    return (
        event.get("method") == "lifecycle"
        and params.get("namespace") == []
        and params["data"]["event"] in ("completed", "failed", "interrupted")
    )


async def sse_events(
    http: httpx.AsyncClient,
    thread_id: str,
    body: dict[str, Any],
    *,
    until: Any = is_root_end,
    headers: dict[str, str] | None = None,
) -> list[tuple[str, str | None, dict[str, Any]]]:
    """(event name, id line, data) of each frame of the SSE stream, until `until(data)`."""
    frames: list[tuple[str, str | None, dict[str, Any]]] = []
    async with http.stream(
        "POST", f"/threads/{thread_id}/stream/events", json=body, headers=headers
    ) as response:
        assert response.status_code == 200, await response.aread()
        name: str | None = None
        sse_id: str | None = None
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("id: "):
                sse_id = line[len("id: ") :]
            elif line.startswith("data: "):
                data = json.loads(line[len("data: ") :])
            elif line == "" and name is not None:
                frames.append((name, sse_id, data))
                name, sse_id = None, None
                if until(data):
                    break
    return frames


async def command(
    http: httpx.AsyncClient, thread_id: str, method: str, params: dict[str, Any], cid: int = 1
) -> dict[str, Any]:
    response = await http.post(
        f"/threads/{thread_id}/commands", json={"id": cid, "method": method, "params": params}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
async def http(live_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=HANG_GUARD) as client:
        yield client


def texts(events: list[dict[str, Any]], namespace: list[str] | None = None) -> str:
    """The text of the content-block deltas of the `messages` events (root by default)."""
    out = []
    for e in events:
        params = e["params"]
        if e["method"] != "messages" or params["namespace"] != (namespace or []):
            continue
        data = params["data"]
        if data["event"] == "content-block-delta" and data["delta"]["type"] == "text-delta":
            out.append(data["delta"]["text"])
    return "".join(out)


# --- the Python SDK ------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["sse", "websocket"])
async def test_sdk_thread_stream_messages_tools_custom_lifecycle(
    live_server: LiveServer, transport: str
) -> None:
    client = get_client(url=live_server.url)
    async with client.threads.stream(assistant_id="tool_agent", transport=transport) as thread:
        started = await thread.run.start(input=USER)
        assert uuid.UUID(started["run_id"])
        events: list[dict[str, Any]] = []
        async with asyncio.timeout(HANG_GUARD):
            async for event in thread.subscribe(ALL):
                events.append(event)
    methods = [e["method"] for e in events]
    assert methods[0] == "lifecycle" and events[0]["params"]["data"]["event"] == "running"
    assert events[0]["params"]["data"]["graph_name"] == "tool_agent"
    assert events[-1]["params"]["data"]["event"] == "completed"
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert len({e["event_id"] for e in events}) == len(events)
    # Token deltas of the streamed reply, in order.
    assert texts(events) == "The sum is 5"
    starts = [e["params"]["data"] for e in events if e["method"] == "messages"]
    assert [d["event"] for d in starts].count("message-start") >= 2  # the plan, the reply
    # The tool call, started and finished.
    tools = [e["params"]["data"] for e in events if e["method"] == "tools"]
    assert tools[0] == {
        "event": "tool-started",
        "tool_call_id": "call_add_1",
        "tool_name": "add",
        "input": {"a": 2, "b": 3},
    }
    assert tools[1]["event"] == "tool-finished" and tools[1]["output"]["content"] == "5"
    # Custom events, with their payload.
    custom = [e["params"]["data"] for e in events if e["method"] == "custom"]
    assert custom == [{"payload": {"step": "plan"}}, {"payload": {"step": "answer"}}]
    updates = [e["params"].get("node") for e in events if e["method"] == "updates"]
    assert updates == ["agent", "tools", "agent"]
    values = [e["params"]["data"] for e in events if e["method"] == "values"]
    assert values[-1]["messages"][-1]["content"] == "The sum is 5"


async def test_sdk_typed_projections(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    async with client.threads.stream(assistant_id="tool_agent") as thread:
        await thread.run.start(input=USER)
        calls, streams = [], []
        async with asyncio.timeout(HANG_GUARD):
            async for channel, item in thread.interleave_projections(["messages", "tool_calls"]):
                (calls if channel == "tool_calls" else streams).append(item)
            outputs = [await c.output for c in calls]
            texts_seen = [await s.text for s in streams]
    assert [(c.name, c.input) for c in calls] == [("add", {"a": 2, "b": 3})]
    assert outputs[0]["content"] == "5"
    assert texts_seen[-1] == "The sum is 5"


async def collect(thread: Any, channels: list[str]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(HANG_GUARD):
        async for event in thread.subscribe(channels):
            events.append(event)
    return events


@pytest.mark.parametrize("transport", ["sse", "websocket"])
async def test_sdk_interrupt_and_respond(live_server: LiveServer, transport: str) -> None:
    client = get_client(url=live_server.url)
    async with client.threads.stream(assistant_id="interrupt", transport=transport) as thread:
        await thread.run.start(input={"question": "Ship it?"})
        async with asyncio.timeout(HANG_GUARD):
            # The SDK's lifecycle watcher sets `interrupted`; a subscription ends when it does.
            while not thread.interrupted:
                await collect(thread, ["lifecycle"])
        [asked] = thread.interrupts
        assert asked["value"] == {"question": "Ship it?"} and asked["namespace"] == []
        await thread.run.respond("yes")
        second = await collect(thread, ["lifecycle", "values"])
        assert second[-1]["params"]["data"]["event"] == "completed"
        values = [e["params"]["data"] for e in second if e["method"] == "values"]
        assert values[-1]["answer"] == "yes"
        # The SDK reads the state once the run is done (GET /threads/{id}/state).
        assert (await thread.output)["answer"] == "yes"


async def test_sdk_subgraph_handles(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    async with client.threads.stream(assistant_id="subgraph_parent") as thread:
        await thread.run.start(input={"value": "x"})
        handles = []
        async with asyncio.timeout(HANG_GUARD):
            async for handle in thread.subgraphs:
                handles.append(handle)
    [child] = handles
    assert child.graph_name == "child" and child.path[0].startswith("child:")
    assert child.status == "completed"


# --- raw SSE: filters, resuming, concurrent streams -------------------------------------------


async def start_run(http: httpx.AsyncClient, thread_id: str, assistant: str, value: Any) -> str:
    answer = await command(
        http, thread_id, "run.start", {"assistant_id": assistant, "input": value}
    )
    assert answer["type"] == "success", answer
    assert answer["meta"] == {"applied_through_seq": 0}
    run_id: str = answer["result"]["run_id"]
    return run_id


async def test_sse_frames_namespaces_and_depth(http: httpx.AsyncClient) -> None:
    thread_id = str(uuid.uuid4())
    await start_run(http, thread_id, "subgraph_parent", {"value": "x"})
    frames = await sse_events(http, thread_id, {"channels": ALL})
    for name, sse_id, data in frames:
        assert name == data["method"] and sse_id == str(data["seq"])
        assert data["type"] == "event" and isinstance(data["params"]["timestamp"], int)
    events = [f[2] for f in frames]
    child_ns = next(e["params"]["namespace"] for e in events if e["params"]["namespace"])
    assert child_ns[0].startswith("child:")
    lifecycle = [
        (e["params"]["namespace"], e["params"]["data"]["event"])
        for e in events
        if e["method"] == "lifecycle"
    ]
    assert lifecycle == [
        ([], "running"),
        (child_ns, "started"),
        (child_ns, "completed"),
        ([], "completed"),
    ]
    child_updates = [
        e["params"]["node"]
        for e in events
        if e["method"] == "updates" and e["params"]["namespace"] == child_ns
    ]
    assert child_updates == ["inner_a", "inner_b"]

    # Only the child's namespace (a prefix without the task id matches), below it nothing.
    scoped = await sse_events(
        http,
        thread_id,
        {"channels": ["updates", "lifecycle"], "namespaces": [["child"]], "depth": 0},
        until=lambda d: d["method"] == "lifecycle" and d["params"]["data"]["event"] == "completed",
    )
    assert {tuple(f[2]["params"]["namespace"]) for f in scoped} == {tuple(child_ns)}
    # The same events carry the same numbers on every connection.
    by_id = {e["event_id"]: e["seq"] for e in events}
    assert all(by_id[f[2]["event_id"]] == f[2]["seq"] for f in scoped)
    # Root only.
    root = await sse_events(
        http, thread_id, {"channels": ["updates", "lifecycle"], "namespaces": [[]], "depth": 0}
    )
    assert {tuple(f[2]["params"]["namespace"]) for f in root} == {()}


async def test_sse_resume_after_a_dropped_connection(http: httpx.AsyncClient) -> None:
    thread_id = str(uuid.uuid4())
    await start_run(http, thread_id, "ticker", {"every": 0.01})  # live: it drops mid-run
    body = {"channels": ["custom", "lifecycle"]}
    # The first connection drops after 30 events.
    count = itertools.count(1)
    first = await sse_events(http, thread_id, body, until=lambda d: next(count) >= 30)
    assert len(first) == 30
    last = first[-1][2]["seq"]
    rest = await sse_events(http, thread_id, {**body, "since": last})
    assert rest[0][2]["seq"] > last
    seen = [f[2] for f in first + rest]
    payloads = [e["params"]["data"]["payload"]["i"] for e in seen if e["method"] == "custom"]
    assert payloads == list(range(100))  # nothing lost, nothing twice
    # `Last-Event-ID` (the `id:` line a browser's EventSource echoes) resumes the same way.
    again = await sse_events(http, thread_id, body, headers={"Last-Event-ID": str(last)})
    assert [f[2]["event_id"] for f in again] == [f[2]["event_id"] for f in rest]


async def test_concurrent_streams_on_one_thread(
    live_server: LiveServer, http: httpx.AsyncClient
) -> None:
    thread_id = str(uuid.uuid4())
    await start_run(http, thread_id, "tool_agent", USER)
    ws_url = live_server.url.replace("http://", "ws://") + f"/threads/{thread_id}/stream/events"

    async def over_ws() -> list[dict[str, Any]]:
        events = []
        async with websockets.connect(ws_url) as ws:
            await ws.send(
                json.dumps(
                    {"id": 7, "method": "subscription.subscribe", "params": {"channels": ALL}}
                )
            )
            async with asyncio.timeout(HANG_GUARD):
                async for raw in ws:
                    message = json.loads(raw)
                    if message.get("type") == "event":
                        events.append(message)
                        if is_root_end(message):
                            return events
                    else:
                        assert message["type"] == "success" and message["id"] == 7
        return events

    everything, messages_only, ws_events = await asyncio.gather(
        sse_events(http, thread_id, {"channels": ALL}),
        sse_events(http, thread_id, {"channels": ["messages", "lifecycle"]}),
        over_ws(),
    )
    all_events = [f[2] for f in everything]
    assert [e["event_id"] for e in ws_events] == [e["event_id"] for e in all_events]
    assert [e["seq"] for e in ws_events] == [e["seq"] for e in all_events]
    narrowed = [e for e in all_events if e["method"] in ("messages", "lifecycle")]
    assert [f[2]["seq"] for f in messages_only] == [e["seq"] for e in narrowed]
    assert texts(all_events) == "The sum is 5"


async def test_a_second_run_comes_on_the_open_stream(http: httpx.AsyncClient) -> None:
    thread_id = str(uuid.uuid4())
    hello = {"messages": [{"role": "user", "content": "hi"}]}
    first_run = await start_run(http, thread_id, "chat_model", hello)
    ends: list[str] = []
    first_ended = asyncio.Event()

    def second_end(data: dict[str, Any]) -> bool:
        if is_root_end(data):
            ends.append(data["params"]["data"]["event"])
            first_ended.set()
        return len(ends) == 2

    async def start_second() -> str:
        await first_ended.wait()  # the first run's end came on the open stream below
        return await start_run(http, thread_id, "chat_model", hello)

    frames, second_run = await asyncio.gather(
        sse_events(http, thread_id, {"channels": ["lifecycle", "messages"]}, until=second_end),
        start_second(),
    )
    assert second_run != first_run
    events = [f[2] for f in frames]
    assert texts(events) == "Hello there, how are you today?" * 2
    assert ends == ["completed", "completed"]


# --- bad input: clear errors, nothing lost ---------------------------------------------------


async def test_commands_bad_envelopes(http: httpx.AsyncClient) -> None:
    thread_id = str(uuid.uuid4())
    url = f"/threads/{thread_id}/commands"
    not_json = await http.post(url, content=b"{nope", headers={"content-type": "application/json"})
    assert not_json.status_code == 400
    assert not_json.json() == {
        "type": "error",
        "id": None,
        "error": "invalid_argument",
        "message": "The body is not valid JSON",
    }
    for body, cid in (
        ([1, 2], None),
        ({"method": "run.start"}, None),
        ({"id": "1", "method": "run.start"}, None),
        ({"id": 3}, 3),
        ({"id": 4, "method": "run.start", "params": [1]}, 4),
    ):
        answer = await http.post(url, json=body)
        assert answer.status_code == 400, body
        assert answer.json()["error"] == "invalid_argument" and answer.json()["id"] == cid
    unknown = await command(http, thread_id, "run.explode", {}, cid=9)
    assert unknown == {
        "type": "error",
        "id": 9,
        "error": "unknown_command",
        "message": "Unknown protocol command: run.explode",
    }


async def test_commands_bad_params(http: httpx.AsyncClient) -> None:
    thread_id = str(uuid.uuid4())
    cases = [
        ("run.start", {}, "invalid_argument", "assistant_id"),
        ("run.start", {"assistant_id": "no-such-graph"}, "invalid_argument", "no-such-graph"),
        ("run.start", {"assistant_id": "echo", "config": "x"}, "invalid_argument", "config"),
        (
            "run.start",
            {"assistant_id": "echo", "multitaskStrategy": "sometimes"},
            "invalid_argument",
            "multitaskStrategy",
        ),
        ("input.respond", {}, "invalid_argument", "interrupt_id"),
        ("input.respond", {"interrupt_id": "x", "namespace": "a"}, "invalid_argument", "namespace"),
        ("input.respond", {"responses": []}, "invalid_argument", "responses"),
        ("input.respond", {"interrupt_id": "x"}, "no_such_run", "not found"),
        ("run.cancel", {}, "no_such_run", "No active run"),
        ("run.cancel", {"action": "explode"}, "invalid_argument", "action"),
        ("agent.getTree", {}, "no_such_run", "No run"),
        ("subscription.subscribe", {"channels": ["values"]}, "not_supported", "WebSocket"),
    ]
    for method, params, code, words in cases:
        answer = await command(http, thread_id, method, params, cid=5)
        assert answer["type"] == "error" and answer["id"] == 5, (method, params, answer)
        assert answer["error"] == code, (method, params, answer)
        assert words in answer["message"], (method, params, answer)
    # A string Postgres cannot store, in a command over HTTP: said as such, nothing started.
    nul = await http.post(
        f"/threads/{thread_id}/commands",
        json={"id": 6, "method": "run.start", "params": {"assistant_id": "echo", "input": "\x00"}},
    )
    assert nul.status_code == 400
    assert nul.json()["error"] == "invalid_argument" and "U+0000" in nul.json()["message"]
    # None of them made the thread.
    assert (
        await http.post(f"/threads/{thread_id}/stream/events", json={"channels": ["values"]})
    ).status_code == 404


async def test_stream_bad_bodies(http: httpx.AsyncClient) -> None:
    thread_id = str(uuid.uuid4())
    await start_run(http, thread_id, "echo", {"messages": []})
    url = f"/threads/{thread_id}/stream/events"
    for body, words in (
        ({}, "channels"),
        ({"channels": []}, "channels"),
        ({"channels": ["values", "debug"]}, "debug"),
        ({"channels": [1]}, "1"),
        ({"channels": ["values"], "namespaces": ["a"]}, "namespaces"),
        ({"channels": ["values"], "depth": -1}, "depth"),
        ({"channels": ["values"], "depth": True}, "depth"),
        ({"channels": ["values"], "since": -3}, "since"),
        ({"channels": ["values"], "since": "7"}, "since"),
    ):
        answer = await http.post(url, json=body)
        assert answer.status_code == 422, body
        assert words in answer.json()["detail"], (body, answer.json())
    bad_header = await http.post(
        url, json={"channels": ["values"]}, headers={"Last-Event-ID": "1-0"}
    )
    assert bad_header.status_code == 422 and "Last-Event-ID" in bad_header.json()["detail"]
    missing = await http.post(
        f"/threads/{uuid.uuid4()}/stream/events", json={"channels": ["values"]}
    )
    assert missing.status_code == 404 and "detail" in missing.json()
    not_uuid = await http.post("/threads/nope/stream/events", json={"channels": ["values"]})
    assert not_uuid.status_code == 422
    # custom:<name> channels are accepted (events named so, none here).
    frames = await sse_events(http, thread_id, {"channels": ["custom:progress", "lifecycle"]})
    assert {f[0] for f in frames} == {"lifecycle"}


async def test_http_interrupt_respond_with_update_and_the_state(http: httpx.AsyncClient) -> None:
    thread_id = str(uuid.uuid4())
    await start_run(http, thread_id, "interrupt", {"question": "Ship?"})
    frames = await sse_events(http, thread_id, {"channels": ["input", "lifecycle"]})
    asked = next(f[2] for f in frames if f[0] == "input.requested")
    assert asked["params"]["data"]["payload"] == {"question": "Ship?"}
    interrupt_id = asked["params"]["data"]["interrupt_id"]
    wrong = await command(
        http, thread_id, "input.respond", {"interrupt_id": "not-it", "namespace": [], "response": 1}
    )
    assert wrong["error"] == "no_such_interrupt"
    answer = await command(
        http,
        thread_id,
        "input.respond",
        {
            "interrupt_id": interrupt_id,
            "namespace": [],
            "response": "ship",
            "update": {"question": "Ship now?"},
        },
    )
    assert answer["type"] == "success" and answer["result"] == {}
    last_seq = frames[-1][2]["seq"]
    rest = await sse_events(http, thread_id, {"channels": ["lifecycle"], "since": last_seq})
    assert [f[2]["params"]["data"]["event"] for f in rest] == ["running", "completed"]
    state = await command(http, thread_id, "state.get", {"namespace": []})
    assert state["result"]["values"] == {"question": "Ship now?", "answer": "ship"}
    only = await command(http, thread_id, "state.get", {"namespace": [], "keys": ["answer"]})
    assert only["result"]["values"] == {"answer": "ship"}
    again = await command(
        http, thread_id, "input.respond", {"interrupt_id": interrupt_id, "response": "twice"}
    )
    assert again["error"] == "no_such_interrupt"
    # lgql's state.update, between runs.
    written = await command(
        http, thread_id, "state.update", {"values": {"answer": "edited"}, "as_node": "done"}
    )
    assert written["type"] == "success" and uuid.UUID(written["result"]["checkpoint"]["id"])
    edited = await command(http, thread_id, "state.get", {"keys": ["answer"]})
    assert edited["result"]["values"] == {"answer": "edited"}
    bad = await command(http, thread_id, "state.update", {"values": {}, "as_node": "nope"})
    assert bad["error"] == "invalid_argument" and "nope" in bad["message"]
    assert (await command(http, thread_id, "state.update", {}))["error"] == "invalid_argument"
    checkpoints = await command(http, thread_id, "state.listCheckpoints", {"limit": 2})
    assert len(checkpoints["result"]["checkpoints"]) == 2
    tree = await command(http, thread_id, "agent.getTree", {})
    assert tree["result"]["tree"] == {
        "namespace": [],
        "status": "completed",
        "graph_name": "interrupt",
    }


async def test_run_cancel_ends_the_run_failed(http: httpx.AsyncClient) -> None:
    thread_id = str(uuid.uuid4())
    run_id = await start_run(http, thread_id, "slow", {"seconds": 60})
    frames_task = asyncio.create_task(sse_events(http, thread_id, {"channels": ["lifecycle"]}))
    other = await command(http, thread_id, "run.cancel", {"run_id": str(uuid.uuid4())})
    assert other["error"] == "no_such_run"
    cancelled = await command(http, thread_id, "run.cancel", {})
    assert cancelled["type"] == "success", cancelled
    assert cancelled["result"] == {"run_ids": [run_id]}
    async with asyncio.timeout(HANG_GUARD):
        frames = await frames_task
    end = frames[-1][2]["params"]["data"]
    assert end["event"] == "failed" and "interrupted" in end["error"]


# --- the WebSocket, raw ------------------------------------------------------------------------


async def test_websocket_commands_and_bad_frames(live_server: LiveServer) -> None:
    thread_id = str(uuid.uuid4())
    url = live_server.url.replace("http://", "ws://") + f"/threads/{thread_id}/stream/events"
    async with websockets.connect(url) as ws:

        async def ask(message: Any) -> dict[str, Any]:
            await ws.send(message if isinstance(message, str) else json.dumps(message))
            while True:
                answer = json.loads(await ws.recv())
                if answer["type"] != "event":
                    return answer

        assert (await ask("{not json"))["error"] == "invalid_argument"
        assert (await ask({"method": "x"})) == {
            "type": "error",
            "id": None,
            "error": "invalid_argument",
            "message": "A protocol command must include a non-negative integer `id`.",
        }
        bad = await ask(
            {"id": 1, "method": "subscription.subscribe", "params": {"channels": ["nope"]}}
        )
        assert bad["id"] == 1 and bad["error"] == "invalid_argument" and "nope" in bad["message"]
        nul = await ask(
            {"id": 2, "method": "run.start", "params": {"assistant_id": "echo", "input": "\x00"}}
        )
        assert (nul["id"], nul["error"]) == (2, "invalid_argument")
        assert "U+0000 (at `params.input`)" in nul["message"]
        gone = await ask(
            {"id": 2, "method": "subscription.unsubscribe", "params": {"subscription_id": "x"}}
        )
        assert gone["error"] == "no_such_subscription"
        no_since = await ask(
            {"id": 3, "method": "subscription.reconnect", "params": {"channels": ["values"]}}
        )
        assert no_since["error"] == "invalid_argument" and "since" in no_since["message"]
        # The thread does not exist yet: subscribing works, run.start on the socket creates it.
        sub = await ask(
            {
                "id": 4,
                "method": "subscription.subscribe",
                "params": {"channels": ["lifecycle", "custom"]},
            }
        )
        assert sub["type"] == "success" and sub["result"]["replayed_events"] == 0
        started = await ask(
            {"id": 5, "method": "run.start", "params": {"assistant_id": "stream100", "input": {}}}
        )
        assert started["type"] == "success"
        events: list[dict[str, Any]] = []
        async with asyncio.timeout(HANG_GUARD):
            while not events or not is_root_end(events[-1]):
                message = json.loads(await ws.recv())
                assert message["type"] == "event"
                events.append(message)
        assert len([e for e in events if e["method"] == "custom"]) == 100
        # Two subscriptions matching the same event: it comes once. A reconnect replays after since.
        middle = events[50]["seq"]
        again = await ask(
            {
                "id": 6,
                "method": "subscription.reconnect",
                "params": {"channels": ["custom"], "since": middle},
            }
        )
        assert again["type"] == "success"
        assert again["result"]["replayed_events"] == len(
            [e for e in events if e["method"] == "custom" and e["seq"] > middle]
        )
        tree = await ask({"id": 7, "method": "agent.getTree", "params": {}})
        assert tree["result"]["tree"]["graph_name"] == "stream100"
        assert tree["result"]["tree"]["status"] == "completed"
        assert tree["meta"]["applied_through_seq"] == events[-1]["seq"]
        done = await ask(
            {
                "id": 8,
                "method": "subscription.unsubscribe",
                "params": {"subscription_id": sub["result"]["subscription_id"]},
            }
        )
        assert done == {
            "type": "success",
            "id": 8,
            "result": {},
            "meta": {"applied_through_seq": events[-1]["seq"]},
        }


async def test_websocket_bad_thread_id_closes_final(live_server: LiveServer) -> None:
    url = live_server.url.replace("http://", "ws://") + "/threads/nope/stream/events"
    async with websockets.connect(url) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4422


# --- auth: the langgraph.json handlers guard the protocol as every route -----------------------


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def auth_server(engines: EngineUrls, redis_prefix: str) -> AsyncIterator[LiveServer]:
    async with server_of_its_own(engines, redis_prefix, "protocol_auth", AUTH_CONFIG) as server:
        yield server


async def test_two_users_and_no_credentials(auth_server: LiveServer) -> None:
    thread_id = str(uuid.uuid4())
    ws_url = auth_server.url.replace("http://", "ws://") + f"/threads/{thread_id}/stream/events"
    async with (
        httpx.AsyncClient(base_url=auth_server.url, headers=ALICE, timeout=HANG_GUARD) as alice,
        httpx.AsyncClient(base_url=auth_server.url, headers=BOB, timeout=HANG_GUARD) as bob,
        httpx.AsyncClient(base_url=auth_server.url, timeout=HANG_GUARD) as nobody,
    ):
        await start_run(alice, thread_id, "echo", {"messages": []})
        frames = await sse_events(alice, thread_id, {"channels": ["lifecycle", "values"]})
        assert frames[-1][2]["params"]["data"]["event"] == "completed"
        # Bob sees no thread of Alice's, and cannot run on it.
        seen = await bob.post(f"/threads/{thread_id}/stream/events", json={"channels": ["values"]})
        assert seen.status_code == 404
        taken = await command(bob, thread_id, "run.start", {"assistant_id": "echo", "input": {}})
        assert taken["type"] == "error", taken
        assert (await command(bob, thread_id, "state.get", {}))["error"] == "invalid_argument"
        assert (await command(bob, thread_id, "run.cancel", {}))["type"] == "error"
        # Alice's thread got no run from Bob.
        again = await sse_events(alice, thread_id, {"channels": ["lifecycle"]})
        assert [f[2]["params"]["data"]["event"] for f in again] == ["running", "completed"]
        # Without credentials: 401, over HTTP and over the WebSocket (closed 4401, final).
        refused = await nobody.post(
            f"/threads/{thread_id}/commands", json={"id": 1, "method": "agent.getTree"}
        )
        assert refused.status_code == 401 and "detail" in refused.json()
    async with websockets.connect(ws_url) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    # The SDK's WebSocket transport passes the stream's headers on the handshake.
    client = get_client(url=auth_server.url, headers=ALICE)
    async with client.threads.stream(
        assistant_id="echo", transport="websocket", headers=ALICE
    ) as thread:
        started = await thread.run.start(input={"messages": []})
        events = await collect(thread, ["lifecycle", "values"])
    assert [e["params"]["data"]["event"] for e in events if e["method"] == "lifecycle"] == [
        "running",
        "completed",
    ]
    assert uuid.UUID(started["run_id"])


# --- the JS SDK's thread streams (Node) --------------------------------------------------------

JS_SCRIPT = Path(__file__).resolve().parents[1] / "clients" / "protocol_v2.mjs"


async def run_js(*args: str) -> Any:
    """What `protocol_v2.mjs` printed (the time limit only guards against hangs)."""
    return await run_node_script(JS_SCRIPT, *args, hang_guard=4 * HANG_GUARD)


async def test_js_sdk_thread_streams_over_sse_and_websocket(live_server: LiveServer) -> None:
    seen = await run_js(live_server.url)
    for transport in ("sse", "websocket"):
        agent = seen[transport]["agent"]
        events = agent["events"]
        assert events[0]["params"]["data"] == {"event": "running", "graph_name": "tool_agent"}
        assert events[-1]["params"]["data"]["event"] == "completed"
        assert texts(events) == "The sum is 5", (transport, seen[transport], seen.get("notes"))
        tools = [e["params"]["data"]["event"] for e in events if e["method"] == "tools"]
        assert tools == ["tool-started", "tool-finished"]
        custom = [e["params"]["data"]["payload"] for e in events if e["method"] == "custom"]
        assert custom == [{"step": "plan"}, {"step": "answer"}]
        interrupt = seen[transport]["interrupt"]
        [pending] = interrupt["interrupts"]
        assert pending["payload"] == {"question": "Ship it?"} and pending["namespace"] == []
        assert interrupt["first"][-1]["params"]["data"]["event"] == "interrupted"
        assert interrupt["second"][-1]["params"]["data"]["event"] == "completed"
        assert interrupt["state"]["values"] == {"question": "Ship it?", "answer": "yes"}


async def test_sync_sdk_thread_stream(live_server: LiveServer) -> None:
    def run() -> list[dict[str, Any]]:
        client = get_sync_client(url=live_server.url)
        with client.threads.stream(assistant_id="chat_model") as thread:
            thread.run.start(input={"messages": [{"role": "user", "content": "hi"}]})
            return list(thread.subscribe(["messages", "lifecycle"]))

    events = await asyncio.wait_for(asyncio.to_thread(run), HANG_GUARD)
    assert texts(events) == "Hello there, how are you today?"
    assert events[-1]["params"]["data"]["event"] == "completed"


async def test_a_failing_run_ends_failed_with_its_error(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    async with client.threads.stream(assistant_id="fail") as thread:
        await thread.run.start(input={"message": "the tool broke"})
        events = await collect(thread, ["lifecycle"])
        end = events[-1]["params"]["data"]
        assert end["event"] == "failed" and "the tool broke" in end["error"]
        with pytest.raises(RuntimeError, match="the tool broke"):
            await thread.output


async def test_checkpoints_and_tasks_channels(http: httpx.AsyncClient) -> None:
    thread_id = str(uuid.uuid4())
    await start_run(http, thread_id, "steps", {})
    frames = await sse_events(http, thread_id, {"channels": ["checkpoints", "tasks", "lifecycle"]})
    events = [f[2] for f in frames]
    checkpoints = [e["params"]["data"] for e in events if e["method"] == "checkpoints"]
    assert checkpoints and checkpoints[0]["source"] == "input" and checkpoints[0]["step"] == -1
    assert all(uuid.UUID(c["id"]) for c in checkpoints)
    assert all(c["parent_id"] == p["id"] for p, c in itertools.pairwise(checkpoints))
    tasks = [e["params"]["data"] for e in events if e["method"] == "tasks"]
    started = {t["id"]: t["name"] for t in tasks if "result" not in t}
    finished = {t["id"]: t["name"] for t in tasks if "result" in t}
    assert started and started == finished


# --- the conversion alone ----------------------------------------------------------------------


def chunk(text: str, *, last: bool = False) -> dict[str, Any]:
    return {
        "type": "AIMessageChunk",
        "content": text,
        "id": "m1",
        "chunk_position": "last" if last else None,
    }


def tape() -> list[Source]:
    meta = {"langgraph_node": "agent"}
    return [
        Source("1-0", "r1", "metadata", {"run_id": "r1", "attempt": 1}),
        Source("2-0", "r1", "messages", [chunk("Hel"), meta]),
        Source("3-0", "r1", "messages", [chunk("lo", last=True), meta]),
        Source("4-0", "r1", "messages", [{**chunk("Hello"), "type": "ai"}, meta]),
        Source("5-0", "r1", "updates|sub:t1", {"inner": {"x": 1}}),
        Source("6-0", "r1", "values", {"__interrupt__": [{"id": "i1", "value": "ok?"}], "x": 1}),
        Source("7-0", "r1", "end", {"run_id": "r1", "status": "success"}),
        Source("8-0", "r2", "values", {"x": 2}),  # a run whose start was trimmed away
        Source("9-0", "r2", "error", {"error": "ValueError", "message": "bad"}),
    ]


def test_conversion_is_deterministic_and_complete() -> None:
    first, second = ProtocolEvents(), ProtocolEvents()
    a = [e for s in tape() for e in first.convert(s, graph_name="g")]
    b = [e for s in tape() for e in second.convert(s, graph_name="g")]
    strip = [{**e, "params": {**e["params"], "timestamp": 0}} for e in a]
    assert strip == [{**e, "params": {**e["params"], "timestamp": 0}} for e in b]
    seqs = [e["seq"] for e in a]
    assert seqs == sorted(set(seqs)) and seqs[0] == 1000  # from the first id's milliseconds
    assert len({e["event_id"] for e in a}) == len(a)
    kinds = [
        (e["method"], e["params"]["namespace"], (e["params"]["data"] or {}).get("event")) for e in a
    ]
    assert kinds[0] == ("lifecycle", [], "running")
    # One message, streamed: start, block start, two deltas, block finish, finish; the whole
    # message that follows it adds nothing.
    assert [k[2] for k in kinds if k[0] == "messages"] == [
        "message-start",
        "content-block-start",
        "content-block-delta",
        "content-block-delta",
        "content-block-finish",
        "message-finish",
    ]
    assert texts(a) == "Hello"
    assert ("lifecycle", ["sub:t1"], "started") in kinds
    assert ("input.requested", [], None) in kinds
    # Interrupted: said once at the interrupt, not again at the end; open subgraphs complete.
    root_lifecycle = [k[2] for k in kinds if k[0] == "lifecycle" and k[1] == []]
    assert root_lifecycle == ["running", "interrupted", "running", "failed"]
    assert ("lifecycle", ["sub:t1"], "completed") in kinds
    assert a[-1]["params"]["data"]["error"] == "bad"
    assert first.tree()["status"] == "failed"


# --- the SDK reconnecting after its stream is cut -----------------------------------------------


class CuttingProxy:
    """A TCP proxy to the server that cuts the first connection whose request matches `marker`
    once `after` bytes of its answer went through (a network drop in the middle of a stream)."""

    def __init__(self, target_port: int, marker: bytes, after: int) -> None:
        self.target_port = target_port
        self.marker = marker
        self.after = after
        self.cut = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        doomed = asyncio.Event()

        async def upstream() -> None:
            with contextlib.suppress(Exception):
                while data := await reader.read(65536):
                    if not self.cut.is_set() and self.marker in data:
                        doomed.set()
                    up_writer.write(data)
                    await up_writer.drain()
            up_writer.close()

        async def downstream() -> None:
            sent = 0
            with contextlib.suppress(Exception):
                while data := await up_reader.read(1024):
                    writer.write(data)
                    await writer.drain()
                    sent += len(data)
                    if doomed.is_set() and sent >= self.after and not self.cut.is_set():
                        self.cut.set()
                        break
            writer.transport.abort()
            up_writer.close()

        await asyncio.gather(upstream(), downstream())


@pytest.mark.parametrize("transport", ["sse", "websocket"])
async def test_sdk_reconnects_a_cut_stream_without_loss_or_repeat(
    live_server: LiveServer, transport: str
) -> None:
    port = int(live_server.url.rsplit(":", 1)[1])
    # SSE: the subscription's POST; WebSocket: an upgrade (the frames a client sends are masked).
    # (WebSocket frames are compressed: a few hundred bytes are many events.)
    marker, after = (b'"custom"', 4096) if transport == "sse" else (b"GET /threads/", 700)
    proxy = CuttingProxy(port, marker=marker, after=after)
    url = await proxy.start()
    try:
        client = get_client(url=url)
        async with client.threads.stream(assistant_id="ticker", transport=transport) as thread:
            await thread.run.start(input={})
            events = await collect(thread, ["custom", "lifecycle"])
        assert proxy.cut.is_set()  # the stream was cut, and the SDK went on with `since`
        payloads = [e["params"]["data"]["payload"]["i"] for e in events if e["method"] == "custom"]
        assert payloads == list(range(100))
        assert events[-1]["params"]["data"]["event"] == "completed"
    finally:
        await proxy.close()


@pytest.mark.parametrize("transport", ["sse", "websocket"])
async def test_js_sdk_reconnects_a_cut_stream(live_server: LiveServer, transport: str) -> None:
    port = int(live_server.url.rsplit(":", 1)[1])
    marker, after = (b'"custom"', 4096) if transport == "sse" else (b"GET /threads/", 700)
    proxy = CuttingProxy(port, marker=marker, after=after)
    url = await proxy.start()
    try:
        seen = await run_js(url, "reconnect", transport)
    finally:
        await proxy.close()
    assert proxy.cut.is_set()
    events = seen["events"]
    payloads = [e["params"]["data"]["payload"]["i"] for e in events if e["method"] == "custom"]
    assert payloads == list(range(100)), seen["notes"]
    ends = [e["params"]["data"]["event"] for e in events if is_root_end(e)]
    assert ends == ["completed"]  # once, though replayed to two subscriptions


def test_numbers_hold_when_older_events_expired() -> None:
    """A reconnect's `since` still lets a newer run through when the thread's older events
    expired between the two connections (a counter from 1 would hide the new run's first
    events behind the old cursor); events both connections read carry the same numbers."""
    meta = {"langgraph_node": "agent"}
    old_run = [
        Source("1796000000000-0", "r1", "metadata", {}),
        *(
            Source(f"1796000000001-{i}", "r1", "messages", [chunk(f"t{i}"), meta])
            for i in range(50)
        ),
        Source("1796000000002-0", "r1", "end", {"status": "success"}),
    ]
    new_run = [
        Source("1796000300000-0", "r2", "metadata", {}),
        Source("1796000300001-0", "r2", "values", {"x": 1}),
        Source("1796000300002-0", "r2", "end", {"status": "success"}),
    ]
    before, after = ProtocolEvents(), ProtocolEvents()
    seen = [e for s in old_run + new_run for e in before.convert(s)]
    cursor = max(e["seq"] for e in seen if e["event_id"].startswith("1796000000002"))
    fresh = [e for s in new_run for e in after.convert(s)]
    assert all(e["seq"] > cursor for e in fresh)
    assert [(e["event_id"], e["seq"]) for e in fresh] == [
        (e["event_id"], e["seq"]) for e in seen if e["event_id"].startswith("17960003")
    ]


async def test_sdk_values_projection(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    async with client.threads.stream(assistant_id="steps") as thread:
        await thread.run.start(input={"count": 0})
        async with asyncio.timeout(HANG_GUARD):
            snapshots = [snapshot async for snapshot in thread.values]
            output = await thread.output
    # The state read first (over REST), then each step's values; the last is the output.
    counts = [s.get("count") for s in snapshots]
    assert counts[-1] == 5 and output == {"count": 5}
    assert [c for c in counts[1:] if c is not None] == sorted(
        c for c in counts[1:] if c is not None
    )


async def test_run_start_double_texting(http: httpx.AsyncClient) -> None:
    thread_id = str(uuid.uuid4())
    first = await start_run(http, thread_id, "slow", {"seconds": 60})
    refused = await command(
        http,
        thread_id,
        "run.start",
        {"assistant_id": "slow", "input": {"seconds": 0}, "multitaskStrategy": "reject"},
    )
    assert refused["type"] == "error" and refused["error"] == "invalid_argument"
    assert "busy" in refused["message"].lower() or "running" in refused["message"].lower()
    second = await command(
        http,
        thread_id,
        "run.start",
        {"assistant_id": "slow", "input": {"seconds": 0}, "multitask_strategy": "interrupt"},
    )
    assert second["type"] == "success" and second["result"]["run_id"] != first
    ends: list[str] = []

    def both_ended(data: dict[str, Any]) -> bool:
        if is_root_end(data):
            ends.append(data["params"]["data"]["event"])
        return len(ends) == 2

    await sse_events(http, thread_id, {"channels": ["lifecycle"]}, until=both_ended)
    assert ends == ["failed", "completed"]  # the first interrupted by the second

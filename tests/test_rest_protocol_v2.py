"""LangGraph's Protocol v2 event streaming (`POST /threads/{id}/stream/events`, `POST
/threads/{id}/commands`, the WebSocket at the stream's path) through the Python SDK's
`client.threads.stream(...)` over SSE and WebSocket, and raw httpx / websockets for the edges."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client

from tests.conftest import LiveServer

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

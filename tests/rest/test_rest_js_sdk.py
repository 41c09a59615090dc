"""The JS SDK (`@langchain/langgraph-sdk` from npm, pinned in tests/conformance) against lgql's
REST API, run under Node by `tests/clients/langgraph_sdk_client.mjs`: `runs.stream` with
several modes, `joinStream` resumed with the last event id after a disconnect, `runs.wait`,
`runs.cancel`. Node and npm are required: a missing Node is an error, never a skip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.clients.node_client import run_node_script
from tests.conftest import LiveServer

SCRIPT = Path(__file__).resolve().parents[1] / "clients" / "langgraph_sdk_client.mjs"


async def run_js_client(url: str, *, hang_guard: float = 240.0) -> dict[str, Any]:
    """What the script saw (`hang_guard` only guards against hangs)."""
    result: dict[str, Any] = await run_node_script(SCRIPT, url, hang_guard=hang_guard)
    return result


async def test_the_js_sdk_streams_joins_waits_and_cancels(live_server: LiveServer) -> None:
    seen = await run_js_client(live_server.url)

    stream = seen["stream"]
    events = stream["events"]
    names = [e["event"] for e in events]
    assert names[0] == "metadata"
    run_id = events[0]["data"]["run_id"]
    assert stream["created"] == [{"run_id": run_id, "thread_id": stream["threadId"]}]
    assert {"values", "updates", "messages", "custom"} <= set(names)
    assert "end" not in names
    assert [e["data"] for e in events if e["event"] == "custom"] == [
        {"step": "plan"},
        {"step": "answer"},
    ]
    tokens = [e["data"] for e in events if e["event"] == "messages"]
    assert all(isinstance(t, list) and len(t) == 2 for t in tokens)
    tool_calls = [c for chunk, _ in tokens for c in chunk.get("tool_calls") or []]
    assert tool_calls and tool_calls[0]["name"] == "add"
    final = [e["data"] for e in events if e["event"] == "values"][-1]
    assert final["messages"][-1]["content"] == "The sum is 5"
    assert all(e["id"] for e in events)

    join = seen["join"]
    assert len(join["first"]) == 2
    assert join["first"] + join["rest"] == join["everything"]
    assert join["everything"][-1]["data"]["log"] == ["first:js", "after:js"]

    assert seen["wait"] == {"count": 5}
    assert seen["cancel"] == {"status": "interrupted"}

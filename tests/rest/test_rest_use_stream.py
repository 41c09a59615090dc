"""The React hook `useStream` (`@langchain/langgraph-sdk/react`, pinned in tests/conformance with
react, react-dom and happy-dom) against lgql unchanged: `tests/clients/use_stream.mjs` renders it
with react-dom into happy-dom's document under Node (the hook talks to the server with Node's
fetch, as a browser page's would), submits a message, an interrupt and its resume, reloads a page
mid-run to rejoin it (`reconnectOnMount`), and stops a run (`stop`, a cancel). Node and npm are
required: a missing Node is an error, never a skip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.clients.node_client import run_node_script
from tests.conftest import LiveServer

SCRIPT = Path(__file__).resolve().parents[1] / "clients" / "use_stream.mjs"
REPLY = "Hello there, how are you today?"


async def run_pages(url: str, *, hang_guard: float = 240.0) -> dict[str, Any]:
    """What the pages saw (`hang_guard` only guards against hangs)."""
    result: dict[str, Any] = await run_node_script(SCRIPT, url, hang_guard=hang_guard)
    return result


async def test_use_stream_chats_interrupts_resumes_and_reconnects(
    live_server: LiveServer,
) -> None:
    seen = await run_pages(live_server.url)

    chat = seen["chat"]
    assert chat["error"] is None
    assert len(chat["threadIds"]) == 1
    assert chat["messages"] == [
        {"type": "human", "content": "hi"},
        {"type": "ai", "content": REPLY},
    ]
    # Every content a render showed grows toward the reply: the tokens streamed in.
    assert chat["aiContents"][-1] == REPLY
    assert all(REPLY.startswith(c) for c in chat["aiContents"])
    # Only the messages-tuple events carry a message's stream metadata.
    assert chat["streamMetadata"]["langgraph_node"] == "call_model"
    # fetchStateHistory: the thread's checkpoints (input, loop, the model's step), oldest first,
    # and the AI message placed in the step that wrote it.
    assert chat["history"] == [-1, 0, 1]
    assert chat["firstSeenStep"] == 1
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        thread = (await http.get(f"/threads/{chat['threadIds'][0]}")).json()
    assert thread["status"] == "idle"
    assert thread["values"]["messages"][-1]["content"] == REPLY

    interrupt = seen["interrupt"]
    assert interrupt["error"] is None
    assert len(interrupt["threadIds"]) == 1
    assert interrupt["interrupt"]["value"] == {"question": "Proceed?"}
    assert interrupt["interrupt"]["id"]
    assert interrupt["after"] == {
        "values": {"question": "Proceed?", "answer": "yes"},
        "interrupt": None,
    }

    reconnect = seen["reconnect"]
    assert reconnect["error"] is None
    assert reconnect["stored"] == reconnect["runs"][0]
    assert reconnect["before"] >= 3
    # The new page replays the run from its start and follows it to the end.
    assert reconnect["after"] == list(range(reconnect["n"]))
    assert reconnect["values"] == {"n": reconnect["n"], "every": 0.05, "count": reconnect["n"]}
    assert reconnect["storedAfter"] is None
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        runs = (await http.get(f"/threads/{reconnect['threadId']}/runs")).json()
    # The first page's dropped connection did not cancel the run (onDisconnect "continue").
    assert [r["status"] for r in runs] == ["success"]

    # stop() cancels the run the hook stored, and forgets it.
    assert seen["stop"] == {"status": "interrupted", "stored": None}

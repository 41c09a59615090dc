"""The JS SDK (`@langchain/langgraph-sdk` from npm, pinned in tests/conformance) on lgql's REST
resources, run under Node by `tests/clients/langgraph_sdk_resources.mjs`: assistants, threads
with supersteps, state, history and prune, crons, the store. Node and npm are required: a
missing Node is an error, never a skip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.clients.node_client import run_node_script
from tests.conftest import LiveServer

SCRIPT = Path(__file__).resolve().parents[1] / "clients" / "langgraph_sdk_resources.mjs"


async def run_js(url: str, tag: str, *, hang_guard: float = 240.0) -> dict[str, Any]:
    """What the script saw (`hang_guard` only guards against hangs)."""
    result: dict[str, Any] = await run_node_script(SCRIPT, url, tag, hang_guard=hang_guard)
    return result


async def test_the_js_sdk_on_assistants_threads_crons_and_the_store(
    live_server: LiveServer, unique: str
) -> None:
    seen = await run_js(live_server.url, unique)

    assistants = seen["assistants"]
    assert assistants["created"]["graph_id"] == "echo"
    assert assistants["created"]["context"] == {"model": "x"}
    assert assistants["updatedVersion"] == 2
    assert assistants["updatedMetadata"] == {"tag": unique, "more": 1}
    assert assistants["versions"] == [2, 1]
    assert assistants["latestVersion"] == 1
    assert assistants["found"] == [assistants["created"]["assistant_id"]]
    assert assistants["count"] == 1
    assert assistants["graphNodes"] > 2
    assert "state_schema" in assistants["schemaKeys"]
    assert assistants["subgraphs"]
    assert assistants["gone"] == 404

    threads = seen["threads"]
    # Seeded up to the start node, the echo node is next: the thread waits, as LangGraph shows it.
    assert threads["seeded"]["status"] == "interrupted"
    assert threads["seeded"]["metadata"] == {"tag": unique, "graph_id": "echo"}
    assert [m["content"] for m in threads["seeded"]["values"]["messages"]] == ["from js"]
    assert threads["ttl"]["strategy"] == "delete" and threads["ttl"]["ttl_minutes"] == 60
    assert threads["patchedMetadata"]["more"] == 1
    assert threads["state"]["checkpoint"] == threads["updateCheckpoint"]
    assert [m["content"] for m in threads["state"]["values"]["messages"]] == ["from js", "answer"]
    assert threads["selectedKeys"] == ["values"]
    assert threads["historyLength"] >= 3
    assert threads["atCheckpoint"] == threads["historyCheckpoint"]
    assert threads["byId"] == threads["historyCheckpoint"]
    (found,) = threads["found"]
    assert set(found) == {"thread_id", "status", "extracted"}
    assert found["extracted"] == {"last": "answer"}
    assert threads["count"] == 1
    assert threads["pruned"] == {"pruned_count": 1}
    assert threads["gone"] == 404

    crons = seen["crons"]
    assert crons["onThread"]["completed"] is None and crons["onThread"]["threadId"]
    assert crons["stateless"] == {"threadId": None, "completed": "keep"}
    assert crons["updatedEnabled"] is False
    assert crons["found"] == crons["ids"]
    assert crons["count"] == 2 and crons["left"] == 1

    store = seen["store"]
    assert store["item"] == {
        "namespace": ["js", unique],
        "key": "k",
        "value": {"text": "hello"},
        "createdAt": True,
    }
    assert store["found"] == ["k2"]
    assert store["namespaces"] == [["js", unique], ["js", unique, "deep"]]
    assert store["gone"] is None

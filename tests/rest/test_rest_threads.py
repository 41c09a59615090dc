"""Threads, their state and history over LangGraph's REST API, through `langgraph_sdk` and httpx."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from tests.conftest import GraphQLClient, LiveServer

RUN_AND_WAIT = "mutation($input: RunInput!) { runAndWait(input: $input) { run { id status } } }"


@pytest.fixture
async def client(live_server: LiveServer) -> AsyncIterator[LangGraphClient]:
    c = get_client(url=live_server.url)
    try:
        yield c
    finally:
        await c.aclose()


@pytest.fixture
async def http(live_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as c:
        yield c


async def run_on(gql: GraphQLClient, graph: str, thread_id: str, value: Any) -> None:
    done = await gql.data(
        RUN_AND_WAIT, {"input": {"assistantId": graph, "threadId": thread_id, "input": value}}
    )
    assert done["runAndWait"]["run"]["status"] == "SUCCESS"


def hi(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


async def test_create_get_patch_delete(
    client: LangGraphClient, http: httpx.AsyncClient, unique: str
) -> None:
    created = await client.threads.create(metadata={"owner": unique})
    assert set(created) >= {
        "thread_id",
        "created_at",
        "updated_at",
        "state_updated_at",
        "metadata",
        "config",
        "status",
        "values",
        "interrupts",
    }
    assert created["status"] == "idle"
    assert created["metadata"] == {"owner": unique}
    tid = created["thread_id"]
    assert await client.threads.get(tid) == created
    patched = await client.threads.update(tid, metadata={"extra": 1})
    assert patched["metadata"] == {"owner": unique, "extra": 1}
    minimal = await http.patch(
        f"/threads/{tid}", json={"metadata": {"more": 2}}, headers={"Prefer": "return=minimal"}
    )
    assert minimal.status_code == 204
    assert (await client.threads.get(tid))["metadata"]["more"] == 2
    assert (await http.delete(f"/threads/{tid}")).status_code == 204
    missing = await http.get(f"/threads/{tid}")
    assert missing.status_code == 404
    assert missing.json() == {"detail": f"Thread {tid} not found"}
    bad = await http.get("/threads/not-a-uuid")
    assert bad.status_code == 422
    assert bad.json() == {"detail": "Invalid thread ID: must be a UUID"}


async def test_if_exists_and_graph_id(client: LangGraphClient, http: httpx.AsyncClient) -> None:
    tid = str(uuid.uuid4())
    first = await client.threads.create(thread_id=tid, graph_id="echo")
    assert first["metadata"]["graph_id"] == "echo"
    again = await client.threads.create(thread_id=tid, if_exists="do_nothing")
    assert again["thread_id"] == tid
    clash = await http.post("/threads", json={"thread_id": tid})
    assert clash.status_code == 409


async def test_ttl(client: LangGraphClient, http: httpx.AsyncClient) -> None:
    created = await client.threads.create(ttl={"strategy": "delete", "ttl": 30})
    tid = created["thread_id"]
    assert "ttl" not in created
    got = (await http.get(f"/threads/{tid}", params={"include": "ttl"})).json()
    assert got["ttl"]["strategy"] == "delete"
    assert got["ttl"]["ttl_minutes"] == 30
    assert got["ttl"]["expires_at"]
    await client.threads.update(tid, metadata={}, ttl={"strategy": "keep_latest", "ttl": 5})
    got = (await http.get(f"/threads/{tid}", params={"include": "ttl"})).json()
    assert got["ttl"]["strategy"] == "keep_latest"
    bad = await http.post("/threads", json={"ttl": {"strategy": "delete", "ttl": -1}})
    assert bad.status_code == 422


async def test_search_count_sort_select(
    client: LangGraphClient, http: httpx.AsyncClient, unique: str
) -> None:
    made = [await client.threads.create(metadata={"tag": unique, "i": i}) for i in range(3)]
    found = await client.threads.search(metadata={"tag": unique})
    assert [t["thread_id"] for t in found] == [t["thread_id"] for t in reversed(made)]
    assert await client.threads.count(metadata={"tag": unique}) == 3
    assert await client.threads.count(metadata={"tag": unique}, status="busy") == 0
    asc = await client.threads.search(
        metadata={"tag": unique}, sort_by="thread_id", sort_order="asc"
    )
    assert [t["thread_id"] for t in asc] == sorted(t["thread_id"] for t in made)
    some = await client.threads.search(
        ids=[made[0]["thread_id"], made[2]["thread_id"]], select=["thread_id", "metadata"]
    )
    assert {t["thread_id"] for t in some} == {made[0]["thread_id"], made[2]["thread_id"]}
    assert all(set(t) == {"thread_id", "metadata"} for t in some)
    page = await http.post("/threads/search", json={"metadata": {"tag": unique}, "limit": 2})
    assert len(page.json()) == 2 and page.headers["X-Pagination-Next"] == "2"
    assert (await http.post("/threads/search", json={"status": "nope"})).status_code == 422
    assert (await http.post("/threads/search", json={"select": ["nope"]})).status_code == 422


async def test_values_search_state_history_and_copy(
    client: LangGraphClient, gql_client: GraphQLClient, unique: str
) -> None:
    thread = await client.threads.create(graph_id="echo")
    tid = thread["thread_id"]
    await run_on(gql_client, "echo", tid, hi(unique))
    state = await client.threads.get_state(tid)
    assert [m["content"] for m in state["values"]["messages"]] == [unique, unique]
    assert state["next"] == []
    assert state["checkpoint"]["thread_id"] == tid
    found = await client.threads.search(values={"messages": [{"content": unique}]})
    assert [t["thread_id"] for t in found] == [tid]
    assert found[0]["status"] == "idle"

    history = await client.threads.get_history(tid)
    assert len(history) >= 2
    assert history[0]["checkpoint"] == state["checkpoint"]
    older = history[1]["checkpoint"]["checkpoint_id"]
    at = await client.threads.get_state(tid, checkpoint_id=older)
    assert at["checkpoint"]["checkpoint_id"] == older
    by_config = await client.threads.get_state(tid, checkpoint=history[1]["checkpoint"])
    assert by_config["checkpoint"]["checkpoint_id"] == older
    before = await client.threads.get_history(tid, before=history[0]["checkpoint"], limit=1)
    assert [s["checkpoint"]["checkpoint_id"] for s in before] == [older]
    inputs = await client.threads.get_history(tid, metadata={"source": "input"})
    assert inputs and all(s["metadata"]["source"] == "input" for s in inputs)

    copied = await client.threads.copy(tid)
    assert copied["thread_id"] != tid
    copied_state = await client.threads.get_state(copied["thread_id"])
    assert copied_state["values"] == state["values"]


async def test_history_over_get(
    client: LangGraphClient, http: httpx.AsyncClient, gql_client: GraphQLClient
) -> None:
    tid = (await client.threads.create())["thread_id"]
    await run_on(gql_client, "echo", tid, hi("x"))
    one = await http.get(f"/threads/{tid}/history")
    assert one.status_code == 200
    assert len(one.json()) == 1  # LangGraph's default for GET is one state
    three = (await http.get(f"/threads/{tid}/history", params={"limit": 3})).json()
    assert len(three) == 3
    before = (
        await http.get(
            f"/threads/{tid}/history",
            params={"limit": 1, "before": three[0]["checkpoint"]["checkpoint_id"]},
        )
    ).json()
    assert before[0]["checkpoint"] == three[1]["checkpoint"]


async def test_subgraph_state_and_history(
    client: LangGraphClient, gql_client: GraphQLClient
) -> None:
    tid = (await client.threads.create())["thread_id"]
    await run_on(gql_client, "subgraph_parent", tid, {"value": ""})
    state = await client.threads.get_state(tid, subgraphs=True)
    assert state["values"]["value"] == "ab"
    history = await client.threads.get_history(tid, limit=20)
    # A subgraph's checkpoints live under the namespace `<node>:<task id>`.
    child_task = next(t for s in history for t in s["tasks"] if t["name"] == "child")
    namespace = f"child:{child_task['id']}"
    sub_history = await client.threads.get_history(
        tid, checkpoint={"checkpoint_ns": namespace}, limit=20
    )
    assert sub_history
    assert all(s["checkpoint"]["checkpoint_ns"] == namespace for s in sub_history)


async def test_update_state_and_supersteps(
    client: LangGraphClient, http: httpx.AsyncClient
) -> None:
    thread = await client.threads.create(
        graph_id="echo",
        # As LangGraph's docs seed a conversation: the input, the start node, then a node.
        supersteps=[
            {"updates": [{"values": {}, "as_node": "__input__"}]},
            {"updates": [{"values": hi("first"), "as_node": "__start__"}]},
            {
                "updates": [
                    {"values": {"messages": [{"role": "ai", "content": "one"}]}, "as_node": "echo"}
                ]
            },
        ],
    )
    tid = thread["thread_id"]
    assert [m["content"] for m in thread["values"]["messages"]] == ["first", "one"]
    history = await client.threads.get_history(tid, limit=10)
    assert len(history) >= 2
    updated = await client.threads.update_state(
        tid, {"messages": [{"role": "ai", "content": "two"}]}, as_node="echo"
    )
    assert updated["checkpoint"]["thread_id"] == tid
    state = await client.threads.get_state(tid)
    assert [m["content"] for m in state["values"]["messages"]] == ["first", "one", "two"]
    assert state["checkpoint"] == updated["checkpoint"]
    bad_node = await http.post(f"/threads/{tid}/state", json={"values": {}, "as_node": "nope"})
    assert bad_node.status_code == 422
    no_graph = await client.threads.create()
    refused = await http.post(
        "/threads",
        json={"supersteps": [{"updates": [{"values": {}, "as_node": "echo"}]}]},
    )
    assert refused.status_code == 201
    assert "was created, but" in refused.json()["detail"]
    # The thread stays (as on LangGraph Server; GraphQL's createThread keeps it too).
    kept = refused.json()["detail"].split()[1]
    assert (await client.threads.get(kept))["thread_id"] == kept
    assert no_graph["thread_id"]


async def test_prune(client: LangGraphClient, gql_client: GraphQLClient) -> None:
    gone = await client.threads.create()
    kept = await client.threads.create()
    await run_on(gql_client, "echo", kept["thread_id"], hi("a"))
    await run_on(gql_client, "echo", kept["thread_id"], hi("b"))
    assert len(await client.threads.get_history(kept["thread_id"], limit=50)) > 1
    result = await client.threads.prune([gone["thread_id"]])
    assert result == {"pruned_count": 1}
    with pytest.raises(httpx.HTTPStatusError):
        await client.threads.get(gone["thread_id"])
    result = await client.threads.prune(
        [kept["thread_id"], str(uuid.uuid4())], strategy="keep_latest"
    )
    assert result == {"pruned_count": 1}
    state = await client.threads.get_state(kept["thread_id"])
    assert [m["content"] for m in state["values"]["messages"]] == ["a", "a", "b", "b"]
    assert len(await client.threads.get_history(kept["thread_id"], limit=50)) == 1


async def test_rest_and_graphql_see_the_same_threads(
    client: LangGraphClient, gql_client: GraphQLClient, unique: str
) -> None:
    made = await client.threads.create(metadata={"via": unique})
    got = await gql_client.data(
        "query($id: ID!) { thread(id: $id) { id metadata } }", {"id": made["thread_id"]}
    )
    assert got["thread"] == {"id": made["thread_id"], "metadata": {"via": unique}}
    over_gql = await gql_client.data("mutation { createThread { id } }")
    tid = over_gql["createThread"]["id"]
    assert (await client.threads.get(tid))["thread_id"] == tid


async def test_search_extract(
    client: LangGraphClient, http: httpx.AsyncClient, gql_client: GraphQLClient, unique: str
) -> None:
    tid = (await client.threads.create(metadata={"tag": unique, "deep": {"k": [1, 2]}}))[
        "thread_id"
    ]
    await run_on(gql_client, "echo", tid, hi(unique))
    response = await http.post(
        "/threads/search",
        json={
            "metadata": {"tag": unique},
            "select": ["thread_id"],
            "extract": {
                "last": "values.messages[-1].content",
                "second": "metadata.deep.k[1]",
                "nowhere": "values.messages[9].content",
            },
        },
    )
    assert response.status_code == 200
    assert response.json() == [
        {"thread_id": tid, "extracted": {"last": unique, "second": 2, "nowhere": None}}
    ]
    for bad in (
        {"x": "elsewhere.a"},
        {"status": "values.a"},
        {"1x": "values.a"},
        {"x": "values.a[b]"},
    ):
        refused = await http.post("/threads/search", json={"extract": bad})
        assert refused.status_code == 422, bad


async def test_state_select(
    client: LangGraphClient, http: httpx.AsyncClient, gql_client: GraphQLClient
) -> None:
    tid = (await client.threads.create())["thread_id"]
    await run_on(gql_client, "echo", tid, hi("s"))
    only = await client.threads.get_state(tid, select=["values.messages", "next"])
    assert set(only) == {"values", "next"}
    assert [m["content"] for m in only["values"]["messages"]] == ["s", "s"]
    state = await client.threads.get_state(tid)
    at = await client.threads.get_state(tid, checkpoint=state["checkpoint"], select=["checkpoint"])
    assert at == {"checkpoint": state["checkpoint"]}
    refused = await http.get(f"/threads/{tid}/state", params={"select": "nope"})
    assert refused.status_code == 422
    history = await http.post(f"/threads/{tid}/history", json={"limit": 2, "select": ["next"]})
    assert history.json() == [{"next": []}, {"next": ["echo"]}]


async def test_remote_graph_reads_and_writes_state(
    live_server: LiveServer, client: LangGraphClient, gql_client: GraphQLClient
) -> None:
    from langgraph.pregel.remote import RemoteGraph

    tid = (await client.threads.create())["thread_id"]
    await run_on(gql_client, "echo", tid, hi("remote"))
    remote = RemoteGraph("echo", client=client)
    config = {"configurable": {"thread_id": tid}}
    snapshot = await remote.aget_state(config)
    assert [m["content"] for m in snapshot.values["messages"]] == ["remote", "remote"]
    assert snapshot.next == ()
    history = [s async for s in remote.aget_state_history(config, limit=5)]
    assert history[0].config == snapshot.config
    older = await remote.aget_state(history[1].config)
    assert (
        older.config["configurable"]["checkpoint_id"]
        == (history[1].config["configurable"]["checkpoint_id"])
    )
    written = await remote.aupdate_state(
        config, {"messages": [{"role": "ai", "content": "edited"}]}, as_node="echo"
    )
    after = await remote.aget_state(config)
    assert (
        after.config["configurable"]["checkpoint_id"] == (written["configurable"]["checkpoint_id"])
    )
    assert after.values["messages"][-1]["content"] == "edited"

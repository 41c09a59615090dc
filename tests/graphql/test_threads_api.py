"""Threads and their state through the GraphQL HTTP endpoint."""

from __future__ import annotations

import uuid

from tests.conftest import GraphQLClient

THREAD_FIELDS = (
    "id status metadata values interrupts { id value } createdAt updatedAt stateUpdatedAt"
)
CREATE = (
    f"mutation($input: CreateThreadInput) {{ createThread(input: $input) {{ {THREAD_FIELDS} }} }}"
)
GET = f"query($id: ID!) {{ thread(id: $id) {{ {THREAD_FIELDS} }} }}"
UPDATE_STATE = """
mutation($id: ID!, $values: JSON, $asNode: String, $checkpointId: String) {
  updateThreadState(threadId: $id, values: $values, asNode: $asNode, checkpointId: $checkpointId) {
    checkpoint { threadId checkpointNs checkpointId }
    thread { id status values }
  }
}
"""
STATE = """
query($id: ID!, $checkpointId: String, $subgraphs: Boolean) {
  thread(id: $id) {
    state(checkpointId: $checkpointId, subgraphs: $subgraphs) {
      values next metadata createdAt
      checkpoint { threadId checkpointId checkpointNs }
      parentCheckpoint { checkpointId }
      tasks { id name interrupts { value } }
      interrupts { id value }
    }
  }
}
"""
HISTORY = """
query($id: ID!, $limit: Int, $before: String, $metadata: JSON) {
  thread(id: $id) {
    history(limit: $limit, before: $before, metadata: $metadata) {
      values next metadata checkpoint { checkpointId } parentCheckpoint { checkpointId }
    }
  }
}
"""


async def create(client: GraphQLClient, **fields: object) -> dict:
    return (await client.data(CREATE, {"input": fields}))["createThread"]


async def test_create_get_thread(gql_client: GraphQLClient, unique: str) -> None:
    created = await create(gql_client, metadata={"user": unique})
    assert created["status"] == "IDLE"
    assert created["values"] is None
    assert created["interrupts"] == []
    got = (await gql_client.data(GET, {"id": created["id"]}))["thread"]
    assert got == created


async def test_create_without_input(gql_client: GraphQLClient) -> None:
    data = await gql_client.data("mutation { createThread { id status } }")
    uuid.UUID(data["createThread"]["id"])


async def test_create_with_id_and_if_exists(gql_client: GraphQLClient) -> None:
    tid = str(uuid.uuid4())
    await create(gql_client, threadId=tid, metadata={"n": 1})
    assert await gql_client.error_code(CREATE, {"input": {"threadId": tid}}) == "CONFLICT"
    again = await create(gql_client, threadId=tid, metadata={"n": 2}, ifExists="DO_NOTHING")
    assert again["metadata"] == {"n": 1}


async def test_create_rejects_bad_input(gql_client: GraphQLClient) -> None:
    for fields in ({"threadId": "123"}, {"metadata": [1]}, {"metadata": 5}):
        assert await gql_client.error_code(CREATE, {"input": fields}) == "BAD_USER_INPUT", fields
    assert await gql_client.error_code(CREATE, {"input": {"graphId": "missing"}}) == "NOT_FOUND"


async def test_unknown_thread_is_not_found(gql_client: GraphQLClient) -> None:
    missing = str(uuid.uuid4())
    body = await gql_client.execute(GET, {"id": missing})
    assert body["data"] == {"thread": None}
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    for mutation in (
        "mutation($id: ID!) { deleteThread(id: $id) }",
        "mutation($id: ID!) { copyThread(id: $id) { id } }",
        "mutation($id: ID!) { updateThread(id: $id, input: {metadata: {a: 1}}) { id } }",
    ):
        assert await gql_client.error_code(mutation, {"id": missing}) == "NOT_FOUND"
    assert await gql_client.error_code(UPDATE_STATE, {"id": missing, "values": {}}) == "NOT_FOUND"


async def test_update_thread_merges_metadata(gql_client: GraphQLClient) -> None:
    created = await create(gql_client, metadata={"a": 1, "b": 1})
    data = await gql_client.data(
        "mutation($id: ID!) { updateThread(id: $id, input: {metadata: {b: 2, c: 3}}) { metadata updatedAt } }",
        {"id": created["id"]},
    )
    assert data["updateThread"]["metadata"] == {"a": 1, "b": 2, "c": 3}
    assert data["updateThread"]["updatedAt"] > created["updatedAt"]


async def test_update_state_as_node_makes_checkpoint_and_interrupts(
    gql_client: GraphQLClient,
) -> None:
    thread = await create(gql_client, graphId="steps")
    assert thread["metadata"] == {"graph_id": "steps"}
    empty = (await gql_client.data(STATE, {"id": thread["id"]}))["thread"]["state"]
    assert empty["values"] == {} and empty["next"] == [] and empty["checkpoint"] is None

    result = (
        await gql_client.data(
            UPDATE_STATE, {"id": thread["id"], "values": {"count": 10}, "asNode": "step_2"}
        )
    )["updateThreadState"]
    assert result["checkpoint"]["threadId"] == thread["id"]
    assert result["checkpoint"]["checkpointNs"] == ""
    # step_3 is due next: the thread waits there, as after a breakpoint.
    assert result["thread"]["status"] == "INTERRUPTED"
    assert result["thread"]["values"] == {"count": 10}

    state = (await gql_client.data(STATE, {"id": thread["id"]}))["thread"]["state"]
    assert state["values"] == {"count": 10}
    assert state["next"] == ["step_3"]
    assert [t["name"] for t in state["tasks"]] == ["step_3"]
    assert state["metadata"]["source"] == "update"
    assert state["checkpoint"]["checkpointId"] == result["checkpoint"]["checkpointId"]


async def test_update_state_uses_reducers(gql_client: GraphQLClient) -> None:
    thread = await create(gql_client, graphId="echo")
    for text in ("hello", "again"):
        await gql_client.data(
            UPDATE_STATE,
            {
                "id": thread["id"],
                "values": {"messages": [{"role": "user", "content": text}]},
                "asNode": "echo",
            },
        )
    got = (await gql_client.data(GET, {"id": thread["id"]}))["thread"]
    assert [m["content"] for m in got["values"]["messages"]] == ["hello", "again"]
    assert got["values"]["messages"][0]["type"] == "human"
    assert got["status"] == "IDLE"
    assert got["stateUpdatedAt"] > thread["stateUpdatedAt"]


async def test_update_state_from_checkpoint_forks(gql_client: GraphQLClient) -> None:
    thread = await create(gql_client, graphId="steps")
    first = (
        await gql_client.data(
            UPDATE_STATE, {"id": thread["id"], "values": {"count": 1}, "asNode": "step_1"}
        )
    )["updateThreadState"]["checkpoint"]["checkpointId"]
    await gql_client.data(
        UPDATE_STATE, {"id": thread["id"], "values": {"count": 2}, "asNode": "step_2"}
    )
    forked = (
        await gql_client.data(
            UPDATE_STATE,
            {"id": thread["id"], "values": {"count": 7}, "asNode": "step_1", "checkpointId": first},
        )
    )["updateThreadState"]
    state = (await gql_client.data(STATE, {"id": thread["id"]}))["thread"]["state"]
    assert state["values"] == {"count": 7}
    assert state["parentCheckpoint"]["checkpointId"] == first
    assert state["checkpoint"]["checkpointId"] == forked["checkpoint"]["checkpointId"]
    old = (await gql_client.data(STATE, {"id": thread["id"], "checkpointId": first}))["thread"][
        "state"
    ]
    assert old["values"] == {"count": 1}


async def test_update_state_errors(gql_client: GraphQLClient) -> None:
    unbound = await create(gql_client)
    assert (
        await gql_client.error_code(UPDATE_STATE, {"id": unbound["id"], "values": {"count": 1}})
        == "BAD_USER_INPUT"
    )
    thread = await create(gql_client, graphId="steps")
    assert (
        await gql_client.error_code(
            UPDATE_STATE, {"id": thread["id"], "values": {"count": 1}, "asNode": "nope"}
        )
        == "BAD_USER_INPUT"
    )
    assert (
        await gql_client.error_code(
            UPDATE_STATE,
            {
                "id": thread["id"],
                "values": {"count": 1},
                "asNode": "step_1",
                "checkpointId": "nope",
            },
        )
        == "NOT_FOUND"
    )
    # Nothing was written by the failed updates.
    history = (await gql_client.data(HISTORY, {"id": thread["id"]}))["thread"]["history"]
    assert history == []
    assert (
        await gql_client.error_code(STATE, {"id": thread["id"], "checkpointId": "missing"})
        == "NOT_FOUND"
    )


async def test_history_newest_first_with_before_and_metadata(gql_client: GraphQLClient) -> None:
    thread = await create(gql_client, graphId="steps")
    ids = []
    for i in range(1, 4):
        result = await gql_client.data(
            UPDATE_STATE, {"id": thread["id"], "values": {"count": i}, "asNode": f"step_{i}"}
        )
        ids.append(result["updateThreadState"]["checkpoint"]["checkpointId"])
    history = (await gql_client.data(HISTORY, {"id": thread["id"], "limit": 10}))["thread"][
        "history"
    ]
    got = [h["checkpoint"]["checkpointId"] for h in history]
    assert got[: len(ids)] == list(reversed(ids))
    assert history[0]["values"] == {"count": 3}
    limited = (await gql_client.data(HISTORY, {"id": thread["id"], "limit": 1}))["thread"][
        "history"
    ]
    assert len(limited) == 1
    before = (await gql_client.data(HISTORY, {"id": thread["id"], "before": ids[2], "limit": 10}))[
        "thread"
    ]["history"]
    assert before[0]["checkpoint"]["checkpointId"] == ids[1]
    filtered = (
        await gql_client.data(
            HISTORY, {"id": thread["id"], "metadata": {"source": "update", "step": 2}}
        )
    )["thread"]["history"]
    assert all(h["metadata"]["source"] == "update" for h in filtered)
    assert (
        await gql_client.error_code(HISTORY, {"id": thread["id"], "limit": 0}) == "BAD_USER_INPUT"
    )


async def test_copy_thread_has_same_history(gql_client: GraphQLClient, unique: str) -> None:
    thread = await create(gql_client, graphId="steps", metadata={"copy": unique})
    for i in (1, 2):
        await gql_client.data(
            UPDATE_STATE, {"id": thread["id"], "values": {"count": i}, "asNode": f"step_{i}"}
        )
    copied = (
        await gql_client.data(
            f"mutation($id: ID!) {{ copyThread(id: $id) {{ {THREAD_FIELDS} }} }}",
            {"id": thread["id"]},
        )
    )["copyThread"]
    assert copied["id"] != thread["id"]
    assert copied["metadata"] == {"copy": unique, "graph_id": "steps"}
    assert copied["values"] == {"count": 2}
    assert copied["status"] == "INTERRUPTED"
    original = (await gql_client.data(HISTORY, {"id": thread["id"]}))["thread"]["history"]
    copy = (await gql_client.data(HISTORY, {"id": copied["id"]}))["thread"]["history"]
    assert [h["values"] for h in copy] == [h["values"] for h in original]
    assert [h["checkpoint"]["checkpointId"] for h in copy] == [
        h["checkpoint"]["checkpointId"] for h in original
    ]
    # The copy is independent: updating it leaves the original alone.
    await gql_client.data(
        UPDATE_STATE, {"id": copied["id"], "values": {"count": 50}, "asNode": "step_3"}
    )
    source_state = (await gql_client.data(STATE, {"id": thread["id"]}))["thread"]["state"]
    assert source_state["values"] == {"count": 2}


async def test_delete_thread_removes_its_checkpoints(gql_client: GraphQLClient) -> None:
    thread = await create(gql_client, graphId="steps")
    await gql_client.data(
        UPDATE_STATE, {"id": thread["id"], "values": {"count": 3}, "asNode": "step_1"}
    )
    data = await gql_client.data(
        "mutation($id: ID!) { deleteThread(id: $id) }", {"id": thread["id"]}
    )
    assert data["deleteThread"] == thread["id"]
    body = await gql_client.execute(GET, {"id": thread["id"]})
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    # A new thread with the same id starts empty: no checkpoint of the old one is left.
    again = await create(gql_client, threadId=thread["id"], graphId="steps")
    state = (await gql_client.data(STATE, {"id": again["id"]}))["thread"]["state"]
    assert state["values"] == {} and state["checkpoint"] is None
    assert (await gql_client.data(HISTORY, {"id": again["id"]}))["thread"]["history"] == []


SEARCH = """
query($filter: ThreadFilter, $first: Int, $after: String, $sortBy: ThreadSortBy, $sortOrder: SortOrder) {
  threads(filter: $filter, first: $first, after: $after, sortBy: $sortBy, sortOrder: $sortOrder) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node { id status metadata values } }
  }
}
"""


async def test_search_threads(gql_client: GraphQLClient, unique: str) -> None:
    a = await create(gql_client, metadata={"s": unique, "kind": "a"}, graphId="steps")
    b = await create(gql_client, metadata={"s": unique, "kind": "b"})
    await gql_client.data(
        UPDATE_STATE, {"id": a["id"], "values": {"count": 42}, "asNode": "step_5"}
    )

    def ids(conn: dict) -> set[str]:
        return {e["node"]["id"] for e in conn["edges"]}

    all_ = (await gql_client.data(SEARCH, {"filter": {"metadata": {"s": unique}}}))["threads"]
    assert all_["totalCount"] == 2 and ids(all_) == {a["id"], b["id"]}
    kind = (await gql_client.data(SEARCH, {"filter": {"metadata": {"s": unique, "kind": "b"}}}))[
        "threads"
    ]
    assert ids(kind) == {b["id"]}
    by_values = (
        await gql_client.data(
            SEARCH, {"filter": {"values": {"count": 42}, "metadata": {"s": unique}}}
        )
    )["threads"]
    assert ids(by_values) == {a["id"]}
    by_ids = (await gql_client.data(SEARCH, {"filter": {"ids": [a["id"], str(uuid.uuid4())]}}))[
        "threads"
    ]
    assert ids(by_ids) == {a["id"]} and by_ids["totalCount"] == 1
    idle = (
        await gql_client.data(SEARCH, {"filter": {"status": "IDLE", "metadata": {"s": unique}}})
    )["threads"]
    assert ids(idle) == {a["id"], b["id"]}
    busy = (
        await gql_client.data(SEARCH, {"filter": {"status": "BUSY", "metadata": {"s": unique}}})
    )["threads"]
    assert busy["totalCount"] == 0
    assert await gql_client.error_code(SEARCH, {"filter": {"ids": ["bad"]}}) == "BAD_USER_INPUT"
    assert (
        await gql_client.error_code(SEARCH, {"filter": {"status": "SLEEPING"}}) == "BAD_USER_INPUT"
    )


async def test_search_threads_paginates(gql_client: GraphQLClient, unique: str) -> None:
    made = [await create(gql_client, metadata={"p": unique}) for _ in range(5)]
    seen: list[str] = []
    after = None
    while True:
        conn = (
            await gql_client.data(
                SEARCH, {"filter": {"metadata": {"p": unique}}, "first": 2, "after": after}
            )
        )["threads"]
        seen += [e["node"]["id"] for e in conn["edges"]]
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
    assert seen == [t["id"] for t in reversed(made)]
    cursor_for_other_sort = after
    code = await gql_client.error_code(
        SEARCH,
        {
            "filter": {"metadata": {"p": unique}},
            "after": cursor_for_other_sort,
            "sortBy": "UPDATED_AT",
        },
    )
    assert code == "BAD_USER_INPUT"

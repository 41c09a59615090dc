"""Runs through the GraphQL HTTP endpoint: creating, waiting, statuses, options, errors."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import asyncpg

from app.runtime.graphs import default_assistant_id
from tests.conftest import GraphQLClient
from tests.helpers import (
    CREATE_RUN,
    GET_RUN,
    GET_THREAD,
    RUN_FIELDS,
    create_run,
    new_thread,
    run_and_wait,
    thread_of,
    wait_status,
)


async def test_run_and_wait_returns_final_values(gql_client: GraphQLClient) -> None:
    tid = await new_thread(gql_client)
    result = await run_and_wait(gql_client, assistantId="steps", threadId=tid, input={"count": 1})
    assert result["values"] == {"count": 6}
    assert result["run"]["status"] == "SUCCESS"
    assert result["run"]["attempt"] == 1
    assert result["error"] is None
    assert result["run"]["assistantId"] == str(default_assistant_id("steps"))
    thread = await thread_of(gql_client, tid)
    assert thread["status"] == "IDLE" and thread["values"] == {"count": 6}
    stored = (await gql_client.data(GET_RUN, {"id": result["run"]["id"]}))["run"]
    assert stored["status"] == "SUCCESS"
    assert stored["output"]["values"] == {"count": 6}


async def test_background_run_is_pending_then_succeeds(gql_client: GraphQLClient) -> None:
    tid = await new_thread(gql_client)
    run = await create_run(
        gql_client,
        assistantId="echo",
        threadId=tid,
        input={"messages": [{"role": "user", "content": "hi"}]},
    )
    assert run["status"] == "PENDING"
    done = await wait_status(gql_client, run["id"], {"SUCCESS"})
    assert [m["content"] for m in done["output"]["values"]["messages"]] == ["hi", "hi"]
    thread = await thread_of(gql_client, tid)
    assert thread["status"] == "IDLE"


async def test_thread_is_busy_while_a_run_is_active(gql_client: GraphQLClient) -> None:
    tid = await new_thread(gql_client)
    run = await create_run(gql_client, assistantId="slow", threadId=tid, input={"seconds": 1})
    assert (await thread_of(gql_client, tid))["status"] == "BUSY"
    await wait_status(gql_client, run["id"], {"RUNNING"})
    assert (await thread_of(gql_client, tid))["status"] == "BUSY"
    await wait_status(gql_client, run["id"], {"SUCCESS"})
    assert (await thread_of(gql_client, tid))["status"] == "IDLE"


async def test_assistant_config_and_context_reach_the_graph(gql_client: GraphQLClient) -> None:
    created = await gql_client.data(
        'mutation { createAssistant(input: {graphId: "factory", config: {configurable: {prefix: "A:"}}}) { id } }'
    )
    aid = created["createAssistant"]["id"]
    assert (await run_and_wait(gql_client, assistantId=aid, input={"value": "x"}))["values"][
        "reply"
    ] == "A:x"
    over = await run_and_wait(
        gql_client, assistantId=aid, input={"value": "x"}, config={"configurable": {"prefix": "R:"}}
    )
    assert over["values"]["reply"] == "R:x"
    ctx = await run_and_wait(gql_client, assistantId="ctx", input={}, context={"user_name": "Ada"})
    assert ctx["values"]["greeting"] == "Hello, Ada!"


async def test_stateless_runs_delete_or_keep_their_thread(
    gql_client: GraphQLClient, database_uri: str
) -> None:
    gone = await run_and_wait(gql_client, assistantId="steps", input={"count": 0})
    assert gone["values"] == {"count": 5}
    body = await gql_client.execute(GET_THREAD, {"id": gone["run"]["threadId"]})
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    conn = await asyncpg.connect(database_uri)
    try:  # its checkpoints went with it, in the call that ended the run
        for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes"):
            left = await conn.fetchval(
                f"SELECT count(*) FROM {table} WHERE thread_id = $1", gone["run"]["threadId"]
            )
            assert left == 0, table
    finally:
        await conn.close()
    kept = await run_and_wait(
        gql_client, assistantId="steps", input={"count": 0}, onCompletion="KEEP"
    )
    thread = await thread_of(gql_client, kept["run"]["threadId"])
    assert thread["values"] == {"count": 5} and thread["status"] == "IDLE"
    conn = await asyncpg.connect(database_uri)
    try:  # the kept one keeps them (the count above is not empty by construction)
        kept_checkpoints = await conn.fetchval(
            "SELECT count(*) FROM checkpoints WHERE thread_id = $1", kept["run"]["threadId"]
        )
        assert kept_checkpoints > 0
    finally:
        await conn.close()


async def test_create_runs_batch(gql_client: GraphQLClient) -> None:
    data = await gql_client.data(
        f"mutation($inputs: [RunInput!]!) {{ createRuns(inputs: $inputs) {{ {RUN_FIELDS} }} }}",
        {
            "inputs": [
                {"assistantId": "steps", "input": {"count": i}, "onCompletion": "KEEP"}
                for i in range(5)
            ]
        },
    )
    runs = data["createRuns"]
    assert len({r["threadId"] for r in runs}) == 5
    finished = [await wait_status(gql_client, r["id"], {"SUCCESS"}) for r in runs]
    assert sorted(r["output"]["values"]["count"] for r in finished) == [5, 6, 7, 8, 9]
    code = await gql_client.error_code(
        "mutation($inputs: [RunInput!]!) { createRuns(inputs: $inputs) { id } }",
        {
            "inputs": [
                {"assistantId": "steps"},
                {"assistantId": "steps", "threadId": str(uuid.uuid4())},
            ]
        },
    )
    assert code == "BAD_USER_INPUT"


async def test_if_not_exists(gql_client: GraphQLClient) -> None:
    tid = str(uuid.uuid4())
    code = await gql_client.error_code(
        CREATE_RUN, {"input": {"assistantId": "steps", "threadId": tid}}
    )
    assert code == "NOT_FOUND"
    result = await run_and_wait(
        gql_client, assistantId="steps", threadId=tid, ifNotExists="CREATE", input={"count": 0}
    )
    assert result["run"]["threadId"] == tid and result["values"] == {"count": 5}
    meta = await gql_client.data("query($id: ID!) { thread(id: $id) { metadata } }", {"id": tid})
    assert meta["thread"]["metadata"]["graph_id"] == "steps"


async def test_run_errors_are_recorded_without_traceback(gql_client: GraphQLClient) -> None:
    tid = await new_thread(gql_client)
    result = await run_and_wait(
        gql_client, assistantId="fail", threadId=tid, input={"message": "kaput"}
    )
    assert result["run"]["status"] == "ERROR"
    assert result["error"] == {"type": "ValueError", "message": "kaput"}
    assert "Traceback" not in str(result)
    assert (await thread_of(gql_client, tid))["status"] == "ERROR"
    # The next successful run clears the thread's error status.
    await run_and_wait(gql_client, assistantId="steps", threadId=tid, input={"count": 0})
    assert (await thread_of(gql_client, tid))["status"] == "IDLE"


async def test_create_run_rejects_bad_input(gql_client: GraphQLClient) -> None:
    tid = await new_thread(gql_client)
    cases = [
        ({"assistantId": "nope"}, "NOT_FOUND"),
        ({"assistantId": str(uuid.uuid4())}, "NOT_FOUND"),
        ({"assistantId": "steps", "threadId": "not-a-uuid"}, "BAD_USER_INPUT"),
        ({"assistantId": "steps", "threadId": tid, "metadata": [1]}, "BAD_USER_INPUT"),
        (
            {
                "assistantId": "steps",
                "threadId": tid,
                "config": {"configurable": {"a": 1}},
                "context": {"b": 1},
            },
            "BAD_USER_INPUT",
        ),
        (
            {"assistantId": "steps", "threadId": tid, "config": {"recursion_limit": -1}},
            "BAD_USER_INPUT",
        ),
        ({"assistantId": "steps", "command": {"resume": "yes"}}, "BAD_USER_INPUT"),
        (
            {"assistantId": "steps", "threadId": tid, "input": {}, "command": {"goto": "step_1"}},
            "BAD_USER_INPUT",
        ),
        ({"assistantId": "steps", "threadId": tid, "afterSeconds": -1}, "BAD_USER_INPUT"),
        (
            {"assistantId": "steps", "threadId": tid, "webhook": "ftp://example.com/x"},
            "BAD_USER_INPUT",
        ),
        ({"assistantId": "steps", "threadId": tid, "checkpointId": "missing"}, "NOT_FOUND"),
        ({"assistantId": "steps", "threadId": tid, "onCompletion": "KEEP"}, "BAD_USER_INPUT"),
    ]
    for fields, expected in cases:
        assert await gql_client.error_code(CREATE_RUN, {"input": fields}) == expected, fields
    # Nothing was written by the refused requests.
    runs = await gql_client.data(
        "query($id: ID!) { runs(threadId: $id) { totalCount } }", {"id": tid}
    )
    assert runs["runs"]["totalCount"] == 0
    assert (await thread_of(gql_client, tid))["status"] == "IDLE"


async def test_runs_listing_and_thread_runs(gql_client: GraphQLClient) -> None:
    tid = await new_thread(gql_client)
    made = [
        await run_and_wait(gql_client, assistantId="steps", threadId=tid, input={"count": i})
        for i in range(3)
    ]
    listed = await gql_client.data(
        "query($id: ID!) { runs(threadId: $id, first: 2) { totalCount edges { node { id } } pageInfo { hasNextPage } } "
        "thread(id: $id) { runs(status: SUCCESS) { totalCount nodes { id thread { id } assistant { graphId } } } } }",
        {"id": tid},
    )
    assert listed["runs"]["totalCount"] == 3
    assert [e["node"]["id"] for e in listed["runs"]["edges"]] == [
        made[2]["run"]["id"],
        made[1]["run"]["id"],
    ]
    assert listed["runs"]["pageInfo"]["hasNextPage"]
    nested = listed["thread"]["runs"]
    assert nested["totalCount"] == 3
    assert all(
        n["thread"]["id"] == tid and n["assistant"]["graphId"] == "steps" for n in nested["nodes"]
    )


async def test_delete_run(gql_client: GraphQLClient) -> None:
    tid = await new_thread(gql_client)
    first = await run_and_wait(gql_client, assistantId="steps", threadId=tid, input={"count": 0})
    rid = first["run"]["id"]
    assert (await gql_client.data("mutation($id: ID!) { deleteRun(id: $id) }", {"id": rid}))[
        "deleteRun"
    ] == rid
    assert await gql_client.error_code(GET_RUN, {"id": rid}) == "NOT_FOUND"
    # Its checkpoints went with it.
    history = await gql_client.data(
        "query($id: ID!) { thread(id: $id) { history { values } } }", {"id": tid}
    )
    assert history["thread"]["history"] == []
    assert (
        await gql_client.error_code("mutation($id: ID!) { deleteRun(id: $id) }", {"id": rid})
        == "NOT_FOUND"
    )
    slow = await create_run(gql_client, assistantId="slow", threadId=tid, input={"seconds": 1})
    assert (
        await gql_client.error_code("mutation($id: ID!) { deleteRun(id: $id) }", {"id": slow["id"]})
        == "CONFLICT"
    )
    await wait_status(gql_client, slow["id"], {"SUCCESS"})


async def test_after_seconds_delays_the_start(gql_client: GraphQLClient) -> None:
    tid = await new_thread(gql_client)
    run = await create_run(
        gql_client, assistantId="steps", threadId=tid, input={"count": 0}, afterSeconds=1.0
    )
    await wait_status(gql_client, run["id"], {"SUCCESS"})
    # Its first checkpoint (written once a worker started it) is a second or more younger than
    # the run: both times as the server recorded them.
    history = await gql_client.data(
        "query($id: ID!) { thread(id: $id) { history(limit: 50) { createdAt metadata } } }",
        {"id": tid},
    )
    started = min(
        datetime.fromisoformat(h["createdAt"])
        for h in history["thread"]["history"]
        if h["metadata"].get("run_id") == run["id"]
    )
    assert started - datetime.fromisoformat(run["createdAt"]) >= timedelta(seconds=1)


async def test_checkpoint_id_forks_from_an_earlier_checkpoint(gql_client: GraphQLClient) -> None:
    tid = await new_thread(gql_client)
    await run_and_wait(gql_client, assistantId="steps", threadId=tid, input={"count": 0})
    await run_and_wait(gql_client, assistantId="steps", threadId=tid, input={"count": 100})
    history = await gql_client.data(
        "query($id: ID!) { thread(id: $id) { history(limit: 50) { values next metadata checkpoint { checkpointId } } } }",
        {"id": tid},
    )
    states = history["thread"]["history"]
    after_first_run = next(s for s in states if s["values"] == {"count": 5} and not s["next"])
    fork = await run_and_wait(
        gql_client,
        assistantId="steps",
        threadId=tid,
        input={"count": 1000},
        checkpointId=after_first_run["checkpoint"]["checkpointId"],
    )
    assert fork["values"] == {"count": 1005}

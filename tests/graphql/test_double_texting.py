"""Double-texting: a second run on a busy thread, under each multitask strategy.

Each test starts a slow `pipeline` run (first → wait → after), waits until it is inside `wait`
(its `first` checkpoint saved), then sends a quick second run.
"""

from __future__ import annotations

from tests.conftest import GraphQLClient
from tests.helpers import (
    CREATE_RUN,
    GET_RUN,
    create_run,
    eventually,
    get_run,
    new_thread,
    run_and_wait,
    start_slow,
    thread_of,
    wait_status,
)


async def test_reject_refuses_the_second_run(gql_client: GraphQLClient) -> None:
    tid = await new_thread(gql_client)
    first = await start_slow(gql_client, tid, seconds=1)
    code = await gql_client.error_code(
        CREATE_RUN,
        {
            "input": {
                "assistantId": "pipeline",
                "threadId": tid,
                "input": {"tag": "B"},
                "multitaskStrategy": "REJECT",
            }
        },
    )
    assert code == "CONFLICT"
    done = await wait_status(gql_client, first["id"], {"SUCCESS"})
    assert done["output"]["values"]["log"] == ["first:A", "after:A"]
    runs = await gql_client.data(
        "query($id: ID!) { runs(threadId: $id) { totalCount } }", {"id": tid}
    )
    assert runs["runs"]["totalCount"] == 1


async def test_enqueue_runs_after_the_active_one_in_order(gql_client: GraphQLClient) -> None:
    tid = await new_thread(gql_client)
    first = await start_slow(gql_client, tid, seconds=2)
    second = await create_run(gql_client, assistantId="pipeline", threadId=tid, input={"tag": "B"})
    third = await create_run(
        gql_client,
        assistantId="pipeline",
        threadId=tid,
        input={"tag": "C"},
        multitaskStrategy="ENQUEUE",
    )
    # The second waits while the first runs: read it, then the first; if the first was still
    # running at the second read, it was running at the first read too.
    waiting = (await gql_client.data(GET_RUN, {"id": second["id"]}))["run"]["status"]
    if (await gql_client.data(GET_RUN, {"id": first["id"]}))["run"]["status"] == "RUNNING":
        assert waiting == "PENDING"
    for run in (first, second, third):
        await wait_status(gql_client, run["id"], {"SUCCESS"})
    thread = await thread_of(gql_client, tid)
    assert thread["values"]["log"] == [
        "first:A",
        "after:A",
        "first:B",
        "after:B",
        "first:C",
        "after:C",
    ]
    assert thread["status"] == "IDLE"


async def test_interrupt_stops_the_active_run_and_keeps_its_progress(
    gql_client: GraphQLClient,
) -> None:
    tid = await new_thread(gql_client)
    first = await start_slow(gql_client, tid)
    second = await create_run(
        gql_client,
        assistantId="pipeline",
        threadId=tid,
        input={"tag": "B"},
        multitaskStrategy="INTERRUPT",
    )
    stopped = await wait_status(
        gql_client, first["id"], {"INTERRUPTED", "SUCCESS", "ERROR"}, within=5
    )
    assert stopped["status"] == "INTERRUPTED"
    await wait_status(gql_client, second["id"], {"SUCCESS"})
    thread = await thread_of(gql_client, tid)
    # A's `first` checkpoint was kept; A never reached `after`.
    assert thread["values"]["log"] == ["first:A", "first:B", "after:B"]


async def test_rollback_deletes_the_active_run_and_its_checkpoints(
    gql_client: GraphQLClient,
) -> None:
    tid = await new_thread(gql_client)
    before = await run_and_wait(
        gql_client, assistantId="pipeline", threadId=tid, input={"tag": "0"}
    )
    assert before["values"]["log"] == ["first:0", "after:0"]
    first = await start_slow(gql_client, tid)
    second = await create_run(
        gql_client,
        assistantId="pipeline",
        threadId=tid,
        input={"tag": "B"},
        multitaskStrategy="ROLLBACK",
    )

    async def deleted() -> bool:
        return await get_run(gql_client, first["id"]) is None

    await eventually(deleted, what="the rolled-back run to be deleted")
    await wait_status(gql_client, second["id"], {"SUCCESS"})
    thread = await thread_of(gql_client, tid)
    # The state before A, then B: A's checkpoints are gone.
    assert thread["values"]["log"] == ["first:0", "after:0", "first:B", "after:B"]
    history = await gql_client.data(
        "query($id: ID!) { thread(id: $id) { history(limit: 100) { metadata } } }", {"id": tid}
    )
    assert all(h["metadata"].get("run_id") != first["id"] for h in history["thread"]["history"])


async def test_interrupt_and_rollback_cancel_pending_runs_too(gql_client: GraphQLClient) -> None:
    tid = await new_thread(gql_client)
    first = await start_slow(gql_client, tid, seconds=1)
    queued = await create_run(gql_client, assistantId="pipeline", threadId=tid, input={"tag": "Q"})
    last = await create_run(
        gql_client,
        assistantId="pipeline",
        threadId=tid,
        input={"tag": "L"},
        multitaskStrategy="INTERRUPT",
    )
    assert (await gql_client.data(GET_RUN, {"id": queued["id"]}))["run"]["status"] == "INTERRUPTED"
    await wait_status(gql_client, first["id"], {"INTERRUPTED"})
    await wait_status(gql_client, last["id"], {"SUCCESS"})
    thread = await thread_of(gql_client, tid)
    assert "first:Q" not in thread["values"]["log"]

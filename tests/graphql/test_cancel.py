"""Cancelling runs (pending and running, interrupt and rollback), across processes; timeouts."""

from __future__ import annotations

import uuid

from tests.conftest import EngineUrls, GraphQLClient, LiveServer, make_settings, start_server
from tests.helpers import (
    GET_RUN,
    create_run,
    new_thread,
    run_and_wait,
    start_slow,
    thread_of,
    wait_status,
)

CANCEL = "mutation($id: ID!, $action: CancelAction) { cancelRun(id: $id, action: $action) { id status } }"


async def test_cancel_a_pending_run(gql_client: GraphQLClient) -> None:
    tid = await new_thread(gql_client)
    run = await create_run(
        gql_client, assistantId="steps", threadId=tid, input={"count": 0}, afterSeconds=30
    )
    cancelled = (await gql_client.data(CANCEL, {"id": run["id"]}))["cancelRun"]
    assert cancelled == {"id": run["id"], "status": "INTERRUPTED"}
    assert (await thread_of(gql_client, tid))["status"] == "IDLE"
    # The thread takes new runs at once.
    assert (await run_and_wait(gql_client, assistantId="steps", threadId=tid, input={"count": 0}))[
        "values"
    ] == {"count": 5}


async def test_cancel_a_running_run_interrupt_keeps_progress(gql_client: GraphQLClient) -> None:
    tid = await new_thread(gql_client)
    run = await start_slow(gql_client, tid, seconds=30)
    cancelled = (await gql_client.data(CANCEL, {"id": run["id"], "action": "INTERRUPT"}))[
        "cancelRun"
    ]
    assert cancelled["status"] == "INTERRUPTED"
    thread = await thread_of(gql_client, tid)
    assert thread["values"]["log"] == ["first:A"]  # `first` kept, `after` never ran
    assert thread["status"] == "INTERRUPTED"  # it stopped with `wait` still due


async def test_cancel_a_running_run_rollback_deletes_it(gql_client: GraphQLClient) -> None:
    tid = await new_thread(gql_client)
    run = await start_slow(gql_client, tid, seconds=30)
    data = await gql_client.data(CANCEL, {"id": run["id"], "action": "ROLLBACK"})
    assert data["cancelRun"] is None
    assert await gql_client.error_code(GET_RUN, {"id": run["id"]}) == "NOT_FOUND"
    thread = await thread_of(gql_client, tid)
    assert thread["status"] == "IDLE"
    assert thread["values"] in (None, {})
    history = await gql_client.data(
        "query($id: ID!) { thread(id: $id) { history { values } } }", {"id": tid}
    )
    assert history["thread"]["history"] == []


async def test_cancel_errors(gql_client: GraphQLClient) -> None:
    assert await gql_client.error_code(CANCEL, {"id": str(uuid.uuid4())}) == "NOT_FOUND"
    done = await run_and_wait(
        gql_client, assistantId="steps", input={"count": 0}, onCompletion="KEEP"
    )
    assert await gql_client.error_code(CANCEL, {"id": done["run"]["id"]}) == "CONFLICT"


async def test_cancel_reaches_the_worker_of_another_process(
    api_only: LiveServer, gql_client: GraphQLClient
) -> None:
    other = GraphQLClient(api_only.graphql_url)
    try:
        tid = await new_thread(other)
        run = await start_slow(other, tid, seconds=30)  # executed by the live server's worker
        cancelled = (await other.data(CANCEL, {"id": run["id"]}))["cancelRun"]
        assert cancelled["status"] == "INTERRUPTED"
    finally:
        await other.close()


async def test_timeout_ends_the_run_timeout(
    engines: EngineUrls, database_uri: str, redis_prefix: str
) -> None:
    # Its own queue (a worker with a 1 s timeout), under the session's prefix so it is cleaned up.
    settings = make_settings(f"{redis_prefix}_timeout", bg_job_timeout_secs=1)
    server = await start_server(settings, database_uri=database_uri, redis_uri=engines.redis_uri)
    client = GraphQLClient(server.graphql_url)
    try:
        tid = await new_thread(client)
        result = await run_and_wait(client, assistantId="slow", threadId=tid, input={"seconds": 10})
        assert result["run"]["status"] == "TIMEOUT"
        assert result["error"]["type"] == "TimeoutError"
        assert (await thread_of(client, tid))["status"] == "ERROR"
        await wait_status(client, result["run"]["id"], {"TIMEOUT"})
    finally:
        await client.close()
        await server.stop()

"""Crons through the GraphQL HTTP endpoint: create, read, list, update, delete, and firing on the
live server (whose worker looks for due crons every 5 s, LangGraph's default).

To make a cron due without waiting for its schedule, a test moves its `next_run_at` into the past
in SQL; deadlines only guard against hangs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from croniter import croniter

from app.db.engine import asyncpg_url
from tests.conftest import GraphQLClient, LiveServer
from tests.helpers import JOIN, collect, eventually, new_thread

CRON_FIELDS = (
    "id assistantId threadId schedule timezone payload enabled onRunCompleted endTime "
    "nextRunAt metadata createdAt updatedAt"
)
CREATE = f"mutation($input: CreateCronInput!) {{ createCron(input: $input) {{ {CRON_FIELDS} }} }}"
UPDATE = (
    f"mutation($id: ID!, $input: UpdateCronInput!) {{ updateCron(id: $id, input: $input) "
    f"{{ {CRON_FIELDS} }} }}"
)
DELETE = "mutation($id: ID!) { deleteCron(id: $id) }"
GET = f"query($id: ID!) {{ cron(id: $id) {{ {CRON_FIELDS} }} }}"
LIST = """
query($filter: CronFilter, $sortBy: CronSortBy, $sortOrder: SortOrder, $first: Int, $after: String) {
  crons(filter: $filter, sortBy: $sortBy, sortOrder: $sortOrder, first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage endCursor }
    edges { cursor node { id threadId enabled nextRunAt createdAt } }
  }
}"""
CRON_RUNS = """
query($id: ID!) {
  cron(id: $id) { runs(first: 50) { totalCount edges { node { id threadId status metadata kwargs } } } }
}"""
RUN = "query($id: ID!) { run(id: $id) { id threadId status metadata } }"
THREAD = "query($id: ID!) { thread(id: $id) { id status values } }"
RUNS_OF_THREAD = """
query($id: ID!) { runs(threadId: $id, first: 50) { totalCount edges { node { id status metadata } } } }
"""
# Far from now: these crons never come due during a test unless the test makes them due.
YEARLY = "0 0 1 1 *"


async def create_cron(client: GraphQLClient, **fields: Any) -> dict[str, Any]:
    values = {"assistantId": "echo", "schedule": YEARLY, **fields}
    return (await client.data(CREATE, {"input": values}))["createCron"]


async def default_assistant(client: GraphQLClient, graph_id: str) -> str:
    data = await client.data("query($id: ID!) { assistant(id: $id) { id } }", {"id": graph_id})
    return str(data["assistant"]["id"])


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def make_due(database_uri: str, cron_id: str, *, ago: timedelta) -> None:
    conn = await asyncpg.connect(asyncpg_url(database_uri))
    try:
        await conn.execute(
            "UPDATE crons SET next_run_at = now() - $2::interval WHERE cron_id = $1",
            uuid.UUID(cron_id),
            ago,
        )
    finally:
        await conn.close()


# --- create and read -------------------------------------------------------------------------


async def test_create_thread_cron_and_read_it(gql_client: GraphQLClient, unique: str) -> None:
    thread_id = await new_thread(gql_client)
    end = datetime.now(UTC) + timedelta(days=30)
    cron = await create_cron(
        gql_client,
        threadId=thread_id,
        schedule="0 9 * * 1-5",
        timezone="Europe/Paris",
        endTime=end.isoformat(),
        input={"messages": [{"role": "user", "content": "hi"}]},
        config={"tags": ["t"]},
        metadata={"owner": unique},
        runMetadata={"kind": "daily"},
        webhook="https://example.com/hook",
        interruptBefore=["echo"],
        streamMode=["VALUES", "MESSAGES_TUPLE"],
        streamSubgraphs=True,
        multitaskStrategy="INTERRUPT",
        durability="SYNC",
    )
    assert cron["assistantId"] == await default_assistant(gql_client, "echo")
    assert cron["threadId"] == thread_id
    assert cron["schedule"] == "0 9 * * 1-5"
    assert cron["timezone"] == "Europe/Paris"
    assert cron["enabled"] is True
    assert cron["onRunCompleted"] is None
    assert cron["metadata"] == {"owner": unique}
    assert parse(cron["endTime"]) == end
    assert cron["payload"] == {
        "assistant_id": cron["assistantId"],
        "input": {"messages": [{"role": "user", "content": "hi"}]},
        "config": {"tags": ["t"]},
        "metadata": {"kind": "daily"},
        "webhook": "https://example.com/hook",
        "interrupt_before": ["echo"],
        "stream_mode": ["values", "messages-tuple"],
        "stream_subgraphs": True,
        "multitask_strategy": "interrupt",
        "durability": "sync",
    }
    # The next weekday at 09:00 in Paris, whatever the offset of the day.
    next_run = parse(cron["nextRunAt"])
    expected = croniter("0 9 * * 1-5", datetime.now(ZoneInfo("Europe/Paris"))).get_next(datetime)
    assert next_run == expected
    local = next_run.astimezone(ZoneInfo("Europe/Paris"))
    assert (local.hour, local.minute, local.weekday() < 5) == (9, 0, True)
    assert (await gql_client.data(GET, {"id": cron["id"]}))["cron"] == cron


async def test_stateless_cron_defaults(gql_client: GraphQLClient) -> None:
    cron = await create_cron(gql_client, assistantId="steps", schedule="*/15 * * * *")
    assert cron["threadId"] is None
    assert cron["onRunCompleted"] == "DELETE"
    assert cron["timezone"] == "UTC"
    assert cron["enabled"] is True
    assert cron["endTime"] is None
    assert cron["metadata"] == {}
    assert cron["payload"] == {"assistant_id": await default_assistant(gql_client, "steps")}
    next_run = parse(cron["nextRunAt"])
    assert next_run.minute % 15 == 0 and next_run.second == 0
    assert datetime.now(UTC) < next_run <= datetime.now(UTC) + timedelta(minutes=15)
    kept = await create_cron(gql_client, onRunCompleted="KEEP", enabled=False)
    assert (kept["onRunCompleted"], kept["enabled"]) == ("KEEP", False)


async def test_create_cron_refuses_bad_input_and_writes_nothing(
    gql_client: GraphQLClient, unique: str
) -> None:
    thread_id = await new_thread(gql_client)
    marker = {"bad": unique}
    bad_inputs: list[dict[str, Any]] = [
        {"schedule": "* * * *"},
        {"schedule": "* * * * * *"},  # 6 fields (seconds): not a standard cron
        {"schedule": "61 * * * *"},
        {"schedule": "every minute"},
        {"schedule": "@hourly"},
        {"schedule": "0 0 30 2 *"},  # February 30th never comes
        {"timezone": "Mars/Olympus_Mons"},
        {"timezone": ""},
        {"threadId": thread_id, "onRunCompleted": "KEEP"},
        {"threadId": "not-a-uuid"},
        {"config": "not an object"},
        {"config": {"configurable": {"a": 1}}, "context": {"b": 2}},
        {"config": {"recursion_limit": -1}},
        {"context": [1, 2]},
        {"runMetadata": "x"},
        {"webhook": "ftp://example.com/hook"},
    ]
    for fields in bad_inputs:
        values = {"assistantId": "echo", "schedule": YEARLY, "metadata": marker, **fields}
        code = await gql_client.error_code(CREATE, {"input": values})
        assert code == "BAD_USER_INPUT", fields
    assert (
        await gql_client.error_code(
            CREATE, {"input": {"assistantId": "echo", "schedule": YEARLY, "metadata": [1]}}
        )
        == "BAD_USER_INPUT"
    )
    not_found: list[dict[str, Any]] = [
        {"assistantId": str(uuid.uuid4())},
        {"assistantId": "no-such-graph"},
        {"threadId": str(uuid.uuid4())},
    ]
    for fields in not_found:
        values = {"assistantId": "echo", "schedule": YEARLY, "metadata": marker, **fields}
        assert await gql_client.error_code(CREATE, {"input": values}) == "NOT_FOUND", fields
    listed = await gql_client.data(LIST, {"filter": {"metadata": marker}})
    assert listed["crons"]["totalCount"] == 0


async def test_unknown_and_malformed_cron_ids(gql_client: GraphQLClient) -> None:
    missing = str(uuid.uuid4())
    body = await gql_client.execute(GET, {"id": missing})
    assert body["data"] == {"cron": None}
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert await gql_client.error_code(DELETE, {"id": missing}) == "NOT_FOUND"
    assert (
        await gql_client.error_code(UPDATE, {"id": missing, "input": {"enabled": False}})
        == "NOT_FOUND"
    )
    for operation, variables in (
        (GET, {"id": "nope"}),
        (DELETE, {"id": "nope"}),
        (UPDATE, {"id": "nope", "input": {"enabled": False}}),
    ):
        assert await gql_client.error_code(operation, variables) == "BAD_USER_INPUT"


# --- update and delete -----------------------------------------------------------------------


async def test_update_cron_changes_only_what_is_given(
    gql_client: GraphQLClient, unique: str
) -> None:
    cron = await create_cron(
        gql_client,
        input={"messages": [{"role": "user", "content": "a"}]},
        config={"tags": ["x"]},
        metadata={"owner": unique, "team": "a"},
        runMetadata={"kind": "first"},
        endTime=(datetime.now(UTC) + timedelta(days=1)).isoformat(),
    )
    cid = cron["id"]

    async def update(**fields: Any) -> dict[str, Any]:
        return (await gql_client.data(UPDATE, {"id": cid, "input": fields}))["updateCron"]

    merged = await update(
        input={"messages": [{"role": "user", "content": "b"}]},
        webhook="https://example.com/w",
        metadata={"team": "b", "extra": 1},
    )
    assert merged["payload"] == {
        **cron["payload"],
        "input": {"messages": [{"role": "user", "content": "b"}]},
        "webhook": "https://example.com/w",
    }
    assert merged["metadata"] == {"owner": unique, "team": "b", "extra": 1}
    assert merged["schedule"] == YEARLY and merged["nextRunAt"] == cron["nextRunAt"]
    assert merged["endTime"] == cron["endTime"]
    assert parse(merged["updatedAt"]) > parse(cron["updatedAt"])

    every_five = await update(schedule="*/5 * * * *")
    next_run = parse(every_five["nextRunAt"])
    assert next_run.minute % 5 == 0
    assert datetime.now(UTC) < next_run <= datetime.now(UTC) + timedelta(minutes=5)

    daily = await update(schedule="30 6 * * *", timezone="Asia/Tokyo")
    local = parse(daily["nextRunAt"]).astimezone(ZoneInfo("Asia/Tokyo"))
    assert (local.hour, local.minute) == (6, 30)
    assert daily["timezone"] == "Asia/Tokyo"
    rezoned = await update(timezone="America/New_York")
    local = parse(rezoned["nextRunAt"]).astimezone(ZoneInfo("America/New_York"))
    assert (local.hour, local.minute) == (6, 30)

    cleared = await update(endTime=None)
    assert cleared["endTime"] is None
    later = datetime.now(UTC) + timedelta(days=7)
    assert parse((await update(endTime=later.isoformat()))["endTime"]) == later

    assert (await update(enabled=False))["enabled"] is False
    assert (await update(enabled=True))["enabled"] is True
    rerun = await update(runMetadata={"kind": "second"}, durability="EXIT")
    assert rerun["payload"]["metadata"] == {"kind": "second"}
    assert rerun["payload"]["durability"] == "exit"
    assert rerun["payload"]["config"] == {"tags": ["x"]}


async def test_update_cron_refuses_bad_input_and_changes_nothing(gql_client: GraphQLClient) -> None:
    thread_cron = await create_cron(gql_client, threadId=await new_thread(gql_client))
    stateless = await create_cron(gql_client, context={"user": "a"})
    for cron, fields in (
        (thread_cron, {}),
        (thread_cron, {"schedule": "* * * * * *"}),
        (thread_cron, {"schedule": "nope"}),
        (thread_cron, {"timezone": "Nowhere/Land"}),
        (thread_cron, {"onRunCompleted": "KEEP"}),
        (thread_cron, {"config": 3}),
        (thread_cron, {"webhook": "not a url"}),
        (stateless, {"config": {"configurable": {"user": "b"}}}),  # the payload has context
    ):
        variables = {"id": cron["id"], "input": fields}
        assert await gql_client.error_code(UPDATE, variables) == "BAD_USER_INPUT", fields
        assert (await gql_client.data(GET, {"id": cron["id"]}))["cron"] == cron
    kept = (
        await gql_client.data(UPDATE, {"id": stateless["id"], "input": {"onRunCompleted": "KEEP"}})
    )["updateCron"]
    assert kept["onRunCompleted"] == "KEEP"


async def test_delete_cron(gql_client: GraphQLClient) -> None:
    cron = await create_cron(gql_client)
    assert (await gql_client.data(DELETE, {"id": cron["id"]}))["deleteCron"] == cron["id"]
    assert await gql_client.error_code(GET, {"id": cron["id"]}) == "NOT_FOUND"
    assert await gql_client.error_code(DELETE, {"id": cron["id"]}) == "NOT_FOUND"


async def test_deleting_a_thread_deletes_its_crons(gql_client: GraphQLClient) -> None:
    thread_id = await new_thread(gql_client)
    crons = [await create_cron(gql_client, threadId=thread_id) for _ in range(2)]
    listed = await gql_client.data(LIST, {"filter": {"threadId": thread_id}})
    assert listed["crons"]["totalCount"] == 2
    await gql_client.data("mutation($id: ID!) { deleteThread(id: $id) }", {"id": thread_id})
    for cron in crons:
        assert await gql_client.error_code(GET, {"id": cron["id"]}) == "NOT_FOUND"
    listed = await gql_client.data(LIST, {"filter": {"threadId": thread_id}})
    assert listed["crons"]["totalCount"] == 0


# --- list ------------------------------------------------------------------------------------


async def test_crons_filters_total_count_and_pages(gql_client: GraphQLClient, unique: str) -> None:
    marker = {"suite": unique}
    thread_id = await new_thread(gql_client)
    assistant = (
        await gql_client.data('mutation { createAssistant(input: {graphId: "echo"}) { id } }')
    )["createAssistant"]["id"]
    on_thread = [
        await create_cron(gql_client, threadId=thread_id, metadata=marker, schedule=schedule)
        for schedule in ("1 * * * *", "2 * * * *", "3 * * * *")
    ]
    await gql_client.data(UPDATE, {"id": on_thread[2]["id"], "input": {"enabled": False}})
    stateless = [
        await create_cron(
            gql_client, assistantId=assistant, metadata={**marker, "n": n}, schedule=YEARLY
        )
        for n in range(2)
    ]
    everyone = {c["id"] for c in [*on_thread, *stateless]}

    async def listed(**variables: Any) -> dict[str, Any]:
        return (await gql_client.data(LIST, variables))["crons"]

    def ids(page: dict[str, Any]) -> list[str]:
        return [e["node"]["id"] for e in page["edges"]]

    everything = await listed(filter={"metadata": marker}, first=50)
    assert everything["totalCount"] == 5 and set(ids(everything)) == everyone
    assert (await listed(filter={"threadId": thread_id}))["totalCount"] == 3
    assert (await listed(filter={"metadata": marker, "enabled": False}))["totalCount"] == 1
    assert (await listed(filter={"metadata": marker, "enabled": True}))["totalCount"] == 4
    by_assistant = await listed(filter={"assistantId": assistant})
    assert set(ids(by_assistant)) == {c["id"] for c in stateless}
    by_graph = await listed(filter={"assistantId": "echo", "metadata": marker})
    assert set(ids(by_graph)) == {c["id"] for c in on_thread}
    assert (await listed(filter={"metadata": {**marker, "n": 1}}))["totalCount"] == 1

    # Newest first by default; pages follow one another with the total on each.
    seen: list[str] = []
    after = None
    while True:
        page = await listed(filter={"metadata": marker}, first=2, after=after)
        assert page["totalCount"] == 5
        assert page["pageInfo"]["hasPreviousPage"] is (after is not None)
        seen += ids(page)
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert len(seen) == 5 and set(seen) == everyone
    created = [parse(e["node"]["createdAt"]) for e in everything["edges"]]
    assert created == sorted(created, reverse=True)

    by_next = await listed(filter={"metadata": marker}, sortBy="NEXT_RUN_AT", sortOrder="ASC")
    times = [parse(e["node"]["nextRunAt"]) for e in by_next["edges"]]
    assert times == sorted(times)

    for variables in (
        {"filter": {"assistantId": "not an id"}},
        {"filter": {"threadId": "nope"}},
        {"filter": {"metadata": [1]}},
        {"after": "garbage"},
        {"first": -1},
    ):
        assert await gql_client.error_code(LIST, variables) == "BAD_USER_INPUT", variables
    cursor = everything["edges"][0]["cursor"]
    wrong_sort = {"filter": {"metadata": marker}, "sortBy": "UPDATED_AT", "after": cursor}
    assert await gql_client.error_code(LIST, wrong_sort) == "BAD_USER_INPUT"


# --- firing on the live server ---------------------------------------------------------------


async def _first_run(client: GraphQLClient, cron_id: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        runs = (await client.data(CRON_RUNS, {"id": cron_id}))["cron"]["runs"]
        return runs["edges"][0]["node"] if runs["edges"] else None

    run: dict[str, Any] = await eventually(probe, within=30, what="the cron's first run")
    return run


async def _ended(client: GraphQLClient, run_id: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        run = (await client.data(RUN, {"id": run_id}))["run"]
        return run if run["status"] not in ("PENDING", "RUNNING") else None

    ended: dict[str, Any] = await eventually(probe, within=60, what="the run to end")
    return ended


async def test_stateless_cron_deletes_each_runs_thread_afterwards(
    gql_client: GraphQLClient, database_uri: str, unique: str
) -> None:
    cron = await create_cron(
        gql_client, assistantId="slow", input={"seconds": 1.0}, metadata={"owner": unique}
    )
    await make_due(database_uri, cron["id"], ago=timedelta(minutes=1))
    run = await _first_run(gql_client, cron["id"])
    assert run["metadata"]["cron_id"] == cron["id"]
    assert run["metadata"]["owner"] == unique
    assert run["kwargs"]["temporary"] is True
    # The run, then its thread, go once it has ended.
    await eventually(
        lambda: _gone(gql_client, THREAD, run["threadId"]), within=60, what="the thread to go"
    )
    assert await gql_client.error_code(RUN, {"id": run["id"]}) == "NOT_FOUND"
    await gql_client.data(DELETE, {"id": cron["id"]})


async def _gone(client: GraphQLClient, query: str, item_id: str) -> bool:
    body = await client.execute(query, {"id": item_id})
    return bool(body.get("errors")) and body["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_stateless_cron_with_keep_keeps_each_runs_thread(
    gql_client: GraphQLClient, live_server: LiveServer, database_uri: str
) -> None:
    cron = await create_cron(
        gql_client, assistantId="slow", input={"seconds": 0.5}, onRunCompleted="KEEP"
    )
    await make_due(database_uri, cron["id"], ago=timedelta(minutes=1))
    run = await _first_run(gql_client, cron["id"])
    assert run["kwargs"]["temporary"] is False
    assert (await _ended(gql_client, run["id"]))["status"] == "SUCCESS"
    thread = (await gql_client.data(THREAD, {"id": run["threadId"]}))["thread"]
    assert thread["status"] == "IDLE"
    assert thread["values"]["count"] == 1
    # A cron's run streams like any other: joined late, it replays from the start.
    events = await collect(live_server, JOIN, {"id": run["id"]}, "joinRunStream")
    assert {e["runId"] for e in events} == {run["id"]}
    assert events[-1]["event"] == "end"
    assert [e["data"] for e in events if e["event"] == "values"][-1] == {"seconds": 0.5, "count": 1}
    await gql_client.data(DELETE, {"id": cron["id"]})


@pytest.mark.timeout(180)
async def test_every_minute_cron_fires_by_itself_on_a_live_server(
    gql_client: GraphQLClient, unique: str
) -> None:
    """No help from SQL: the cron comes due at the next minute boundary and the server's own
    scheduler starts its run, which ends SUCCESS and shows among the thread's runs."""
    thread_id = await new_thread(gql_client)
    cron = await create_cron(
        gql_client,
        threadId=thread_id,
        schedule="* * * * *",
        input={"messages": [{"role": "user", "content": unique}]},
        metadata={"owner": unique},
    )
    due = parse(cron["nextRunAt"])
    assert due.second == 0 and due <= datetime.now(UTC) + timedelta(seconds=60)
    try:
        run = await eventually(
            lambda: _first_of_thread(gql_client, thread_id), within=90, what="the minute's run"
        )
        assert run["metadata"]["cron_id"] == cron["id"]
        assert run["metadata"]["owner"] == unique
        assert (await _ended(gql_client, run["id"]))["status"] == "SUCCESS"
        thread = (await gql_client.data(THREAD, {"id": thread_id}))["thread"]
        assert [m["content"] for m in thread["values"]["messages"]][:2] == [unique, unique]
        after = (await gql_client.data(GET, {"id": cron["id"]}))["cron"]
        assert parse(after["nextRunAt"]) > due
    finally:
        await gql_client.data(DELETE, {"id": cron["id"]})


async def _first_of_thread(client: GraphQLClient, thread_id: str) -> dict[str, Any] | None:
    runs = (await client.data(RUNS_OF_THREAD, {"id": thread_id}))["runs"]
    return runs["edges"][-1]["node"] if runs["edges"] else None

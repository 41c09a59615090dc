"""The operations LangGraph Server has that the schema lacked (issue 13, item 7), over GraphQL:
`joinRun`, `cancelRuns`, `pruneThreads`, `Run.startedAt`/`endedAt`, more sort fields,
`createThread(supersteps:)`, `deleteAssistant(deleteThreads:)`, `checkpointNs` on state and
history, and Relay's `Node` with `node(id:)`/`nodes(ids:)`."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from gql import Client, gql
from gql.transport.websockets import WebsocketsTransport

from tests.conftest import (
    ROOT,
    EngineUrls,
    GraphQLClient,
    LiveServer,
    make_settings,
    scratch_database,
    start_server,
)
from tests.helpers import GET_RUN, create_run, new_thread, run_and_wait, wait_status

JOIN = """query($id: ID!) { joinRun(runId: $id) {
  run { id status startedAt endedAt } values error { type message } } }"""
CANCEL_RUNS = """mutation($t: ID, $ids: [ID!], $s: CancelRunsStatus) {
  cancelRuns(threadId: $t, runIds: $ids, status: $s) }"""
TIMES = "query($id: ID!) { run(id: $id) { status startedAt endedAt createdAt } }"
HISTORY = """query($id: ID!, $ns: String! = "") { thread(id: $id) {
  history(checkpointNs: $ns) { values checkpoint { checkpointId checkpointNs } } } }"""
NODE = """query($id: ID!) { node(id: $id) { __typename id
  ... on Thread { threadStatus: status } ... on Run { runStatus: status }
  ... on Assistant { graphId } ... on Cron { schedule } } }"""


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def delayed_run(client: GraphQLClient, thread_id: str) -> str:
    """A run that stays PENDING (it may start in an hour)."""
    run = await create_run(
        client, assistantId="steps", threadId=thread_id, input={"count": 0}, afterSeconds=3600
    )
    return str(run["id"])


# --- Run.startedAt / endedAt ----------------------------------------------------------------------


async def test_runs_say_when_they_started_and_ended(gql_client: GraphQLClient) -> None:
    tid = await new_thread(gql_client)
    pending = await delayed_run(gql_client, tid)
    still = (await gql_client.data(TIMES, {"id": pending}))["run"]
    assert still["status"] == "PENDING"
    assert still["startedAt"] is None and still["endedAt"] is None

    await gql_client.data(CANCEL_RUNS, {"t": tid})

    other = await new_thread(gql_client)
    result = await run_and_wait(gql_client, assistantId="steps", threadId=other, input={"count": 0})
    run = (await gql_client.data(TIMES, {"id": result["run"]["id"]}))["run"]
    assert run["status"] == "SUCCESS"
    assert ts(run["createdAt"]) <= ts(run["startedAt"]) <= ts(run["endedAt"])


# --- joinRun --------------------------------------------------------------------------------------


async def test_join_run_waits_for_its_outcome(gql_client: GraphQLClient) -> None:
    tid = await new_thread(gql_client)
    run = await create_run(gql_client, assistantId="steps", threadId=tid, input={"count": 1})
    joined = (await gql_client.data(JOIN, {"id": run["id"]}))["joinRun"]
    assert joined["run"]["id"] == run["id"]
    assert joined["run"]["status"] == "SUCCESS"
    assert joined["values"] == {"count": 6}
    assert joined["error"] is None
    assert joined["run"]["startedAt"] is not None and joined["run"]["endedAt"] is not None
    # Once ended, joining answers at once with the same outcome.
    again = (await gql_client.data(JOIN, {"id": run["id"]}))["joinRun"]
    assert again["values"] == {"count": 6} and again["run"]["status"] == "SUCCESS"


async def test_join_run_of_an_unknown_run_is_not_found(gql_client: GraphQLClient) -> None:
    assert await gql_client.error_code(JOIN, {"id": str(uuid.uuid4())}) == "NOT_FOUND"


# --- cancelRuns -----------------------------------------------------------------------------------


async def test_cancel_runs_of_a_thread(gql_client: GraphQLClient) -> None:
    tid = await new_thread(gql_client)
    first, second = await delayed_run(gql_client, tid), await delayed_run(gql_client, tid)
    cancelled = (await gql_client.data(CANCEL_RUNS, {"t": tid}))["cancelRuns"]
    assert sorted(cancelled) == sorted([first, second])
    for rid in (first, second):
        assert (await wait_status(gql_client, rid, {"INTERRUPTED"}))["status"] == "INTERRUPTED"
    # Nothing active is left: a second call cancels nothing.
    assert (await gql_client.data(CANCEL_RUNS, {"t": tid}))["cancelRuns"] == []


async def test_cancel_runs_by_id_and_by_status(gql_client: GraphQLClient) -> None:
    tid = await new_thread(gql_client)
    kept, chosen = await delayed_run(gql_client, tid), await delayed_run(gql_client, tid)
    by_id = (await gql_client.data(CANCEL_RUNS, {"ids": [chosen]}))["cancelRuns"]
    assert by_id == [chosen]
    assert (await gql_client.data(GET_RUN, {"id": kept}))["run"]["status"] == "PENDING"

    by_status = await gql_client.data(CANCEL_RUNS, {"t": tid, "s": "PENDING"})
    assert by_status["cancelRuns"] == [kept]
    await wait_status(gql_client, kept, {"INTERRUPTED"})


async def test_cancel_runs_needs_a_choice(gql_client: GraphQLClient) -> None:
    assert await gql_client.error_code(CANCEL_RUNS, {}) == "BAD_USER_INPUT"
    both = {"ids": [str(uuid.uuid4())], "s": "ALL"}
    assert await gql_client.error_code(CANCEL_RUNS, both) == "BAD_USER_INPUT"


# --- pruneThreads ---------------------------------------------------------------------------------

PRUNE = (
    """mutation($ids: [ID!]!, $s: PruneStrategy!) { pruneThreads(threadIds: $ids, strategy: $s) }"""
)


async def test_prune_threads_keep_latest_and_delete(gql_client: GraphQLClient) -> None:
    tid = await new_thread(gql_client)
    await run_and_wait(gql_client, assistantId="steps", threadId=tid, input={"count": 0})
    before = (await gql_client.data(HISTORY, {"id": tid}))["thread"]["history"]
    assert len(before) > 1

    kept = await gql_client.data(PRUNE, {"ids": [tid, str(uuid.uuid4())], "s": "KEEP_LATEST"})
    assert kept["pruneThreads"] == 1, "an unknown thread is skipped"
    after = (await gql_client.data(HISTORY, {"id": tid}))["thread"]["history"]
    assert len(after) == 1
    assert after[0]["values"] == before[0]["values"] == {"count": 5}

    deleted = await gql_client.data(PRUNE, {"ids": [tid], "s": "DELETE"})
    assert deleted["pruneThreads"] == 1
    assert (await gql_client.data(NODE, {"id": tid}))["node"] is None


# --- sorting --------------------------------------------------------------------------------------


async def test_sorting_on_the_fields_langgraph_server_sorts_by(
    gql_client: GraphQLClient, unique: str
) -> None:
    names = [f"{unique}-b", f"{unique}-a", f"{unique}-c"]
    for name in names:
        await gql_client.data(
            'mutation($n: String!) { createAssistant(input: {graphId: "echo", name: $n}) { id } }',
            {"n": name},
        )
    by_name = await gql_client.data(
        """query($n: String!) { assistants(filter: {name: $n}, sortBy: NAME, sortOrder: ASC) {
          edges { node { name } } } }""",
        {"n": unique},
    )
    assert [e["node"]["name"] for e in by_name["assistants"]["edges"]] == sorted(names)
    for field in ("ASSISTANT_ID", "GRAPH_ID"):
        body = await gql_client.data(
            f"{{ assistants(sortBy: {field}, sortOrder: ASC, first: 50) {{ edges {{ node {{ id graphId }} }} }} }}"
        )
        nodes = [e["node"] for e in body["assistants"]["edges"]]
        key = "id" if field == "ASSISTANT_ID" else "graphId"
        assert [n[key] for n in nodes] == sorted(n[key] for n in nodes), field

    marker = {"sort": unique}
    ids = [await new_thread(gql_client, metadata=marker) for _ in range(3)]
    by_id = await gql_client.data(
        """query($m: JSON) { threads(filter: {metadata: $m}, sortBy: THREAD_ID, sortOrder: ASC) {
          edges { node { id } } } }""",
        {"m": marker},
    )
    assert [e["node"]["id"] for e in by_id["threads"]["edges"]] == sorted(ids)
    by_status = await gql_client.data(
        """query($m: JSON) { threads(filter: {metadata: $m}, sortBy: STATUS, first: 2) {
          edges { node { id status } } pageInfo { hasNextPage endCursor } } }""",
        {"m": marker},
    )
    assert by_status["threads"]["pageInfo"]["hasNextPage"] is True

    cron_ids = []
    for _ in range(2):
        made = await gql_client.data(
            """mutation { createCron(input: {assistantId: "steps", schedule: "0 0 1 1 *",
              input: {count: 0}}) { id } }"""
        )
        cron_ids.append(made["createCron"]["id"])
    crons = await gql_client.data(
        "{ crons(sortBy: CRON_ID, sortOrder: ASC, first: 100) { edges { node { id } } } }"
    )
    listed = [e["node"]["id"] for e in crons["crons"]["edges"]]
    assert listed == sorted(listed) and set(cron_ids) <= set(listed)
    by_assistant = await gql_client.data(
        "{ crons(sortBy: ASSISTANT_ID, first: 100) { edges { node { id } } } }"
    )
    assert set(cron_ids) <= {e["node"]["id"] for e in by_assistant["crons"]["edges"]}
    for cid in cron_ids:
        await gql_client.data("mutation($id: ID!) { deleteCron(id: $id) }", {"id": cid})


# --- createThread(supersteps:) ---------------------------------------------------------------------

CREATE_WITH_STEPS = """mutation($input: CreateThreadInput) { createThread(input: $input) {
  id values history { values } } }"""


async def test_create_thread_with_supersteps_seeds_its_history(gql_client: GraphQLClient) -> None:
    steps = [
        {"updates": [{"asNode": "__input__", "values": {"count": 1}}]},
        {"updates": [{"asNode": "step_1", "values": {"count": 2}}]},
    ]
    made = (
        await gql_client.data(
            CREATE_WITH_STEPS, {"input": {"graphId": "steps", "supersteps": steps}}
        )
    )["createThread"]
    assert made["values"] == {"count": 2}
    # One checkpoint per superstep at least, the last one's values on top.
    assert len(made["history"]) >= 2 and made["history"][0]["values"] == {"count": 2}


async def test_create_thread_with_failing_supersteps_keeps_the_thread(
    gql_client: GraphQLClient,
) -> None:
    """As LangGraph Server and the REST API (one ThreadService.create_seeded): the thread stays,
    and the error names it."""
    tid = str(uuid.uuid4())
    steps = [{"updates": [{"asNode": "no_such_node", "values": {"count": 1}}]}]
    body = await gql_client.execute(
        CREATE_WITH_STEPS, {"input": {"threadId": tid, "graphId": "steps", "supersteps": steps}}
    )
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", body
    assert error["message"].startswith(f"Thread {tid} was created, but"), error
    assert "no_such_node" in error["message"]
    assert (await gql_client.data(NODE, {"id": tid}))["node"]["id"] == tid


async def test_create_thread_if_exists_do_nothing_seeds_the_existing_thread(
    gql_client: GraphQLClient,
) -> None:
    """`supersteps` with `ifExists: DO_NOTHING` apply to the thread there is, as over REST."""
    tid = str(uuid.uuid4())
    await gql_client.data(CREATE_WITH_STEPS, {"input": {"threadId": tid, "graphId": "steps"}})
    steps = [{"updates": [{"asNode": "step_1", "values": {"count": 3}}]}]
    made = (
        await gql_client.data(
            CREATE_WITH_STEPS,
            {"input": {"threadId": tid, "ifExists": "DO_NOTHING", "supersteps": steps}},
        )
    )["createThread"]
    assert made["id"] == tid
    assert made["values"] == {"count": 3}


# --- deleteAssistant(deleteThreads:) -----------------------------------------------------------


async def test_delete_assistant_with_its_threads(gql_client: GraphQLClient, unique: str) -> None:
    DELETE = "mutation($id: ID!, $t: Boolean!) { deleteAssistant(id: $id, deleteThreads: $t) }"
    CREATE = 'mutation($n: String!) { createAssistant(input: {graphId: "steps", name: $n}) { id } }'
    keep_threads = (await gql_client.data(CREATE, {"n": f"{unique}-keep"}))["createAssistant"]["id"]
    drop_threads = (await gql_client.data(CREATE, {"n": f"{unique}-drop"}))["createAssistant"]["id"]
    kept_tid, dropped_tid = await new_thread(gql_client), await new_thread(gql_client)
    await run_and_wait(gql_client, assistantId=keep_threads, threadId=kept_tid, input={"count": 0})
    await run_and_wait(
        gql_client, assistantId=drop_threads, threadId=dropped_tid, input={"count": 0}
    )

    await gql_client.data(DELETE, {"id": keep_threads, "t": False})
    await gql_client.data(DELETE, {"id": drop_threads, "t": True})

    assert (await gql_client.data(NODE, {"id": kept_tid}))["node"]["id"] == kept_tid
    assert (await gql_client.data(NODE, {"id": dropped_tid}))["node"] is None
    assert (await gql_client.data(NODE, {"id": drop_threads}))["node"] is None


# --- checkpointNs ---------------------------------------------------------------------------------


async def test_state_and_history_of_a_subgraph_by_checkpoint_ns(gql_client: GraphQLClient) -> None:
    tid = await new_thread(gql_client)
    await run_and_wait(gql_client, assistantId="subgraph_parent", threadId=tid, input={"value": ""})
    history = (await gql_client.data(HISTORY, {"id": tid}))["thread"]["history"]
    assert {h["checkpoint"]["checkpointNs"] for h in history} == {""}, "the parent's own"
    # The child subgraph checkpoints under `child:<its task id>`.
    child_ns = await _child_namespace(gql_client, tid)
    SUB = """query($id: ID!, $ns: String!) { thread(id: $id) {
      state(checkpointNs: $ns) { values checkpoint { checkpointNs } } } }"""
    sub = (await gql_client.data(SUB, {"id": tid, "ns": child_ns}))["thread"]["state"]
    assert sub["values"] == {"value": "ab"}, sub
    assert sub["checkpoint"]["checkpointNs"] == child_ns
    sub_history = (await gql_client.data(HISTORY, {"id": tid, "ns": child_ns}))["thread"]["history"]
    assert len(sub_history) > 1
    assert {h["checkpoint"]["checkpointNs"] for h in sub_history} == {child_ns}


async def _child_namespace(client: GraphQLClient, thread_id: str) -> str:
    """The `child` subgraph's checkpoint namespace, from its task in the parent's history."""
    body = await client.data(
        """query($id: ID!) { thread(id: $id) { history(limit: 20) { tasks { id name } } } }""",
        {"id": thread_id},
    )
    for state in body["thread"]["history"]:
        for task in state["tasks"]:
            if task["name"] == "child":
                return f"child:{task['id']}"
    raise AssertionError(f"no child task in {body}")


# --- Node -----------------------------------------------------------------------------------------


async def test_node_refetches_every_kind_by_its_id(gql_client: GraphQLClient) -> None:
    tid = await new_thread(gql_client)
    result = await run_and_wait(gql_client, assistantId="steps", threadId=tid, input={"count": 0})
    rid, aid = result["run"]["id"], result["run"]["assistantId"]
    cron = await gql_client.data(
        """mutation { createCron(input: {assistantId: "steps", schedule: "0 0 1 1 *",
          input: {count: 0}}) { id } }"""
    )
    cid = cron["createCron"]["id"]

    kinds = {}
    for oid in (tid, rid, aid, cid):
        node = (await gql_client.data(NODE, {"id": oid}))["node"]
        assert node["id"] == oid
        kinds[node["__typename"]] = node
    assert set(kinds) == {"Thread", "Run", "Assistant", "Cron"}
    assert kinds["Run"]["runStatus"] == "SUCCESS" and kinds["Assistant"]["graphId"] == "steps"

    many = await gql_client.data(
        "query($ids: [ID!]!) { nodes(ids: $ids) { __typename id } }",
        {"ids": [cid, str(uuid.uuid4()), "steps", tid]},
    )
    assert [n and n["__typename"] for n in many["nodes"]] == ["Cron", None, None, "Thread"]
    await gql_client.data("mutation($id: ID!) { deleteCron(id: $id) }", {"id": cid})


async def test_every_kind_implements_node(gql_client: GraphQLClient) -> None:
    body: dict[str, Any] = await gql_client.data(
        '{ __type(name: "Node") { kind possibleTypes { name } } }'
    )
    assert body["__type"]["kind"] == "INTERFACE"
    names = {t["name"] for t in body["__type"]["possibleTypes"]}
    assert names == {"Assistant", "Thread", "Run", "Cron"}


# --- http.configurable_headers --------------------------------------------------------------------


async def test_headers_named_in_langgraph_json_reach_the_runs_config_over_graphql(
    engines: EngineUrls, redis_prefix: str, tmp_path: Path
) -> None:
    from app.db.migrate import upgrade

    graphs = ROOT / "tests" / "fixtures" / "graphs"
    config = tmp_path / "langgraph.json"
    config.write_text(
        json.dumps(
            {
                "dependencies": [str(graphs)],
                "graphs": {"factory": f"{graphs}/agents/factory.py:make_graph"},
                "http": {
                    "configurable_headers": {"includes": ["prefix", "x-*"], "excludes": ["x-no-*"]}
                },
            }
        )
    )
    headers = {
        "prefix": "hey:",  # the factory graph builds its reply from configurable.prefix
        "x-team": "blue",
        "x-no-thanks": "hidden",
        "x-service-key": "secret",
        "x-request-id": "req-1",
    }
    run_and_wait_doc = """mutation($input: RunInput!) { runAndWait(input: $input) {
      values run { kwargs } } }"""
    async with scratch_database(engines.database_uri, prefix="lgql_gql_headers") as url:
        await upgrade(url)
        server = await start_server(
            make_settings(f"{redis_prefix}_gql_headers", config=config),
            database_uri=url,
            redis_uri=engines.redis_uri,
        )
        client = GraphQLClient(server.graphql_url, headers=headers)
        try:
            tid = await new_thread(client)
            answer = (
                await client.data(
                    run_and_wait_doc,
                    {"input": {"assistantId": "factory", "threadId": tid, "input": {"value": "v"}}},
                )
            )["runAndWait"]
            assert answer["values"] == {"value": "v", "reply": "hey:v"}
            configurable = answer["run"]["kwargs"]["config"]["configurable"]
            assert configurable["x-team"] == "blue"
            assert configurable["langgraph_request_id"] == "req-1"
            assert "x-no-thanks" not in configurable and "x-service-key" not in configurable

            # Over a WebSocket, the handshake's headers.
            transport = WebsocketsTransport(
                url=server.graphql_url.replace("http", "ws"), headers={"prefix": "ws:"}
            )
            async with Client(transport=transport) as session:
                events = [
                    e["runStream"]
                    async for e in session.subscribe(
                        gql(
                            """subscription($input: RunInput!) {
                              runStream(input: $input, streamMode: [VALUES]) { event data } }"""
                        ),
                        variable_values={
                            "input": {"assistantId": "factory", "input": {"value": "w"}}
                        },
                    )
                ]
            values = [e["data"] for e in events if e["event"] == "values"]
            assert values[-1] == {"value": "w", "reply": "ws:w"}, events
        finally:
            await client.close()
            await server.stop()


# --- threadStream modes -----------------------------------------------------------------------

THREAD_STREAM = """subscription($id: ID!, $modes: [ThreadStreamMode!]) {
  threadStream(threadId: $id, threadModes: $modes) { id runId event data } }"""


async def thread_events(
    client: GraphQLClient, thread_id: str, modes: list[str] | None, until: str, count: int = 1
) -> list[dict[str, Any]]:
    """The thread's events over SSE, from its start, until `count` events named `until` came
    (the thread stream never ends by itself)."""
    variables: dict[str, Any] = {"id": thread_id, "modes": modes}
    events: list[dict[str, Any]] = []
    async with client.http.stream(
        "POST",
        client.url,
        json={"query": THREAD_STREAM, "variables": variables},
        headers={"accept": "text/event-stream"},
        timeout=120,
    ) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data:") or not line[5:].strip():
                continue
            payload = json.loads(line[5:])
            assert not payload.get("errors"), payload
            event = payload["data"]["threadStream"]
            if event["event"] == "warning":
                continue
            events.append(event)
            if sum(e["event"] == until for e in events) >= count:
                return events
    raise AssertionError(f"the stream ended: {events}")


async def test_update_thread_state_publishes_a_state_update(gql_client: GraphQLClient) -> None:
    tid = await new_thread(gql_client, graphId="steps")
    await gql_client.data(
        """mutation($id: ID!) { updateThreadState(threadId: $id, values: {count: 41},
          asNode: "step_1") { checkpoint { checkpointId } } }""",
        {"id": tid},
    )
    await run_and_wait(gql_client, assistantId="steps", threadId=tid)
    events = await thread_events(gql_client, tid, ["STATE_UPDATE"], "state_update")
    assert [e["event"] for e in events] == ["state_update"], "only state updates"
    update = events[0]
    assert update["runId"] == ""
    assert update["data"]["thread_id"] == tid
    assert update["data"]["state"]["values"] == {"count": 41}
    assert update["data"]["state"]["checkpoint"]["checkpoint_id"]


async def test_thread_stream_lifecycle_and_run_modes(gql_client: GraphQLClient) -> None:
    tid = await new_thread(gql_client, graphId="steps")
    await gql_client.data(
        """mutation($id: ID!) { updateThreadState(threadId: $id, values: {count: 1},
          asNode: "step_1") { checkpoint { checkpointId } } }""",
        {"id": tid},
    )
    first = await run_and_wait(gql_client, assistantId="steps", threadId=tid)
    second = await run_and_wait(gql_client, assistantId="steps", threadId=tid)

    lifecycle = await thread_events(gql_client, tid, ["LIFECYCLE"], "end", count=2)
    assert [(e["event"], e["runId"]) for e in lifecycle] == [
        ("metadata", first["run"]["id"]),
        ("end", first["run"]["id"]),
        ("metadata", second["run"]["id"]),
        ("end", second["run"]["id"]),
    ]

    # The default: every run event, and no state update.
    runs = await thread_events(gql_client, tid, None, "end", count=2)
    names = [e["event"] for e in runs]
    assert "state_update" not in names and "values" in names

    both = await thread_events(gql_client, tid, ["LIFECYCLE", "STATE_UPDATE"], "end", count=2)
    assert [e["event"] for e in both] == ["state_update", "metadata", "end", "metadata", "end"]


async def test_rest_thread_stream_shows_state_updates_when_asked(
    gql_client: GraphQLClient, live_server: LiveServer
) -> None:
    tid = await new_thread(gql_client, graphId="steps")
    await gql_client.data(
        """mutation($id: ID!) { updateThreadState(threadId: $id, values: {count: 7},
          asNode: "step_1") { checkpoint { checkpointId } } }""",
        {"id": tid},
    )
    seen: list[tuple[str, Any]] = []
    async with (
        httpx.AsyncClient(timeout=60) as http,
        http.stream(
            "GET",
            f"{live_server.url}/threads/{tid}/stream",
            params={"stream_modes": "state_update"},
        ) as response,
    ):
        assert response.status_code == 200
        name = ""
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:") and name:
                seen.append((name, json.loads(line[5:])))
                break
    assert seen[0][0] == "state_update"
    assert seen[0][1]["state"]["values"] == {"count": 7}


async def test_crons_page_by_nullable_fields(gql_client: GraphQLClient, unique: str) -> None:
    """A cursor on a cron with no thread or no end time still leads to the next page."""
    marker = {"nulls": unique}
    tid = await new_thread(gql_client)
    made: dict[str, str] = {}
    for name, extra in (
        ("stateless_open", {}),
        ("thread_2030", {"threadId": tid, "endTime": "2030-01-01T00:00:00+00:00"}),
        ("stateless_2040", {"endTime": "2040-01-01T00:00:00+00:00"}),
    ):
        body = await gql_client.data(
            """mutation($input: CreateCronInput!) { createCron(input: $input) { id } }""",
            {
                "input": {
                    "assistantId": "steps",
                    "schedule": "0 0 1 1 *",
                    "input": {"count": 0},
                    "metadata": marker,
                    **extra,
                }
            },
        )
        made[name] = body["createCron"]["id"]

    async def pages(sort_by: str, order: str) -> list[str]:
        seen: list[str] = []
        after = None
        while True:
            body = await gql_client.data(
                """query($m: JSON, $s: CronSortBy!, $o: SortOrder!, $after: String) {
                  crons(filter: {metadata: $m}, sortBy: $s, sortOrder: $o, first: 1, after: $after) {
                    edges { node { id } } pageInfo { hasNextPage endCursor } } }""",
                {"m": marker, "s": sort_by, "o": order, "after": after},
            )
            seen += [e["node"]["id"] for e in body["crons"]["edges"]]
            if not body["crons"]["pageInfo"]["hasNextPage"]:
                return seen
            after = body["crons"]["pageInfo"]["endCursor"]

    names = {v: k for k, v in made.items()}
    by_end = [names[i] for i in await pages("END_TIME", "ASC")]
    assert by_end == ["thread_2030", "stateless_2040", "stateless_open"]
    by_end_desc = [names[i] for i in await pages("END_TIME", "DESC")]
    assert by_end_desc == list(reversed(by_end))
    by_thread = [names[i] for i in await pages("THREAD_ID", "ASC")]
    assert by_thread[0] == "thread_2030" and set(by_thread) == set(made)
    by_thread_desc = [names[i] for i in await pages("THREAD_ID", "DESC")]
    assert by_thread_desc[-1] == "thread_2030" and len(by_thread_desc) == 3
    for cid in made.values():
        await gql_client.data("mutation($id: ID!) { deleteCron(id: $id) }", {"id": cid})


async def test_every_sort_pages_with_cursors(gql_client: GraphQLClient, unique: str) -> None:
    """The next page after a cursor, for each new sort field (a UUID cursor once went to
    Postgres as text)."""
    for _ in range(2):
        await new_thread(gql_client, metadata={"pages": unique})
        await gql_client.data(
            'mutation($n: String!) { createAssistant(input: {graphId: "echo", name: $n}) { id } }',
            {"n": f"{unique}-{uuid.uuid4().hex[:4]}"},
        )
    cases: list[tuple[str, str, list[str], dict[str, Any]]] = [
        ("assistants", "Assistant", ["ASSISTANT_ID", "NAME", "GRAPH_ID"], {"name": unique}),
        ("threads", "Thread", ["THREAD_ID", "STATUS"], {"metadata": {"pages": unique}}),
        ("crons", "Cron", ["CRON_ID", "ASSISTANT_ID", "THREAD_ID", "END_TIME"], {}),
    ]
    for field, kind, sorts, flt in cases:
        for sort in sorts:
            doc = f"""query($f: {kind}Filter, $s: {kind}SortBy!, $after: String) {{
              {field}(filter: $f, sortBy: $s, first: 1, after: $after) {{
                edges {{ node {{ id }} }} pageInfo {{ endCursor }} }} }}"""
            first = await gql_client.execute(doc, {"f": flt, "s": sort})
            assert "errors" not in first, (field, sort, first)
            cursor = first["data"][field]["pageInfo"]["endCursor"]
            if cursor is None:
                continue  # nothing to page over (no crons)
            second = await gql_client.execute(doc, {"f": flt, "s": sort, "after": cursor})
            assert "errors" not in second, (field, sort, second)

"""Two users and the shipped example auth file (`examples/auth.py`: owners stamped on create,
owner filters on everything else): user B can neither see, count, search, read the state of,
stream, update, cancel, copy, delete nor cron user A's threads, runs, assistants or store
namespaces, through queries, mutations and subscriptions, nested fields and totalCount included.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from gql import Client, gql
from gql.transport.exceptions import TransportConnectionFailed, TransportQueryError
from gql.transport.websockets import WebsocketsTransport
from websockets.exceptions import ConnectionClosed

from tests.conftest import (
    ALICE,
    AUTH_CONFIG,
    BOB,
    EngineUrls,
    GraphQLClient,
    LiveServer,
    server_of_its_own,
)

ADMIN = {"Authorization": "Bearer admin-token"}

HI = {"messages": [{"role": "user", "content": "hi"}]}


@dataclass
class AliceWorld:
    """What Alice owns, made through the API as Alice."""

    thread_id: str
    run_id: str
    busy_thread_id: str
    busy_run_id: str
    assistant_id: str
    cron_id: str


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def auth_server(engines: EngineUrls, redis_prefix: str) -> AsyncIterator[LiveServer]:
    async with server_of_its_own(engines, redis_prefix, "auth", AUTH_CONFIG) as server:
        yield server


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def alice(auth_server: LiveServer) -> AsyncIterator[GraphQLClient]:
    client = GraphQLClient(auth_server.graphql_url, headers=ALICE)
    yield client
    await client.close()


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def bob(auth_server: LiveServer) -> AsyncIterator[GraphQLClient]:
    client = GraphQLClient(auth_server.graphql_url, headers=BOB)
    yield client
    await client.close()


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def world(alice: GraphQLClient) -> AliceWorld:
    thread = (
        await alice.data(
            'mutation { createThread(input: {graphId: "echo", metadata: {topic: "a"}}) '
            "{ id metadata } }"
        )
    )["createThread"]
    assert thread["metadata"]["owner"] == "alice"
    run = (
        await alice.data(
            "mutation($input: RunInput!) { runAndWait(input: $input) { run { id status } } }",
            {"input": {"assistantId": "echo", "threadId": thread["id"], "input": HI}},
        )
    )["runAndWait"]["run"]
    assert run["status"] == "SUCCESS"
    busy_thread = (await alice.data("mutation { createThread { id } }"))["createThread"]["id"]
    busy_run = (
        await alice.data(
            "mutation($input: RunInput!) { createRun(input: $input) { id } }",
            {"input": {"assistantId": "slow", "threadId": busy_thread, "input": {"seconds": 60}}},
        )
    )["createRun"]["id"]
    assistant = (
        await alice.data('mutation { createAssistant(input: {graphId: "echo"}) { id metadata } }')
    )["createAssistant"]
    assert assistant["metadata"]["owner"] == "alice"
    cron = (
        await alice.data(
            "mutation($input: CreateCronInput!) { createCron(input: $input) { id metadata } }",
            {
                "input": {
                    "assistantId": "echo",
                    "threadId": thread["id"],
                    "schedule": "0 0 1 1 *",
                    "input": HI,
                }
            },
        )
    )["createCron"]
    assert cron["metadata"]["owner"] == "alice"
    item = (
        await alice.data(
            'mutation { putStoreItem(input: {namespace: ["notes"], key: "k", value: {v: 1}}) '
            "{ namespace } }"
        )
    )["putStoreItem"]
    assert item["namespace"] == ["alice", "notes"]
    return AliceWorld(thread["id"], run["id"], busy_thread, busy_run, assistant["id"], cron["id"])


async def _not_found(client: GraphQLClient, query: str, variables: dict[str, Any]) -> None:
    body = await client.execute(query, variables)
    assert body.get("errors"), body
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND", body


# -- authentication --------------------------------------------------------------------------


async def test_requests_without_valid_credentials_are_unauthenticated(
    auth_server: LiveServer,
) -> None:
    async with httpx.AsyncClient() as http:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}):
            response = await http.post(
                auth_server.graphql_url,
                json={"query": "{ serverInfo { version } }"},
                headers=headers,
            )
            assert response.status_code == 401
            assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        # Health checks and the GraphiQL page carry no credentials.
        assert (await http.get(f"{auth_server.url}/ok")).status_code == 200
        page = await http.get(auth_server.graphql_url, headers={"Accept": "text/html"})
        assert page.status_code == 200


async def test_what_a_user_creates_is_stamped_with_its_owner(
    alice: GraphQLClient, world: AliceWorld
) -> None:
    got = await alice.data(
        "query($id: ID!) { thread(id: $id) { metadata } }", {"id": world.thread_id}
    )
    assert got["thread"]["metadata"]["owner"] == "alice"
    assert got["thread"]["metadata"]["topic"] == "a"


# -- threads ---------------------------------------------------------------------------------


async def test_b_cannot_see_count_or_search_a_threads(
    alice: GraphQLClient, bob: GraphQLClient, world: AliceWorld
) -> None:
    await _not_found(bob, "query($id: ID!) { thread(id: $id) { id } }", {"id": world.thread_id})
    await _not_found(
        bob, "query($id: ID!) { thread(id: $id) { state { values } } }", {"id": world.thread_id}
    )
    lists = "{ threads(first: 100) { totalCount nodes { id metadata } } }"
    assert (await bob.data(lists))["threads"] == {"totalCount": 0, "nodes": []}
    searched = await bob.data(
        'query { threads(filter: {metadata: {owner: "alice"}}) { totalCount nodes { id } } }'
    )
    assert searched["threads"] == {"totalCount": 0, "nodes": []}
    mine = (await alice.data(lists))["threads"]
    assert mine["totalCount"] >= 2
    assert all(t["metadata"]["owner"] == "alice" for t in mine["nodes"])


async def test_b_cannot_change_copy_or_delete_a_threads(
    alice: GraphQLClient, bob: GraphQLClient, world: AliceWorld
) -> None:
    tid = {"id": world.thread_id}
    await _not_found(
        bob,
        "mutation($id: ID!) { updateThread(id: $id, input: {metadata: {x: 1}}) { id } }",
        tid,
    )
    await _not_found(
        bob,
        "mutation($id: ID!) { updateThreadState(threadId: $id, values: {messages: []}) "
        "{ checkpoint { checkpointId } } }",
        tid,
    )
    await _not_found(bob, "mutation($id: ID!) { copyThread(id: $id) { id } }", tid)
    await _not_found(bob, "mutation($id: ID!) { deleteThread(id: $id) }", tid)
    still = await alice.data("query($id: ID!) { thread(id: $id) { metadata } }", tid)
    assert "x" not in still["thread"]["metadata"]


async def test_a_copy_belongs_to_whoever_copied(alice: GraphQLClient, world: AliceWorld) -> None:
    copied = await alice.data(
        "mutation($id: ID!) { copyThread(id: $id) { metadata } }", {"id": world.thread_id}
    )
    assert copied["copyThread"]["metadata"]["owner"] == "alice"


# -- runs ------------------------------------------------------------------------------------


async def test_b_cannot_see_or_count_a_runs(
    alice: GraphQLClient, bob: GraphQLClient, world: AliceWorld
) -> None:
    await _not_found(bob, "query($id: ID!) { run(id: $id) { id } }", {"id": world.run_id})
    by_thread = await bob.data(
        "query($t: ID!) { runs(threadId: $t) { totalCount nodes { id } } }",
        {"t": world.thread_id},
    )
    assert by_thread["runs"] == {"totalCount": 0, "nodes": []}
    everything = await bob.data("{ runs(first: 100) { totalCount nodes { id } } }")
    assert everything["runs"] == {"totalCount": 0, "nodes": []}
    assert (await alice.data("{ runs(first: 100) { totalCount } }"))["runs"]["totalCount"] >= 2


async def test_b_cannot_run_cancel_or_delete_on_a_threads(
    alice: GraphQLClient, bob: GraphQLClient, world: AliceWorld
) -> None:
    await _not_found(
        bob,
        "mutation($input: RunInput!) { createRun(input: $input) { id } }",
        {"input": {"assistantId": "echo", "threadId": world.thread_id, "input": HI}},
    )
    await _not_found(
        bob, "mutation($id: ID!) { cancelRun(id: $id) { id } }", {"id": world.busy_run_id}
    )
    await _not_found(bob, "mutation($id: ID!) { deleteRun(id: $id) }", {"id": world.run_id})
    status = await alice.data(
        "query($id: ID!) { run(id: $id) { status } }", {"id": world.busy_run_id}
    )
    assert status["run"]["status"] in ("PENDING", "RUNNING")


async def test_nested_fields_show_only_what_b_may_see(
    bob: GraphQLClient, world: AliceWorld
) -> None:
    thread = (await bob.data("mutation { createThread { id } }"))["createThread"]["id"]
    await bob.data(
        "mutation($input: RunInput!) { runAndWait(input: $input) { run { id } } }",
        {"input": {"assistantId": "echo", "threadId": thread, "input": HI}},
    )
    nested = await bob.data(
        "{ threads { totalCount nodes { id runs { totalCount nodes { thread { id } assistant { id } } } } } }"
    )
    assert nested["threads"]["totalCount"] == 1
    (node,) = nested["threads"]["nodes"]
    assert node["id"] == thread and node["runs"]["totalCount"] == 1
    assert node["runs"]["nodes"][0]["thread"]["id"] == thread
    # The graph's own assistant is readable by everyone in the example auth file.
    assert node["runs"]["nodes"][0]["assistant"] is not None


# -- assistants ------------------------------------------------------------------------------


async def test_b_cannot_see_or_change_a_assistants(
    alice: GraphQLClient, bob: GraphQLClient, world: AliceWorld
) -> None:
    aid = {"id": world.assistant_id}
    await _not_found(bob, "query($id: ID!) { assistant(id: $id) { id } }", aid)
    await _not_found(
        bob, 'mutation($id: ID!) { updateAssistant(id: $id, input: {name: "x"}) { id } }', aid
    )
    listed = await bob.data("{ assistants(first: 100) { totalCount nodes { id metadata } } }")
    ids = {a["id"] for a in listed["assistants"]["nodes"]}
    assert world.assistant_id not in ids
    assert all(a["metadata"].get("created_by") == "system" for a in listed["assistants"]["nodes"])
    assert listed["assistants"]["totalCount"] == len(ids)
    seen = await alice.data("query($id: ID!) { assistant(id: $id) { name } }", aid)
    assert seen["assistant"]["name"] != "x"


async def test_a_handler_that_refuses_is_forbidden(
    alice: GraphQLClient, auth_server: LiveServer, world: AliceWorld
) -> None:
    code = await alice.error_code(
        "mutation($id: ID!) { deleteAssistant(id: $id) }", {"id": world.assistant_id}
    )
    assert code == "FORBIDDEN"
    admin = GraphQLClient(auth_server.graphql_url, headers=ADMIN)
    try:
        created = await alice.data('mutation { createAssistant(input: {graphId: "echo"}) { id } }')
        deleted = await admin.data(
            "mutation($id: ID!) { deleteAssistant(id: $id) }",
            {"id": created["createAssistant"]["id"]},
        )
        assert deleted["deleteAssistant"] == created["createAssistant"]["id"]
    finally:
        await admin.close()


# -- crons -----------------------------------------------------------------------------------


async def test_b_cannot_see_change_or_make_crons_on_a_threads(
    alice: GraphQLClient, bob: GraphQLClient, world: AliceWorld
) -> None:
    cid = {"id": world.cron_id}
    await _not_found(bob, "query($id: ID!) { cron(id: $id) { id } }", cid)
    await _not_found(
        bob, "mutation($id: ID!) { updateCron(id: $id, input: {enabled: false}) { id } }", cid
    )
    await _not_found(bob, "mutation($id: ID!) { deleteCron(id: $id) }", cid)
    await _not_found(
        bob,
        "mutation($input: CreateCronInput!) { createCron(input: $input) { id } }",
        {
            "input": {
                "assistantId": "echo",
                "threadId": world.thread_id,
                "schedule": "0 0 1 1 *",
            }
        },
    )
    assert (await bob.data("{ crons { totalCount nodes { id } } }"))["crons"] == {
        "totalCount": 0,
        "nodes": [],
    }
    mine = await alice.data("query($id: ID!) { cron(id: $id) { enabled } }", cid)
    assert mine["cron"]["enabled"] is True


# -- store -----------------------------------------------------------------------------------


async def test_b_cannot_read_search_list_or_delete_a_store_items(
    alice: GraphQLClient, bob: GraphQLClient, world: AliceWorld
) -> None:
    get = 'query($ns: [String!]!) { storeItem(namespace: $ns, key: "k") { value } }'
    assert (await bob.data(get, {"ns": ["notes"]}))["storeItem"] is None
    assert (await bob.data(get, {"ns": ["alice", "notes"]}))["storeItem"] is None
    assert (await bob.data("{ storeSearch(namespacePrefix: []) { key namespace } }"))[
        "storeSearch"
    ] == []
    assert (await bob.data("{ storeNamespaces }"))["storeNamespaces"] == []
    deleted = await bob.data('mutation { deleteStoreItem(namespace: ["notes"], key: "k") }')
    assert deleted["deleteStoreItem"] is False
    assert (await alice.data(get, {"ns": ["notes"]}))["storeItem"] == {"value": {"v": 1}}
    assert (await alice.data("{ storeNamespaces }"))["storeNamespaces"] == [["alice", "notes"]]


async def test_a_graph_using_the_store_writes_under_its_user_only_through_the_api(
    bob: GraphQLClient, world: AliceWorld
) -> None:
    # Bob's own items are his, under his own namespace.
    await bob.data(
        'mutation { putStoreItem(input: {namespace: ["notes"], key: "b", value: {v: 2}}) { key } }'
    )
    assert (await bob.data("{ storeNamespaces }"))["storeNamespaces"] == [["bob", "notes"]]


# -- subscriptions ---------------------------------------------------------------------------


def _ws(server: LiveServer, payload: dict[str, Any] | None) -> Client:
    url = server.graphql_url.replace("http://", "ws://")
    return Client(
        transport=WebsocketsTransport(
            url=url,
            subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
            init_payload=payload or {},
        )
    )


JOIN = gql("subscription($id: ID!) { joinRunStream(runId: $id) { event } }")
THREAD = gql("subscription($id: ID!) { threadStream(threadId: $id) { event } }")


async def test_b_cannot_stream_a_runs_or_threads(
    auth_server: LiveServer, world: AliceWorld
) -> None:
    async with _ws(auth_server, dict(BOB)) as session:
        for document, variables in (
            (JOIN, {"id": world.run_id}),
            (THREAD, {"id": world.thread_id}),
        ):
            document.variable_values = variables
            with pytest.raises(TransportQueryError) as refused:
                async for _ in session.subscribe(document):
                    raise AssertionError("Bob received an event of Alice's")
            assert refused.value.errors
            assert refused.value.errors[0]["extensions"]["code"] == "NOT_FOUND"


async def test_a_streams_her_own_run_with_credentials_in_connection_init(
    auth_server: LiveServer, world: AliceWorld
) -> None:
    async with _ws(auth_server, dict(ALICE)) as session:
        JOIN.variable_values = {"id": world.run_id}
        events = [e["joinRunStream"]["event"] async for e in session.subscribe(JOIN)]
    assert events[-1] == "end"


async def test_websockets_without_credentials_are_refused(auth_server: LiveServer) -> None:
    for payload in (None, {"Authorization": "Bearer nope"}):
        with pytest.raises(TransportConnectionFailed) as refused:
            async with _ws(auth_server, payload) as session:
                await session.execute(gql("{ serverInfo { version } }"))
        closed = refused.value.__cause__
        assert isinstance(closed, ConnectionClosed) and closed.rcvd is not None
        assert closed.rcvd.code == 4403  # graphql-transport-ws: Forbidden


async def test_subscriptions_over_http_are_authenticated_too(
    auth_server: LiveServer, world: AliceWorld
) -> None:
    body = {
        "query": "subscription($id: ID!) { joinRunStream(runId: $id) { event } }",
        "variables": {"id": world.run_id},
    }
    async with httpx.AsyncClient(timeout=30) as http:
        refused = await http.post(
            auth_server.graphql_url, json=body, headers={"Accept": "text/event-stream", **BOB}
        )
        assert "NOT_FOUND" in refused.text
        assert '"event"' not in refused.text  # no event of Alice's run reached Bob
        anonymous = await http.post(
            auth_server.graphql_url, json=body, headers={"Accept": "text/event-stream"}
        )
        assert anonymous.status_code == 401


async def test_a_run_knows_the_user_it_runs_for(alice: GraphQLClient) -> None:
    """As on LangGraph Server, a run's `config.configurable` names its user."""
    done = await alice.data(
        "mutation($input: RunInput!) { runAndWait(input: $input) { values } }",
        {"input": {"assistantId": "whoami", "input": {}}},
    )
    assert done["runAndWait"]["values"] == {"user_id": "alice", "user": "alice"}


async def test_b_cannot_start_a_streamed_run_on_a_thread(
    auth_server: LiveServer, alice: GraphQLClient, world: AliceWorld
) -> None:
    stream = gql("subscription($input: RunInput!) { runStream(input: $input) { event } }")
    stream.variable_values = {
        "input": {"assistantId": "echo", "threadId": world.thread_id, "input": HI}
    }
    before = await alice.data(
        "query($t: ID!) { runs(threadId: $t) { totalCount } }", {"t": world.thread_id}
    )
    async with _ws(auth_server, dict(BOB)) as session:
        with pytest.raises(TransportQueryError) as refused:
            async for _ in session.subscribe(stream):
                raise AssertionError("Bob started a run on Alice's thread")
    assert refused.value.errors and refused.value.errors[0]["extensions"]["code"] == "NOT_FOUND"
    after = await alice.data(
        "query($t: ID!) { runs(threadId: $t) { totalCount } }", {"t": world.thread_id}
    )
    assert after == before


async def test_the_legacy_websocket_protocol_authenticates_too(
    auth_server: LiveServer, world: AliceWorld
) -> None:
    url = auth_server.graphql_url.replace("http://", "ws://")
    JOIN.variable_values = {"id": world.run_id}
    for payload, allowed in ((dict(ALICE), True), (dict(BOB), False)):
        transport = WebsocketsTransport(
            url=url, subprotocols=[WebsocketsTransport.APOLLO_SUBPROTOCOL], init_payload=payload
        )
        async with Client(transport=transport) as session:
            if allowed:
                events = [e["joinRunStream"]["event"] async for e in session.subscribe(JOIN)]
                assert events[-1] == "end"
            else:
                with pytest.raises(TransportQueryError) as refused:
                    async for _ in session.subscribe(JOIN):
                        raise AssertionError("Bob received an event of Alice's")
                assert refused.value.errors[0]["extensions"]["code"] == "NOT_FOUND"


async def test_a_query_over_the_legacy_protocol_is_a_clear_client_error(
    auth_server: LiveServer,
) -> None:
    url = auth_server.graphql_url.replace("http://", "ws://")
    transport = WebsocketsTransport(
        url=url, subprotocols=[WebsocketsTransport.APOLLO_SUBPROTOCOL], init_payload=dict(ALICE)
    )
    async with Client(transport=transport) as session:
        with pytest.raises(TransportQueryError) as refused:
            await session.execute(gql("{ serverInfo { version } }"))
    assert refused.value.errors[0]["extensions"]["code"] == "BAD_REQUEST"
    assert "graphql-transport-ws" in refused.value.errors[0]["message"]

"""The `langgraph.json` auth handlers (the shipped `examples/auth.py`: owners stamped on create,
owner filters on everything else) guard LangGraph's REST API as they guard GraphQL: the same
users, the same `(resource, action)` pairs, the same two-user isolation, across both transports.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

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


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def auth_server(engines: EngineUrls, redis_prefix: str) -> AsyncIterator[LiveServer]:
    async with server_of_its_own(engines, redis_prefix, "rest_auth", AUTH_CONFIG) as server:
        yield server


def _sdk(server: LiveServer, headers: dict[str, str]) -> LangGraphClient:
    return get_client(url=server.url, headers=headers)


@pytest_asyncio.fixture(loop_scope="session")
async def alice(auth_server: LiveServer) -> AsyncIterator[LangGraphClient]:
    client = _sdk(auth_server, ALICE)
    yield client
    await client.aclose()


@pytest_asyncio.fixture(loop_scope="session")
async def bob(auth_server: LiveServer) -> AsyncIterator[LangGraphClient]:
    client = _sdk(auth_server, BOB)
    yield client
    await client.aclose()


@pytest_asyncio.fixture(loop_scope="session")
async def bob_http(auth_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=auth_server.url, headers=BOB, timeout=30) as c:
        yield c


@pytest_asyncio.fixture(loop_scope="session")
async def alice_gql(auth_server: LiveServer) -> AsyncIterator[GraphQLClient]:
    client = GraphQLClient(auth_server.graphql_url, headers=ALICE)
    yield client
    await client.close()


@pytest_asyncio.fixture(loop_scope="session")
async def bob_gql(auth_server: LiveServer) -> AsyncIterator[GraphQLClient]:
    client = GraphQLClient(auth_server.graphql_url, headers=BOB)
    yield client
    await client.close()


async def status_of(call: object) -> int:
    with pytest.raises(httpx.HTTPStatusError) as failed:
        await call  # type: ignore[misc]
    return failed.value.response.status_code


async def test_no_credentials_is_401_with_detail(auth_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=auth_server.url, timeout=30) as anonymous:
        response = await anonymous.post("/threads/search", json={})
        assert response.status_code == 401
        assert response.json()["detail"] == "Missing bearer token"
        assert response.headers["www-authenticate"] == "Bearer"
        bad = await anonymous.get("/assistants/echo", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401
        assert bad.json()["detail"] == "Invalid token"


async def test_threads_are_their_owners(
    alice: LangGraphClient, bob: LangGraphClient, bob_http: httpx.AsyncClient
) -> None:
    thread = await alice.threads.create(metadata={"topic": "a"})
    assert thread["metadata"] == {"topic": "a", "owner": "alice"}
    tid = thread["thread_id"]
    assert (await alice.threads.get(tid))["thread_id"] == tid
    # To Bob, Alice's thread does not exist, whatever he does with it.
    assert await status_of(bob.threads.get(tid)) == 404
    assert await status_of(bob.threads.update(tid, metadata={"x": 1})) == 404
    assert await status_of(bob.threads.delete(tid)) == 404
    assert await status_of(bob.threads.copy(tid)) == 404
    assert await status_of(bob.threads.get_state(tid)) == 404
    assert await status_of(bob.threads.get_history(tid)) == 404
    assert await status_of(bob.threads.update_state(tid, {"messages": []})) == 404
    assert (await bob_http.get(f"/threads/{tid}/history")).status_code == 404
    assert tid not in {t["thread_id"] for t in await bob.threads.search(limit=100)}
    assert await bob.threads.count(metadata={"topic": "a"}) == 0
    assert await bob.threads.prune([tid]) == {"pruned_count": 0}
    assert (await alice.threads.get(tid))["metadata"]["topic"] == "a"
    mine = await bob.threads.create(metadata={"topic": "a"})
    assert [t["thread_id"] for t in await bob.threads.search(metadata={"topic": "a"})] == [
        mine["thread_id"]
    ]


async def test_assistants_are_their_owners(alice: LangGraphClient, bob: LangGraphClient) -> None:
    made = await alice.assistants.create("echo", name="alice's")
    assert made["metadata"]["owner"] == "alice"
    aid = made["assistant_id"]
    assert await status_of(bob.assistants.get(aid)) == 404
    assert await status_of(bob.assistants.update(aid, name="taken")) == 404
    assert await status_of(bob.assistants.get_graph(aid)) == 404
    assert await status_of(bob.assistants.get_versions(aid)) == 404
    assert aid not in {a["assistant_id"] for a in await bob.assistants.search(limit=100)}
    # The graphs' own assistants are everyone's to read.
    assert (await bob.assistants.get("echo"))["graph_id"] == "echo"
    # Only admins delete assistants: the handler's refusal is a 403.
    assert await status_of(alice.assistants.delete(aid)) == 403


async def test_crons_are_their_owners(alice: LangGraphClient, bob: LangGraphClient) -> None:
    cron = await alice.crons.create("echo", schedule="0 3 * * *")
    assert cron["metadata"]["owner"] == "alice"
    assert cron["user_id"] == "alice"
    assert cron["cron_id"] not in {c["cron_id"] for c in await bob.crons.search(limit=100)}
    assert await status_of(bob.crons.update(cron["cron_id"], enabled=False)) == 404
    assert await status_of(bob.crons.delete(cron["cron_id"])) == 404
    thread = await alice.threads.create()
    refused = bob.crons.create_for_thread(thread["thread_id"], "echo", schedule="0 3 * * *")
    assert await status_of(refused) == 404


async def test_store_namespaces_are_per_user(alice: LangGraphClient, bob: LangGraphClient) -> None:
    await alice.store.put_item(["notes"], "k", {"text": "alice's"})
    # The handler puts every item under its user's namespace.
    assert (await alice.store.get_item(["notes"], "k"))["namespace"] == ["alice", "notes"]
    assert await bob.store.get_item(["notes"], "k") is None
    assert await bob.store.get_item(["alice", "notes"], "k") is None
    assert (await bob.store.search_items(["notes"]))["items"] == []
    listed = await bob.store.list_namespaces()
    assert all(ns[0] == "bob" for ns in listed["namespaces"])


async def test_graphql_and_rest_hold_the_same_lines(
    alice: LangGraphClient,
    bob: LangGraphClient,
    alice_gql: GraphQLClient,
    bob_gql: GraphQLClient,
) -> None:
    over_rest = await alice.threads.create()
    query = "query($id: ID!) { thread(id: $id) { id metadata } }"
    got = await alice_gql.data(query, {"id": over_rest["thread_id"]})
    assert got["thread"]["metadata"]["owner"] == "alice"
    assert await bob_gql.error_code(query, {"id": over_rest["thread_id"]}) == "NOT_FOUND"
    over_gql = (await alice_gql.data("mutation { createThread { id } }"))["createThread"]["id"]
    assert (await alice.threads.get(over_gql))["metadata"]["owner"] == "alice"
    assert await status_of(bob.threads.get(over_gql)) == 404

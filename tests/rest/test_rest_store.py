"""The store over LangGraph's REST API, through `langgraph_sdk` and httpx."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from tests.conftest import (
    ROOT,
    EngineUrls,
    GraphQLClient,
    LiveServer,
    make_settings,
    scratch_database,
    start_server,
)


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


async def test_put_get_delete(
    client: LangGraphClient, http: httpx.AsyncClient, unique: str
) -> None:
    ns = ["rest", unique]
    await client.store.put_item(ns, "k1", {"text": "hello", "n": 1})
    item = await client.store.get_item(ns, "k1")
    assert item is not None
    assert item["namespace"] == ns
    assert item["key"] == "k1"
    assert item["value"] == {"text": "hello", "n": 1}
    assert item["created_at"] and item["updated_at"]
    raw = await http.get("/store/items", params={"namespace": f"rest.{unique}", "key": "k1"})
    assert raw.status_code == 200 and raw.json()["value"]["n"] == 1
    put = await http.put("/store/items", json={"namespace": ns, "key": "k1", "value": {"n": 2}})
    assert put.status_code == 204
    assert (await client.store.get_item(ns, "k1"))["value"] == {"n": 2}
    await client.store.delete_item(ns, "k1")
    missing = await http.get("/store/items", params={"namespace": f"rest.{unique}", "key": "k1"})
    assert missing.status_code == 200 and missing.json() is None
    deleted = await http.request("DELETE", "/store/items", json={"namespace": ns, "key": "k1"})
    assert deleted.status_code == 204


async def test_search_and_filters(client: LangGraphClient, unique: str) -> None:
    for i in range(4):
        await client.store.put_item(
            ["s", unique, f"d{i % 2}"], f"k{i}", {"i": i, "even": i % 2 == 0}
        )
    found = await client.store.search_items(["s", unique])
    assert {i["key"] for i in found["items"]} == {"k0", "k1", "k2", "k3"}
    evens = await client.store.search_items(["s", unique], filter={"even": True})
    assert {i["key"] for i in evens["items"]} == {"k0", "k2"}
    big = await client.store.search_items(["s", unique], filter={"i": {"$gte": 2}}, limit=1)
    assert len(big["items"]) == 1
    deeper = await client.store.search_items(["s", unique, "d1"])
    assert {i["key"] for i in deeper["items"]} == {"k1", "k3"}


async def test_list_namespaces(client: LangGraphClient, unique: str) -> None:
    for path in (["n", unique, "a", "x"], ["n", unique, "b", "x"], ["n", unique, "b", "y"]):
        await client.store.put_item(path, "k", {"v": 1})
    listed = await client.store.list_namespaces(prefix=["n", unique])
    assert listed["namespaces"] == [
        ["n", unique, "a", "x"],
        ["n", unique, "b", "x"],
        ["n", unique, "b", "y"],
    ]
    shallow = await client.store.list_namespaces(prefix=["n", unique], max_depth=3)
    assert shallow["namespaces"] == [["n", unique, "a"], ["n", unique, "b"]]
    ending = await client.store.list_namespaces(prefix=["n", unique], suffix=["x"])
    assert len(ending["namespaces"]) == 2


async def test_bad_input(http: httpx.AsyncClient) -> None:
    no_key = await http.get("/store/items", params={"namespace": "a"})
    assert no_key.status_code == 400
    bad_ns = await http.put("/store/items", json={"namespace": ["a.b"], "key": "k", "value": {}})
    assert bad_ns.status_code == 422
    assert "detail" in bad_ns.json()
    not_object = await http.put("/store/items", json={"namespace": ["a"], "key": "k", "value": 3})
    assert not_object.status_code == 422
    bad_ttl = await http.put(
        "/store/items", json={"namespace": ["a"], "key": "k", "value": {}, "ttl": -1}
    )
    assert bad_ttl.status_code == 422
    bad_filter = await http.post(
        "/store/items/search", json={"namespace_prefix": ["a"], "filter": {"x": {"$nope": 1}}}
    )
    assert bad_filter.status_code == 422
    no_semantic = await http.post("/store/items/search", json={"query": "hello"})
    assert no_semantic.status_code == 422


async def test_rest_and_graphql_share_the_store(
    client: LangGraphClient, gql_client: GraphQLClient, unique: str
) -> None:
    await client.store.put_item(["x", unique], "k", {"from": "rest"})
    got = await gql_client.data(
        'query($ns: [String!]!) { storeItem(namespace: $ns, key: "k") { value } }',
        {"ns": ["x", unique]},
    )
    assert got["storeItem"] == {"value": {"from": "rest"}}


REST_OFF = ROOT / "tests" / "fixtures" / "rest_off" / "langgraph.json"


async def test_route_groups_turned_off(engines: EngineUrls, redis_prefix: str) -> None:
    """langgraph.json `http.disable_assistants|store|runs` remove those routes (404), as on
    LangGraph Server; threads and GraphQL stay."""
    from app.db.migrate import upgrade

    async with scratch_database(engines.database_uri, prefix="lgql_rest_off") as url:
        await upgrade(url)
        server = await start_server(
            make_settings(f"{redis_prefix}_rest_off", config=REST_OFF),
            database_uri=url,
            redis_uri=engines.redis_uri,
        )
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                for method, path in (
                    ("GET", "/assistants/echo"),
                    ("POST", "/assistants/search"),
                    ("PUT", "/store/items"),
                    ("POST", "/store/namespaces"),
                    ("POST", "/runs/crons/search"),
                    ("POST", f"/threads/{uuid.uuid4()}/runs/crons"),
                ):
                    off = await http.request(method, path, json={})
                    assert off.status_code == 404, path
                    assert off.json() == {"detail": "Not Found"}
                made = await http.post("/threads", json={})
                assert made.status_code == 200
                query = '{ assistant(id: "echo") { id } }'
                graphql = await http.post("/graphql", json={"query": query})
                assert graphql.json()["data"]["assistant"]["id"]
        finally:
            await server.stop()

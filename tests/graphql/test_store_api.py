"""The store through GraphQL: items, search, namespaces, a graph that uses the store, bad input."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import GraphQLClient

ITEM = "namespace key value createdAt updatedAt score"
PUT = f"mutation($input: PutStoreItemInput!) {{ putStoreItem(input: $input) {{ {ITEM} }} }}"
GET = f"""query($ns: [String!]!, $key: String!, $refresh: Boolean) {{
  storeItem(namespace: $ns, key: $key, refreshTtl: $refresh) {{ {ITEM} }}
}}"""
SEARCH = f"""query($prefix: [String!]!, $filter: JSON, $query: String, $limit: Int, $offset: Int) {{
  storeSearch(namespacePrefix: $prefix, filter: $filter, query: $query, limit: $limit,
              offset: $offset) {{ {ITEM} }}
}}"""
NAMESPACES = """query($prefix: [String!], $suffix: [String!], $maxDepth: Int, $limit: Int, $offset: Int) {
  storeNamespaces(prefix: $prefix, suffix: $suffix, maxDepth: $maxDepth, limit: $limit,
                  offset: $offset)
}"""
DELETE = "mutation($ns: [String!]!, $key: String!) { deleteStoreItem(namespace: $ns, key: $key) }"
RUN_AND_WAIT = """mutation($input: RunInput!) {
  runAndWait(input: $input) { run { status } values error { type message } }
}"""


async def put(client: GraphQLClient, **fields: Any) -> dict[str, Any]:
    return (await client.data(PUT, {"input": fields}))["putStoreItem"]


async def get(client: GraphQLClient, ns: list[str], key: str) -> dict[str, Any] | None:
    item: dict[str, Any] | None = (await client.data(GET, {"ns": ns, "key": key}))["storeItem"]
    return item


async def search(client: GraphQLClient, prefix: list[str], **args: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await client.data(SEARCH, {"prefix": prefix, **args}))[
        "storeSearch"
    ]
    return items


async def test_put_get_search_delete(gql_client: GraphQLClient, unique: str) -> None:
    ns = ["api", unique]
    stored = await put(gql_client, namespace=ns, key="a", value={"kind": "note", "n": 1})
    assert stored["namespace"] == ns and stored["key"] == "a"
    assert stored["value"] == {"kind": "note", "n": 1}
    assert stored["score"] is None
    assert stored["createdAt"] == stored["updatedAt"]
    await put(gql_client, namespace=ns, key="b", value={"kind": "task", "n": 5}, ttl=60)
    await put(gql_client, namespace=[*ns, "sub"], key="c", value={"kind": "note", "n": 9})

    got = await get(gql_client, ns, "a")
    assert got is not None and got["value"] == {"kind": "note", "n": 1}
    assert await get(gql_client, ns, "missing") is None

    assert [i["key"] for i in await search(gql_client, ns)] == ["c", "b", "a"]
    notes = await search(gql_client, ns, filter={"kind": "note"})
    assert {i["key"] for i in notes} == {"a", "c"}
    big = await search(gql_client, ns, filter={"n": {"$gte": 5}}, limit=1, offset=1)
    assert [i["key"] for i in big] == ["b"]

    updated = await put(gql_client, namespace=ns, key="a", value={"kind": "note", "n": 2})
    assert updated["createdAt"] == stored["createdAt"]
    assert updated["updatedAt"] > stored["updatedAt"]

    delete = {"ns": ns, "key": "a"}
    assert (await gql_client.data(DELETE, delete))["deleteStoreItem"] is True
    assert (await gql_client.data(DELETE, delete))["deleteStoreItem"] is False
    assert await get(gql_client, ns, "a") is None


async def test_namespaces(gql_client: GraphQLClient, unique: str) -> None:
    for ns in (["spaces", unique, "users", "u1"], ["spaces", unique, "docs", "v1"]):
        await put(gql_client, namespace=ns, key="k", value={})
    data = await gql_client.data(NAMESPACES, {"prefix": ["spaces", unique]})
    assert data["storeNamespaces"] == [
        ["spaces", unique, "docs", "v1"],
        ["spaces", unique, "users", "u1"],
    ]
    data = await gql_client.data(
        NAMESPACES, {"prefix": ["spaces", unique], "suffix": ["u1"], "maxDepth": 3}
    )
    assert data["storeNamespaces"] == [["spaces", unique, "users"]]
    data = await gql_client.data(NAMESPACES, {"prefix": ["spaces", "*", "docs"], "limit": 100})
    assert ["spaces", unique, "docs", "v1"] in data["storeNamespaces"]


async def test_a_graph_writes_memories_the_api_reads(
    gql_client: GraphQLClient, unique: str
) -> None:
    """`memory` puts from a sync node (the store's sync API from a thread) and reads back
    through `Runtime.store` in an async node; the item is then visible through GraphQL."""
    ran = await gql_client.data(
        RUN_AND_WAIT,
        {"input": {"assistantId": "memory", "input": {"user": unique, "fact": "likes tea"}}},
    )
    result = ran["runAndWait"]
    assert result["error"] is None and result["run"]["status"] == "SUCCESS"
    assert result["values"]["memories"] == ["likes tea"]
    item = await get(gql_client, ["memories", unique], "fact")
    assert item is not None and item["value"] == {"text": "likes tea"}

    await put(gql_client, namespace=["memories", unique], key="extra", value={"text": "owns a cat"})
    ran = await gql_client.data(
        RUN_AND_WAIT,
        {
            "input": {
                "assistantId": "memory",
                "input": {"user": unique, "fact": "lives in Oslo", "key": "city"},
            }
        },
    )
    assert ran["runAndWait"]["values"]["memories"] == ["likes tea", "lives in Oslo", "owns a cat"]


BAD_INPUTS: list[tuple[str, str, dict[str, Any], str]] = [
    ("empty namespace", GET, {"ns": [], "key": "k"}, "empty"),
    ("empty label", GET, {"ns": ["a", ""], "key": "k"}, "empty"),
    ("label with a period", GET, {"ns": ["a.b"], "key": "k"}, "periods"),
    ("empty key", GET, {"ns": ["a"], "key": ""}, "key"),
    ("put: empty namespace", PUT, {"input": {"namespace": [], "key": "k", "value": {}}}, "empty"),
    (
        "put: label with a period",
        PUT,
        {"input": {"namespace": ["a", "b.c"], "key": "k", "value": {}}},
        "periods",
    ),
    (
        "put: root label langgraph",
        PUT,
        {"input": {"namespace": ["langgraph", "x"], "key": "k", "value": {}}},
        "langgraph",
    ),
    (
        "put: value not an object",
        PUT,
        {"input": {"namespace": ["a"], "key": "k", "value": [1]}},
        "object",
    ),
    ("put: null value", PUT, {"input": {"namespace": ["a"], "key": "k", "value": None}}, "value"),
    ("put: empty key", PUT, {"input": {"namespace": ["a"], "key": "", "value": {}}}, "key"),
    (
        "put: zero ttl",
        PUT,
        {"input": {"namespace": ["a"], "key": "k", "value": {}, "ttl": 0}},
        "ttl",
    ),
    (
        "put: negative ttl",
        PUT,
        {"input": {"namespace": ["a"], "key": "k", "value": {}, "ttl": -5}},
        "ttl",
    ),
    (
        "put: index true",
        PUT,
        {"input": {"namespace": ["a"], "key": "k", "value": {}, "index": True}},
        "index",
    ),
    ("search: limit 0", SEARCH, {"prefix": ["a"], "limit": 0}, "limit"),
    ("search: limit over the page size", SEARCH, {"prefix": ["a"], "limit": 101}, "limit"),
    ("search: negative offset", SEARCH, {"prefix": ["a"], "offset": -1}, "offset"),
    ("search: label with a period", SEARCH, {"prefix": ["a.b"]}, "periods"),
    (
        "search: unknown filter operator",
        SEARCH,
        {"prefix": ["a"], "filter": {"n": {"$in": [1, 2]}}},
        "$in",
    ),
    ("search: filter not an object", SEARCH, {"prefix": ["a"], "filter": [1]}, "filter"),
    ("search: query without an index", SEARCH, {"prefix": ["a"], "query": "tea"}, "store.index"),
    ("namespaces: limit 0", NAMESPACES, {"limit": 0}, "limit"),
    ("namespaces: limit over the page size", NAMESPACES, {"limit": 1000}, "limit"),
    ("namespaces: negative offset", NAMESPACES, {"offset": -1}, "offset"),
    ("namespaces: maxDepth 0", NAMESPACES, {"maxDepth": 0}, "maxDepth"),
    ("namespaces: empty label", NAMESPACES, {"prefix": ["a", ""]}, "empty"),
    ("delete: empty namespace", DELETE, {"ns": [], "key": "k"}, "empty"),
    ("delete: empty key", DELETE, {"ns": ["a"], "key": ""}, "key"),
]


@pytest.mark.parametrize(
    ("query", "variables", "message"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
async def test_bad_input(
    gql_client: GraphQLClient, query: str, variables: dict[str, Any], message: str
) -> None:
    body = await gql_client.execute(query, variables)
    assert body.get("errors"), body
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert message in error["message"], error["message"]


async def test_bad_put_writes_nothing(gql_client: GraphQLClient, unique: str) -> None:
    body = await gql_client.execute(
        PUT, {"input": {"namespace": ["nothing", unique], "key": "k", "value": {}, "ttl": -1}}
    )
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert await get(gql_client, ["nothing", unique], "k") is None

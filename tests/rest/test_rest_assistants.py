"""Assistants over LangGraph's REST API, through the real SDK (`langgraph_sdk`) and httpx."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from langgraph_sdk import get_client, get_sync_client
from langgraph_sdk.client import LangGraphClient

from tests.conftest import GraphQLClient, LiveServer

SYSTEM_ECHO = str(uuid.uuid5(uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8"), "echo"))


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


async def test_create_get_and_the_langgraph_shape(client: LangGraphClient, unique: str) -> None:
    created = await client.assistants.create(
        "echo",
        config={"tags": ["a"], "configurable": {"model": "x"}},
        metadata={"owner": unique},
        name=f"bot-{unique}",
        description="says hi",
    )
    assert set(created) >= {
        "assistant_id",
        "graph_id",
        "config",
        "context",
        "created_at",
        "updated_at",
        "metadata",
        "version",
        "name",
        "description",
    }
    assert created["graph_id"] == "echo"
    assert created["version"] == 1
    assert created["context"] == {"model": "x"}  # configurable mirrored into context
    assert created["metadata"] == {"owner": unique}
    got = await client.assistants.get(created["assistant_id"])
    assert got == created


async def test_system_assistant_by_graph_id(client: LangGraphClient) -> None:
    got = await client.assistants.get("echo")
    assert got["assistant_id"] == SYSTEM_ECHO
    assert got["metadata"] == {"created_by": "system"}


async def test_if_exists(client: LangGraphClient, http: httpx.AsyncClient) -> None:
    aid = str(uuid.uuid4())
    first = await client.assistants.create("echo", assistant_id=aid, name="one")
    again = await client.assistants.create(
        "echo", assistant_id=aid, name="two", if_exists="do_nothing"
    )
    assert again == first
    response = await http.post("/assistants", json={"graph_id": "echo", "assistant_id": aid})
    assert response.status_code == 409
    assert "already exists" in response.json()["detail"]


async def test_update_appends_versions_and_latest(client: LangGraphClient, unique: str) -> None:
    created = await client.assistants.create("echo", metadata={"a": 1, "owner": unique})
    aid = created["assistant_id"]
    updated = await client.assistants.update(aid, metadata={"b": 2}, name="renamed")
    assert updated["version"] == 2
    assert updated["metadata"] == {"a": 1, "b": 2, "owner": unique}
    assert updated["name"] == "renamed"
    versions = await client.assistants.get_versions(aid)
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[1]["name"] == created["name"]
    filtered = await client.assistants.get_versions(aid, metadata={"b": 2})
    assert [v["version"] for v in filtered] == [2]
    back = await client.assistants.set_latest(aid, 1)
    assert back["version"] == 1
    assert back["name"] == created["name"]
    assert (await client.assistants.get(aid))["version"] == 1


async def test_update_with_configurable_and_context_is_refused(
    client: LangGraphClient, http: httpx.AsyncClient
) -> None:
    created = await client.assistants.create("echo")
    response = await http.patch(
        f"/assistants/{created['assistant_id']}",
        json={"config": {"configurable": {"a": 1}}, "context": {"b": 2}},
    )
    assert response.status_code == 422
    assert "context" in response.json()["detail"]


async def test_delete(client: LangGraphClient, http: httpx.AsyncClient) -> None:
    created = await client.assistants.create("echo")
    aid = created["assistant_id"]
    response = await http.delete(f"/assistants/{aid}")
    assert response.status_code == 204
    missing = await http.get(f"/assistants/{aid}")
    assert missing.status_code == 404
    assert missing.json() == {"detail": f"Assistant {aid} not found"}
    assert (await http.delete(f"/assistants/{aid}")).status_code == 404


async def test_delete_with_its_threads(client: LangGraphClient) -> None:
    created = await client.assistants.create("echo")
    aid = created["assistant_id"]
    mine = await client.threads.create(metadata={"assistant_id": aid})
    other = await client.threads.create(metadata={"assistant_id": str(uuid.uuid4())})
    await client.assistants.delete(aid, delete_threads=True)
    with pytest.raises(httpx.HTTPStatusError) as missing:
        await client.threads.get(mine["thread_id"])
    assert missing.value.response.status_code == 404
    assert (await client.threads.get(other["thread_id"]))["thread_id"] == other["thread_id"]


async def test_search_count_sort_select_and_paging(
    client: LangGraphClient, http: httpx.AsyncClient, unique: str
) -> None:
    made = [
        await client.assistants.create("echo", name=f"{unique}-{i}", metadata={"tag": unique})
        for i in range(3)
    ]
    found = await client.assistants.search(metadata={"tag": unique}, limit=10)
    assert [a["assistant_id"] for a in found] == [a["assistant_id"] for a in reversed(made)]
    assert await client.assistants.count(metadata={"tag": unique}) == 3
    assert await client.assistants.count(metadata={"tag": unique}, graph_id="steps") == 0
    by_name = await client.assistants.search(
        metadata={"tag": unique}, sort_by="name", sort_order="asc"
    )
    assert [a["name"] for a in by_name] == [f"{unique}-0", f"{unique}-1", f"{unique}-2"]
    assert (await client.assistants.search(name=f"{unique}-1".upper()))[0]["name"] == (
        f"{unique}-1"
    )
    selected = await client.assistants.search(
        metadata={"tag": unique}, select=["assistant_id", "name"]
    )
    assert all(set(a) == {"assistant_id", "name"} for a in selected)

    page = await http.post(
        "/assistants/search", json={"metadata": {"tag": unique}, "limit": 2, "offset": 0}
    )
    assert len(page.json()) == 2
    assert page.headers["X-Pagination-Next"] == "2"
    rest = await http.post(
        "/assistants/search", json={"metadata": {"tag": unique}, "limit": 2, "offset": 2}
    )
    assert [a["assistant_id"] for a in rest.json()] == [made[0]["assistant_id"]]
    assert rest.headers["X-Pagination-Total"] == "3"
    assert "X-Pagination-Next" not in rest.headers

    bad = await http.post("/assistants/search", json={"select": ["nope"]})
    assert bad.status_code == 422
    bad_sort = await http.post("/assistants/search", json={"sort_by": "nope"})
    assert bad_sort.status_code == 422


async def test_graph_schemas_and_subgraphs(
    client: LangGraphClient, http: httpx.AsyncClient
) -> None:
    graph = await client.assistants.get_graph("echo")
    assert {"nodes", "edges"} <= set(graph)
    xray = await client.assistants.get_graph("subgraph_parent", xray=True)
    assert len(xray["nodes"]) >= len(
        (await client.assistants.get_graph("subgraph_parent"))["nodes"]
    )
    assert (await http.get("/assistants/echo/graph", params={"xray": "0"})).status_code == 422
    schemas = await client.assistants.get_schemas("echo")
    assert schemas["graph_id"] == "echo"
    assert "state_schema" in schemas
    subgraphs = await client.assistants.get_subgraphs("subgraph_parent")
    assert subgraphs
    namespace = next(iter(subgraphs))
    one = await client.assistants.get_subgraphs("subgraph_parent", namespace=namespace)
    assert list(one) == [namespace]
    recursed = await client.assistants.get_subgraphs("subgraph_parent", recurse=True)
    assert set(subgraphs) <= set(recursed)


async def test_bad_input_is_422_with_detail(http: httpx.AsyncClient) -> None:
    no_graph = await http.post("/assistants", json={"name": "x"})
    assert no_graph.status_code == 422
    assert "graph_id" in no_graph.json()["detail"]
    not_json = await http.post(
        "/assistants", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 422
    assert not_json.json() == {"detail": "Invalid JSON in request body"}
    unknown_graph = await http.post("/assistants", json={"graph_id": "nope"})
    assert unknown_graph.status_code == 404
    bad_id = await http.post("/assistants", json={"graph_id": "echo", "assistant_id": "x"})
    assert bad_id.status_code == 422
    bad_meta = await http.post("/assistants", json={"graph_id": "echo", "metadata": [1]})
    assert bad_meta.status_code == 422


async def test_sync_client(live_server: LiveServer) -> None:
    def use() -> str:
        # The server runs on this test's event loop: the sync client blocks a thread of its own.
        with get_sync_client(url=live_server.url) as client:
            created = client.assistants.create("echo", name="sync")
            return str(client.assistants.get(created["assistant_id"])["name"])

    assert await asyncio.to_thread(use) == "sync"


async def test_rest_and_graphql_see_the_same_assistants(
    client: LangGraphClient, gql_client: GraphQLClient
) -> None:
    over_rest = await client.assistants.create("echo", name="from-rest")
    got = await gql_client.data(
        "query($id: ID!) { assistant(id: $id) { id name } }", {"id": over_rest["assistant_id"]}
    )
    assert got["assistant"] == {"id": over_rest["assistant_id"], "name": "from-rest"}
    made = await gql_client.data(
        'mutation { createAssistant(input: {graphId: "echo", name: "from-gql"}) { id } }'
    )
    aid = made["createAssistant"]["id"]
    assert (await client.assistants.get(aid))["name"] == "from-gql"


async def test_info_and_ok_as_langgraph_clients_read_them(http: httpx.AsyncClient) -> None:
    info = (await http.get("/info")).json()
    assert {"version", "langgraph_py_version", "flags", "host"} <= set(info)
    assert info["flags"]["assistants"] is True and info["flags"]["crons"] is True
    assert info["host"]["kind"] == "self-hosted"
    ok = await http.get("/ok")
    assert ok.status_code == 200 and ok.json()["ok"] is True


async def test_a_wrong_method_is_405_with_detail(http: httpx.AsyncClient) -> None:
    response = await http.put("/assistants/search", json={})
    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed"}
    assert "POST" in response.headers["allow"]


async def test_search_as_an_object_pages_by_the_headers(
    client: LangGraphClient, unique: str
) -> None:
    for i in range(3):
        await client.assistants.create("echo", name=f"{unique}-{i}", metadata={"obj": unique})
    first = await client.assistants.search(
        metadata={"obj": unique}, limit=2, response_format="object"
    )
    assert len(first["assistants"]) == 2
    assert first["next"] == "2"
    rest = await client.assistants.search(
        metadata={"obj": unique}, limit=2, offset=2, response_format="object"
    )
    assert len(rest["assistants"]) == 1
    assert rest["next"] is None

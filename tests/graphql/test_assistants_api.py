"""Assistants through the GraphQL HTTP endpoint."""

from __future__ import annotations

import uuid

from app.runtime.graphs import default_assistant_id
from tests.conftest import GraphQLClient

ASSISTANT_FIELDS = "id graphId name description config context metadata version createdAt updatedAt"

CREATE = f"""
mutation($input: CreateAssistantInput!) {{ createAssistant(input: $input) {{ {ASSISTANT_FIELDS} }} }}
"""
GET = f"query($id: ID!) {{ assistant(id: $id) {{ {ASSISTANT_FIELDS} }} }}"
UPDATE = f"""
mutation($id: ID!, $input: UpdateAssistantInput!) {{
  updateAssistant(id: $id, input: $input) {{ {ASSISTANT_FIELDS} }}
}}
"""


async def create(client: GraphQLClient, **fields: object) -> dict:
    data = await client.data(CREATE, {"input": {"graphId": "echo", **fields}})
    return data["createAssistant"]


async def test_default_assistant_per_graph_has_langgraph_id(gql_client: GraphQLClient) -> None:
    for graph_id in ("echo", "steps"):
        expected = str(default_assistant_id(graph_id))
        assert expected == str(
            uuid.uuid5(uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8"), graph_id)
        )
        got = (await gql_client.data(GET, {"id": expected}))["assistant"]
        assert got["graphId"] == graph_id
        assert got["metadata"] == {"created_by": "system"}
        assert got["version"] == 1


async def test_assistant_by_graph_id_resolves_default(gql_client: GraphQLClient) -> None:
    got = (await gql_client.data(GET, {"id": "steps"}))["assistant"]
    assert got["id"] == str(default_assistant_id("steps"))


async def test_create_and_get_assistant(gql_client: GraphQLClient, unique: str) -> None:
    created = await create(
        gql_client,
        name=f"bot-{unique}",
        description="says hi",
        config={"tags": ["a"], "configurable": {"model": "x"}},
        metadata={"owner": unique},
    )
    assert created["name"] == f"bot-{unique}"
    assert created["version"] == 1
    # LangGraph mirrors config.configurable into context.
    assert created["context"] == {"model": "x"}
    got = (await gql_client.data(GET, {"id": created["id"]}))["assistant"]
    assert got == created


async def test_create_with_explicit_id_and_if_exists(gql_client: GraphQLClient) -> None:
    aid = str(uuid.uuid4())
    first = await create(gql_client, assistantId=aid, name="one")
    assert first["id"] == aid
    assert (
        await gql_client.error_code(CREATE, {"input": {"graphId": "echo", "assistantId": aid}})
        == "CONFLICT"
    )
    again = await create(gql_client, assistantId=aid, name="two", ifExists="DO_NOTHING")
    assert again["name"] == "one"


async def test_create_defaults_name_untitled(gql_client: GraphQLClient) -> None:
    assert (await create(gql_client))["name"] == "Untitled"


async def test_create_unknown_graph_is_not_found(gql_client: GraphQLClient) -> None:
    code = await gql_client.error_code(CREATE, {"input": {"graphId": "nope"}})
    assert code == "NOT_FOUND"


async def test_create_rejects_bad_input(gql_client: GraphQLClient) -> None:
    bad = [
        {"graphId": "echo", "assistantId": "not-a-uuid"},
        {"graphId": "echo", "metadata": [1, 2]},
        {"graphId": "echo", "config": "text"},
        {"graphId": "echo", "config": {"configurable": {"a": 1}}, "context": {"b": 2}},
    ]
    for fields in bad:
        assert await gql_client.error_code(CREATE, {"input": fields}) == "BAD_USER_INPUT", fields


async def test_get_unknown_assistant_is_not_found(gql_client: GraphQLClient) -> None:
    body = await gql_client.execute(GET, {"id": str(uuid.uuid4())})
    assert body["data"] == {"assistant": None}
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_update_makes_new_version_and_merges_metadata(
    gql_client: GraphQLClient, unique: str
) -> None:
    created = await create(gql_client, name="v1", metadata={"a": 1, "keep": True})
    upd = await gql_client.data(
        UPDATE, {"id": created["id"], "input": {"name": "v2", "metadata": {"a": 2, "b": 3}}}
    )
    updated = upd["updateAssistant"]
    assert updated["version"] == 2
    assert updated["name"] == "v2"
    assert updated["metadata"] == {"a": 2, "b": 3, "keep": True}
    assert updated["description"] is None
    upd = await gql_client.data(
        UPDATE, {"id": created["id"], "input": {"description": "d3", "context": {"k": "v"}}}
    )
    third = upd["updateAssistant"]
    assert third["version"] == 3
    assert third["name"] == "v2"
    assert third["context"] == {"k": "v"}
    assert third["config"]["configurable"] == {"k": "v"}
    versions = await gql_client.data(
        """query($id: ID!) { assistant(id: $id) { versions(first: 10) {
             totalCount edges { node { version name description metadata } } } } }""",
        {"id": created["id"]},
    )
    conn = versions["assistant"]["versions"]
    assert conn["totalCount"] == 3
    assert [e["node"]["version"] for e in conn["edges"]] == [3, 2, 1]
    assert conn["edges"][2]["node"]["name"] == "v1"


async def test_update_description_null_clears_it(gql_client: GraphQLClient) -> None:
    created = await create(gql_client, description="something")
    upd = await gql_client.data(UPDATE, {"id": created["id"], "input": {"description": None}})
    assert upd["updateAssistant"]["description"] is None


async def test_set_latest_version_restores_old_version(gql_client: GraphQLClient) -> None:
    created = await create(gql_client, name="first", config={"tags": ["one"]})
    await gql_client.data(UPDATE, {"id": created["id"], "input": {"name": "second"}})
    data = await gql_client.data(
        "mutation($id: ID!) { setAssistantLatestVersion(id: $id, version: 1) { name version config } }",
        {"id": created["id"]},
    )
    restored = data["setAssistantLatestVersion"]
    assert restored["name"] == "first"
    assert restored["version"] == 1
    assert restored["config"]["tags"] == ["one"]
    code = await gql_client.error_code(
        "mutation($id: ID!) { setAssistantLatestVersion(id: $id, version: 9) { version } }",
        {"id": created["id"]},
    )
    assert code == "NOT_FOUND"


async def test_update_unknown_assistant_is_not_found(gql_client: GraphQLClient) -> None:
    code = await gql_client.error_code(UPDATE, {"id": str(uuid.uuid4()), "input": {"name": "x"}})
    assert code == "NOT_FOUND"


async def test_delete_assistant(gql_client: GraphQLClient) -> None:
    created = await create(gql_client)
    data = await gql_client.data(
        "mutation($id: ID!) { deleteAssistant(id: $id) }", {"id": created["id"]}
    )
    assert data["deleteAssistant"] == created["id"]
    body = await gql_client.execute(GET, {"id": created["id"]})
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    code = await gql_client.error_code(
        "mutation($id: ID!) { deleteAssistant(id: $id) }", {"id": created["id"]}
    )
    assert code == "NOT_FOUND"


SEARCH = """
query($filter: AssistantFilter, $first: Int, $after: String, $sortBy: AssistantSortBy, $sortOrder: SortOrder) {
  assistants(filter: $filter, first: $first, after: $after, sortBy: $sortBy, sortOrder: $sortOrder) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id name graphId metadata createdAt updatedAt } }
  }
}
"""


async def test_search_filters_and_counts(gql_client: GraphQLClient, unique: str) -> None:
    for i in range(3):
        await create(gql_client, name=f"Finder-{unique}-{i}", metadata={"team": unique, "i": i})
    await gql_client.data(
        CREATE,
        {"input": {"graphId": "steps", "name": f"finder-{unique}-x", "metadata": {"team": unique}}},
    )

    by_meta = (await gql_client.data(SEARCH, {"filter": {"metadata": {"team": unique}}}))[
        "assistants"
    ]
    assert by_meta["totalCount"] == 4
    by_graph = (
        await gql_client.data(
            SEARCH, {"filter": {"metadata": {"team": unique}, "graphId": "steps"}}
        )
    )["assistants"]
    assert [e["node"]["graphId"] for e in by_graph["edges"]] == ["steps"]
    by_name = (await gql_client.data(SEARCH, {"filter": {"name": f"FINDER-{unique}-1"}}))[
        "assistants"
    ]
    assert by_name["totalCount"] == 1
    nested = (await gql_client.data(SEARCH, {"filter": {"metadata": {"team": unique, "i": 2}}}))[
        "assistants"
    ]
    assert nested["totalCount"] == 1
    none = (await gql_client.data(SEARCH, {"filter": {"name": "%"}}))["assistants"]
    assert none["totalCount"] == 0


async def test_search_paginates_with_cursors(gql_client: GraphQLClient, unique: str) -> None:
    made = [await create(gql_client, metadata={"page": unique}) for _ in range(5)]
    seen: list[str] = []
    after = None
    while True:
        conn = (
            await gql_client.data(
                SEARCH,
                {
                    "filter": {"metadata": {"page": unique}},
                    "first": 2,
                    "after": after,
                    "sortOrder": "ASC",
                },
            )
        )["assistants"]
        assert conn["totalCount"] == 5
        seen += [e["node"]["id"] for e in conn["edges"]]
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
    assert seen == [a["id"] for a in made]


async def test_search_sorts_by_updated_at(gql_client: GraphQLClient, unique: str) -> None:
    a = await create(gql_client, metadata={"sort": unique})
    b = await create(gql_client, metadata={"sort": unique})
    await gql_client.data(UPDATE, {"id": a["id"], "input": {"name": "touched"}})
    conn = (
        await gql_client.data(
            SEARCH,
            {"filter": {"metadata": {"sort": unique}}, "sortBy": "UPDATED_AT", "sortOrder": "DESC"},
        )
    )["assistants"]
    assert [e["node"]["id"] for e in conn["edges"]] == [a["id"], b["id"]]
    conn = (
        await gql_client.data(
            SEARCH,
            {"filter": {"metadata": {"sort": unique}}, "sortBy": "CREATED_AT", "sortOrder": "DESC"},
        )
    )["assistants"]
    assert [e["node"]["id"] for e in conn["edges"]] == [b["id"], a["id"]]


async def test_search_rejects_bad_cursor_and_page_size(gql_client: GraphQLClient) -> None:
    assert await gql_client.error_code(SEARCH, {"after": "garbage!"}) == "BAD_USER_INPUT"
    assert await gql_client.error_code(SEARCH, {"first": 100000}) == "BAD_USER_INPUT"
    assert await gql_client.error_code(SEARCH, {"first": -1}) == "BAD_USER_INPUT"
    assert await gql_client.error_code(SEARCH, {"filter": {"metadata": "x"}}) == "BAD_USER_INPUT"


async def test_graph_schemas_and_subgraphs(gql_client: GraphQLClient) -> None:
    data = await gql_client.data(
        """query { assistant(id: "subgraph_parent") {
             graph { nodes edges mermaid }
             xray: graph(xray: true) { nodes }
             schemas { graphId inputSchema outputSchema stateSchema configSchema contextSchema }
             subgraphs { namespace schemas { stateSchema } }
           } }"""
    )
    assistant = data["assistant"]
    node_ids = {n["id"] for n in assistant["graph"]["nodes"]}
    assert "__start__" in node_ids and "__end__" in node_ids
    assert assistant["graph"]["edges"]
    assert assistant["graph"]["mermaid"].lstrip().startswith(("graph", "---", "%%"))
    assert len(assistant["xray"]["nodes"]) > len(assistant["graph"]["nodes"])
    schemas = assistant["schemas"]
    assert schemas["graphId"] == "subgraph_parent"
    assert schemas["stateSchema"]["type"] == "object"
    assert assistant["subgraphs"], "the parent graph has a subgraph"
    assert assistant["subgraphs"][0]["schemas"]["stateSchema"] is not None


async def test_graph_xray_depth_must_be_positive(gql_client: GraphQLClient) -> None:
    code = await gql_client.error_code(
        'query { assistant(id: "echo") { graph(xrayDepth: 0) { nodes } } }'
    )
    assert code == "BAD_USER_INPUT"


async def test_context_schema(gql_client: GraphQLClient) -> None:
    data = await gql_client.data('query { assistant(id: "ctx") { schemas { contextSchema } } }')
    assert data["assistant"]["schemas"]["contextSchema"]["type"] == "object"

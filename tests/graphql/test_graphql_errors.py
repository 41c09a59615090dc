"""Every error has `extensions.code`; limits are on by default; unexpected errors are masked."""

from __future__ import annotations

from typing import Any

import httpx
import strawberry

from schema.context import Context
from schema.schema import build_schema
from tests.conftest import GraphQLClient, LiveServer, make_settings


async def test_parse_error(gql_client: GraphQLClient) -> None:
    assert await gql_client.error_code("query { assistant(id: ") == "GRAPHQL_PARSE_FAILED"


async def test_validation_error(gql_client: GraphQLClient) -> None:
    assert await gql_client.error_code("query { nope }") == "GRAPHQL_VALIDATION_FAILED"


async def test_variable_coercion_error(gql_client: GraphQLClient) -> None:
    code = await gql_client.error_code(
        "query($f: Int) { assistants(first: $f) { totalCount } }", {"f": "many"}
    )
    assert code == "BAD_USER_INPUT"


async def test_depth_limit(gql_client: GraphQLClient) -> None:
    nested = "values"
    for _ in range(8):  # each `tasks { state { … } }` is two levels: 16 + 3 > the limit of 12
        nested = f"tasks {{ state {{ {nested} }} }}"
    query = (
        f'query {{ thread(id: "00000000-0000-0000-0000-000000000000") {{ state {{ {nested} }} }} }}'
    )
    body = await gql_client.execute(query)
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "depth" in body["errors"][0]["message"]


async def test_alias_limit(gql_client: GraphQLClient) -> None:
    fields = " ".join(f"a{i}: serverInfo {{ version }}" for i in range(40))
    body = await gql_client.execute(f"query {{ {fields} }}")
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "alias" in body["errors"][0]["message"].lower()


async def test_token_limit(gql_client: GraphQLClient) -> None:
    fields = " ".join("__typename" for _ in range(6000))
    body = await gql_client.execute(f"query {{ {fields} }}")
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert "token" in body["errors"][0]["message"].lower()


async def test_page_size_limit(gql_client: GraphQLClient) -> None:
    assert await gql_client.error_code("{ threads(first: 101) { totalCount } }") == "BAD_USER_INPUT"
    data = await gql_client.data("{ threads(first: 100) { totalCount } }")
    assert data["threads"]["totalCount"] >= 0


async def test_graphql_response_media_type(live_server: LiveServer) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            live_server.graphql_url,
            json={"query": "{ nope }"},
            headers={"accept": "application/graphql-response+json"},
        )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/graphql-response+json")
    assert "data" not in response.json()


class _Exploding:
    async def get(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("password=hunter2 at /secret/path")


class _FakeServices:
    assistants = _Exploding()


async def test_unexpected_errors_are_masked() -> None:
    schema: strawberry.Schema = build_schema(make_settings("unused"))
    result = await schema.execute(
        '{ assistant(id: "00000000-0000-0000-0000-000000000000") { id } }',
        context_value=Context(services=_FakeServices(), request=None),  # type: ignore[arg-type]
    )
    assert result.errors
    error = result.errors[0].formatted
    assert error["message"] == "Unexpected error."
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR"}
    assert "hunter2" not in str(error)

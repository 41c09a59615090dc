"""The README's first queries work as written, against the repository's own langgraph.json."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest_asyncio

from tests.conftest import ROOT, EngineUrls, GraphQLClient, LiveServer, make_settings, start_server


@pytest_asyncio.fixture(loop_scope="session")
async def readme_server(
    engines: EngineUrls, database_uri: str, redis_prefix: str
) -> AsyncIterator[LiveServer]:
    settings = make_settings(redis_prefix, config=ROOT / "langgraph.json")
    server = await start_server(settings, database_uri=database_uri, redis_uri=engines.redis_uri)
    try:
        yield server
    finally:
        await server.stop()


def _readme_operations() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```graphql\n(.*?)```", text, flags=re.S)


async def test_readme_queries_run(readme_server: LiveServer) -> None:
    create, edit_and_look = _readme_operations()
    client = GraphQLClient(readme_server.graphql_url)
    try:
        created = (await client.data(create))["createThread"]
        assert created["status"] == "IDLE"
        variables = {"id": created["id"]}
        for name in ("Edit", "Look"):
            body = await client.http.post(
                client.url,
                json={"query": edit_and_look, "operationName": name, "variables": variables},
            )
            result = body.json()
            assert "errors" not in result, result
        look = result["data"]
        assert look["thread"]["state"]["values"]["messages"][0]["content"] == "hello"
        assert look["thread"]["state"]["next"] == []
        assert look["assistants"]["totalCount"] >= 1
        assert "graph" in look["assistants"]["edges"][0]["node"]["graph"]["mermaid"]
    finally:
        await client.close()

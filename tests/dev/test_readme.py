"""The README's first queries work as written, against the repository's own langgraph.json."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest_asyncio
from gql import Client, gql
from gql.transport.websockets import WebsocketsTransport

from tests.conftest import ROOT, EngineUrls, GraphQLClient, LiveServer, make_settings, start_server


@pytest_asyncio.fixture(loop_scope="session")
async def readme_server(
    engines: EngineUrls, database_uri: str, redis_prefix: str
) -> AsyncIterator[LiveServer]:
    # Its own queue: the session's other server serves other graphs and must not take its runs.
    settings = make_settings(f"{redis_prefix}_readme", config=ROOT / "langgraph.json")
    server = await start_server(settings, database_uri=database_uri, redis_uri=engines.redis_uri)
    try:
        yield server
    finally:
        await server.stop()


def _readme_operations() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```graphql\n(.*?)```", text, flags=re.S)


async def test_readme_queries_run(readme_server: LiveServer) -> None:
    create, edit_and_look, run_and_watch = _readme_operations()
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
        ran = (
            await client.http.post(
                client.url,
                json={"query": run_and_watch, "operationName": "RunIt", "variables": variables},
            )
        ).json()
        assert "errors" not in ran, ran
        assert ran["data"]["runAndWait"]["run"]["status"] == "SUCCESS"
        assert ran["data"]["runAndWait"]["values"]["turns"] == 1
        watch = gql(run_and_watch)
        watch.operation_name = "Watch"
        watch.variable_values = variables
        url = readme_server.graphql_url.replace("http://", "ws://")
        transport = WebsocketsTransport(
            url=url, subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL]
        )
        async with Client(transport=transport) as session:
            events = [r["runStream"] async for r in session.subscribe(watch)]
        assert events[0]["event"] == "metadata" and events[-1]["event"] == "end"
        values = [e["data"] for e in events if e["event"] == "values"]
        assert values[-1]["turns"] == 2
        assert values[-1]["messages"][-1]["content"] == "You said: again"
        assert any(e["event"] == "updates" for e in events)
    finally:
        await client.close()

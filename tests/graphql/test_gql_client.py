"""The API through the `gql` client, over HTTP and over WebSocket (graphql-transport-ws)."""

from __future__ import annotations

from gql import Client, gql
from gql.transport.exceptions import TransportQueryError
from gql.transport.httpx import HTTPXAsyncTransport
from gql.transport.websockets import WebsocketsTransport

from tests.conftest import LiveServer


async def test_gql_over_http(live_server: LiveServer) -> None:
    transport = HTTPXAsyncTransport(url=live_server.graphql_url)
    async with Client(transport=transport, fetch_schema_from_transport=True) as session:
        created = await session.execute(
            gql('mutation { createThread(input: {metadata: {via: "gql"}}) { id status } }')
        )
        tid = created["createThread"]["id"]
        query = gql("query($id: ID!) { thread(id: $id) { metadata } }")
        query.variable_values = {"id": tid}
        got = await session.execute(query)
        assert got["thread"]["metadata"] == {"via": "gql"}
        try:
            await session.execute(
                gql('query { thread(id: "00000000-0000-0000-0000-000000000000") { id } }')
            )
        except TransportQueryError as exc:
            assert exc.errors and exc.errors[0]["extensions"]["code"] == "NOT_FOUND"
        else:
            raise AssertionError("expected NOT_FOUND")


async def test_gql_over_websocket(live_server: LiveServer) -> None:
    ws_url = live_server.graphql_url.replace("http://", "ws://")
    transport = WebsocketsTransport(
        url=ws_url, subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL]
    )
    async with Client(transport=transport) as session:
        created = await session.execute(
            gql('mutation { createAssistant(input: {graphId: "echo", name: "ws"}) { id name } }')
        )
        assert created["createAssistant"]["name"] == "ws"
        query = gql("query($id: ID!) { assistant(id: $id) { name graphId } }")
        query.variable_values = {"id": created["createAssistant"]["id"]}
        got = await session.execute(query)
        assert got["assistant"] == {"name": "ws", "graphId": "echo"}

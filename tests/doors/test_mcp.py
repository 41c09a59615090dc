"""`/mcp`: assistants as MCP tools, proved with the official `mcp` Python SDK client against a
live server (both protocol eras it speaks), plus raw JSON-RPC for what a client would never send."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import pytest_asyncio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from app.db.migrate import upgrade
from app.mcp.tools import tool_name
from tests.conftest import (
    ALICE,
    AUTH_CONFIG,
    BOB,
    ROOT,
    EngineUrls,
    GraphQLClient,
    LiveServer,
    make_settings,
    scratch_database,
    start_server,
)

ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
MODES = ["auto", "legacy"]  # 2026-07-28 per-request envelope; the initialize handshake


@asynccontextmanager
async def mcp_client(
    server: LiveServer, *, mode: str = "auto", headers: dict[str, str] | None = None
) -> AsyncIterator[Client]:
    http = create_mcp_http_client(headers=headers)
    async with (
        http,
        Client(streamable_http_client(f"{server.url}/mcp", http_client=http), mode=mode) as client,
    ):
        yield client


def _text(result: Any) -> str:
    return "".join(c.text for c in result.content if c.type == "text")


@pytest.mark.parametrize("mode", MODES)
async def test_tools_list_has_one_tool_per_assistant_with_its_input_schema(
    live_server: LiveServer, mode: str
) -> None:
    async with mcp_client(live_server, mode=mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert {"echo", "slow", "fail", "interrupt", "steps"} <= set(tools)
    slow = tools["slow"].input_schema
    assert slow["type"] == "object"
    assert slow["properties"]["seconds"]["type"] == "number"
    assert tools["ctx"].description == "Greets the user named in the run context."


@pytest.mark.parametrize("mode", MODES)
async def test_call_tool_runs_the_assistant_and_returns_its_values(
    live_server: LiveServer, mode: str
) -> None:
    async with mcp_client(live_server, mode=mode) as client:
        result = await client.call_tool("slow", {"seconds": 0.01, "count": 41})
    assert result.is_error is False
    assert json.loads(_text(result))["count"] == 42
    assert result.structured_content is not None
    assert result.structured_content["count"] == 42


@pytest.mark.parametrize("mode", MODES)
async def test_chat_graph_takes_messages_as_plain_dicts(live_server: LiveServer, mode: str) -> None:
    # Its schema's messages are a `oneOf` of message classes that a plain dict matches several
    # times over: the tool must still take it, as a run's input does.
    async with mcp_client(live_server, mode=mode) as client:
        result = await client.call_tool("echo", {"messages": [{"role": "user", "content": "hi"}]})
        missing = await client.call_tool("echo", {})
    assert result.is_error is False, _text(result)
    assert [m["content"] for m in json.loads(_text(result))["messages"]] == ["hi", "hi"]
    assert missing.is_error is True and "messages" in _text(missing)


@pytest.mark.parametrize("mode", MODES)
async def test_failing_graph_is_an_is_error_result(live_server: LiveServer, mode: str) -> None:
    async with mcp_client(live_server, mode=mode) as client:
        result = await client.call_tool("fail", {"message": "kaboom"})
    assert result.is_error is True
    assert "ValueError" in _text(result) and "kaboom" in _text(result)


@pytest.mark.parametrize("mode", MODES)
async def test_bad_arguments_are_an_is_error_result(live_server: LiveServer, mode: str) -> None:
    async with mcp_client(live_server, mode=mode) as client:
        result = await client.call_tool("slow", {"seconds": "not a number"})
    assert result.is_error is True
    assert "Invalid arguments" in _text(result)


@pytest.mark.parametrize("mode", MODES)
async def test_unknown_tool_is_a_protocol_error(live_server: LiveServer, mode: str) -> None:
    async with mcp_client(live_server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("no_such_tool", {})
    assert caught.value.code == -32602


# --- the wire: what the SDK client would never send ------------------------------------------


async def _post(server: LiveServer, body: bytes, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(f"{server.url}/mcp", content=body, headers={**ACCEPT, **headers})


def _sse_messages(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"jsonrpc": "2.0", "id": 1, "method": ', -32700),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "x": NaN}', -32700),
        (b'\xff\xfe{"jsonrpc": "2.0"}', -32700),
        (b"[" * 5000 + b"]" * 5000, -32700),
        (b'{"jsonrpc": "1.0", "id": 1, "method": "tools/list"}', -32600),
        (b'{"id": 1, "method": "tools/list"}', -32600),
        (b'[{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}]', -32600),
        (b'{"jsonrpc": "2.0", "id": {"x": 1}, "method": "tools/list"}', -32600),
        (b'{"jsonrpc": "2.0", "id": 1, "method": 7}', -32600),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": 3}', -32600),
        (b'"tools/list"', -32600),
    ],
)
async def test_malformed_json_rpc_gets_its_error_code(
    live_server: LiveServer, body: bytes, code: int
) -> None:
    response = await _post(live_server, body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


async def test_unknown_method_is_method_not_found(live_server: LiveServer) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": 9, "method": "tools/frobnicate"}).encode()
    response = await _post(live_server, body)
    assert response.status_code == 200
    [message] = _sse_messages(response.text)
    assert message == {
        "jsonrpc": "2.0",
        "id": 9,
        "error": {"code": -32601, "message": "Method not found", "data": "tools/frobnicate"},
    }


async def test_bad_tool_call_params_are_invalid_params(live_server: LiveServer) -> None:
    body = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": 5}}
    response = await _post(live_server, json.dumps(body).encode())
    [message] = _sse_messages(response.text)
    assert message["error"]["code"] == -32602


async def test_huge_body_is_refused_before_it_is_read(live_server: LiveServer) -> None:
    big = b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "pad": "' + b"x" * (11 << 20)
    response = await _post(live_server, big + b'"}')
    assert response.status_code == 413
    assert response.json()["error"]["code"] == -32600


async def test_get_is_not_allowed_and_delete_finds_no_session(live_server: LiveServer) -> None:
    async with httpx.AsyncClient() as http:
        get = await http.get(f"{live_server.url}/mcp", headers=ACCEPT)
        delete = await http.delete(f"{live_server.url}/mcp", headers=ACCEPT)
    assert get.status_code == 405
    assert delete.status_code == 404


@pytest.mark.parametrize(
    ("offered", "agreed"),
    [
        ("2024-11-05", "2024-11-05"),
        ("2025-03-26", "2025-03-26"),
        ("2025-06-18", "2025-06-18"),
        ("2025-11-25", "2025-11-25"),
        ("2023-01-01", "2025-11-25"),  # unknown: the server counter-offers its latest handshake
    ],
)
async def test_initialize_negotiates_a_revision(
    live_server: LiveServer, offered: str, agreed: str
) -> None:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": offered,
            "capabilities": {},
            "clientInfo": {"name": "old", "version": "0"},
        },
    }
    response = await _post(live_server, json.dumps(body).encode())
    [message] = _sse_messages(response.text)
    assert message["result"]["protocolVersion"] == agreed
    assert "tools" in message["result"]["capabilities"]
    assert "mcp-session-id" not in response.headers  # stateless: no session is kept


@pytest.mark.parametrize("protocol", ["2025-11-25", "2026-07-28"])
async def test_long_calls_get_keep_alive_pings(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    # The SDK pings every 15 s; shortened here so the proof takes a second, not fifteen.
    from mcp.server import _streamable_http_modern
    from sse_starlette import EventSourceResponse

    monkeypatch.setattr(EventSourceResponse, "DEFAULT_PING_INTERVAL", 0.1)
    monkeypatch.setattr(_streamable_http_modern, "_SSE_PING_INTERVAL", 0.1)
    meta = {
        "io.modelcontextprotocol/protocolVersion": protocol,
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    params: dict[str, Any] = {"name": "slow", "arguments": {"seconds": 1.0}}
    if protocol == "2026-07-28":
        params["_meta"] = meta
    body = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": params}
    headers = {"mcp-protocol-version": protocol}
    if protocol == "2026-07-28":  # the per-request envelope repeats the routing in headers
        headers |= {"mcp-method": "tools/call", "mcp-name": "slow"}
    response = await _post(live_server, json.dumps(body).encode(), **headers)
    lines = response.text.splitlines()
    data_at = next((i for i, line in enumerate(lines) if line.startswith("data:")), None)
    assert data_at is not None, response.text
    assert any(line.startswith(":") for line in lines[:data_at]), response.text
    [message] = _sse_messages(response.text)
    assert message["result"]["isError"] is False


# --- the same runs as every other door ---------------------------------------------------------

RUNNING_MCP_RUNS = """query { runs(status: RUNNING, first: 50) {
  edges { node { id status assistantId metadata } } } }"""
RUN = "query($id: ID!) { run(id: $id) { id status } }"
JOIN = gql_query = """subscription($id: ID!) { joinRunStream(runId: $id) { id event data } }"""


async def _wait_for_new_mcp_run(gql_client: GraphQLClient, seen: set[str]) -> str:
    """The id of an MCP run that is running and was not in `seen` (polled: a run's state is
    only observable by asking)."""
    for _ in range(300):
        data = await gql_client.data(RUNNING_MCP_RUNS)
        for edge in data["runs"]["edges"]:
            node = edge["node"]
            if node["metadata"].get("source") == "mcp" and node["id"] not in seen:
                return str(node["id"])
        await asyncio.sleep(0.05)
    raise AssertionError("no MCP run showed up in GraphQL `runs`")


async def _join(server: LiveServer, run_id: str) -> list[dict[str, Any]]:
    from gql import Client as GqlClient
    from gql import gql
    from gql.transport.websockets import WebsocketsTransport

    transport = WebsocketsTransport(
        url=server.graphql_url.replace("http://", "ws://"),
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
    )
    events: list[dict[str, Any]] = []
    async with GqlClient(transport=transport) as session:
        query = gql(JOIN)
        query.variable_values = {"id": run_id}
        async for result in session.subscribe(query):
            events.append(result["joinRunStream"])
    return events


@pytest.mark.parametrize("mode", MODES)
async def test_tool_call_is_a_run_in_graphql_runs_and_joinable(
    live_server: LiveServer, gql_client: GraphQLClient, mode: str
) -> None:
    before = await gql_client.data(RUNNING_MCP_RUNS)
    seen = {e["node"]["id"] for e in before["runs"]["edges"]}
    async with mcp_client(live_server, mode=mode) as client:
        call = asyncio.create_task(client.call_tool("slow", {"seconds": 3, "count": 1}))
        run_id = await _wait_for_new_mcp_run(gql_client, seen)
        events = await _join(live_server, run_id)
        result = await call
    assert result.is_error is False and json.loads(_text(result))["count"] == 2
    assert events[0]["event"] == "metadata"
    assert events[-1]["event"] == "end"
    assert [e for e in events if e["event"] == "values"][-1]["data"]["count"] == 2


@pytest.mark.parametrize("mode", MODES)
async def test_client_that_goes_away_cancels_its_run(
    live_server: LiveServer, gql_client: GraphQLClient, mode: str
) -> None:
    before = await gql_client.data(RUNNING_MCP_RUNS)
    seen = {e["node"]["id"] for e in before["runs"]["edges"]}
    async with mcp_client(live_server, mode=mode) as client:
        call = asyncio.create_task(client.call_tool("slow", {"seconds": 120}))
        run_id = await _wait_for_new_mcp_run(gql_client, seen)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    # Cancelled, the stateless run ends (interrupted) and its temporary thread goes with it.
    for _ in range(300):
        body = await gql_client.execute(RUN, {"id": run_id})
        run = (body.get("data") or {}).get("run")
        if run is None or run["status"] != "RUNNING":
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"run {run_id} still running after its client went away")


# --- auth and the off switch -------------------------------------------------------------------

DOORS_OFF = ROOT / "tests" / "fixtures" / "doors_off" / "langgraph.json"
CREATE_ASSISTANT = """mutation($name: String!) {
  createAssistant(input: {graphId: "whoami", name: $name}) { id name } }"""


@asynccontextmanager
async def _server(engines: EngineUrls, prefix: str, config: Any) -> AsyncIterator[LiveServer]:
    async with scratch_database(engines.database_uri, prefix="lgql_mcp") as url:
        await upgrade(url)
        server = await start_server(
            make_settings(prefix, config=config), database_uri=url, redis_uri=engines.redis_uri
        )
        try:
            yield server
        finally:
            await server.stop()


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def auth_server(engines: EngineUrls, redis_prefix: str) -> AsyncIterator[LiveServer]:
    async with _server(engines, f"{redis_prefix}_mcp_auth", AUTH_CONFIG) as server:
        yield server


async def test_mcp_needs_the_auth_handlers_credentials(auth_server: LiveServer) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode()
    response = await _post(auth_server, body)
    assert response.status_code == 401
    response = await _post(auth_server, body, authorization="Bearer nope")
    assert response.status_code == 401


@pytest.mark.parametrize("mode", MODES)
async def test_users_see_and_call_only_the_assistants_the_handlers_allow(
    auth_server: LiveServer, mode: str, unique: str
) -> None:
    alice = GraphQLClient(auth_server.graphql_url, headers=ALICE)
    try:
        await alice.data(CREATE_ASSISTANT, {"name": f"alice_tool_{unique}"})
    finally:
        await alice.close()
    async with mcp_client(auth_server, mode=mode, headers=ALICE) as client:
        alice_tools = {t.name for t in (await client.list_tools()).tools}
        mine = await client.call_tool(f"alice_tool_{unique}", {})
    async with mcp_client(auth_server, mode=mode, headers=BOB) as client:
        bob_tools = {t.name for t in (await client.list_tools()).tools}
        with pytest.raises(MCPError) as caught:
            await client.call_tool(f"alice_tool_{unique}", {})
        system = await client.call_tool("whoami", {})
    assert f"alice_tool_{unique}" in alice_tools
    assert f"alice_tool_{unique}" not in bob_tools
    assert {"echo", "whoami"} <= bob_tools  # the graphs' own assistants are everyone's
    assert caught.value.code == -32602
    # Each run acts for its caller, as every other run does.
    assert mine.structured_content == {"user_id": "alice", "user": "alice"}
    assert system.structured_content == {"user_id": "bob", "user": "bob"}


def test_tool_names_are_valid_mcp_names() -> None:
    assert tool_name("echo") == "echo"
    assert tool_name("My research agent (v2)!") == "My_research_agent_v2"
    assert tool_name("résumé.writer") == "r_sum_.writer"
    assert tool_name("!!!") == ""
    assert len(tool_name("x" * 500)) == 128


async def test_duplicate_and_unnamable_assistants(auth_server: LiveServer, unique: str) -> None:
    alice = GraphQLClient(auth_server.graphql_url, headers=ALICE)
    try:
        first = await alice.data(CREATE_ASSISTANT, {"name": f"dup {unique}"})
        await alice.data(CREATE_ASSISTANT, {"name": f"dup?{unique}"})  # same tool name, newer
        await alice.data(CREATE_ASSISTANT, {"name": "???"})
    finally:
        await alice.close()
    async with mcp_client(auth_server, headers=ALICE) as client:
        tools = (await client.list_tools()).tools
        result = await client.call_tool(f"dup_{unique}", {})
    names = [t.name for t in tools]
    assert names.count(f"dup_{unique}") == 1
    assert "" not in names and len(names) == len(set(names))
    assert result.is_error is False
    # The older assistant keeps the name.
    [dup] = [t for t in tools if t.name == f"dup_{unique}"]
    assert dup.description == f"Runs the assistant 'dup {unique}'"
    assert first["createAssistant"]["name"] == f"dup {unique}"


async def test_disable_mcp_turns_the_endpoint_off(engines: EngineUrls, redis_prefix: str) -> None:
    async with _server(engines, f"{redis_prefix}_mcp_off", DOORS_OFF) as server:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode()
        response = await _post(server, body)
        graphql = GraphQLClient(server.graphql_url)
        try:
            ok = await graphql.data("{ __typename }")
        finally:
            await graphql.close()
    assert response.status_code == 404
    assert ok == {"__typename": "Query"}


async def test_a_nul_character_in_the_params_is_invalid_params(live_server: LiveServer) -> None:
    """Postgres can store U+0000 nowhere: refused up front, naming where it is (it failed in the
    database, as an internal error)."""
    body = {
        "jsonrpc": "2.0",
        "id": 3,
        "method": "tools/call",
        "params": {"name": "echo", "arguments": {"messages": "a\x00b"}},
    }
    response = await _post(live_server, json.dumps(body).encode())
    assert response.json()["error"]["code"] == -32602
    assert "params.arguments.messages" in response.json()["error"]["message"]

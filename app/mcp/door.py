"""`/mcp`: the Model Context Protocol over Streamable HTTP, stateless, as LangGraph Server
serves it.

The `mcp` SDK's low-level `Server` and `StreamableHTTPSessionManager` (stateless) speak the
protocol: both eras (the 2026-07-28 per-request envelope its clients try first, and the
`initialize` handshake of 2024-11-05 … 2025-11-25 they fall back to), SSE answers with keep-alive
pings while a long call runs, and cancellation of the handler when the client goes away. This
module adds what LangGraph Server does around it: GET → 405 and DELETE → 404 (no sessions are
kept), JSON-RPC errors with the codes the spec names for malformed envelopes (see
`app.jsonrpc`), `http.disable_mcp`, and the langgraph.json auth user for every handler.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app import __version__
from app.auth.context import acting_as
from app.auth.middleware import USER_SCOPE_KEY
from app.errors import ServiceError
from app.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    EnvelopeError,
    check_envelope,
    error_response,
    read_body,
    replay,
    send_error,
)
from app.mcp.tools import AssistantTools
from app.services.container import Services

log = logging.getLogger("lgql.mcp")


def _services_and_user(ctx: ServerRequestContext[Any, Any]) -> tuple[Services, Any]:
    # Handlers of the handshake era run in the session manager's task group, not the request's
    # task, so the auth user (a context variable set by the auth middleware) is not inherited:
    # it is read from the HTTP request the SDK hands each message.
    request = ctx.request
    if not isinstance(request, Request):
        raise MCPError(INVALID_PARAMS, "This server answers MCP over HTTP only")
    return request.app.state.services, request.scope.get(USER_SCOPE_KEY)


@contextlib.contextmanager
def _protocol_errors() -> Iterator[None]:
    """Service errors as JSON-RPC errors; anything unexpected as a plain -32603 (the SDK's
    handshake-era loop would otherwise answer code 0 with the exception's text)."""
    try:
        yield
    except MCPError:
        raise
    except ServiceError as exc:
        raise MCPError(INVALID_PARAMS, exc.message) from None
    except Exception:
        log.exception("MCP handler failed")
        raise MCPError(INTERNAL_ERROR, "Internal server error") from None


async def _list_tools(
    ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    services, user = _services_and_user(ctx)
    with acting_as(user), _protocol_errors():
        return await AssistantTools(services).list()


async def _call_tool(
    ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
) -> types.CallToolResult:
    services, user = _services_and_user(ctx)
    with acting_as(user), _protocol_errors():
        tools = AssistantTools(services)
        entry = await tools.find(params.name)
        if entry is None:
            # An unknown tool is a protocol error (MCP 2025-11-25, "Error Handling").
            raise MCPError(INVALID_PARAMS, f"Unknown tool: {params.name}")
        return await tools.call(entry, dict(params.arguments or {}))


def build_server() -> Server[Any]:
    return Server(
        "lgql",
        version=__version__,
        instructions="Each tool runs one LangGraph assistant of this server and returns its output.",
        on_list_tools=_list_tools,
        on_call_tool=_call_tool,
        # Our tools declare no `Mcp-Param-*` headers, so there is nothing to check them against;
        # without this the SDK would list every tool (schemas and all) before each call.
        get_tool_input_schema=lambda _name: None,
    )


class McpDoor:
    """The ASGI app at `/mcp`. Enter `lifespan()` for the app's lifetime."""

    def __init__(self, *, max_body_bytes: int) -> None:
        self.max_body_bytes = max_body_bytes
        # JSON-RPC answers as SSE (`json_response=False`): long calls get keep-alive pings.
        self.manager = StreamableHTTPSessionManager(
            build_server(), stateless=True, json_response=False
        )

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        async with self.manager.run():
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        services: Services | None = getattr(scope["app"].state, "services", None)
        http = (services.langgraph_config.http if services else None) or {}
        if http.get("disable_mcp"):
            await Response(status_code=404)(scope, receive, send)
            return
        method = scope.get("method")
        if method == "GET":
            # No server-initiated stream: every answer rides on the POST that asked.
            await Response(status_code=405, headers={"Allow": "POST"})(scope, receive, send)
            return
        if method == "DELETE":
            # Stateless: there is never a session to end.
            await error_response(None, -32600, "Session not found", status=404)(
                scope, receive, send
            )
            return
        if method != "POST":
            await Response(status_code=405, headers={"Allow": "POST"})(scope, receive, send)
            return
        try:
            body = await read_body(receive, self.max_body_bytes)
            check_envelope(body)
        except EnvelopeError as exc:
            await send_error(scope, receive, send, exc)
            return
        await self.manager.handle_request(scope, replay(body, receive), send)

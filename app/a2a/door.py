"""`/a2a/{assistant_id}` and the agent cards: Google's Agent2Agent protocol, JSON-RPC 2.0.

`a2a-sdk`'s `JsonRpcDispatcher` speaks the protocol (1.0 methods, and 0.3's `message/send`,
`message/stream`, `tasks/get`, `tasks/cancel`, `tasks/resubscribe` that LangGraph Server's
clients use); `app.a2a.handler` answers it from the services. This module adds the envelope
checks of `app.jsonrpc` (the SDK answers invalid UTF-8 or deep nesting with an internal error,
and caps no body), `http.disable_a2a`, and one card per assistant the caller may see.
"""

from __future__ import annotations

import json

from a2a.server.context import ServerCallContext
from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.server.routes.common import DefaultServerCallContextBuilder
from a2a.server.routes.jsonrpc_dispatcher import JsonRpcDispatcher
from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
)
from a2a.utils.constants import PROTOCOL_VERSION_0_3, PROTOCOL_VERSION_1_0, TransportProtocol
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from app import __version__
from app.a2a.handler import ASSISTANT_KEY, SERVICES_KEY, LgqlRequestHandler
from app.errors import ServiceError
from app.jsonrpc import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    EnvelopeError,
    check_envelope,
    read_body,
    replay,
)
from app.keep_alive import answer_with_keep_alive
from app.services.assistants import AssistantRecord
from app.services.container import Services

# Methods answered once the run ends, in both protocol versions.
BLOCKING_METHODS = frozenset({"message/send", "SendMessage"})
MODES = ["text/plain", "application/json"]


def _disabled(services: Services | None) -> bool:
    http = (services.langgraph_config.http if services else None) or {}
    return bool(http.get("disable_a2a"))


class _ContextBuilder(DefaultServerCallContextBuilder):
    """The SDK's call context, plus the services and the assistant of the path."""

    def build(self, request: Request) -> ServerCallContext:
        context = super().build(request)
        context.state[SERVICES_KEY] = request.app.state.services
        context.state[ASSISTANT_KEY] = request.path_params["assistant_id"]
        return context


def agent_card(assistant: AssistantRecord, base_url: str) -> AgentCard:
    """The card of one assistant: its JSON-RPC endpoint in both protocol versions served."""
    url = f"{base_url.rstrip('/')}/a2a/{assistant.assistant_id}"
    description = (
        assistant.description or f"LangGraph assistant '{assistant.name}' ({assistant.graph_id})"
    )
    return AgentCard(
        name=assistant.name or assistant.graph_id,
        description=description,
        version=__version__,
        supported_interfaces=[
            AgentInterface(
                url=url,
                protocol_binding=TransportProtocol.JSONRPC,
                protocol_version=PROTOCOL_VERSION_1_0,
            ),
            AgentInterface(
                url=url,
                protocol_binding=TransportProtocol.JSONRPC,
                protocol_version=PROTOCOL_VERSION_0_3,
            ),
        ],
        capabilities=AgentCapabilities(streaming=True, push_notifications=False),
        default_input_modes=MODES,
        default_output_modes=MODES,
        skills=[
            AgentSkill(
                id=f"{assistant.graph_id}-main",
                name=f"{assistant.name or assistant.graph_id} capabilities",
                description=description,
                tags=[assistant.graph_id],
                input_modes=MODES,
                output_modes=MODES,
            )
        ],
    )


async def _card_response(request: Request, assistant_id: str | None) -> Response:
    services: Services | None = getattr(request.app.state, "services", None)
    if services is None or _disabled(services):
        return JSONResponse({"error": "Not Found"}, status_code=404)
    if not assistant_id:
        return JSONResponse(
            {"error": "Give the assistant: ?assistant_id=<assistant id or graph id>"},
            status_code=400,
        )
    try:
        assistant = await services.assistants.get(assistant_id)
    except ServiceError as exc:
        return JSONResponse({"error": exc.message}, status_code=404)
    base = str(request.base_url).rstrip("/") + request.scope.get("root_path", "")
    return JSONResponse(agent_card_to_dict(agent_card(assistant, base)))


async def well_known_card(request: Request) -> Response:
    """`/.well-known/agent-card.json?assistant_id=…`, as on LangGraph Server."""
    return await _card_response(request, request.query_params.get("assistant_id"))


async def assistant_card(request: Request) -> Response:
    """`/a2a/{assistant_id}/.well-known/agent-card.json`: where an A2A client that is given the
    agent's URL looks for its card."""
    return await _card_response(request, request.path_params["assistant_id"])


class A2ADoor:
    """The JSON-RPC endpoint (POST `/a2a/{assistant_id}`)."""

    def __init__(self, *, max_body_bytes: int) -> None:
        self.max_body_bytes = max_body_bytes
        self.dispatcher = JsonRpcDispatcher(
            LgqlRequestHandler(), context_builder=_ContextBuilder(), enable_v0_3_compat=True
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if _disabled(getattr(scope["app"].state, "services", None)):
            await Response(status_code=404)(scope, receive, send)
            return
        if scope.get("method") != "POST":
            await Response(status_code=405, headers={"Allow": "POST"})(scope, receive, send)
            return
        try:
            body = await read_body(receive, self.max_body_bytes)
            envelope = check_envelope(body)
        except EnvelopeError as exc:
            # JSON-RPC errors at HTTP 200, as the SDK's own; only an oversized body is a 413.
            if exc.status != 413:
                exc.status = 200
            await exc.response()(scope, receive, send)
            return
        request = Request(scope, replay(body, receive))
        if envelope.method in BLOCKING_METHODS:
            await self._answer_with_keep_alive(request, send)
            return
        response = await self.dispatcher.handle_requests(request)
        await _params_errors_named(response)(scope, receive, send)

    async def _answer_with_keep_alive(self, request: Request, send: Send) -> None:
        """`message/send` waits for the run to end, which may take minutes: kept alive with
        newlines (`app.keep_alive`; the dispatcher answers every JSON-RPC outcome with 200), so
        idle timeouts (proxies, the SDK client's own httpx read timeout) do not cut the call.
        A client that goes away leaves the run going, for `tasks/get`."""

        async def answer() -> Response:
            return _params_errors_named(await self.dispatcher.handle_requests(request))

        await answer_with_keep_alive(
            answer(), request.scope, request.receive, send, media_type="application/json"
        )


def _params_errors_named(response: Response) -> Response:
    """The SDK's 0.3 adapter validates a request's envelope and params as one model and calls
    every failure -32600 (invalid request); the envelope was checked above, so what it refuses
    is the params: -32602, as JSON-RPC 2.0 names it."""
    if not isinstance(response, JSONResponse):
        return response
    body = json.loads(bytes(response.body))
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or error.get("code") != INVALID_REQUEST:
        return response
    error["code"] = INVALID_PARAMS
    return JSONResponse(body, status_code=response.status_code)

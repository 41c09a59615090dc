"""The GraphQL transport: Strawberry's ASGI view, tuned to the GraphQL-over-HTTP spec.

One ASGI app answers `/graphql` over every transport lgql promises: GraphQL over HTTP (GET and
POST), subscriptions over WebSocket (`graphql-transport-ws` and legacy `graphql-ws`), over SSE
and over multipart HTTP, and GraphiQL for browsers, its assets served from `app/static/graphiql/`.

What Strawberry 0.341 does not do by itself, and this module adds:
- answers `application/graphql-response+json` when the client prefers it, with 400 and no
  `data` key on request errors (parse, validation, variable coercion), so the `graphql-http`
  audit passes 61 of 61 (vanilla: 53 ok, 8 warn);
- SSE and multipart subscriptions (off by default since Strawberry 0.320);
- GraphiQL without a CDN (Strawberry's page loads everything from unpkg: blank when offline);
- a request body cap (413) and GraphQL-shaped JSON for transport errors (Strawberry answers
  them in plain text);
- strict JSON decoding, so no body can fail with anything but a 400;
- a clean 400 for a subscription sent without a streaming transport;
- subscriptions over `Accept: multipart/mixed` without `subscriptionSpec`, in the incremental
  delivery format (`IncrementalMultipartTransport`), beside Apollo's multipart protocol;
- a clear refusal of graphql-sse's single connection mode (reservations);
- GraphiQL showing every event of a subscription (`lgql-graphiql.js`), not only the last.
"""

from __future__ import annotations

import html
import json
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import strawberry
import strawberry.asgi
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from graphql import GraphQLError, parse
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.exceptions import ConnectionRejectionError, MissingQueryError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.http.streaming import (
    AsyncTextStream,
    HTTPStreamTransport,
    JSONEncoder,
    MultipartTransport,
)
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.subscriptions import (
    GRAPHQL_SSE_PROTOCOL,
    GRAPHQL_TRANSPORT_WS_PROTOCOL,
    GRAPHQL_WS_PROTOCOL,
    MULTIPART_SUBSCRIPTION_PROTOCOL,
)
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType
from strawberry.types.unset import UNSET, UnsetType
from strawberry.utils.operation import get_operation_type

from app.auth.context import Authorization, set_user_for_task
from app.auth.handlers import AuthHandlerError, Credentials, credential_headers
from app.errors import RETRY_AFTER_SECONDS, ServiceError, ServiceUnavailable
from app.keep_alive import answer_with_keep_alive
from app.memory import MemoryGiveBack
from app.ws_protocols import CheckedGraphQLTransportWSHandler, CheckedGraphQLWSHandler
from schema.operation_name import MUST_PROVIDE_OPERATION_NAME, several_operations

__all__ = [
    "DEFAULT_KEEP_ALIVE_INTERVAL",
    "DEFAULT_MAX_BODY_BYTES",
    "GRAPHIQL_STATIC_DIR",
    "GRAPHIQL_STATIC_PATH",
    "GRAPHQL_RESPONSE_MEDIA_TYPE",
    "JSON_MEDIA_TYPE",
    "ContextGetter",
    "LgqlGraphQL",
    "graphiql_static_mount",
    "graphql_routes",
    "make_graphql_app",
    "negotiate_media_type",
]

GRAPHQL_RESPONSE_MEDIA_TYPE = "application/graphql-response+json"
JSON_MEDIA_TYPE = "application/json"
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
# Legacy graphql-ws `ka` messages; well under the 60 s idle timeout of common proxies.
DEFAULT_KEEP_ALIVE_INTERVAL = 15.0
GRAPHIQL_STATIC_DIR = Path(__file__).parent / "static" / "graphiql"
SUBSCRIPTION_NEEDS_STREAM = (
    "Subscriptions need a streaming transport: a WebSocket, or HTTP with "
    "`Accept: text/event-stream` (SSE) or `Accept: multipart/mixed` (incremental delivery; "
    'Apollo\'s `multipart/mixed;subscriptionSpec="1.0"` too).'
)
SSE_SINGLE_CONNECTION_REFUSED = (
    "graphql-sse's single connection mode (reservations: PUT, then an event stream token) is "
    "not supported: use its distinct connections mode (`singleConnection: false`, the default), "
    "which POSTs each operation with `Accept: text/event-stream`, or a WebSocket."
)
SSE_TOKEN_HEADER = "x-graphql-event-stream-token"
# Our own protocol name for Strawberry's transport map (Strawberry knows "sse" and
# "multipart-subscription").
INCREMENTAL_MULTIPART_PROTOCOL = "multipart-incremental"
GRAPHIQL_STATIC_PATH = "/static/graphiql"

# Apollo's multipart protocol comes before the incremental one: an `Accept` naming
# `subscriptionSpec` is Apollo's.
ALL_SUBSCRIPTION_PROTOCOLS = (
    GRAPHQL_TRANSPORT_WS_PROTOCOL,
    GRAPHQL_WS_PROTOCOL,
    GRAPHQL_SSE_PROTOCOL,
    MULTIPART_SUBSCRIPTION_PROTOCOL,
    INCREMENTAL_MULTIPART_PROTOCOL,
)

ContextGetter = Callable[[Request | WebSocket, Response | None], Awaitable[Any]]
#: Whether a page of this origin may open a WebSocket to the app (a cross-origin handshake).
OriginCheck = Callable[[WebSocket, str], bool]

# `extensions.code` for errors raised as `cross_web.HTTPException` (by Strawberry, by this view,
# or by a context getter refusing a request), in the vocabulary of the GraphQL contract.
_HTTP_ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
}


UNAVAILABLE_CODE = ServiceUnavailable.code
# A WebSocket frame this large leaves megabytes free once handled: worth giving back.
LARGE_FRAME_BYTES = 1024 * 1024


class _BodyTooLargeError(Exception):
    """Raised from inside `receive` so the body is never buffered past the cap."""


def negotiate_media_type(accept: str | None) -> str:
    """Choose the response media type for an `Accept` header.

    The most preferred (highest `q`, then earliest) of `application/graphql-response+json` and
    `application/json` wins; wildcards only ever select `application/json`, as the spec asks
    until its "watershed". A missing or unsatisfiable header also gets `application/json`
    rather than 406, which is what legacy clients expect.
    """
    best, best_q = JSON_MEDIA_TYPE, -1.0
    for part in (accept or "").split(","):
        media_range, *raw_params = (p.strip() for p in part.split(";"))
        params = dict(p.split("=", 1) for p in raw_params if "=" in p)
        charset = params.get("charset", "utf-8").strip('"').lower()
        if charset not in ("utf-8", "utf8"):
            continue
        try:
            q = float(params.get("q", "1"))
        except ValueError:
            continue
        media_range = media_range.lower()
        if media_range == GRAPHQL_RESPONSE_MEDIA_TYPE:
            candidate = GRAPHQL_RESPONSE_MEDIA_TYPE
        elif media_range in (JSON_MEDIA_TYPE, "application/*", "*/*"):
            candidate = JSON_MEDIA_TYPE
        else:
            continue
        if q > best_q and q > 0:
            best, best_q = candidate, q
    return best


def _is_request_error(data: GraphQLHTTPResponse) -> bool:
    # A request error stops execution before it starts, so no error can carry a `path`; a
    # null `data` after a field error always has one, and must stay a 200 with `data`.
    errors = data.get("errors")
    return (
        data.get("data") is None
        and bool(errors)
        and all(not (isinstance(e, dict) and e.get("path")) for e in errors or ())
    )


def _unavailable(data: GraphQLHTTPResponse | list[GraphQLHTTPResponse]) -> bool:
    """Whether an answer failed because Postgres or Redis is down (`SERVICE_UNAVAILABLE`): then
    it goes out as 503 with `Retry-After`, so HTTP clients and proxies retry it as they would
    any unavailable service, whatever `data` a partial answer still carries."""
    for answer in data if isinstance(data, list) else [data]:
        for error in answer.get("errors") or ():
            extensions = error.get("extensions") if isinstance(error, dict) else None
            if isinstance(extensions, dict) and extensions.get("code") == UNAVAILABLE_CODE:
                return True
    return False


def _error_body(message: str, code: str | None) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message}
    if code:
        error["extensions"] = {"code": code}
    return {"errors": [error]}


def _streams_itself(request: Request) -> bool:
    """SSE and Apollo's multipart subscriptions carry their own heartbeats. (Incremental
    multipart clients, e.g. urql, send `Accept: multipart/mixed` with every operation: their
    queries and mutations keep the keep-alive; their subscriptions answer at once anyway.)"""
    accept = request.headers.get("accept", "").lower()
    return "text/event-stream" in accept or "subscriptionspec" in accept


def _accepts_incremental_multipart(accept: str) -> bool:
    for part in accept.split(","):
        media_type, *params = (p.strip().lower() for p in part.split(";"))
        if media_type == "multipart/mixed" and not any(
            p.startswith("subscriptionspec") for p in params
        ):
            return True
    return False


class IncrementalMultipartTransport(MultipartTransport, HTTPStreamTransport):
    """Subscriptions over `Accept: multipart/mixed` (no `subscriptionSpec`): the incremental
    delivery format of the GraphQL-over-HTTP RFC, which urql, meros and graphql-helix clients
    read: `Content-Type: multipart/mixed; boundary="-"`, each event a part
    `{"data": …, "hasNext": true}`, then a part `{"hasNext": false}` and the close delimiter.
    The format has no heartbeat (an empty part would read as an event): behind a proxy that
    cuts idle connections, use SSE or a WebSocket. Queries and mutations sent with this
    `Accept` are answered as JSON (`LgqlGraphQL.execute_operation`)."""

    protocol = INCREMENTAL_MULTIPART_PROTOCOL  # type: ignore[assignment]
    batching_error = "Batching is not supported for multipart subscriptions"
    heartbeat_interval = 0.0  # none: `LgqlGraphQL._stream_result` streams without
    send_initial_heartbeat = False

    def __init__(self) -> None:
        super().__init__("-")

    def accepts(self, accept: str) -> bool:
        return _accepts_incremental_multipart(accept)

    def encode_next(self, response: GraphQLHTTPResponse, encode_json: JSONEncoder) -> str:
        return self.encode_multipart_data({**response, "hasNext": True}, encode_json)

    def encode_complete(self) -> str:
        # Each part ends with the delimiter `\r\n---`; `--` makes the last one the close.
        return self.encode_multipart_data({"hasNext": False}, json.dumps) + "--\r\n"

    def heartbeat_message(self, encode_json: JSONEncoder) -> str:
        return ""


NOT_AN_OPERATION = (
    "The request body must be a JSON object (one GraphQL operation) or an array of them."
)


def _require_operations(data: object) -> None:
    if not isinstance(data, dict | list):
        raise HTTPException(400, NOT_AN_OPERATION)


def _plain_json(request: Request) -> bool:
    """A POST of JSON whose answer is one JSON body (`LgqlGraphQL._run_json`): not one asking
    for an incremental multipart stream (SSE and Apollo's multipart never get here)."""
    content_type = request.headers.get("content-type", "")
    return (
        request.method == "POST"
        and content_type.partition(";")[0].strip().lower() == JSON_MEDIA_TYPE
        and "multipart/mixed" not in request.headers.get("accept", "").lower()
    )


def _sse_reservation(request: Request) -> bool:
    """A request of graphql-sse's single connection mode: it carries the reservation token."""
    return SSE_TOKEN_HEADER in request.headers or "token" in request.query_params


def _parsed(query: str | None) -> object:
    try:
        return parse(query or "")
    except GraphQLError:
        return None


def _is_subscription(request_data: GraphQLRequestData) -> bool:
    """Whether the request's operation is a subscription; a document that does not parse, or
    names no operation it holds, is not (the usual path then reports it)."""
    try:
        document = parse(request_data.query or "")
        return (
            get_operation_type(document, request_data.operation_name) is OperationType.SUBSCRIPTION
        )
    except (GraphQLError, RuntimeError):
        return False


class LgqlGraphQL(strawberry.asgi.GraphQL[Any, None]):
    """Strawberry's ASGI view with spec-level content negotiation, local GraphiQL, a body cap."""

    graphql_transport_ws_handler_class = CheckedGraphQLTransportWSHandler
    graphql_ws_handler_class = CheckedGraphQLWSHandler
    stream_transport_classes_by_protocol: Mapping[str, type[HTTPStreamTransport]] = {
        **strawberry.asgi.GraphQL.stream_transport_classes_by_protocol,
        INCREMENTAL_MULTIPART_PROTOCOL: IncrementalMultipartTransport,
    }

    def __init__(
        self,
        schema: strawberry.Schema,
        *,
        context_getter: ContextGetter,
        graphiql: bool,
        allowed_origins: Sequence[str] | None,
        websocket_origin_allowed: OriginCheck | None = None,
        keep_alive_interval: float = DEFAULT_KEEP_ALIVE_INTERVAL,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql" if graphiql else None,
            keep_alive=True,
            keep_alive_interval=keep_alive_interval,
            subscription_protocols=ALL_SUBSCRIPTION_PROTOCOLS,
            allowed_origins=tuple(allowed_origins or ()),
        )
        self.context_getter = context_getter
        self.websocket_origin_allowed = websocket_origin_allowed
        self.max_body_bytes = max_body_bytes
        self.memory = MemoryGiveBack()

    def is_websocket_origin_allowed(self, request: WebSocket, origin: str) -> bool:
        """`allowed_origins`, or the app's own policy: the one CORS applies over HTTP."""
        if super().is_websocket_origin_allowed(request, origin):
            return True
        return self.websocket_origin_allowed is not None and self.websocket_origin_allowed(
            request, origin
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            try:
                await super().__call__(scope, self._capped_frames(receive, send), send)
            finally:
                # A closed connection's memory is free, but glibc keeps it (app.memory).
                self.memory.soon()
            return
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope, receive=self._capped_receive(receive))
        response: Response
        try:
            declared = int(request.headers.get("content-length") or 0)
        except ValueError:
            declared = -1
        try:
            if declared < 0:
                raise HTTPException(400, "Invalid Content-Length header")
            if declared > self.max_body_bytes:
                raise _BodyTooLargeError
            if request.method == "PUT" or _sse_reservation(request):
                raise HTTPException(
                    405 if request.method == "PUT" else 400, SSE_SINGLE_CONNECTION_REFUSED
                )
            if request.method == "POST" and not _streams_itself(request):
                await self._run_with_keep_alive(request, scope, receive, send)
                return
            response = await self.run(request)
        except _BodyTooLargeError:
            response = self.error_response(
                request, 413, f"Request body is larger than {self.max_body_bytes} bytes"
            )
        except HTTPException as e:
            response = self.error_response(request, e.status_code, e.reason)
        await response(scope, receive, send)

    async def _run_with_keep_alive(
        self, request: Request, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Answer as usual when the operation is quick; when it is slow (`runAndWait` on a long
        run), keep the connection alive with newlines until the JSON body is ready
        (`app.keep_alive`)."""
        media_type = negotiate_media_type(request.headers.get("accept"))
        await answer_with_keep_alive(
            self._response_for(request), scope, receive, send, media_type=media_type
        )

    async def _response_for(self, request: Request) -> Response:
        try:
            if _plain_json(request):
                return await self._run_json(request)
            return await self.run(request)
        except _BodyTooLargeError:
            return self.error_response(
                request, 413, f"Request body is larger than {self.max_body_bytes} bytes"
            )
        except HTTPException as e:
            return self.error_response(request, e.status_code, e.reason)

    async def _run_json(self, request: Request) -> Response:
        """Strawberry's `run` for a POST of one JSON operation that does not stream (nearly every
        request): the same steps in the same order (sub-response, context, body, execution,
        result), without what only other requests need (its request adapter, the content type
        parsed as a MIME header, the stream transports looked for in `Accept` again, the root
        value). Anything else (a batch, a body that is not an object) goes to `run`, which reads
        the body Starlette kept and refuses it as it always has."""
        sub_response = await self.get_sub_response(request)
        context = await self.get_context(request, response=sub_response)
        data = self.parse_json(await request.body())
        if not isinstance(data, dict):
            _require_operations(data)
            return await self.run(request, context=context)
        query = data.get("query")
        if not isinstance(query, str | None):
            raise HTTPException(
                400, "The GraphQL operation's `query` must be a string or null, if provided."
            )
        variables = data.get("variables")
        if not isinstance(variables, dict | None):
            raise HTTPException(
                400, "The GraphQL operation's `variables` must be an object or null, if provided."
            )
        extensions = data.get("extensions")
        if not isinstance(extensions, dict | None):
            raise HTTPException(
                400,
                "The GraphQL operation's `extensions` must be an object or null, if provided.",
            )
        request_data = GraphQLRequestData(
            query=query,
            variables=variables,
            operation_name=data.get("operationName"),
            extensions=extensions,
            protocol="http",
        )
        result = await self._execute_one("POST", context, request_data)
        response_data = await self.process_result(request, result)
        if result.errors:
            self._handle_errors(result.errors, response_data)
        return self.create_response(response_data, sub_response)

    def _capped_frames(self, receive: Receive, send: Send) -> Receive:
        """WebSocket frames are capped at the body limit, as HTTP bodies are: a larger frame
        closes the socket with 1009 (message too big) and reaches Strawberry as a disconnect, so
        it is never decoded. (`lgql serve` also sets uvicorn's `ws_max_size` to the same limit,
        so uvicorn itself does not buffer more; under another server this is the guard.)"""

        async def capped() -> Message:
            message = await receive()
            if message["type"] == "websocket.receive":
                size = len(message.get("text") or message.get("bytes") or "")
                if size > LARGE_FRAME_BYTES:
                    self.memory.soon()
                if size > self.max_body_bytes:
                    await send(
                        {
                            "type": "websocket.close",
                            "code": 1009,
                            "reason": f"Message larger than {self.max_body_bytes} bytes",
                        }
                    )
                    return {"type": "websocket.disconnect", "code": 1009}
            return message

        return capped

    def _capped_receive(self, receive: Receive) -> Receive:
        # Content-Length can be absent (chunked uploads), so count what actually arrives.
        received = 0

        async def capped() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _BodyTooLargeError
            return message

        return capped

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        """Strawberry's, with a JSON body that is neither an object nor an array refused as a
        bad request (Strawberry fails on it with an AttributeError: a 500)."""
        if request.method == "POST" and "application/json" in (request.content_type or ""):
            _require_operations(self.parse_json(await request.get_body()))
        return await super().parse_http_body(request)

    async def execute_operation(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        request_data: GraphQLRequestData | list[GraphQLRequestData],
        context: Any,
        root_value: None,
        sub_response: Response,
    ) -> Any:
        """Strawberry's, except that only subscriptions stream over the incremental multipart
        transport: its clients ask for `multipart/mixed` with every operation."""
        if (
            isinstance(request_data, GraphQLRequestData)
            and request_data.protocol == INCREMENTAL_MULTIPART_PROTOCOL
            and not _is_subscription(request_data)
        ):
            request_data = replace(request_data, protocol="http")
        return await super().execute_operation(
            request, request_adapter, request_data, context, root_value, sub_response
        )

    def _stream_result(
        self, request: Request, result: Any, transport: HTTPStreamTransport
    ) -> AsyncTextStream:
        """Strawberry's, except for the incremental multipart transport: its stream opens with
        the first delimiter and has no heartbeats."""
        if not isinstance(transport, IncrementalMultipartTransport):
            return super()._stream_result(request, result, transport)

        async def stream() -> AsyncGenerator[str, None]:
            yield "---"
            pending: list[Any] = []
            async for value in result:
                response, pending = await self._process_stream_result(request, value, pending)
                yield transport.encode_next(response, self.encode_json_string)
            yield transport.encode_complete()

        return stream

    async def execute_single(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: Any,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        """Strawberry's, except that subscriptions are refused: Strawberry allows them on every
        POST (for the multipart transport) and, without a streaming `Accept`, executes them as
        queries, whose stream then fails as a null value (an INTERNAL_SERVER_ERROR)."""
        return await self._execute_one(request_adapter.method, context, request_data)

    async def _execute_one(
        self, method: str, context: Any, request_data: GraphQLRequestData
    ) -> ExecutionResult:
        """`execute_single` for a request of `method`."""
        allowed = {OperationType.QUERY}
        if method == "POST":
            allowed.add(OperationType.MUTATION)
        try:
            return await self.schema.execute(
                request_data.query,
                root_value=None,  # the view has none (`get_root_value`)
                variable_values=request_data.variables,
                context_value=context,
                operation_name=request_data.operation_name,
                allowed_operation_types=allowed,
                operation_extensions=request_data.extensions,
            )
        except CannotGetOperationTypeError as e:
            raise HTTPException(400, e.as_http_error_reason()) from e
        except InvalidOperationTypeError as e:
            # Strawberry checks the type of the document's first operation when none is named,
            # before the schema's RequireOperationName can refuse the document.
            if request_data.operation_name is None and several_operations(
                _parsed(request_data.query)
            ):
                raise HTTPException(400, MUST_PROVIDE_OPERATION_NAME) from e
            if e.operation_type is OperationType.SUBSCRIPTION:
                raise HTTPException(400, SUBSCRIPTION_NEEDS_STREAM) from e
            raise HTTPException(400, e.as_http_error_reason(method)) from e
        except MissingQueryError as e:
            raise HTTPException(400, "No GraphQL query found in the request") from e

    def decode_json(self, data: str | bytes) -> object:
        """Request bodies and WebSocket messages are decoded by orjson, which is strict where
        `json.loads` is lax or fails with other errors than `JSONDecodeError` (a 500): it
        refuses NaN and Infinity, lone surrogates, and nesting past 1024 levels, all as
        malformed JSON (400 `BAD_REQUEST`, or WebSocket close 4400)."""
        return orjson.loads(data)

    def encode_json(self, data: object) -> str:
        """Responses and WebSocket messages are encoded by orjson: a streamed run sends one
        message per event, and the stdlib encoder was a tenth of an API process's time for them.
        As text, since WebSocket clients expect text frames; what orjson refuses (integers past
        64 bits) falls back to the stdlib encoder."""
        try:
            return orjson.dumps(data).decode()
        except TypeError:
            return json.dumps(data, separators=(",", ":"))

    def error_response(self, request: Request, status_code: int, message: str) -> Response:
        """A transport-level error (before any GraphQL execution) as a GraphQL-shaped body."""
        response = JSONResponse(
            _error_body(message, _HTTP_ERROR_CODES.get(status_code)),
            status_code=status_code,
            media_type=negotiate_media_type(request.headers.get("accept")),
        )
        if status_code == 405:
            response.headers["allow"] = "GET, POST"
        return response

    async def on_ws_connect(self, context: Any) -> UnsetType | dict[str, object] | None:
        """Authenticate a WebSocket connection at `connection_init`, with its handshake headers
        and the credentials in its payload (browsers cannot set handshake headers). The user is
        set for the connection's task, whose operations (tasks it starts later) inherit it."""
        services = getattr(context, "services", None)
        auth: Authorization | None = getattr(services, "auth", None)
        if auth is None or auth.handlers is None:  # no auth configured (or a bare test app)
            return UNSET
        extra = credential_headers(context.connection_params)
        try:
            user = await auth.handlers.authenticate(Credentials(context.request, extra))
        except ServiceError as exc:
            raise ConnectionRejectionError(
                {"message": exc.message, "extensions": {"code": exc.code}}
            ) from None
        except AuthHandlerError:
            raise ConnectionRejectionError(
                {
                    "message": "Internal server error",
                    "extensions": {"code": "INTERNAL_SERVER_ERROR"},
                }
            ) from None
        set_user_for_task(user)
        return UNSET

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Any:
        return await self.context_getter(
            request, response if isinstance(response, Response) else None
        )

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        sub_response = await super().get_sub_response(request)
        # The sub-response is never sent itself: its media_type carries the negotiated type
        # to create_response, which Strawberry calls without the request.
        sub_response.media_type = negotiate_media_type(request.headers.get("accept"))
        return sub_response

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        media_type = sub_response.media_type or JSON_MEDIA_TYPE
        status_code = 200
        if (
            media_type == GRAPHQL_RESPONSE_MEDIA_TYPE
            and not isinstance(response_data, list)
            and _is_request_error(response_data)
        ):
            status_code = 400
            response_data = response_data.copy()
            response_data.pop("data", None)
        if _unavailable(response_data):
            status_code = 503
        response = Response(
            self.encode_json(response_data), status_code=status_code, media_type=media_type
        )
        if status_code == 503:
            response.headers["retry-after"] = str(RETRY_AFTER_SECONDS)
        response.headers.raw.extend(sub_response.headers.raw)
        if sub_response.background:
            response.background = sub_response.background
        if sub_response.status_code:
            response.status_code = sub_response.status_code
        return response

    async def render_graphql_ide(self, request: Request) -> Response:
        assets = html.escape(request.scope.get("root_path", "") + GRAPHIQL_STATIC_PATH)
        return HTMLResponse(GRAPHIQL_HTML.replace("{{ASSETS}}", assets))


def make_graphql_app(
    schema: strawberry.Schema,
    *,
    context_getter: ContextGetter,
    graphiql: bool,
    allowed_origins: Sequence[str] | None,
    websocket_origin_allowed: OriginCheck | None = None,
    keep_alive_interval: float = DEFAULT_KEEP_ALIVE_INTERVAL,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> LgqlGraphQL:
    """Build the `/graphql` ASGI app with every transport switched on.

    Args:
        schema: the Strawberry schema to serve.
        context_getter: builds the per-operation context from the HTTP request (with the
            sub-response whose status, headers and background tasks are merged into the
            answer) or from the WebSocket (response `None`; called once per connection).
            Raising `cross_web.HTTPException(401, reason)` refuses an HTTP request with a
            GraphQL-shaped error (`UNAUTHENTICATED`; 403 gives `FORBIDDEN`).
        graphiql: serve GraphiQL on GET with `Accept: text/html`; mount
            `graphiql_static_mount()` beside it for its assets.
        allowed_origins: origins whose pages may open a WebSocket cross-origin (`"*"` for
            any); same-origin and non-browser clients are always allowed.
        websocket_origin_allowed: decides the cross-origin handshakes `allowed_origins`
            does not allow (the app's CORS policy, so one setting governs both).
        keep_alive_interval: seconds between legacy `graphql-ws` keep-alive (`ka`) messages.
        max_body_bytes: larger request bodies are refused with 413.
    """
    return LgqlGraphQL(
        schema,
        context_getter=context_getter,
        graphiql=graphiql,
        allowed_origins=allowed_origins,
        websocket_origin_allowed=websocket_origin_allowed,
        keep_alive_interval=keep_alive_interval,
        max_body_bytes=max_body_bytes,
    )


def graphql_routes(app: LgqlGraphQL, path: str = "/graphql") -> list[BaseRoute]:
    """HTTP and WebSocket routes for `app` at `path` (Starlette needs one route per scope)."""
    # No `methods=`: other verbs must reach the view to get its GraphQL-shaped 405.
    return [Route(path, app), WebSocketRoute(path, app)]


def graphiql_static_mount() -> Mount:
    """The mount serving GraphiQL's vendored JS and CSS at `/static/graphiql`."""
    return Mount(
        GRAPHIQL_STATIC_PATH, app=StaticFiles(directory=GRAPHIQL_STATIC_DIR), name="graphiql"
    )


# Our own page rather than Strawberry's: every asset is local, the endpoint is the page's own
# URL (so mounts and proxies keep working), and subscriptions use graphql-transport-ws.
GRAPHIQL_HTML = """<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>lgql GraphiQL</title>
    <style>
      body { height: 100%; margin: 0; width: 100%; overflow: hidden; }
      #graphiql { height: 100vh; }
    </style>
    <link rel="stylesheet" href="{{ASSETS}}/graphiql.min.css" />
    <script src="{{ASSETS}}/react.production.min.js"></script>
    <script src="{{ASSETS}}/react-dom.production.min.js"></script>
    <script src="{{ASSETS}}/graphiql.min.js"></script>
    <script src="{{ASSETS}}/lgql-graphiql.js"></script>
  </head>
  <body>
    <div id="graphiql">Loading GraphiQL...</div>
    <script>
      const endpoint = new URL(window.location.href);
      endpoint.search = "";
      endpoint.hash = "";
      const subscriptionUrl = new URL(endpoint.href);
      subscriptionUrl.protocol = endpoint.protocol === "https:" ? "wss:" : "ws:";
      // WebSocket subscriptions speak graphql-transport-ws (the bundled graphql-ws client);
      // the headers typed in GraphiQL travel as its connection_init payload.
      // A subscription's results accumulate in the result pane (lgql-graphiql.js).
      const fetcher = lgqlAccumulatingFetcher(
        GraphiQL.createFetcher({ url: endpoint.href, subscriptionUrl: subscriptionUrl.href }),
      );
      const defaultQuery = [
        "# lgql: LangGraph agents over GraphQL.",
        "# Ctrl-Enter runs the operation; the Docs pane describes every type and field.",
        "",
        "{",
        "  __typename",
        "}",
        "",
      ].join("\\n");
      // The run console (graphs drawn, runs streaming live) sits beside the endpoint.
      const consoleLink = React.createElement(
        "a",
        { href: new URL("console/", endpoint).href, id: "lgql-console-link", style: { fontSize: "0.6em", marginLeft: "0.8em" } },
        "run console",
      );
      ReactDOM.createRoot(document.getElementById("graphiql")).render(
        React.createElement(
          GraphiQL,
          {
            fetcher,
            defaultQuery,
            defaultEditorToolsVisibility: true,
            isHeadersEditorEnabled: true,
            inputValueDeprecation: true,
          },
          React.createElement(GraphiQL.Logo, null, "GraphiQL", consoleLink),
        ),
      );
    </script>
  </body>
</html>
"""

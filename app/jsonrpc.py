"""The JSON-RPC 2.0 envelope, checked before a protocol SDK sees a request (MCP, A2A).

The `mcp` and `a2a-sdk` servers parse bodies themselves, but each has gaps a hostile client can
reach: a wrong `jsonrpc` version or a batch answered as "invalid params" (MCP), invalid UTF-8 or
deep nesting answered as an internal error (A2A), and no body cap that answers in JSON-RPC. So
both doors read the body here first, capped, and refuse what is not one well-formed request or
notification with the code JSON-RPC 2.0 names for it; what passes is replayed to the SDK
unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send

from app.storable import NUL_MESSAGE, nul_at

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

# Deeper JSON than this is refused as a parse error: the SDKs decode with Python's `json`, which
# fails with RecursionError (an internal error) somewhere near 1000 levels.
MAX_DEPTH = 256


class EnvelopeError(Exception):
    """A request that is not one well-formed JSON-RPC 2.0 request or notification."""

    def __init__(
        self, code: int, message: str, *, status: int = 400, request_id: Any = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.request_id = request_id

    def response(self) -> JSONResponse:
        return error_response(self.request_id, self.code, self.message, status=self.status)


def error_response(request_id: Any, code: int, message: str, *, status: int = 200) -> JSONResponse:
    body = {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status)


@dataclass(frozen=True)
class Envelope:
    """A checked request: its raw body (to replay) and its decoded fields."""

    body: bytes
    method: str
    request_id: Any
    is_notification: bool
    params: Any


async def read_body(receive: Receive, max_bytes: int) -> bytes:
    """The whole request body. Raises EnvelopeError (413) past `max_bytes`, counting what
    arrives (Content-Length may be absent or wrong)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise EnvelopeError(
                INVALID_REQUEST, f"Request body is larger than {max_bytes} bytes", status=413
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _depth_exceeds(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def check_envelope(body: bytes) -> Envelope:
    """Decode and check one JSON-RPC 2.0 message. Raises EnvelopeError: -32700 for malformed
    JSON (strict: no NaN, valid UTF-8, bounded nesting), -32600 for a batch or a malformed
    request object."""
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise EnvelopeError(PARSE_ERROR, "Parse error: the body is not valid JSON") from None
    if _depth_exceeds(decoded, MAX_DEPTH):
        raise EnvelopeError(PARSE_ERROR, f"Parse error: JSON nested deeper than {MAX_DEPTH}")
    if isinstance(decoded, list):
        raise EnvelopeError(INVALID_REQUEST, "Batch requests are not supported")
    if not isinstance(decoded, dict):
        raise EnvelopeError(INVALID_REQUEST, "The body must be a JSON-RPC request object")
    request_id = decoded.get("id")
    id_ok = request_id is None or (
        isinstance(request_id, str | int) and not isinstance(request_id, bool)
    )
    if not id_ok:
        raise EnvelopeError(
            INVALID_REQUEST, "Invalid request: `id` must be a string, an integer or null"
        )
    if decoded.get("jsonrpc") != "2.0":
        raise EnvelopeError(
            INVALID_REQUEST,
            "Invalid request: `jsonrpc` must be exactly '2.0'",
            request_id=request_id,
        )
    method = decoded.get("method")
    if not isinstance(method, str) or not method:
        if "result" in decoded or "error" in decoded:  # a response posted by a client (MCP allows)
            return Envelope(body, "", request_id, True, None)
        raise EnvelopeError(
            INVALID_REQUEST, "Invalid request: `method` must be a string", request_id=request_id
        )
    params = decoded.get("params")
    if params is not None and not isinstance(params, dict | list):
        raise EnvelopeError(
            INVALID_REQUEST,
            "Invalid request: `params` must be an object or an array",
            request_id=request_id,
        )
    where = nul_at(params, "params")
    if where is not None:
        raise EnvelopeError(
            INVALID_PARAMS, f"Invalid params: {NUL_MESSAGE} (at `{where}`)", request_id=request_id
        )
    return Envelope(body, method, request_id, "id" not in decoded, params)


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands `body` over once, then waits on the real one (for disconnects)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def send_error(scope: Scope, receive: Receive, send: Send, error: EnvelopeError) -> None:
    await error.response()(scope, receive, send)

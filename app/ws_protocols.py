"""Strawberry's WebSocket protocol handlers, with every client message checked for shape before
Strawberry reads it.

Strawberry indexes messages as the protocols describe them and fails with a TypeError or an
AttributeError (an unhandled exception, the socket dropped without a close code) on a frame that
is JSON but not an object (`[]`), a `subscribe` whose payload is null, or variables sent as a list.
Here each of those closes the socket with 4400 and a reason saying what was wrong, as the
graphql-transport-ws protocol asks for an invalid message; the legacy graphql-ws protocol names
no code for it, and gets the same.

A subscription's plain events (data alone: nearly all of a run's stream) leave graphql-transport-ws
by a shorter path than Strawberry's (`_send_result_stream`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError

from app.socket_writes import direct_send
from schema.event_execution import DirectEvents, direct_events

__all__ = ["CheckedGraphQLTransportWSHandler", "CheckedGraphQLWSHandler", "message_problem"]

#: Close code for a message the server cannot process (graphql-transport-ws "Invalid message").
INVALID_MESSAGE = 4400

_OPTIONAL_OBJECTS = ("variables", "extensions")


def _operation_problem(payload: Any) -> str | None:
    if not isinstance(payload, dict):
        return "`payload` must be an object with a `query`"
    if not isinstance(payload.get("query"), str):
        return "`payload.query` must be a string"
    for name in _OPTIONAL_OBJECTS:
        value = payload.get(name)
        if value is not None and not isinstance(value, dict):
            return f"`payload.{name}` must be an object or null"
    operation_name = payload.get("operationName")
    if operation_name is not None and not isinstance(operation_name, str):
        return "`payload.operationName` must be a string or null"
    return None


def message_problem(message: Any, *, operation_types: tuple[str, ...]) -> str | None:
    """What is wrong with the shape of a client message (None: nothing). `operation_types` are
    the message types that carry an operation (`subscribe`, or legacy `start`)."""
    if not isinstance(message, dict):
        return "Message must be a JSON object"
    kind = message.get("type")
    if not isinstance(kind, str):
        return "Message `type` must be a string"
    if kind in operation_types or kind in ("complete", "stop"):
        if not isinstance(message.get("id"), str) or not message["id"]:
            return f"`{kind}` needs a non-empty string `id`"
    if kind in operation_types:
        return _operation_problem(message.get("payload"))
    return None


class CheckedGraphQLTransportWSHandler(BaseGraphQLTransportWSHandler[Any, Any]):
    """graphql-transport-ws, closing with 4400 on a malformed message."""

    async def _send_result_stream(self, operation: Operation[Any, Any], result_source: Any) -> None:
        """Strawberry's, except that a result with data alone goes out as its `next` message
        here, as `Operation.send_next` would send it, instead of through the four coroutines
        and the payload dict it builds per event; a result with errors or extensions, or the
        first result's pre-execution error, is Strawberry's to send. After the first result,
        events the schema renders from a plan are taken straight from the resolver's stream
        (`schema.event_execution.direct_events`)."""
        send_json = self.websocket.send_json
        first = True
        async for result in result_source:
            if first and isinstance(result, PreExecutionError):
                await self._handle_pre_execution_error(operation, result)
                return
            first = False
            if not isinstance(result, ExecutionResult):
                await self._reject_incremental_delivery(operation)
                return
            if result.errors or result.extensions:
                await operation.send_next(result)
            elif not operation.completed:  # `send_operation_message`'s own check
                await send_json(
                    {"id": operation.id, "type": "next", "payload": {"data": result.data}}
                )
            direct = direct_events()
            if direct is not None:
                await self._send_direct(operation, result_source, direct)
                return

    async def _send_direct(
        self, operation: Operation[Any, Any], result_source: Any, direct: DirectEvents
    ) -> None:
        send_json = self._event_sender()
        while True:
            try:
                data = await direct.next_data()
            except StopAsyncIteration:
                break
            if data is None:
                # Given back: the result stream executes it (an error, extension results).
                await operation.send_next(await anext(result_source))
            elif not operation.completed:
                await send_json({"id": operation.id, "type": "next", "payload": {"data": data}})
        # The resolver is done: Strawberry's stream ends too (its extensions' exits).
        async for result in result_source:
            await operation.send_next(result)

    def _event_sender(self) -> Callable[[dict[str, Any]], Awaitable[None]]:
        """How a subscription's direct events are sent: as `send_json` does, straight to the
        connection's own `send` when it offers one (`app.socket_writes.direct_send`), past
        Starlette's `WebSocket` and the middleware's wrappers, which do nothing to a message
        sent on an open connection; a client gone away raises what `send_json` raises."""
        websocket = self.websocket
        scope = websocket.ws.scope if isinstance(websocket, ASGIWebSocketAdapter) else {}
        send = direct_send(scope)
        if send is None:
            return websocket.send_json
        encode = self.view.encode_json

        async def send_json(message: dict[str, Any]) -> None:
            encoded = encode(message)
            try:
                if isinstance(encoded, bytes):
                    await send({"type": "websocket.send", "bytes": encoded})
                else:
                    await send({"type": "websocket.send", "text": encoded})
            except OSError as exc:  # uvicorn's ClientDisconnected, as Starlette turns it
                raise WebSocketDisconnected from exc

        return send_json

    async def handle_message(self, message: Any) -> None:
        problem = message_problem(message, operation_types=("subscribe",))
        if problem is not None:
            await self.websocket.close(code=INVALID_MESSAGE, reason=problem)
            return
        await super().handle_message(message)


class CheckedGraphQLWSHandler(BaseGraphQLWSHandler[Any, Any]):
    """The legacy graphql-ws protocol, closing with 4400 on a malformed message."""

    async def handle_message(self, message: Any) -> None:
        problem = message_problem(message, operation_types=("start",))
        if problem is not None:
            await self.websocket.close(code=INVALID_MESSAGE, reason=problem)
            return
        await super().handle_message(message)

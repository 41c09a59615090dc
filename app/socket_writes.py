"""Socket writes gathered: a burst of WebSocket frames in two writes instead of one per frame, and
an HTTP response's head in the same write as its body.

Every write to a connected peer is a system call that wakes the peer, and on a small machine that
is what a request pays most for after the round trips themselves (py-spy, the new-thread wait:
the response's two writes were 5.6 % of the API's CPU).

WebSocket: a run streams its events in bursts (a batch of a hundred arrives from Redis at once),
and a subscription sends each event as a frame of its own, as graphql-transport-ws and graphql-ws
require. uvicorn writes every frame to the socket at once: a system call per event, which was a
fifth of the API's CPU while streaming (py-spy, `stream100` back to back). Here the connection's
transport sends the first write of a turn of the event loop at once, gathers what follows in the
same turn and sends it in one write at the end of the turn (or as soon as `MAX_PENDING_BYTES` are
waiting): a burst's first event is not delayed, and the rest leave together. Everything written to the
connection goes through the same buffer, uvicorn's own control frames included, so the order on
the wire is the order of the writes; flow control is unchanged (the socket's buffer still pauses
the senders).

`CoalescingWebSocketProtocol` is uvicorn's sans-I/O WebSocket protocol with that transport; it is
given to uvicorn as its `ws` protocol class. A text message on an open connection with no extension
(no permessage-deflate) is framed here (RFC 6455 section 5.2: a server's frames are unmasked, so a
data frame is a 2-, 4- or 10-byte header and the payload) instead of by the `websockets` protocol
object, which builds a `Frame` and serializes it in Python for every event; anything else (binary,
close, compression, a closing connection) is uvicorn's.

HTTP: uvicorn writes a response's status line and headers when the app starts the response, and
its body in a second write: two system calls, two segments, and a client woken twice for one
answer. `OnePieceHttpProtocol` is uvicorn's httptools protocol with the same transport, told to
hold a write that starts a response (`HTTP/1.x`) until the next one, which carries both: an answer
made at once (every GraphQL and REST answer) leaves in one write. A head with nothing after it in
the same turn (a streamed answer whose first chunk comes later, a `100 Continue`) goes out at the
end of the turn, so nothing waits for more than that.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import OPEN

if TYPE_CHECKING:
    from uvicorn._types import ASGISendEvent

#: Written at once when this much is waiting, so that a long burst is not held in memory.
MAX_PENDING_BYTES = 64 * 1024


def _never(data: bytes | bytearray | memoryview) -> bool:
    return False


class CoalescingTransport(asyncio.Transport):
    """`transport`, with the writes of one loop turn sent in one write; a turn's first write
    goes out at once, unless `hold(data)` says it waits for the next one (then both go out
    together, at the next write or the turn's end, whichever comes first)."""

    def __init__(
        self,
        transport: asyncio.Transport,
        loop: asyncio.AbstractEventLoop,
        *,
        hold: Callable[[bytes | bytearray | memoryview], bool] = _never,
    ) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._hold = hold
        self._pending: list[bytes] = []
        self._size = 0
        self._scheduled = False
        self._holding = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if self._holding:
            # The held write leaves now, with this one, in one write.
            self._holding = False
            self._pending.append(bytes(data))
            self.flush()
            return
        if not self._scheduled:
            # The turn's first write goes out at once (a lone event, or a burst's first, is
            # not held back); what follows in the same turn waits for its end.
            self._scheduled = True
            self._loop.call_soon(self._flush_scheduled)
            if self._hold(data):
                self._holding = True
                self._pending.append(bytes(data))
                self._size += len(data)
                return
            self._transport.write(data)
            return
        self._pending.append(bytes(data))
        self._size += len(data)
        if self._size >= MAX_PENDING_BYTES:
            self.flush()

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def _flush_scheduled(self) -> None:
        self._scheduled = self._holding = False
        self.flush()

    def flush(self) -> None:
        """Send what is waiting now."""
        self._holding = False
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        self._size = 0
        self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._size = 0
        self._holding = False
        self._transport.abort()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._size

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)


_FIN_TEXT = 0x81  # FIN + opcode 1 (text)


def text_frame(payload: bytes) -> bytes:
    """A whole, unmasked text frame carrying `payload` (what a server sends)."""
    n = len(payload)
    if n < 126:
        return bytes((_FIN_TEXT, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", _FIN_TEXT, 126, n) + payload
    return struct.pack("!BBQ", _FIN_TEXT, 127, n) + payload


#: The ASGI scope extension under which `CoalescingWebSocketProtocol` offers its own `send`: an
#: app sending many messages on one connection (a subscription's events) skips Starlette's
#: `WebSocket` and the middleware's wrappers around it (`direct_send`).
DIRECT_SEND = "lgql.direct_send"


def direct_send(scope: Mapping[str, Any]) -> Callable[[ASGISendEvent], Awaitable[None]] | None:
    """The connection's own `send`, when `CoalescingWebSocketProtocol` serves it. It sends what
    the ASGI `send` would, and raises `ClientDisconnected` (an OSError) once the client is gone."""
    extensions = scope.get("extensions") or {}
    return extensions.get(DIRECT_SEND)


class CoalescingWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, writing through a `CoalescingTransport`, text messages
    framed here when nothing else is to be done to them."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's do not register as `asyncio.Transport`).
        super().connection_made(CoalescingTransport(cast(asyncio.Transport, transport), self.loop))

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][DIRECT_SEND] = self.send

    async def send(self, message: ASGISendEvent) -> None:
        text = message.get("text") if message["type"] == "websocket.send" else None
        if (
            text is None
            or message.get("bytes") is not None
            or not self.handshake_complete
            or self.close_sent
            or self.initial_response is not None
            or self.conn.extensions
            or self.conn.expect_continuation_frame
        ):
            await super().send(message)
            return
        if not self.writable.is_set():
            await self.writable.wait()
        if self.disconnected or self.conn.state is not OPEN:
            raise ClientDisconnected()
        self.transport.write(text_frame(text.encode()))


def _response_head(data: bytes | bytearray | memoryview) -> bool:
    """Whether `data` starts an HTTP response (its status line): uvicorn writes the status line
    and the headers in one write of their own."""
    return bytes(data[:7]) == b"HTTP/1."


class OnePieceHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools HTTP/1.1 protocol, sending a response's head with its body."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._raw_transport = cast(asyncio.Transport, transport)
        super().connection_made(
            CoalescingTransport(self._raw_transport, self.loop, hold=_response_head)
        )

    def handle_websocket_upgrade(self) -> None:
        # The WebSocket protocol gets the socket's own transport (it wraps it its own way),
        # once anything written for this connection has left.
        cast(CoalescingTransport, self.transport).flush()
        self.transport = self._raw_transport
        super().handle_websocket_upgrade()

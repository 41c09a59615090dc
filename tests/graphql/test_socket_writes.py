"""Socket writes gathered (app/socket_writes.py). WebSocket frames: a turn's first write goes out
at once, the rest of the turn in one write at its end; nothing is reordered or lost, a close comes
after the frames written before it; and through uvicorn, a burst reaches a real client whole and
in order. HTTP: a response's head waits for its body and leaves with it, in one write."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
import uvicorn
import websockets
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from uvicorn.server import ServerState

from app.socket_writes import (
    MAX_PENDING_BYTES,
    CoalescingTransport,
    CoalescingWebSocketProtocol,
    OnePieceHttpProtocol,
)
from tests.conftest import free_port


class _Recording(asyncio.Transport):
    """A transport that keeps what it is asked to write, and whether it was closed."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = self.aborted = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def get_write_buffer_size(self) -> int:
        return 0


async def _next_turn() -> None:
    await asyncio.sleep(0)


async def test_a_turns_first_write_goes_at_once_and_the_rest_at_its_end() -> None:
    inner = _Recording()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"a")
    transport.write(b"b")
    transport.write(b"c")
    assert inner.writes == [b"a"]
    assert transport.get_write_buffer_size() == 2
    await _next_turn()
    assert inner.writes == [b"a", b"bc"]
    transport.write(b"d")  # a new turn: at once again
    assert inner.writes == [b"a", b"bc", b"d"]
    await _next_turn()
    assert inner.writes == [b"a", b"bc", b"d"]


async def test_a_long_burst_leaves_as_it_reaches_the_limit() -> None:
    inner = _Recording()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    chunk = b"x" * 1024
    transport.write(b"first")
    for _ in range(MAX_PENDING_BYTES // len(chunk)):
        transport.write(chunk)
    assert inner.writes == [b"first", chunk * (MAX_PENDING_BYTES // len(chunk))]
    transport.write(b"tail")
    await _next_turn()
    assert b"".join(inner.writes) == b"first" + chunk * (MAX_PENDING_BYTES // 1024) + b"tail"


async def test_close_sends_what_was_written_before_it_and_abort_drops_it() -> None:
    inner = _Recording()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"a")
    transport.write(b"b")
    transport.close()
    assert inner.writes == [b"a", b"b"] and inner.closed

    inner = _Recording()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"a")
    transport.write(b"b")
    transport.abort()
    await _next_turn()
    assert inner.writes == [b"a"] and inner.aborted


async def test_a_held_write_leaves_with_the_next_one_or_at_the_turns_end() -> None:
    inner = _Recording()
    transport = CoalescingTransport(
        inner, asyncio.get_running_loop(), hold=lambda data: bytes(data).startswith(b"HEAD")
    )
    transport.write(b"HEAD1 ")
    assert inner.writes == [] and transport.get_write_buffer_size() == 6
    transport.write(b"body1")  # the two in one write, at once
    transport.write(b"more")  # the rest of the turn at its end, as without a hold
    assert inner.writes == [b"HEAD1 body1"]
    await _next_turn()
    assert inner.writes == [b"HEAD1 body1", b"more"]
    transport.write(b"HEAD2")  # nothing after it in its turn: it leaves at the turn's end
    assert inner.writes == [b"HEAD1 body1", b"more"]
    await _next_turn()
    assert inner.writes[-1] == b"HEAD2"
    transport.write(b"HEAD3")
    transport.close()  # a close sends it first
    assert inner.writes[-1] == b"HEAD3" and inner.closed

    inner = _Recording()
    transport = CoalescingTransport(inner, asyncio.get_running_loop(), hold=lambda _: True)
    transport.write(b"held")
    transport.abort()
    await _next_turn()
    assert inner.writes == [] and inner.aborted


async def _hello(scope: Any, receive: Any, send: Any) -> None:
    await PlainTextResponse("hello")(scope, receive, send)


async def test_an_http_answer_leaves_in_one_write_head_and_body() -> None:
    """uvicorn writes a response's head and its body apart; `OnePieceHttpProtocol` sends them
    in one write, for each answer on a kept-alive connection, and a streamed answer's head
    still leaves before its later chunks."""
    config = uvicorn.Config(_hello, lifespan="off", log_level="warning")
    config.load()
    protocol = OnePieceHttpProtocol(config, ServerState(), {})
    inner = _Recording()
    protocol.connection_made(inner)
    try:
        for n in (1, 2):
            protocol.data_received(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
            async with asyncio.timeout(10):
                while len(inner.writes) < n:  # the app answers in a task of its own
                    await _next_turn()
            await _next_turn()
            assert len(inner.writes) == n, inner.writes
            head, _, body = inner.writes[-1].partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK") and body == b"hello", inner.writes
    finally:
        protocol.connection_lost(None)


BURST = 500


async def _burst(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.receive_text()
    for i in range(BURST):  # one turn: no send waits
        await websocket.send_text(f"event {i}")
    await websocket.close(1000, "done")


@pytest_asyncio.fixture(loop_scope="session")
async def burst_url() -> AsyncIterator[str]:
    app = Starlette(routes=[WebSocketRoute("/burst", _burst)])
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, port=port, lifespan="off", log_level="warning", ws=CoalescingWebSocketProtocol
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    yield f"ws://127.0.0.1:{port}/burst"
    server.should_exit = True
    await task


async def test_a_burst_reaches_a_real_client_whole_in_order_then_the_close(
    burst_url: str,
) -> None:
    async with websockets.connect(burst_url) as client:
        await client.send("go")
        received = [message async for message in client]
        assert (client.close_code, client.close_reason) == (1000, "done")
    assert received == [f"event {i}" for i in range(BURST)]

"""Malformed WebSocket messages close the socket with 4400 and a reason (graphql-transport-ws and
legacy graphql-ws), and frames larger than the body limit close it with 1009. A subscription's
`next` messages are the protocol's whether an event carries errors or not (plain events take a
shorter path than Strawberry's, app.ws_protocols), and their frames are the RFC's whether the
connection compresses or not (uncompressed text frames are framed by app.socket_writes)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Iterator
from typing import Any

import pytest
import strawberry
import websockets
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from websockets.frames import Frame, Opcode
from websockets.typing import Subprotocol

from app.graphql_app import graphql_routes, make_graphql_app
from app.socket_writes import CoalescingWebSocketProtocol, text_frame
from app.ws_protocols import message_problem
from tests.helpers import serve_in_thread

MAX_BODY_BYTES = 4096
TRANSPORT_WS = Subprotocol("graphql-transport-ws")
LEGACY_WS = Subprotocol("graphql-ws")


@strawberry.type
class Query:
    @strawberry.field
    def hello(self) -> str:
        return "hi"


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def count(self, to: int = 2) -> AsyncGenerator[int, None]:
        for i in range(1, to + 1):
            await asyncio.sleep(0)
            yield i

    @strawberry.subscription
    async def sized(self, sizes: list[int]) -> AsyncGenerator[str, None]:
        for size in sizes:
            yield "é" * (size // 2) + "x" * (size % 2)

    @strawberry.subscription
    async def holes(self) -> AsyncGenerator[int, None]:
        """A non-null Int, with a null in the middle: that event is an error."""
        for value in (1, None, 3):
            yield value  # type: ignore[misc]


async def context(request: Request | WebSocket, response: Response | None) -> dict[str, Any]:
    return {"request": request, "response": response}


@pytest.fixture(scope="module")
def ws_url() -> Iterator[str]:
    schema = strawberry.Schema(query=Query, subscription=Subscription)
    app = Starlette(
        routes=graphql_routes(
            make_graphql_app(
                schema,
                context_getter=context,
                graphiql=False,
                allowed_origins=None,
                max_body_bytes=MAX_BODY_BYTES,
            )
        )
    )
    # uvicorn's own frame limit (16 MiB) stays at its default: the app's cap must hold by itself.
    with serve_in_thread(app, log_level="warning", ws=CoalescingWebSocketProtocol) as base:
        yield base.replace("http://", "ws://", 1) + "/graphql"


async def _closed_by(ws: websockets.ClientConnection) -> tuple[int | None, str]:
    """The close code and reason the server sends (messages before it are skipped)."""
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            await ws.recv()
    frame = closed.value.rcvd
    assert frame is not None, "the server dropped the socket without a close frame"
    return frame.code, frame.reason


BAD_TRANSPORT_MESSAGES = [
    pytest.param([], "Message must be a JSON object", id="list-frame"),
    pytest.param("subscribe", "Message must be a JSON object", id="string-frame"),
    pytest.param({"type": 3}, "Message `type` must be a string", id="number-type"),
    pytest.param(
        {"type": "subscribe", "id": "1", "payload": None}, "`payload` must be", id="null-payload"
    ),
    pytest.param(
        {"type": "subscribe", "id": "1", "payload": {"query": "{hello}", "variables": [1]}},
        "`payload.variables` must be an object or null",
        id="list-variables",
    ),
    pytest.param(
        {"type": "subscribe", "id": "1", "payload": {"query": ["{hello}"]}},
        "`payload.query` must be a string",
        id="list-query",
    ),
    pytest.param(
        {"type": "subscribe", "id": 1, "payload": {"query": "{hello}"}},
        "needs a non-empty string `id`",
        id="number-id",
    ),
    pytest.param({"type": "complete", "id": None}, "needs a non-empty string", id="null-id"),
]


@pytest.mark.parametrize(("message", "reason"), BAD_TRANSPORT_MESSAGES)
async def test_graphql_transport_ws_closes_4400_on_malformed_message(
    ws_url: str, message: Any, reason: str
) -> None:
    async with websockets.connect(ws_url, subprotocols=[TRANSPORT_WS]) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps(message))
        code, why = await _closed_by(ws)
    assert code == 4400
    assert reason in why


async def test_graphql_transport_ws_closes_4400_on_malformed_first_message(ws_url: str) -> None:
    async with websockets.connect(ws_url, subprotocols=[TRANSPORT_WS]) as ws:
        await ws.send("[]")
        assert await _closed_by(ws) == (4400, "Message must be a JSON object")


BAD_LEGACY_MESSAGES = [
    pytest.param([], "Message must be a JSON object", id="list-frame"),
    pytest.param({"type": "start", "id": "1", "payload": None}, "`payload` must be", id="null"),
    pytest.param(
        {
            "type": "start",
            "id": "1",
            "payload": {"query": "subscription { count }", "variables": []},
        },
        "`payload.variables` must be an object or null",
        id="list-variables",
    ),
    pytest.param({"type": "stop", "id": ["1"]}, "needs a non-empty string `id`", id="list-id"),
]


@pytest.mark.parametrize(("message", "reason"), BAD_LEGACY_MESSAGES)
async def test_legacy_graphql_ws_closes_4400_on_malformed_message(
    ws_url: str, message: Any, reason: str
) -> None:
    async with websockets.connect(ws_url, subprotocols=[LEGACY_WS]) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps(message))
        code, why = await _closed_by(ws)
    assert code == 4400
    assert reason in why


async def test_well_formed_subscription_still_streams_after_the_checks(ws_url: str) -> None:
    async with websockets.connect(ws_url, subprotocols=[TRANSPORT_WS]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        payload = {"query": "subscription($n: Int!) { count(to: $n) }", "variables": {"n": 2}}
        await ws.send(json.dumps({"type": "subscribe", "id": "a", "payload": payload}))
        got = [json.loads(await ws.recv()) for _ in range(3)]
    assert [m["type"] for m in got] == ["next", "next", "complete"]
    assert [m["payload"]["data"]["count"] for m in got[:2]] == [1, 2]


COMPRESSION = pytest.mark.parametrize("compression", ["deflate", None], ids=["deflate", "plain"])


@COMPRESSION
async def test_events_with_and_without_errors_are_next_messages(
    ws_url: str, compression: str | None
) -> None:
    async with websockets.connect(
        ws_url, subprotocols=[TRANSPORT_WS], compression=compression
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(
            json.dumps(
                {"type": "subscribe", "id": "h", "payload": {"query": "subscription { holes }"}}
            )
        )
        got = [json.loads(await ws.recv()) for _ in range(4)]
    assert got[0] == {"id": "h", "type": "next", "payload": {"data": {"holes": 1}}}
    assert got[1]["id"] == "h" and got[1]["type"] == "next"
    assert got[1]["payload"]["data"] is None
    [error] = got[1]["payload"]["errors"]
    assert error["path"] == ["holes"] and "non-nullable" in error["message"]
    assert got[2] == {"id": "h", "type": "next", "payload": {"data": {"holes": 3}}}
    assert got[3] == {"id": "h", "type": "complete"}


# Payload lengths around the frame header's size classes (7-bit, 16-bit, 64-bit lengths).
BOUNDARIES = [0, 1, 125, 126, 127, 65535, 65536, 70000]


def test_text_frames_are_what_websockets_serializes() -> None:
    for n in BOUNDARIES:
        payload = b"x" * n
        assert text_frame(payload) == Frame(Opcode.TEXT, payload).serialize(mask=False), n


@COMPRESSION
async def test_messages_of_every_frame_size_arrive_whole(
    ws_url: str, compression: str | None
) -> None:
    async with websockets.connect(
        ws_url, subprotocols=[TRANSPORT_WS], compression=compression, max_size=None
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        query = "subscription($s: [Int!]!) { sized(sizes: $s) }"
        payload = {"query": query, "variables": {"s": BOUNDARIES}}
        await ws.send(json.dumps({"type": "subscribe", "id": "s", "payload": payload}))
        got = [json.loads(await ws.recv()) for _ in range(len(BOUNDARIES) + 1)]
    texts = [m["payload"]["data"]["sized"] for m in got[:-1]]
    assert [len(t) for t in texts] == [n // 2 + n % 2 for n in BOUNDARIES]
    assert all(set(t) <= {"é", "x"} for t in texts)
    assert got[-1] == {"id": "s", "type": "complete"}


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_frame_over_the_body_limit_closes_1009(ws_url: str, protocol: Subprotocol) -> None:
    async with websockets.connect(ws_url, subprotocols=[protocol], max_size=None) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        query = "{ hello }" + " " * MAX_BODY_BYTES
        await ws.send(json.dumps({"type": "subscribe", "id": "1", "payload": {"query": query}}))
        code, why = await _closed_by(ws)
    assert code == 1009
    assert str(MAX_BODY_BYTES) in why


def test_message_problem_accepts_what_the_protocols_allow() -> None:
    ok = {"type": "subscribe", "id": "1", "payload": {"query": "{a}", "variables": None}}
    assert message_problem(ok, operation_types=("subscribe",)) is None
    assert message_problem({"type": "ping"}, operation_types=("subscribe",)) is None
    assert message_problem({"type": "connection_init"}, operation_types=("start",)) is None

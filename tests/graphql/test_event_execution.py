"""Subscription events rendered from a plan (schema/event_execution.py) are exactly what
graphql-core's full execution of each event gives: data, nulls, errors, for every shape of
document a client may send (aliases, fragments, directives, __typename, nested objects)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import types
from collections.abc import AsyncIterator
from typing import Any

import pytest
import strawberry
import websockets
from starlette.applications import Starlette
from starlette.websockets import WebSocket as StarletteWebSocket
from websockets.typing import Subprotocol

from app.graphql_app import graphql_routes, make_graphql_app
from app.messaging.streams import StreamEvent
from app.settings import Settings
from app.socket_writes import CoalescingWebSocketProtocol
from schema import event_execution
from schema.event_execution import EventExecutionContext
from schema.schema import build_schema
from tests.helpers import serve_in_thread

EVENTS = [
    StreamEvent(id="1-0", run_id="r1", event="metadata", data={"run_id": "r1", "attempt": 1}),
    StreamEvent(id="1-1", run_id="r1", event="custom", data={"n": 1, "nested": [1, "x", None]}),
    StreamEvent(id="1-2", run_id="r1", event="values|child:3f2a", data={"messages": []}),
    StreamEvent(id="1-3", run_id="r1", event="messages/partial", data=[{"content": "hé"}]),
    StreamEvent(id="1-4", run_id="r1", event="end", data={"status": "success"}),
]
# An event whose non-null `id` is missing: graphql-core's error, however the event is rendered.
BROKEN = StreamEvent(id=None, run_id="r1", event="custom", data=None)  # type: ignore[arg-type]

DOCUMENTS = [
    "subscription($i: RunInput!) { runStream(input: $i) { id event data } }",
    "subscription($i: RunInput!) { e: runStream(input: $i, streamMode: [CUSTOM, VALUES]) {"
    " __typename id runId event mode namespace data k: event } }",
    "subscription($i: RunInput!, $yes: Boolean!) { runStream(input: $i) {"
    " id ...F ... on RunEvent { mode } data @include(if: $yes) event @skip(if: $yes) } }"
    " fragment F on RunEvent { namespace runId }",
    "subscription S($i: RunInput!) { runStream(input: $i) { ...F } } fragment F on RunEvent"
    " { id data ... @include(if: false) { event } }",
]


class _Boom(Exception):
    pass


def _fake_services(
    events: list[StreamEvent], *, raise_after: int | None = None, warn_after: int | None = None
) -> Any:
    """A context whose `runStream` yields `events`; then raises (`raise_after` events in), or,
    `warn_after` events in, adds a warning the next results carry (`extensions.warnings`)."""
    context = types.SimpleNamespace(request=None, warnings=[])

    class RunStreams:
        async def stream_new_run(self, request: Any) -> tuple[Any, AsyncIterator[StreamEvent]]:
            async def gen() -> AsyncIterator[StreamEvent]:
                for n, event in enumerate(events):
                    if n == raise_after:
                        raise _Boom("the resolver failed")
                    if n == warn_after:
                        context.warnings.append({"code": "TEST", "message": "careful"})
                    yield event

            return types.SimpleNamespace(run_id="r1"), gen()

    class Workers:  # a worker is alive: no notice before the events
        async def notice(self, run_id: str | None = None) -> None:
            return None

    context.services = types.SimpleNamespace(run_streams=RunStreams(), workers=Workers())
    return context


async def _results(
    schema: strawberry.Schema, document: str, events: list[StreamEvent]
) -> list[dict[str, Any]]:
    stream = await schema.subscribe(
        document,
        variable_values={"i": {"assistantId": "agent", "input": {}}, "yes": True},
        context_value=_fake_services(events),
    )
    out = []
    async for result in stream:  # type: ignore[union-attr]
        out.append(
            {
                "data": result.data,
                "errors": [(e.message, e.path) for e in result.errors or []],
            }
        )
    return out


@pytest.fixture(scope="module")
def schemas() -> tuple[strawberry.Schema, strawberry.Schema]:
    planned = build_schema(Settings())
    plain = build_schema(Settings())
    plain.execution_context_class = type(  # graphql-core's execution for every event
        "Plain", (EventExecutionContext,), {"_event_plan": None}
    )
    assert planned.execution_context_class is EventExecutionContext
    return planned, plain


@pytest.mark.parametrize("document", DOCUMENTS)
async def test_planned_events_equal_executed_events(
    schemas: tuple[strawberry.Schema, strawberry.Schema], document: str
) -> None:
    planned, plain = schemas
    events = [*EVENTS, BROKEN, *EVENTS]
    got, expected = (
        await _results(planned, document, events),
        await _results(plain, document, events),
    )
    assert got == expected
    assert len(got) == len(events)
    assert got[len(EVENTS)]["errors"], "the broken event is an error, as graphql-core makes it"


async def test_the_plan_is_used(
    schemas: tuple[strawberry.Schema, strawberry.Schema], monkeypatch: pytest.MonkeyPatch
) -> None:
    planned, _ = schemas
    rendered = 0
    original = event_execution._Plan.render

    def counting(self: Any, event: Any) -> dict[str, Any]:
        nonlocal rendered
        rendered += 1
        return original(self, event)

    monkeypatch.setattr(event_execution._Plan, "render", counting)
    await _results(planned, DOCUMENTS[1], EVENTS)
    assert rendered == len(EVENTS)


async def test_documents_the_plan_cannot_render_are_executed(
    schemas: tuple[strawberry.Schema, strawberry.Schema], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A root field other than an event object's leaves is left to graphql-core."""
    planned, _ = schemas
    rendered = 0
    original = event_execution._Plan.render

    def counting(self: Any, event: Any) -> dict[str, Any]:
        nonlocal rendered
        rendered += 1
        return original(self, event)

    monkeypatch.setattr(event_execution._Plan, "render", counting)
    results = await _results(
        planned,
        "subscription($i: RunInput!) { runStream(input: $i) { id } "
        "__typename }",  # two root fields: refused by validation, never planned
        EVENTS,
    )
    assert rendered == 0
    assert results and results[0]["errors"]


async def test_the_plain_schema_executes_every_event(
    schemas: tuple[strawberry.Schema, strawberry.Schema], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The comparison above is against graphql-core's execution, not the plan twice."""
    _, plain = schemas

    def refuse(self: Any, event: Any) -> dict[str, Any]:
        raise AssertionError("the plain schema must not render from a plan")

    monkeypatch.setattr(event_execution._Plan, "render", refuse)
    results = await _results(plain, DOCUMENTS[0], EVENTS)
    assert [r["data"]["runStream"]["id"] for r in results] == [e.id for e in EVENTS]


async def test_extensions_with_hooks_still_see_every_result() -> None:
    """The lean runner skips only extensions without the hook: one that has `get_results` and
    `on_stream_result` sees every event, and its results reach each one."""
    from strawberry.extensions import SchemaExtension

    from schema.schema import LgqlSchema

    seen: list[Any] = []

    class Watching(SchemaExtension):
        def on_stream_result(self, result: Any) -> Any:
            seen.append(result.data)
            yield

        def get_results(self) -> dict[str, Any]:
            return {"watched": len(seen)}

    @strawberry.type
    class Query:
        ok: bool = True

    @strawberry.type
    class Subscription:
        @strawberry.subscription
        async def count(self) -> AsyncIterator[int]:
            for i in range(3):
                yield i

    schema = LgqlSchema(query=Query, subscription=Subscription, extensions=[Watching])
    stream = await schema.subscribe("subscription { count }")
    results = [r async for r in stream]  # type: ignore[union-attr]
    assert [r.data for r in results] == [{"count": 0}, {"count": 1}, {"count": 2}]
    assert seen == [{"count": 0}, {"count": 1}, {"count": 2}]
    assert [r.extensions for r in results] == [{"watched": 0}, {"watched": 1}, {"watched": 2}]


@strawberry.type
class _Item:
    n: int

    @strawberry.field
    def half(self) -> int:
        if self.n % 2:
            raise ValueError("odd")
        return self.n // 2


@strawberry.type
class _ItemsQuery:
    ok: bool = True


@strawberry.type
class _ItemsSubscription:
    @strawberry.subscription
    async def items(self) -> AsyncIterator[_Item]:
        for i in range(4):
            yield _Item(n=i)


async def test_an_extension_watching_errors_only_sees_the_results_with_errors() -> None:
    """`WATCHES_STREAM_ERRORS_ONLY`: the runner asks such an extension only about results that
    carry errors, and those still get their `extensions.code` (ErrorCodes) mid-stream."""
    from strawberry.extensions import SchemaExtension

    from schema.errors import ErrorCodes
    from schema.schema import LgqlSchema

    seen: list[Any] = []

    class ErrorsOnly(SchemaExtension):
        WATCHES_STREAM_ERRORS_ONLY = True

        def on_stream_result(self, result: Any) -> Any:
            seen.append(result.data)
            yield

    schema = LgqlSchema(
        query=_ItemsQuery, subscription=_ItemsSubscription, extensions=[ErrorCodes, ErrorsOnly]
    )
    stream = await schema.subscribe("subscription { items { n half } }")
    results = [r async for r in stream]  # type: ignore[union-attr]
    assert [bool(r.errors) for r in results] == [False, True, False, True]
    assert seen == [None, None]  # the two results with errors (their data is nulled)
    codes = [e.extensions["code"] for r in results for e in r.errors or []]
    assert codes == ["INTERNAL_SERVER_ERROR"] * 2


# --- taken straight from the resolver over graphql-transport-ws (app/ws_protocols.py) ---------


def _app(schema: strawberry.Schema, context: Any) -> Starlette:
    async def get_context(request: Any, response: Any) -> Any:
        return context

    return Starlette(
        routes=graphql_routes(
            make_graphql_app(
                schema,
                context_getter=get_context,
                graphiql=False,
                allowed_origins=None,
                max_body_bytes=1 << 20,
            )
        )
    )


@contextlib.asynccontextmanager
async def _subscribed(
    schema: strawberry.Schema, document: str, context: Any
) -> AsyncIterator[websockets.ClientConnection]:
    """A graphql-transport-ws connection to `schema` served by uvicorn on lgql's WebSocket
    protocol, with subscription "1" of `document` started on it."""
    app = _app(schema, context)
    with serve_in_thread(app, log_level="warning", ws=CoalescingWebSocketProtocol) as base:
        url = base.replace("http://", "ws://", 1) + "/graphql"
        async with websockets.connect(
            url, subprotocols=[Subprotocol("graphql-transport-ws")]
        ) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            variables = {"i": {"assistantId": "agent", "input": {}}, "yes": True}
            payload = {"query": document, "variables": variables}
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
            yield ws


async def _over_ws(schema: strawberry.Schema, document: str, context: Any) -> list[Any]:
    """Every message of one subscription over graphql-transport-ws, `complete` included."""
    async with _subscribed(schema, document, context) as ws:
        messages: list[Any] = []
        while not messages or messages[-1]["type"] != "complete":
            message = json.loads(await ws.recv())
            if message.get("id") == "1":
                messages.append(message)
        return messages


WS_CASES = [
    pytest.param({"events": [*EVENTS, BROKEN, *EVENTS]}, id="an-event-the-plan-cannot-render"),
    pytest.param({"events": EVENTS, "raise_after": 3}, id="the-resolver-raises"),
    pytest.param({"events": EVENTS, "warn_after": 2}, id="an-extension-has-results"),
    pytest.param({"events": EVENTS[:1]}, id="one-event"),
]


@pytest.mark.parametrize("case", WS_CASES)
@pytest.mark.parametrize("document", DOCUMENTS[:2])
async def test_events_taken_from_the_resolver_equal_executed_events_over_ws(
    schemas: tuple[strawberry.Schema, strawberry.Schema],
    monkeypatch: pytest.MonkeyPatch,
    case: dict[str, Any],
    document: str,
) -> None:
    """After the first result, a subscription's events go from the resolver to the socket
    rendered by the plan; what the client gets is what graphql-core's and Strawberry's execution
    of every event gives: errors, extension results and the end in their places."""
    planned, plain = schemas
    executed = 0
    original = EventExecutionContext.build_per_event_executor

    def counting(self: Any, payload: Any) -> Any:
        nonlocal executed
        executed += 1
        return original(self, payload)

    monkeypatch.setattr(EventExecutionContext, "build_per_event_executor", counting)
    expected = await _over_ws(plain, document, _fake_services(**case))
    executed = 0
    got = await _over_ws(planned, document, _fake_services(**case))
    assert got == expected
    assert [m["type"] for m in got].count("complete") == 1
    given_back = sum(1 for m in got if "errors" in m.get("payload", {}))
    warned = sum(1 for m in got if "extensions" in m.get("payload", {}))
    # The first result, and those given back, went through graphql-core; no other.
    assert executed <= 1 + given_back + warned, (executed, got)
    if len(case["events"]) > 3 and "raise_after" not in case and "warn_after" not in case:
        assert executed == 2  # the first result and the broken one


async def test_direct_events_go_to_the_connection_s_own_send(
    schemas: tuple[strawberry.Schema, strawberry.Schema], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under `CoalescingWebSocketProtocol`, the events taken from the resolver are sent by the
    connection's own `send` (`app.socket_writes.direct_send`): Starlette's `WebSocket.send`
    carries the acknowledgement, the first result and the end, not one message per event."""
    planned, _ = schemas
    through_starlette: list[str] = []
    original = StarletteWebSocket.send

    async def counting(self: StarletteWebSocket, message: Any) -> None:
        through_starlette.append(message["type"])
        await original(self, message)

    monkeypatch.setattr(StarletteWebSocket, "send", counting)
    events = EVENTS * 10  # the ids repeat: the fake stream does not care
    got = await _over_ws(planned, DOCUMENTS[0], _fake_services(events))
    assert [m["type"] for m in got] == ["next"] * len(events) + ["complete"]
    sent = [t for t in through_starlette if t == "websocket.send"]
    assert len(sent) == 3, through_starlette  # connection_ack, the first result, complete


async def test_a_client_leaving_mid_stream_stops_the_direct_events(
    schemas: tuple[strawberry.Schema, strawberry.Schema],
) -> None:
    """A client that goes away while the events are sent straight to its connection: the
    resolver's stream is closed, as when they went through Starlette."""
    planned, _ = schemas
    closed = asyncio.Event()
    sent = 0
    loop = asyncio.get_running_loop()

    class RunStreams:
        async def stream_new_run(self, request: Any) -> tuple[Any, AsyncIterator[StreamEvent]]:
            async def gen() -> AsyncIterator[StreamEvent]:
                nonlocal sent
                try:
                    while True:
                        sent += 1
                        yield StreamEvent(id=f"1-{sent}", run_id="r1", event="custom", data={})
                        await asyncio.sleep(0.001)
                finally:
                    loop.call_soon_threadsafe(closed.set)

            return types.SimpleNamespace(run_id="r1"), gen()

    context = _fake_services([])
    context.services.run_streams = RunStreams()
    async with _subscribed(planned, DOCUMENTS[0], context) as ws:
        for _ in range(20):  # well into the direct events
            assert json.loads(await ws.recv())["type"] == "next"
    await asyncio.wait_for(closed.wait(), 10)

"""Outages are typed errors: a Postgres or Redis that cannot be reached answers
`SERVICE_UNAVAILABLE` (HTTP 503 with `Retry-After`; an error payload over WebSocket), never a
masked INTERNAL_SERVER_ERROR, and service resumes when the engine is back.

The live tests run lgql on engines of their own (the embedded Postgres and Valkey, in a temporary
folder) and stop and restart them under the running server; the machine's engines are never
touched."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
import redis.exceptions as redis_errors
import sqlalchemy.exc as sa_errors
import strawberry
import websockets
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from websockets.typing import Subprotocol

from app.db.migrate import upgrade
from app.embedded import EmbeddedEngines
from app.errors import RETRY_AFTER_SECONDS
from app.faults import infrastructure_fault
from app.graphql_app import graphql_routes, make_graphql_app
from schema.errors import ErrorCodes
from tests.conftest import LiveServer, make_settings, start_server
from tests.helpers import serve_in_thread

TRANSPORT_WS = Subprotocol("graphql-transport-ws")
LEGACY_WS = Subprotocol("graphql-ws")

# --- which errors are outages --------------------------------------------------------------


def _wrapped(inner: BaseException) -> BaseException:
    """`inner` as SQLAlchemy raises it: a DBAPIError whose `orig` is caused by the driver's."""
    adapted = RuntimeError("adapted driver error")
    adapted.__cause__ = inner
    return sa_errors.DBAPIError("SELECT 1", None, adapted)


@pytest.mark.parametrize(
    ("error", "dependency"),
    [
        (asyncpg.ConnectionDoesNotExistError("connection was closed"), "postgres"),
        (asyncpg.CannotConnectNowError("the database system is starting up"), "postgres"),
        (asyncpg.AdminShutdownError("terminating connection"), "postgres"),
        (asyncpg.TooManyConnectionsError("too many clients"), "postgres"),
        (asyncpg.InterfaceError("another operation is in progress"), "postgres"),
        (_wrapped(asyncpg.ConnectionDoesNotExistError("closed")), "postgres"),
        (_wrapped(ConnectionRefusedError(111, "refused")), "postgres"),
        (OSError("Multiple exceptions: [Errno 111] Connect call failed"), "network"),
        (redis_errors.ConnectionError("Error 111 connecting"), "redis"),
        (redis_errors.TimeoutError("Timeout reading"), "redis"),
        (redis_errors.BusyLoadingError("loading"), "redis"),
        (ConnectionResetError(104, "reset"), "network"),
    ],
)
def test_connection_faults_are_infrastructure_faults(error: BaseException, dependency: str) -> None:
    assert infrastructure_fault(error) == dependency


@pytest.mark.parametrize(
    "error",
    [
        ValueError("a bug"),
        KeyError("x"),
        asyncpg.QueryCanceledError("statement timeout"),
        asyncpg.UniqueViolationError("duplicate key"),
        redis_errors.ResponseError("WRONGTYPE"),
    ],
)
def test_other_errors_are_not_infrastructure_faults(error: BaseException) -> None:
    assert infrastructure_fault(error) is None


# --- how the transports answer them (a toy schema raising each) ----------------------------

RAISED: dict[str, BaseException] = {
    "postgres": asyncpg.ConnectionDoesNotExistError("connection was closed in the middle"),
    "redis": redis_errors.ConnectionError("Error 111 connecting to 127.0.0.1:1. Refused."),
    "bug": ValueError("secret detail"),
}


@strawberry.type
class Query:
    @strawberry.field
    def fail(self, why: str) -> str:
        raise RAISED[why]

    @strawberry.field
    def fine(self) -> str:
        return "ok"


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def fail_later(self, why: str) -> AsyncGenerator[int, None]:
        yield 1
        raise RAISED[why]


async def context(request: Request | WebSocket, response: Response | None) -> dict[str, Any]:
    return {"request": request, "response": response}


@pytest.fixture(scope="module")
def toy_url() -> Iterator[str]:
    schema = strawberry.Schema(query=Query, subscription=Subscription, extensions=[ErrorCodes])
    app = Starlette(
        routes=graphql_routes(
            make_graphql_app(schema, context_getter=context, graphiql=False, allowed_origins=None)
        )
    )
    with serve_in_thread(app, log_level="critical") as base:
        yield f"{base}/graphql"


@pytest.mark.parametrize("why", ["postgres", "redis"])
@pytest.mark.parametrize("accept", ["application/json", "application/graphql-response+json"])
async def test_outage_over_http_is_503_with_retry_after(
    toy_url: str, why: str, accept: str
) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            toy_url,
            json={"query": "query($w: String!) { fail(why: $w) }", "variables": {"w": why}},
            headers={"accept": accept},
        )
    assert response.status_code == 503
    assert response.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    assert "retry later" in error["message"]
    assert "127.0.0.1" not in error["message"]  # the driver's text stays in the log


async def test_outage_over_http_get_is_503(toy_url: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(toy_url, params={"query": '{ fail(why: "redis") }'})
    assert response.status_code == 503
    assert "retry-after" in response.headers


async def test_a_bug_is_still_a_masked_internal_error(toy_url: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(toy_url, json={"query": '{ fail(why: "bug") fine }'})
    assert response.status_code == 200
    body = response.json()
    assert body["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert "secret" not in body["errors"][0]["message"]


@pytest.mark.parametrize("why", ["postgres", "redis"])
async def test_outage_in_a_subscription_is_an_error_payload_then_complete(
    toy_url: str, why: str
) -> None:
    ws_url = toy_url.replace("http://", "ws://")
    async with websockets.connect(ws_url, subprotocols=[TRANSPORT_WS]) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        query = "subscription($w: String!) { failLater(why: $w) }"
        payload = {"query": query, "variables": {"w": why}}
        await ws.send(json.dumps({"type": "subscribe", "id": "s", "payload": payload}))
        messages = []
        while not messages or messages[-1]["type"] not in ("complete", "error"):
            messages.append(json.loads(await ws.recv()))
    assert messages[0]["payload"]["data"] == {"failLater": 1}
    codes = [
        e["extensions"]["code"]
        for m in messages
        for e in (m.get("payload") or {}).get("errors", [])
        if isinstance(m.get("payload"), dict)
    ]
    assert codes == ["SERVICE_UNAVAILABLE"]
    assert messages[-1]["type"] == "complete"


# --- live: stop and restart our own engines under a running lgql -----------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def own_engines() -> AsyncIterator[EmbeddedEngines]:
    folder = Path(tempfile.mkdtemp(prefix="lgql-outage-"))
    engines = EmbeddedEngines(folder / "lgql")
    await engines.start()
    try:
        yield engines
    finally:
        await engines.stop()
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.asynccontextmanager
async def stopped(engine: Any) -> AsyncIterator[None]:
    """The engine stopped inside the block, started again (same port) after it."""
    port = engine.port
    await engine.stop()
    try:
        yield
    finally:
        engine.pick_port = lambda: port
        await engine.start()


@pytest_asyncio.fixture(loop_scope="session")
async def outage_server(own_engines: EmbeddedEngines) -> AsyncIterator[LiveServer]:
    urls = own_engines.urls
    assert urls is not None
    await upgrade(urls.database_uri)
    server = await start_server(
        make_settings(f"lgql_outage_{uuid.uuid4().hex[:8]}"),
        database_uri=urls.database_uri,
        redis_uri=urls.redis_uri,
        # No in-process worker: what the worker does in an outage is not this test's subject.
        embedded_worker=False,
    )
    try:
        yield server
    finally:
        await server.stop()


THREADS = "{ threads(first: 1) { totalCount } }"
CREATE_THREAD = "mutation { createThread { id } }"
CREATE_RUN = 'mutation($t: ID!) { createRun(input: {assistantId: "echo", threadId: $t}) { id } }'


async def _post(http: httpx.AsyncClient, url: str, query: str, **variables: Any) -> httpx.Response:
    return await http.post(url, json={"query": query, "variables": variables})


async def _until_served(http: httpx.AsyncClient, url: str, query: str) -> dict[str, Any]:
    """Ask until the answer has no error (the server reconnects on its own); the answer. Each
    failed try must itself be a SERVICE_UNAVAILABLE."""
    for _ in range(200):
        response = await _post(http, url, query)
        body: dict[str, Any] = response.json()
        if response.status_code == 200 and not body.get("errors"):
            return body
        assert response.status_code == 503, body
        assert {e["extensions"]["code"] for e in body["errors"]} == {"SERVICE_UNAVAILABLE"}
        await asyncio.sleep(0.05)
    raise AssertionError(f"service did not resume: {body}")


async def _ws_run(url: str, query: str, variables: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """The results and the errors of a graphql-transport-ws subscription, until it ends."""
    ws_url = url.replace("http://", "ws://")
    async with websockets.connect(ws_url, subprotocols=[TRANSPORT_WS]) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        payload = {"query": query, "variables": variables}
        await ws.send(json.dumps({"type": "subscribe", "id": "1", "payload": payload}))
        results: list[Any] = []
        errors: list[Any] = []
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == "error":
                errors.extend(message["payload"])
                return results, errors
            if message["type"] == "next":
                errors.extend(message["payload"].get("errors") or [])
                if message["payload"].get("data"):
                    results.append(message["payload"]["data"])
            if message["type"] == "complete":
                return results, errors


async def _ws_errors(url: str, query: str, variables: dict[str, Any]) -> list[Any]:
    return (await _ws_run(url, query, variables))[1]


async def test_postgres_outage_is_service_unavailable_then_service_resumes(
    own_engines: EmbeddedEngines, outage_server: LiveServer
) -> None:
    url = outage_server.graphql_url
    async with httpx.AsyncClient(timeout=30) as http:
        thread_id = (await _until_served(http, url, CREATE_THREAD))["data"]["createThread"]["id"]
        async with stopped(own_engines.postgres):
            for query, variables in (
                (THREADS, {}),
                (CREATE_THREAD, {}),
                (CREATE_RUN, {"t": thread_id}),
            ):
                response = await _post(http, url, query, **variables)
                body = response.json()
                assert response.status_code == 503, body
                assert response.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
                assert body["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE", body
            errors = await _ws_errors(
                url, "subscription($t: ID!) { threadStream(threadId: $t) { id } }", {"t": thread_id}
            )
            assert [e["extensions"]["code"] for e in errors] == ["SERVICE_UNAVAILABLE"]
            health = await http.get(f"{outage_server.url}/ok")
            assert health.status_code == 503, health.text
            assert health.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
            assert health.json()["services"]["postgres"].startswith("error")
        await _until_served(http, url, THREADS)
        made = await _until_served(http, url, CREATE_THREAD)
        assert made["data"]["createThread"]["id"]


async def test_redis_outage_is_service_unavailable_then_service_resumes(
    own_engines: EmbeddedEngines, outage_server: LiveServer
) -> None:
    url = outage_server.graphql_url
    join = "subscription($r: ID!) { joinRunStream(runId: $r) { id event } }"
    async with httpx.AsyncClient(timeout=30) as http:
        thread_id = (await _until_served(http, url, CREATE_THREAD))["data"]["createThread"]["id"]
        run_id = (await _post(http, url, CREATE_RUN, t=thread_id)).json()["data"]["createRun"]["id"]
        # No worker runs here: the run ends by a cancel, which publishes its end through Redis.
        cancel = "mutation($r: ID!) { cancelRun(id: $r, wait: false) { status } }"
        cancelled = (await _post(http, url, cancel, r=run_id)).json()
        assert cancelled["data"]["cancelRun"]["status"] == "INTERRUPTED", cancelled
        async with stopped(own_engines.valkey):
            errors = await _ws_errors(url, join, {"r": run_id})
            assert [e["extensions"]["code"] for e in errors] == ["SERVICE_UNAVAILABLE"]
            # What needs only Postgres is still served.
            assert (await _post(http, url, THREADS)).status_code == 200
        # Redis is back: the same subscription is served, each try until then an outage.
        for _ in range(200):
            results, errors = await _ws_run(url, join, {"r": run_id})
            if not errors:
                break
            assert {e["extensions"]["code"] for e in errors} == {"SERVICE_UNAVAILABLE"}
            await asyncio.sleep(0.05)
        assert not errors, errors
        assert results[-1]["joinRunStream"]["event"] == "end"


async def test_outage_in_a_legacy_graphql_ws_subscription_is_an_error_then_complete(
    toy_url: str,
) -> None:
    ws_url = toy_url.replace("http://", "ws://")
    async with websockets.connect(ws_url, subprotocols=[LEGACY_WS]) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        payload = {"query": 'subscription { failLater(why: "postgres") }'}
        await ws.send(json.dumps({"type": "start", "id": "s", "payload": payload}))
        messages: list[dict[str, Any]] = []
        while not messages or messages[-1]["type"] != "complete":
            message = json.loads(await ws.recv())
            if message["type"] != "ka":
                messages.append(message)
    errors = [e for m in messages for e in (m.get("payload") or {}).get("errors", [])]
    assert [e["extensions"]["code"] for e in errors] == ["SERVICE_UNAVAILABLE"]

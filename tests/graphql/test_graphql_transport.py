"""The GraphQL transport layer (`app.graphql_app`) against a toy schema on a real uvicorn.

Covers the GraphQL-over-HTTP audit (61/61 via Node's graphql-http), the offline GraphiQL page,
subscriptions over graphql-transport-ws, legacy graphql-ws, SSE and multipart, the body cap,
and the error shapes of content negotiation.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncGenerator, Iterator
from typing import Any

import httpx
import pytest
import strawberry
import websockets
from cross_web import HTTPException
from gql import Client, gql
from gql.transport.websockets import WebsocketsTransport
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from websockets.typing import Origin, Subprotocol

from app.graphql_app import (
    GRAPHIQL_STATIC_DIR,
    GRAPHQL_RESPONSE_MEDIA_TYPE,
    graphiql_static_mount,
    graphql_routes,
    make_graphql_app,
    negotiate_media_type,
)
from tests.conformance.audit import (
    EXPECTED_AUDIT_COUNT,
    not_ok,
    run_graphql_http_audit,
    summarize,
)
from tests.helpers import serve_in_thread

MAX_BODY_BYTES = 4096
ALLOWED_ORIGIN = "http://ui.example"

HELLO_QUERY = "query Hello($name: String!) { hello(name: $name) }"
COUNT_SUBSCRIPTION = "subscription { count(to: 3) }"
MULTIPART_ACCEPT = 'multipart/mixed;subscriptionSpec="1.0",application/json'


@strawberry.type
class Query:
    @strawberry.field
    def hello(self, name: str = "world") -> str:
        return f"Hello {name}"

    @strawberry.field
    def boom(self) -> str:
        raise ValueError("boom")


@strawberry.type
class Mutation:
    @strawberry.mutation
    def echo(self, text: str) -> str:
        return text


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def count(self, to: int = 3) -> AsyncGenerator[int, None]:
        for i in range(1, to + 1):
            await asyncio.sleep(0.01)
            yield i


SCHEMA = strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription)


async def toy_context(request: Request | WebSocket, response: Response | None) -> dict[str, Any]:
    if request.headers.get("x-deny"):
        raise HTTPException(401, "Who are you?")
    return {"request": request, "response": response}


def build_app(*, graphiql: bool = True) -> Starlette:
    graphql = make_graphql_app(
        SCHEMA,
        context_getter=toy_context,
        graphiql=graphiql,
        allowed_origins=[ALLOWED_ORIGIN],
        keep_alive_interval=0.1,
        max_body_bytes=MAX_BODY_BYTES,
    )
    return Starlette(routes=[*graphql_routes(graphql), graphiql_static_mount()])


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    # Own thread and loop: the audit blocks on a Node subprocess, which must not stall the server.
    with serve_in_thread(build_app(), log_level="warning") as base:
        yield base


@pytest.fixture(scope="module")
def graphql_url(base_url: str) -> str:
    return f"{base_url}/graphql"


@pytest.fixture(scope="module")
def ws_url(base_url: str) -> str:
    return base_url.replace("http://", "ws://", 1) + "/graphql"


# --- GraphQL over HTTP ------------------------------------------------------------------


def test_graphql_http_audit_is_61_of_61_ok(graphql_url: str) -> None:
    # when
    results = run_graphql_http_audit(graphql_url)

    # then
    assert len(results) == EXPECTED_AUDIT_COUNT, summarize(results)
    assert not_ok(results) == [], json.dumps(not_ok(results), indent=2)
    assert summarize(results) == {"ok": EXPECTED_AUDIT_COUNT}


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "application/json"),
        ("*/*", "application/json"),
        ("application/json", "application/json"),
        ("application/graphql-response+json", GRAPHQL_RESPONSE_MEDIA_TYPE),
        ("application/graphql-response+json, application/json", GRAPHQL_RESPONSE_MEDIA_TYPE),
        ("application/json, application/graphql-response+json", "application/json"),
        ("application/graphql-response+json;q=0.5, application/json", "application/json"),
        ("application/graphql-response+json;charset=latin1, */*", "application/json"),
        ("text/html", "application/json"),
    ],
)
def test_negotiate_media_type(accept: str | None, expected: str) -> None:
    assert negotiate_media_type(accept) == expected


@pytest.mark.parametrize(
    ("payload", "message_part"),
    [
        ({"query": "{ hello"}, "Syntax Error"),
        ({"query": "{ nope }"}, "nope"),
        ({"query": HELLO_QUERY, "variables": {"name": None}}, "$name"),
    ],
    ids=["parse", "validation", "variable-coercion"],
)
def test_request_error_is_400_without_data_for_graphql_response_json(
    graphql_url: str, payload: dict[str, Any], message_part: str
) -> None:
    # when
    response = httpx.post(
        graphql_url, json=payload, headers={"accept": GRAPHQL_RESPONSE_MEDIA_TYPE}
    )

    # then
    assert response.status_code == 400
    assert response.headers["content-type"].startswith(GRAPHQL_RESPONSE_MEDIA_TYPE)
    body = response.json()
    assert "data" not in body
    assert message_part in body["errors"][0]["message"]


def test_request_error_is_200_with_null_data_for_json(graphql_url: str) -> None:
    response = httpx.post(
        graphql_url, json={"query": "{ nope }"}, headers={"accept": "application/json"}
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["data"] is None


def test_field_error_stays_200_with_data_for_graphql_response_json(graphql_url: str) -> None:
    # given: a non-null root field that raises nulls the whole `data`, but it is a field error
    response = httpx.post(
        graphql_url, json={"query": "{ boom }"}, headers={"accept": GRAPHQL_RESPONSE_MEDIA_TYPE}
    )

    assert response.status_code == 200
    body = response.json()
    assert body["data"] is None
    assert body["errors"][0]["path"] == ["boom"]


def test_query_and_mutation_over_http(graphql_url: str) -> None:
    query = httpx.get(
        graphql_url,
        params={"query": HELLO_QUERY, "variables": json.dumps({"name": "lgql"})},
        headers={"accept": "application/json"},
    )
    mutation = httpx.post(graphql_url, json={"query": 'mutation { echo(text: "hi") }'})

    assert query.json() == {"data": {"hello": "Hello lgql"}}
    assert mutation.json() == {"data": {"echo": "hi"}}


def test_transport_errors_are_graphql_shaped(graphql_url: str) -> None:
    bad_json = httpx.post(
        graphql_url, content=b"{ nope", headers={"content-type": "application/json"}
    )
    wrong_method = httpx.put(graphql_url, json={"query": "{ hello }"})

    assert bad_json.status_code == 400
    assert bad_json.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "GET, POST"
    assert wrong_method.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"


def test_context_getter_can_refuse_with_graphql_shaped_401(graphql_url: str) -> None:
    response = httpx.post(graphql_url, json={"query": "{ hello }"}, headers={"x-deny": "1"})

    assert response.status_code == 401
    assert response.json() == {
        "errors": [{"message": "Who are you?", "extensions": {"code": "UNAUTHENTICATED"}}]
    }


# --- Body cap -----------------------------------------------------------------------------


def _oversized_body() -> bytes:
    return json.dumps({"query": "{ hello }", "variables": {"pad": "x" * MAX_BODY_BYTES}}).encode()


def test_body_over_cap_with_content_length_is_413(graphql_url: str) -> None:
    response = httpx.post(
        graphql_url,
        content=_oversized_body(),
        headers={"content-type": "application/json", "accept": GRAPHQL_RESPONSE_MEDIA_TYPE},
    )

    assert response.status_code == 413
    assert response.headers["content-type"].startswith(GRAPHQL_RESPONSE_MEDIA_TYPE)
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
    assert str(MAX_BODY_BYTES) in error["message"]


def test_chunked_body_over_cap_is_413(graphql_url: str) -> None:
    body = _oversized_body()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    # A generator body is sent chunked, without Content-Length.
    response = httpx.post(
        graphql_url, content=chunks(), headers={"content-type": "application/json"}
    )

    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"


def test_body_under_cap_is_served(graphql_url: str) -> None:
    response = httpx.post(graphql_url, json={"query": "{ hello }", "variables": {"pad": "x"}})

    assert response.status_code == 200
    assert response.json() == {"data": {"hello": "Hello world"}}


# --- GraphiQL -----------------------------------------------------------------------------


def test_graphiql_page_uses_only_local_assets(base_url: str, graphql_url: str) -> None:
    # when
    page = httpx.get(graphql_url, headers={"accept": "text/html,application/xhtml+xml"})

    # then
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "//" not in re.sub(r"<script>.*?</script>", "", page.text, flags=re.S)
    assert "unpkg" not in page.text and "cdn" not in page.text.lower()
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sorted(assets) == sorted(
        f"/static/graphiql/{name}"
        for name in (
            "graphiql.min.css",
            "graphiql.min.js",
            "react.production.min.js",
            "react-dom.production.min.js",
            "lgql-graphiql.js",
        )
    )
    for asset in assets:
        response = httpx.get(base_url + asset)
        assert response.status_code == 200, asset
        assert len(response.content) > 1000, asset
        expected_type = "text/css" if asset.endswith(".css") else "javascript"
        assert expected_type in response.headers["content-type"], asset


def test_vendored_graphiql_bundles_its_subscription_client() -> None:
    # The page calls GraphiQL.createFetcher with a subscriptionUrl; both the toolkit and the
    # graphql-ws client must be inside the vendored bundle, or subscriptions fail offline.
    bundle = (GRAPHIQL_STATIC_DIR / "graphiql.min.js").read_text(encoding="utf-8")
    assert "GraphiQL.createFetcher = " in bundle
    assert "graphql-transport-ws" in bundle
    assert (GRAPHIQL_STATIC_DIR / "VERSIONS.txt").is_file()


async def test_graphiql_assets_follow_root_path() -> None:
    # Behind a proxy that strips a prefix, the browser must ask for the prefixed asset URLs.
    transport = httpx.ASGITransport(app=build_app(), root_path="/lgql")
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        page = await client.get("/graphql", headers={"accept": "text/html"})

    assert 'src="/lgql/static/graphiql/graphiql.min.js"' in page.text


async def test_graphiql_disabled_is_404() -> None:
    transport = httpx.ASGITransport(app=build_app(graphiql=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/graphql", headers={"accept": "text/html"})

    assert response.status_code == 404


# --- Subscriptions ------------------------------------------------------------------------


async def test_subscription_and_query_over_graphql_transport_ws(ws_url: str) -> None:
    transport = WebsocketsTransport(
        url=ws_url, subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL]
    )
    async with Client(transport=transport) as session:
        counts = [r["count"] async for r in session.subscribe(gql(COUNT_SUBSCRIPTION))]
        hello = await session.execute(gql("{ hello }"))

    assert counts == [1, 2, 3]
    assert hello == {"hello": "Hello world"}


async def test_subscription_over_legacy_graphql_ws_with_keep_alive(ws_url: str) -> None:
    async with websockets.connect(ws_url, subprotocols=[Subprotocol("graphql-ws")]) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        await ws.send(
            json.dumps({"type": "start", "id": "1", "payload": {"query": COUNT_SUBSCRIPTION}})
        )
        messages: list[dict[str, Any]] = []
        while not any(m["type"] == "complete" for m in messages):
            messages.append(json.loads(await asyncio.wait_for(ws.recv(), timeout=5)))
        # keep_alive_interval is 0.1 s in this app: a `ka` must follow while idle.
        while messages[-1]["type"] != "ka":
            messages.append(json.loads(await asyncio.wait_for(ws.recv(), timeout=5)))

    assert ws.subprotocol == "graphql-ws"
    assert messages[0]["type"] == "connection_ack"
    data = [m["payload"]["data"]["count"] for m in messages if m["type"] == "data"]
    assert data == [1, 2, 3]


async def test_cross_origin_websocket_needs_allowed_origin(ws_url: str) -> None:
    protocols = [Subprotocol("graphql-transport-ws")]
    allowed, evil = Origin(ALLOWED_ORIGIN), Origin("http://evil.example")
    async with websockets.connect(ws_url, origin=allowed, subprotocols=protocols) as ws:
        assert ws.subprotocol == "graphql-transport-ws"

    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(ws_url, origin=evil, subprotocols=protocols):
            pass
    assert refused.value.response.status_code == 403


async def test_subscription_over_sse(graphql_url: str) -> None:
    events: list[tuple[str, str]] = []
    async with (
        httpx.AsyncClient(timeout=10) as client,
        client.stream(
            "POST",
            graphql_url,
            json={"query": COUNT_SUBSCRIPTION},
            headers={"accept": "text/event-stream"},
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        event = ""
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line.removeprefix("event:").strip()
            elif line.startswith("data:"):
                events.append((event, line.removeprefix("data:").strip()))

    assert [json.loads(d)["data"]["count"] for e, d in events if e == "next"] == [1, 2, 3]
    assert events[-1][0] == "complete"


async def test_subscription_over_multipart(graphql_url: str) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            graphql_url, json={"query": COUNT_SUBSCRIPTION}, headers={"accept": MULTIPART_ACCEPT}
        )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("multipart/mixed")
    assert "boundary=graphql" in response.headers["content-type"]
    assert response.text.rstrip().endswith("--graphql--")
    payloads = []
    for part in response.text.split("--graphql"):
        _, _, body = part.partition("\r\n\r\n")
        if body.strip():
            payloads.append(json.loads(body))
    counts = [p["payload"]["data"]["count"] for p in payloads if "payload" in p]
    assert counts == [1, 2, 3]

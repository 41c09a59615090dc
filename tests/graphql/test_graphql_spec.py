"""GraphQL by the spec over lgql's own schema (issue 13, item 6): a document with several
operations names the one to run; `Accept: multipart/mixed` streams subscriptions in the
incremental delivery format; graphql-sse's single connection mode is refused with a message
the real npm client passes on; GraphiQL's fetcher wrapper accumulates a subscription's events."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.graphql_app import GRAPHIQL_STATIC_DIR, SUBSCRIPTION_NEEDS_STREAM
from tests.clients.node_client import SSE_SINGLE_CONNECTION, NodeClientError, run_node_client
from tests.conftest import GraphQLClient, LiveServer

RUN_STREAM = """subscription($input: RunInput!) {
  runStream(input: $input, streamMode: [VALUES]) { id event data } }"""
STEPS = {"input": {"assistantId": "steps", "input": {"count": 0}}}
TWO_MUTATIONS = """
mutation First($m: JSON) { createThread(input: {metadata: $m}) { id metadata } }
mutation Second($m: JSON) { createThread(input: {metadata: $m}) { id metadata } }
"""
COUNT_THREADS = "query($m: JSON) { threads(filter: {metadata: $m}) { totalCount } }"


def multipart_parts(body: str, boundary: str = "-") -> list[dict[str, Any]]:
    """The JSON bodies of an incremental-delivery multipart body, checking its framing: it
    opens with `--<boundary>` and closes with `--<boundary>--`."""
    assert body.startswith(f"--{boundary}\r\n"), body[:80]
    assert body.endswith(f"\r\n--{boundary}--\r\n"), body[-80:]
    inner = body[len(f"--{boundary}") : -len(f"\r\n--{boundary}--\r\n")]
    parts = []
    for raw in inner.split(f"\r\n--{boundary}\r\n"):
        headers, _, payload = raw.lstrip("\r\n").partition("\r\n\r\n")
        assert "content-type: application/json" in headers.lower(), headers
        parts.append(json.loads(payload))
    return parts


# --- several operations ------------------------------------------------------------------------


async def test_several_operations_without_a_name_run_none(
    gql_client: GraphQLClient, unique: str
) -> None:
    marker = {"spec": unique}
    body = await gql_client.execute(TWO_MUTATIONS, {"m": marker})

    assert body.get("data") is None
    assert body["errors"][0]["message"] == (
        "Must provide operation name if query contains multiple operations."
    )
    assert body["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    count = await gql_client.data(COUNT_THREADS, {"m": marker})
    assert count["threads"]["totalCount"] == 0, "no mutation may run"


async def test_several_operations_without_a_name_is_a_400_as_graphql_response_json(
    live_server: LiveServer,
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(
            live_server.graphql_url,
            json={"query": TWO_MUTATIONS, "variables": {"m": {"x": 1}}},
            headers={"accept": "application/graphql-response+json"},
        )
    assert response.status_code == 400
    assert "data" not in response.json()
    assert response.json()["errors"][0]["message"].startswith("Must provide operation name")


async def test_the_named_operation_runs(gql_client: GraphQLClient, unique: str) -> None:
    response = await gql_client.http.post(
        gql_client.url,
        json={
            "query": TWO_MUTATIONS,
            "variables": {"m": {"spec": unique}},
            "operationName": "Second",
        },
    )
    body = response.json()
    assert "errors" not in body, body
    assert body["data"]["createThread"]["metadata"] == {"spec": unique}
    count = await gql_client.data(COUNT_THREADS, {"m": {"spec": unique}})
    assert count["threads"]["totalCount"] == 1


async def test_several_operations_starting_with_a_subscription_name_the_real_problem(
    live_server: LiveServer,
) -> None:
    # Strawberry checks the first operation's type before validation: the answer must still be
    # about the missing name, not about subscriptions needing a stream.
    document = 'subscription A { threadStream(threadId: "x") { id } } query B { __typename }'
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(live_server.graphql_url, json={"query": document})
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"].startswith("Must provide operation name")


async def test_several_subscriptions_without_a_name_over_sse_are_refused(
    live_server: LiveServer,
) -> None:
    document = f"{RUN_STREAM.replace('subscription(', 'subscription A(')}\n" + RUN_STREAM.replace(
        "subscription(", "subscription B("
    )
    async with httpx.AsyncClient(timeout=60) as http:
        response = await http.post(
            live_server.graphql_url,
            json={"query": document, "variables": STEPS},
            headers={"accept": "text/event-stream"},
        )
    assert "Must provide operation name" in response.text, response.text
    assert '"runStream"' not in response.text


# --- multipart/mixed (incremental delivery) ----------------------------------------------------


async def test_run_stream_over_multipart_mixed_without_subscription_spec(
    live_server: LiveServer,
) -> None:
    async with httpx.AsyncClient(timeout=120) as http:
        response = await http.post(
            live_server.graphql_url,
            json={"query": RUN_STREAM, "variables": STEPS},
            # What urql and meros-based clients send.
            headers={
                "accept": "multipart/mixed, application/graphql-response+json, application/json"
            },
        )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == 'multipart/mixed; boundary="-"'
    parts = multipart_parts(response.text)
    assert parts[-1] == {"hasNext": False}
    events = parts[:-1]
    assert all(p["hasNext"] is True and "errors" not in p for p in events), events
    names = [p["data"]["runStream"]["event"] for p in events]
    assert names == ["metadata", *["values"] * 6, "end"], names
    values = [p["data"]["runStream"]["data"] for p in events[1:-1]]
    assert values == [{"count": n} for n in range(6)]


async def test_query_with_multipart_accept_is_answered_as_json(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(
            live_server.graphql_url,
            json={"query": "{ __typename }"},
            headers={"accept": "multipart/mixed, application/json"},
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"data": {"__typename": "Query"}}


async def test_the_subscription_error_names_only_headers_that_work(
    live_server: LiveServer,
) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        refused = await http.post(
            live_server.graphql_url, json={"query": RUN_STREAM, "variables": STEPS}
        )
        assert refused.status_code == 400
        message = refused.json()["errors"][0]["message"]
        assert message == SUBSCRIPTION_NEEDS_STREAM
        # Every Accept the message names streams the subscription.
        for accept in (
            "text/event-stream",
            "multipart/mixed",
            'multipart/mixed;subscriptionSpec="1.0"',
        ):
            assert accept.split(";")[0] in message
            async with http.stream(
                "POST",
                live_server.graphql_url,
                json={"query": RUN_STREAM, "variables": STEPS},
                headers={"accept": accept},
            ) as response:
                body = (await response.aread()).decode()
            assert response.status_code == 200, (accept, body)
            assert '"end"' in body, (accept, body[-300:])


# --- graphql-sse single connection mode ----------------------------------------------------------


async def test_graphql_sse_single_connection_mode_is_refused_with_a_message(
    live_server: LiveServer,
) -> None:
    with pytest.raises(NodeClientError) as failure:
        await run_node_client(SSE_SINGLE_CONNECTION, live_server.graphql_url, RUN_STREAM, STEPS)
    error = json.loads(str(failure.value).split(": ", 1)[1].rsplit(" (after", 1)[0])["error"]
    assert error["status"] == 405
    body = json.loads(error["body"])
    assert "single connection mode" in body["errors"][0]["message"]
    assert "singleConnection: false" in body["errors"][0]["message"]


async def test_graphql_sse_reservation_token_requests_are_refused(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        streamed = await http.post(
            live_server.graphql_url,
            json={"query": "{ __typename }", "extensions": {"operationId": "1"}},
            headers={"x-graphql-event-stream-token": "abc"},
        )
        by_query = await http.get(
            live_server.graphql_url,
            params={"token": "abc"},
            headers={"accept": "text/event-stream"},
        )
    for response in (streamed, by_query):
        assert response.status_code == 400
        assert "single connection mode" in response.json()["errors"][0]["message"]


# --- GraphiQL ---------------------------------------------------------------------------------

NODE_CHECK = r"""
const { lgqlAccumulatingFetcher } = require(process.argv[1]);
async function* events() { yield { data: { n: 1 } }; yield { data: { n: 2 } }; yield { data: { n: 3 } }; }
let returned = false;
const source = events();
const inner = { [Symbol.asyncIterator]() { return this; }, next: () => source.next(),
  return: (v) => { returned = true; return source.return(v); } };
const subscription = { kind: "Document", definitions: [{ kind: "OperationDefinition", operation: "subscription" }] };
const query = { kind: "Document", definitions: [{ kind: "OperationDefinition", operation: "query" }] };
(async () => {
  const shown = [];
  const wrapped = lgqlAccumulatingFetcher(() => inner)({ query: "subscription { n }" }, { documentAST: subscription });
  const iterable = await wrapped;
  for await (const value of iterable) shown.push(value);
  const stopped = lgqlAccumulatingFetcher(() => inner)({}, { documentAST: subscription });
  await (await stopped)[Symbol.asyncIterator]().return();
  const plain = await lgqlAccumulatingFetcher(async () => ({ data: { q: 1 } }))({}, { documentAST: query });
  console.log(JSON.stringify({ shown, returned, plain }));
})();
"""


def test_graphiql_shows_every_subscription_event() -> None:
    node = shutil.which("node")
    assert node, "node is required"
    script = GRAPHIQL_STATIC_DIR / "lgql-graphiql.js"
    out = subprocess.run(
        [node, "-e", NODE_CHECK, str(Path(script).resolve())],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    result = json.loads(out.stdout)
    # Each result GraphiQL shows holds every event so far, newest last.
    assert [v["results"] for v in result["shown"]] == [
        [{"data": {"n": 1}}],
        [{"data": {"n": 1}}, {"data": {"n": 2}}],
        [{"data": {"n": 1}}, {"data": {"n": 2}}, {"data": {"n": 3}}],
    ]
    assert result["shown"][-1]["subscription"] == {"events": 3}
    assert result["returned"], "stopping in GraphiQL must stop the subscription"
    assert result["plain"] == {"data": {"q": 1}}, "queries pass through"


async def test_graphiql_page_wraps_its_fetcher(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        page = await http.get(live_server.graphql_url, headers={"accept": "text/html"})
        script = await http.get(f"{live_server.url}/static/graphiql/lgql-graphiql.js")
    assert "lgqlAccumulatingFetcher(" in page.text
    assert "/static/graphiql/lgql-graphiql.js" in page.text
    assert script.status_code == 200 and "lgqlAccumulatingFetcher" in script.text

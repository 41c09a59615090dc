"""Run streams over every subscription transport, with real clients, and keep-alives.

The npm clients run through `tests/clients/stream_clients.mjs` (graphql-ws over
graphql-transport-ws, graphql-sse in distinct-connections mode, multipart subscriptions); the
legacy Apollo protocol (`graphql-ws` subprotocol) with Python gql's default negotiation; raw SSE
with httpx. The Python gql client over graphql-transport-ws is covered in `test_streaming.py`.

Keep-alive tests sit idle past the interval of the transport's keep-alive (uvicorn's WebSocket
ping every 20 s, Strawberry's SSE `: ping` every 15 s, the whitespace keep-alive of slow
`runAndWait` responses); they assert what arrives and in which order, never how long it took.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
from gql import Client, gql
from gql.transport.websockets import WebsocketsTransport
from strawberry.http.streaming import SSE_HEARTBEAT_INTERVAL

from tests.clients.node_client import TRANSPORTS, run_node_client
from tests.conftest import GraphQLClient, LiveServer
from tests.helpers import RUN_AND_WAIT, create_run, new_thread

EVENT_FIELDS = "id runId event mode namespace data"
RUN_STREAM = f"""subscription($input: RunInput!, $modes: [StreamMode!]) {{
  runStream(input: $input, streamMode: $modes) {{ {EVENT_FIELDS} }} }}"""
JOIN = f"""subscription($id: ID!, $last: String) {{
  joinRunStream(runId: $id, lastEventId: $last) {{ {EVENT_FIELDS} }} }}"""
THREAD = f"""subscription($id: ID!) {{ threadStream(threadId: $id) {{ {EVENT_FIELDS} }} }}"""

STEPS_VALUES = [{"count": n} for n in range(6)]
SSE_ACCEPT = "text/event-stream"
# uvicorn's default `ws_ping_interval` (the live server keeps uvicorn's defaults).
UVICORN_WS_PING_INTERVAL = 20.0


def shape(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The events without what differs from run to run (ids, the run id inside `data`)."""
    out = []
    for e in events:
        data = {k: v for k, v in e["data"].items() if k != "run_id"}
        out.append((e["event"], e["mode"], tuple(e["namespace"]), json.dumps(data, sort_keys=True)))
    return out


def assert_steps_values_stream(events: list[dict[str, Any]]) -> None:
    names = [e["event"] for e in events]
    assert names == ["metadata", *["values"] * 6, "end"], names
    run_id = events[0]["runId"]
    assert all(e["runId"] == run_id for e in events)
    assert events[0]["data"] == {"run_id": run_id, "attempt": 1}
    assert [e["data"] for e in events if e["event"] == "values"] == STEPS_VALUES
    assert events[-1]["data"] == {"run_id": run_id, "status": "success"}
    ids = [e["id"] for e in events]
    assert len(set(ids)) == len(ids)


async def test_run_stream_is_the_same_over_every_npm_transport(live_server: LiveServer) -> None:
    variables = {"input": {"assistantId": "steps", "input": {"count": 0}}, "modes": ["VALUES"]}
    runs = await asyncio.gather(
        *(run_node_client(t, live_server.graphql_url, RUN_STREAM, variables) for t in TRANSPORTS)
    )
    streams = {t: run.field("runStream") for t, run in zip(TRANSPORTS, runs, strict=True)}
    for transport, events in streams.items():
        try:
            assert_steps_values_stream(events)
        except AssertionError as e:
            raise AssertionError(f"over {transport}: {e}") from e
    reference = shape(streams["graphql-ws"])
    assert shape(streams["graphql-sse"]) == reference
    assert shape(streams["multipart"]) == reference
    assert len({events[0]["runId"] for events in streams.values()}) == 3, "one run each"


async def test_join_over_graphql_sse_resumes_exactly_after_last_event_id(
    live_server: LiveServer, gql_client: GraphQLClient
) -> None:
    tid = await new_thread(gql_client)
    run = await create_run(
        gql_client, assistantId="stream100", threadId=tid, input={}, streamMode=["CUSTOM"]
    )
    url = live_server.graphql_url
    first = (await run_node_client("graphql-sse", url, JOIN, {"id": run["id"]}, limit=10)).field(
        "joinRunStream"
    )
    assert len(first) == 10
    rest = (
        await run_node_client("graphql-sse", url, JOIN, {"id": run["id"], "last": first[-1]["id"]})
    ).field("joinRunStream")
    everything = (await run_node_client("graphql-sse", url, JOIN, {"id": run["id"]})).field(
        "joinRunStream"
    )
    assert everything[0]["event"] == "metadata" and everything[-1]["event"] == "end"
    assert [e["data"]["i"] for e in everything if e["event"] == "custom"] == list(range(100))
    full_ids = [e["id"] for e in everything]
    assert len(set(full_ids)) == len(full_ids)
    # None missing, none repeated: the resumed stream is exactly the replay after that id.
    assert [e["id"] for e in rest] == full_ids[full_ids.index(first[-1]["id"]) + 1 :]
    assert [e["id"] for e in first + rest] == full_ids
    # Resuming from the middle of a finished run's retained stream works the same way.
    middle = everything[57]["id"]
    tail = (
        await run_node_client("graphql-sse", url, JOIN, {"id": run["id"], "last": middle})
    ).field("joinRunStream")
    assert [e["id"] for e in tail] == full_ids[58:]


async def test_legacy_graphql_ws_protocol_with_gql_default_negotiation(
    live_server: LiveServer,
) -> None:
    # No `subprotocols=`: gql offers [graphql-ws, graphql-transport-ws] and Strawberry picks the
    # first, the legacy Apollo subscriptions-transport-ws protocol.
    transport = WebsocketsTransport(url=live_server.graphql_url.replace("http://", "ws://"))
    query = gql(RUN_STREAM)
    query.variable_values = {
        "input": {"assistantId": "steps", "input": {"count": 0}},
        "modes": ["VALUES"],
    }
    events: list[dict[str, Any]] = []
    async with Client(transport=transport) as session:
        assert transport.subprotocol == WebsocketsTransport.APOLLO_SUBPROTOCOL == "graphql-ws"
        async for result in session.subscribe(query):
            events.append(result["runStream"])
    assert_steps_values_stream(events)


async def read_sse(response: httpx.Response) -> Any:
    """Yield `(event, data)` for every SSE event and `(":", comment)` for every comment."""
    event, data = None, []
    async for line in response.aiter_lines():
        if line.startswith(":"):
            yield ":", line[1:].strip()
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and event is not None:
            yield event, "\n".join(data)
            event, data = None, []


async def test_raw_sse_shows_next_and_complete_events(live_server: LiveServer) -> None:
    body = {
        "query": RUN_STREAM,
        "variables": {
            "input": {"assistantId": "steps", "input": {"count": 0}},
            "modes": ["VALUES"],
        },
    }
    received: list[tuple[str, str]] = []
    async with httpx.AsyncClient(timeout=60) as http:
        async with http.stream(
            "POST", live_server.graphql_url, json=body, headers={"Accept": SSE_ACCEPT}
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith(SSE_ACCEPT)
            assert "no-cache" in response.headers["cache-control"]
            async for item in read_sse(response):
                received.append(item)
    names = [name for name, _ in received if name != ":"]
    assert names == ["next"] * 8 + ["complete"], names
    results = [json.loads(data) for name, data in received if name == "next"]
    assert all("errors" not in r for r in results), results
    assert_steps_values_stream([r["data"]["runStream"] for r in results])


async def test_websocket_subscription_survives_idle_past_the_server_ping(
    live_server: LiveServer,
) -> None:
    # graphql-ws (npm) with its own keep-alive off: only uvicorn's ping frames (every 20 s) and
    # the client's automatic pongs keep the socket open while the run sleeps ~25 s in silence.
    seconds = UVICORN_WS_PING_INTERVAL + 5
    run = await run_node_client(
        "graphql-ws",
        live_server.graphql_url,
        RUN_STREAM,
        {"input": {"assistantId": "slow", "input": {"seconds": seconds}}, "modes": ["VALUES"]},
        meta=True,
    )
    events = run.field("runStream")
    assert [e["event"] for e in events] == ["metadata", "values", "values", "end"]
    assert events[-2]["data"] == {"seconds": seconds, "count": 1}
    assert events[-1]["data"]["status"] == "success"
    assert run.meta["completed"] is True
    assert run.meta["wsPings"] >= 1, f"the server never pinged the idle socket: {run.meta}"


async def test_sse_heartbeat_arrives_while_idle_and_the_stream_still_works(
    live_server: LiveServer, gql_client: GraphQLClient
) -> None:
    # An idle thread's stream sends nothing until Strawberry's SSE heartbeat (`: ping`, every
    # SSE_HEARTBEAT_INTERVAL = 15 s, none at the start); then a run on that thread must still
    # reach the same connection.
    assert SSE_HEARTBEAT_INTERVAL <= 30, "keep this test short: the interval grew"
    tid = await new_thread(gql_client)
    received: list[tuple[str, str]] = []

    async def listen() -> None:
        async with httpx.AsyncClient(timeout=SSE_HEARTBEAT_INTERVAL * 4) as http:
            async with http.stream(
                "POST",
                live_server.graphql_url,
                json={"query": THREAD, "variables": {"id": tid}},
                headers={"Accept": SSE_ACCEPT},
            ) as response:
                assert response.status_code == 200
                async for name, data in read_sse(response):
                    received.append((name, data))
                    if name == ":":
                        await create_run(
                            gql_client, assistantId="steps", threadId=tid, input={"count": 0}
                        )
                    elif name == "next" and json.loads(data)["data"]["threadStream"]["event"] in (
                        "end",
                        "error",
                    ):
                        return

    await asyncio.wait_for(listen(), SSE_HEARTBEAT_INTERVAL * 6)  # a hang guard only
    assert received[0] == (":", "ping"), received[:3]
    events = [json.loads(data)["data"]["threadStream"] for name, data in received if name == "next"]
    assert events[0]["event"] == "metadata"
    assert events[-1]["event"] == "end" and events[-1]["data"]["status"] == "success"


async def test_run_and_wait_over_http_sends_whitespace_before_a_slow_body(
    live_server: LiveServer, gql_client: GraphQLClient
) -> None:
    # LangGraph Server keeps a slow wait alive by writing whitespace before the JSON body every
    # few seconds; a JSON parser skips it. The run sleeps ~12 s, past a ~5 s keep-alive interval.
    seconds = 12
    tid = await new_thread(gql_client)
    body = {
        "query": RUN_AND_WAIT,
        "variables": {
            "input": {"assistantId": "slow", "threadId": tid, "input": {"seconds": seconds}}
        },
    }
    chunks: list[tuple[float, bytes]] = []
    thread_status_at_first_chunk = None
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=httpx.Timeout(120)) as http:
        async with http.stream("POST", live_server.graphql_url, json=body) as response:
            assert response.status_code == 200
            async for chunk in response.aiter_raw():
                if not chunk:
                    continue
                chunks.append((time.monotonic(), chunk))
                if len(chunks) == 1:
                    thread = await gql_client.data(
                        "query($id: ID!) { thread(id: $id) { status } }", {"id": tid}
                    )
                    thread_status_at_first_chunk = thread["thread"]["status"]
    assert chunks, "no body at all"
    raw = b"".join(c for _, c in chunks)
    result = json.loads(raw)
    assert "errors" not in result, result
    assert result["data"]["runAndWait"]["values"] == {"seconds": seconds, "count": 1}
    assert result["data"]["runAndWait"]["run"]["status"] == "SUCCESS"

    first_at, first = chunks[0]
    body_at = next(t for t, c in chunks if c.strip())
    assert first[:1].isspace(), (
        f"the response starts with the JSON body, not a whitespace keep-alive: {first[:80]!r}"
    )
    assert thread_status_at_first_chunk == "BUSY", "the first bytes came after the run ended"
    # Compared arrival times: the first keep-alive byte came well before the body.
    assert first_at - started < (body_at - started) * 2 / 3, (first_at - started, body_at - started)

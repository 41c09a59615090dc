"""What many test files share: waiting for something to happen, the GraphQL documents and
calls of the run and thread basics (a run held inside its `wait` node: `start_slow`), run
streams over WebSocket (`subscribe`, `collect`), and a bare ASGI app served by uvicorn in a
thread of its own (`serve_in_thread`).

Waits poll the thing itself (a row, a status, a log line) and fail after a deadline that only
guards against hangs: under load a deadline is an upper bound, never an expectation.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import uvicorn
from gql import Client, gql
from gql.transport.websockets import WebsocketsTransport

from tests.conftest import GraphQLClient, LiveServer

T = TypeVar("T")


async def eventually(
    probe: Callable[[], T | Awaitable[T]],
    *,
    within: float = 30.0,
    what: str = "the condition",
    interval: float = 0.05,
) -> T:
    """Call `probe` (plain or async) until it returns something truthy, and return that; fail
    after `within` seconds, naming `what`."""
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        assert time.monotonic() < deadline, f"gave up after {within:g} s waiting for {what}"
        await asyncio.sleep(interval)


# --- GraphQL documents -------------------------------------------------------------------------

RUN_FIELDS = (
    "id threadId assistantId status attempt metadata multitaskStrategy output "
    "error { type message } createdAt"
)
CREATE_RUN = f"mutation($input: RunInput!) {{ createRun(input: $input) {{ {RUN_FIELDS} }} }}"
RUN_AND_WAIT = f"""
mutation($input: RunInput!) {{
  runAndWait(input: $input) {{
    run {{ {RUN_FIELDS} }} values interrupts {{ id value }} error {{ type message }}
  }}
}}
"""
GET_RUN = f"query($id: ID!) {{ run(id: $id) {{ {RUN_FIELDS} }} }}"
GET_THREAD = "query($id: ID!) { thread(id: $id) { status values interrupts { id value } } }"


# --- calls -------------------------------------------------------------------------------------


async def new_thread(client: GraphQLClient, **fields: Any) -> str:
    data = await client.data(
        "mutation($input: CreateThreadInput) { createThread(input: $input) { id } }",
        {"input": fields},
    )
    return str(data["createThread"]["id"])


async def run_and_wait(client: GraphQLClient, **fields: Any) -> dict[str, Any]:
    return (await client.data(RUN_AND_WAIT, {"input": fields}))["runAndWait"]


async def create_run(client: GraphQLClient, **fields: Any) -> dict[str, Any]:
    return (await client.data(CREATE_RUN, {"input": fields}))["createRun"]


async def get_run(client: GraphQLClient, run_id: str) -> dict[str, Any] | None:
    body = await client.execute(GET_RUN, {"id": run_id})
    run: dict[str, Any] | None = (body.get("data") or {}).get("run")
    return run


async def wait_status(
    client: GraphQLClient, run_id: str, statuses: set[str], *, within: float = 30
) -> dict[str, Any]:
    """The run once its status is one of `statuses`."""

    async def reached() -> dict[str, Any] | None:
        run = await get_run(client, run_id)
        return run if run is not None and run["status"] in statuses else None

    return await eventually(reached, within=within, what=f"run {run_id} to reach {statuses}")


async def thread_of(client: GraphQLClient, thread_id: str) -> dict[str, Any]:
    return (await client.data(GET_THREAD, {"id": thread_id}))["thread"]


async def start_slow(
    client: GraphQLClient, tid: str, tag: str = "A", seconds: float = 5
) -> dict[str, Any]:
    """A `pipeline` run on `tid`, once inside its `wait` node (sleeping `seconds`)."""
    run = await create_run(
        client, assistantId="pipeline", threadId=tid, input={"tag": tag, "seconds": seconds}
    )
    await in_wait_node(client, run["id"], tid)
    return run


async def in_wait_node(client: GraphQLClient, run_id: str, tid: str) -> None:
    """Wait until a `pipeline` run is inside `wait` (the checkpoint after `first` saved)."""
    await wait_status(client, run_id, {"RUNNING"})

    async def inside_wait() -> bool:
        state = await client.data(
            "query($id: ID!) { thread(id: $id) { state { next } } }", {"id": tid}
        )
        return bool(state["thread"]["state"]["next"] == ["wait"])

    await eventually(inside_wait, what=f"run {run_id} to reach its `wait` node")


# --- run streams over WebSocket (graphql-transport-ws, with gql) -------------------------------

EVENT_FIELDS = "id runId event mode namespace data"
RUN_STREAM = gql(
    f"""subscription($input: RunInput!, $modes: [StreamMode!], $sub: Boolean) {{
      runStream(input: $input, streamMode: $modes, streamSubgraphs: $sub) {{ {EVENT_FIELDS} }} }}"""
)
JOIN = gql(
    f"""subscription($id: ID!, $last: String) {{ joinRunStream(runId: $id, lastEventId: $last) {{ {EVENT_FIELDS} }} }}"""
)
THREAD = gql(
    f"""subscription($id: ID!, $last: String) {{ threadStream(threadId: $id, lastEventId: $last) {{ {EVENT_FIELDS} }} }}"""
)


def ws_client(server: LiveServer) -> Client:
    url = server.graphql_url.replace("http://", "ws://")
    return Client(
        transport=WebsocketsTransport(
            url=url, subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL]
        )
    )


async def subscribe(
    server: LiveServer, query: Any, variables: dict[str, Any], key: str
) -> AsyncIterator[dict[str, Any]]:
    query.variable_values = variables
    async with ws_client(server) as session:
        async for result in session.subscribe(query):
            yield result[key]


async def collect(
    server: LiveServer, query: Any, variables: dict[str, Any], key: str, *, limit: int | None = None
) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    async for event in subscribe(server, query, variables, key):
        events.append(event)
        if limit is not None and len(events) >= limit:
            break
    return events


@contextlib.contextmanager
def serve_in_thread(app: Any, **config: Any) -> Iterator[str]:
    """`app` served by uvicorn (`config`: its settings) on a free port, in a thread and event
    loop of its own, so that a test blocking its own loop does not stall the server; yields
    `http://127.0.0.1:<port>`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        assert thread.is_alive(), "uvicorn stopped before it started"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()

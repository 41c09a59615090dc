"""Run streams over LangGraph Server's REST API (SSE), driven by `langgraph_sdk` and `RemoteGraph`:
event names, ids and payloads per stream mode, subgraph namespaces, errors, joins resumed with
`Last-Event-ID`, the thread stream, heartbeats, disconnects, and runs shared with GraphQL's
subscriptions (one event stream underneath)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn
from langgraph.pregel.remote import RemoteGraph
from langgraph.types import Command
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import NotFoundError, UnprocessableEntityError
from langgraph_sdk.schema import StreamPart
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from app.errors import NotFound
from app.rest.sse import EventSourceResponse, frame, run_frames, thread_frames
from app.services.run_streams import StreamEvent
from tests.conftest import GraphQLClient, LiveServer, free_port
from tests.rest.test_rest_runs import wait_status
from tests.streams.test_streaming import JOIN, collect

REPLY = "Hello there, how are you today?"


@pytest_asyncio.fixture(loop_scope="session")
async def client(live_server: LiveServer) -> AsyncIterator[LangGraphClient]:
    sdk = get_client(url=live_server.url, timeout=60)
    try:
        yield sdk
    finally:
        await sdk.http.client.aclose()


def new_id() -> str:
    return str(uuid.uuid4())


async def parts(stream: AsyncIterator[StreamPart]) -> list[StreamPart]:
    return [part async for part in stream]


def seq(event_id: str) -> tuple[int, int]:
    ms, n = event_id.split("-")
    return int(ms), int(n)


def assert_ids_increase(events: list[StreamPart]) -> None:
    ids = [seq(e.id) for e in events if e.id]
    assert ids == sorted(ids) and len(set(ids)) == len(ids), ids


async def test_stream_several_modes_as_langgraph_server_names_them(
    client: LangGraphClient,
) -> None:
    tid = new_id()
    events = await parts(
        client.runs.stream(
            tid,
            "chat_model",
            input={"messages": [{"role": "user", "content": "hi"}]},
            stream_mode=["values", "updates", "messages-tuple"],
            if_not_exists="create",
            feedback_keys=["score"],  # accepted; nothing to sign without LangSmith
        )
    )
    names = [e.event for e in events]
    assert names[0] == "metadata"
    assert events[0].data["attempt"] == 1
    run_id = events[0].data["run_id"]
    assert "end" not in names  # LangGraph Server closes the stream instead
    assert all(e.id for e in events)  # every lgql stream can be resumed
    assert_ids_increase(events)
    tokens = [e.data for e in events if e.event == "messages"]
    assert tokens and all(len(t) == 2 for t in tokens)  # [chunk, metadata] tuples
    assert "".join(chunk["content"] for chunk, _ in tokens) == REPLY
    assert tokens[0][1]["langgraph_node"] == "call_model"
    updates = [e.data for e in events if e.event == "updates"]
    assert updates[-1]["call_model"]["messages"][0]["content"] == REPLY
    values = [e.data for e in events if e.event == "values"]
    assert [m["content"] for m in values[-1]["messages"]] == ["hi", REPLY]
    assert (await client.runs.get(tid, run_id))["status"] == "success"


async def test_messages_mode_sends_metadata_then_the_accumulated_message(
    client: LangGraphClient,
) -> None:
    events = await parts(
        client.runs.stream(
            None,
            "chat_model",
            input={"messages": [{"role": "user", "content": "hi"}]},
            stream_mode="messages",
        )
    )
    names = [e.event for e in events]
    assert "messages/metadata" in names
    partial = [e.data for e in events if e.event == "messages/partial"]
    assert partial, names
    # Each partial carries the whole message so far, not the delta.
    contents = [p[0]["content"] for p in partial]
    assert contents[-1] == REPLY
    assert all(REPLY.startswith(c) for c in contents)
    assert len(contents) > 1 and contents == sorted(contents, key=len)


async def test_custom_events_and_subgraph_namespaces(client: LangGraphClient) -> None:
    custom = await parts(client.runs.stream(None, "stream100", input={}, stream_mode="custom"))
    assert [e.data for e in custom if e.event == "custom"] == [{"i": i} for i in range(100)]

    nested = await parts(
        client.runs.stream(
            None,
            "subgraph_parent",
            input={"value": ""},
            stream_mode=["updates"],
            stream_subgraphs=True,
        )
    )
    sub = [e for e in nested if e.event.startswith("updates|")]
    assert sub, [e.event for e in nested]
    namespace = sub[0].event.split("|")[1]
    assert namespace.startswith("child:")
    assert any(e.event == "updates" for e in nested)


async def test_a_failing_run_streams_an_error_event(client: LangGraphClient) -> None:
    events = await parts(client.runs.stream(None, "fail", input={"message": "kaput"}))
    assert events[-1].event == "error"
    assert events[-1].data == {"error": "ValueError", "message": "kaput"}


async def test_errors_before_the_stream_are_http_errors(
    client: LangGraphClient, live_server: LiveServer
) -> None:
    with pytest.raises(NotFoundError):
        await parts(client.runs.stream(None, "no-such-graph", input={}))
    with pytest.raises(UnprocessableEntityError):
        await parts(client.runs.stream(None, "echo", input={}, stream_mode="telepathy"))  # type: ignore[arg-type]
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        run = (
            await http.post("/runs", json={"assistant_id": "steps", "on_completion": "keep"})
        ).json()
        bad_cursor = await http.get(
            f"/threads/{run['thread_id']}/runs/{run['run_id']}/stream",
            headers={"Last-Event-ID": "yesterday"},
        )
        missing = await http.get(f"/threads/{new_id()}/stream")
    assert bad_cursor.status_code == 422
    assert missing.status_code == 404


async def test_join_stream_resumes_after_the_last_event_id(client: LangGraphClient) -> None:
    tid = new_id()
    run = await client.runs.create(
        tid,
        "pipeline",
        input={"tag": "x", "seconds": 1},
        stream_mode=["values", "updates"],
        if_not_exists="create",
    )
    first: list[StreamPart] = []
    async for part in client.runs.join_stream(tid, run["run_id"]):
        first.append(part)
        if len(first) == 2:
            break  # the client goes away mid-run
    rest = await parts(client.runs.join_stream(tid, run["run_id"], last_event_id=first[-1].id))
    everything = await parts(client.runs.join_stream(tid, run["run_id"]))
    assert [(e.event, e.data, e.id) for e in first + rest] == [
        (e.event, e.data, e.id) for e in everything
    ]
    assert everything[0].event == "metadata"
    assert everything[-1].data == {"tag": "x", "seconds": 1, "log": ["first:x", "after:x"]}
    only_updates = await parts(client.runs.join_stream(tid, run["run_id"], stream_mode="updates"))
    assert {e.event for e in only_updates} == {"metadata", "updates"}


async def test_the_thread_stream_follows_every_run_and_says_when_each_is_done(
    client: LangGraphClient,
) -> None:
    tid = new_id()
    before = await client.runs.wait(tid, "steps", input={"count": 0}, if_not_exists="create")
    assert before == {"count": 5}
    seen: list[StreamPart] = []

    async def follow() -> None:
        async for part in await client.threads.join_stream(tid, last_event_id="-1"):
            seen.append(part)
            if sum(1 for p in seen if p.data and p.data.get("status") == "run_done") == 2:
                return

    follower = asyncio.create_task(follow())
    run = await client.runs.create(tid, "steps", input={"count": 10})
    await asyncio.wait_for(follower, 120)  # bounds a hang only
    done = [p.data["run_id"] for p in seen if p.event == "metadata" and "status" in p.data]
    assert done[-1] == run["run_id"] and len(done) == 2
    values = [p.data for p in seen if p.event == "values"]
    assert values[-1] == {"count": 15}
    assert_ids_increase(seen)

    # Resumed after an event: only what came later.
    middle = seen[len(seen) // 2]
    resumed: list[StreamPart] = []
    async for part in await client.threads.join_stream(tid, last_event_id=middle.id):
        resumed.append(part)
        if (
            part.data
            and part.data.get("status") == "run_done"
            and part.data["run_id"] == run["run_id"]
        ):
            break
    assert [p.id for p in resumed] == [p.id for p in seen[seen.index(middle) + 1 :]]

    lifecycle: list[StreamPart] = []
    async for part in await client.threads.join_stream(
        tid, last_event_id="-1", stream_mode="lifecycle"
    ):
        lifecycle.append(part)
        if len(lifecycle) == 4:
            break
    assert [p.event for p in lifecycle] == ["metadata"] * 4
    assert [("status" in p.data) for p in lifecycle] == [False, True, False, True]


async def test_heartbeats_keep_a_quiet_stream_open(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.rest import sse

    monkeypatch.setattr(sse, "HEARTBEAT_EVERY", 0.1)
    async with (
        httpx.AsyncClient(base_url=live_server.url, timeout=60) as http,
        http.stream(
            "POST", "/runs/stream", json={"assistant_id": "slow", "input": {"seconds": 1}}
        ) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["location"].endswith("/stream")
        raw = b"".join([chunk async for chunk in response.aiter_bytes()])
    assert b": heartbeat\r\n\r\n" in raw
    assert raw.startswith(b"event: metadata\r\ndata: {")
    assert b"\r\nid: " in raw


async def test_a_stream_left_with_on_disconnect_cancel_cancels_the_run(
    client: LangGraphClient,
) -> None:
    tid = new_id()
    async for part in client.runs.stream(
        tid,
        "slow",
        input={"seconds": 60},
        if_not_exists="create",
        on_disconnect="cancel",
    ):
        assert part.event == "metadata"
        run_id = part.data["run_id"]
        break
    await wait_status(client, tid, run_id, {"interrupted"})


async def test_a_run_started_over_rest_is_joined_by_graphql_and_the_other_way_round(
    client: LangGraphClient, live_server: LiveServer, gql_client: GraphQLClient
) -> None:
    tid = new_id()
    run = await client.runs.create(
        tid, "steps", input={"count": 0}, if_not_exists="create", stream_mode=["values"]
    )
    over_graphql = await collect(live_server, JOIN, {"id": run["run_id"]}, "joinRunStream")
    over_rest = await parts(client.runs.join_stream(tid, run["run_id"]))
    assert [e["id"] for e in over_graphql[:-1]] == [e.id for e in over_rest]  # GraphQL adds `end`
    assert over_graphql[-1]["event"] == "end"

    created = await gql_client.data(
        "mutation($input: RunInput!) { createRun(input: $input) { id threadId } }",
        {"input": {"assistantId": "steps", "threadId": tid, "input": {"count": 100}}},
    )
    joined = await parts(
        client.runs.join_stream(tid, created["createRun"]["id"], last_event_id="-1")
    )
    assert joined[-1].data == {"count": 105}


async def test_remote_graph_invokes_streams_and_resumes_an_interrupt(
    live_server: LiveServer,
) -> None:
    def remote_calls() -> dict[str, Any]:
        graph = RemoteGraph("steps", url=live_server.url)
        seen: dict[str, Any] = {"invoked": graph.invoke({"count": 0})}
        seen["streamed"] = list(graph.stream({"count": 0}, stream_mode=["values", "updates"]))
        asking = RemoteGraph("interrupt", url=live_server.url)
        config: Any = {"configurable": {"thread_id": new_id()}}
        seen["first"] = asking.invoke({"question": "Go?"}, config)
        seen["waiting"] = asking.get_state(config)
        seen["resumed"] = asking.invoke(Command(resume="go"), config)
        seen["state"] = asking.get_state(config)
        seen["history"] = list(asking.get_state_history(config))
        return seen

    seen = await asyncio.to_thread(remote_calls)
    assert seen["invoked"] == {"count": 5}
    streamed = seen["streamed"]
    assert ("values", {"count": 5}) in [(p.event, p.data) for p in streamed]
    assert {p.event for p in streamed} == {"values", "updates"}
    assert seen["first"]["__interrupt__"][0]["value"] == {"question": "Go?"}
    assert seen["waiting"].next == ("ask",)
    assert seen["resumed"] == {"question": "Go?", "answer": "go"}
    assert seen["state"].values == {"question": "Go?", "answer": "go"} and not seen["state"].next
    assert seen["history"][0].values == seen["state"].values
    assert len(seen["history"]) >= 3


async def test_debug_tasks_checkpoints_and_events_modes(client: LangGraphClient) -> None:
    events = await parts(
        client.runs.stream(
            None,
            "steps",
            input={"count": 0},
            stream_mode=["debug", "tasks", "checkpoints", "events"],
        )
    )
    names = {e.event for e in events}
    assert {"metadata", "debug", "tasks", "checkpoints", "events"} <= names, names
    debug_types = {e.data["type"] for e in events if e.event == "debug"}
    assert {"checkpoint", "task", "task_result"} <= debug_types
    tasks = [e.data for e in events if e.event == "tasks"]
    assert {"step_1", "step_5"} <= {t["name"] for t in tasks}
    last_checkpoint = [e.data for e in events if e.event == "checkpoints"][-1]
    assert last_checkpoint["values"] == {"count": 5}
    assert any(e.data.get("event") == "on_chain_start" for e in events if e.event == "events")


async def test_the_sdks_v2_parts_read_lgql_streams(client: LangGraphClient) -> None:
    got = [
        part
        async for part in client.runs.stream(
            None,
            "subgraph_parent",
            input={"value": ""},
            stream_mode=["values", "updates"],
            stream_subgraphs=True,
            version="v2",
        )
    ]
    kinds = {(p["type"], tuple(p["ns"])[:1] != ()) for p in got if p["type"] != "metadata"}
    assert ("updates", True) in kinds and ("values", False) in kinds


async def _cutting_proxy(target_port: int, cut_after: bytes) -> tuple[asyncio.Server, list[int]]:
    """A TCP proxy to the server that cuts its first connection right after the server sent
    `cut_after` (a dropped connection mid-stream); later connections pass untouched."""
    connections: list[int] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cut: bool) -> None:
        seen = b""
        try:
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
                seen += chunk
                if cut and cut_after in seen:
                    break
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(len(connections))
        first = len(connections) == 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        upstream = asyncio.ensure_future(pipe(reader, up_writer, cut=False))
        await pipe(up_reader, writer, cut=first)
        upstream.cancel()
        up_writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, connections


async def test_the_sdk_reconnects_a_dropped_stream_where_it_left_off(
    client: LangGraphClient, live_server: LiveServer
) -> None:
    port = int(live_server.url.rsplit(":", 1)[1])
    proxy, connections = await _cutting_proxy(port, b"event: values\r\n")
    proxy_port = proxy.sockets[0].getsockname()[1]
    through = get_client(url=f"http://127.0.0.1:{proxy_port}", timeout=60)
    tid = new_id()
    try:
        events = await parts(
            through.runs.stream(
                tid,
                "pipeline",
                input={"tag": "cut", "seconds": 1},
                stream_mode=["values"],
                if_not_exists="create",
            )
        )
    finally:
        await through.aclose()
        proxy.close()
        await proxy.wait_closed()
    assert len(connections) >= 2  # the stream was cut, and the SDK came back
    run_id = events[0].data["run_id"]
    everything = await parts(client.runs.join_stream(tid, run_id))
    assert [(e.event, e.id) for e in events] == [(e.event, e.id) for e in everything]
    assert events[-1].data["log"] == ["first:cut", "after:cut"]


async def test_a_whole_message_from_a_node_is_messages_complete(client: LangGraphClient) -> None:
    # tool_agent's first turn returns its tool call as one AIMessage (not streamed); the second
    # streams its reply token by token.
    events = await parts(
        client.runs.stream(
            None,
            "tool_agent",
            input={"messages": [{"role": "user", "content": "add"}]},
            stream_mode="messages",
        )
    )
    names = [e.event for e in events]
    complete = [e.data[0] for e in events if e.event == "messages/complete"]
    planned = [m for m in complete if m.get("id") == "ai-plan"]
    assert planned and planned[0]["tool_calls"][0]["name"] == "add", names
    assert names.index("messages/metadata") < names.index("messages/complete")
    partial = [e.data[0]["content"] for e in events if e.event == "messages/partial"]
    assert partial[-1] == "The sum is 5"


# --- the SSE response itself ---------------------------------------------------------------------


async def test_event_source_frames_errors_and_closes_its_source_on_disconnect() -> None:
    closed = asyncio.Event()

    async def failing(kind: str) -> AsyncIterator[bytes]:
        yield frame("values", {"n": 1}, "1-0")
        if kind == "bug":
            raise ValueError("secret internals")
        raise NotFound("Thread gone")

    async def endless() -> AsyncIterator[bytes]:
        try:
            while True:
                yield frame("custom", {"tick": True})
                await asyncio.sleep(0.05)
        finally:
            closed.set()

    async def broken(request: Request) -> EventSourceResponse:
        return EventSourceResponse(failing(request.path_params["kind"]))

    async def forever(request: Request) -> EventSourceResponse:
        return EventSourceResponse(endless(), heartbeat_every=0.01)

    app = Starlette(routes=[Route("/broken/{kind}", broken), Route("/forever", forever)])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 (uvicorn has a flag, no event)
            await asyncio.sleep(0.02)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            bug = (await http.get("/broken/bug")).content
            gone = (await http.get("/broken/missing")).content
            async with http.stream("GET", "/forever") as response:
                async for _ in response.aiter_bytes():
                    break  # the client leaves mid-stream
        assert bug == (
            b'event: values\r\ndata: {"n":1}\r\nid: 1-0\r\n\r\n'
            b'event: error\r\ndata: {"error":"ValueError","message":"An internal error occurred"}'
            b"\r\n\r\n"
        )
        assert gone.endswith(
            b'event: error\r\ndata: {"error":"NOT_FOUND","message":"Thread gone"}\r\n\r\n'
        )
        await asyncio.wait_for(closed.wait(), 30)  # bounds a hang only
    finally:
        server.should_exit = True
        await task


def _events(*items: tuple[str, str, Any]) -> AsyncIterator[StreamEvent]:
    async def gen() -> AsyncIterator[StreamEvent]:
        for event_id, name, data in items:
            yield StreamEvent(id=event_id, run_id="r1", event=name, data=data)

    return gen()


async def _frames(source: AsyncIterator[bytes]) -> list[bytes]:
    return [f async for f in source]


async def test_lgql_events_become_langgraphs_sse_events() -> None:
    run = [
        ("1-0", "metadata", {"run_id": "r1", "attempt": 1}),
        ("1-1", "values", {"n": 1}),
        ("0-0", "gap", {"run_id": "r1", "last_event_id": "1-1"}),
        ("2-0", "updates|child:1", {"a": 1}),
        ("2-1", "messages/partial", [{"content": "h"}]),
        ("3-0", "end", {"run_id": "r1", "status": "success"}),
        ("3-1", "values", {"never": "sent"}),  # nothing after the end
    ]
    sent = await _frames(run_frames(_events(*run)))
    assert sent == [
        b'event: metadata\r\ndata: {"run_id":"r1","attempt":1}\r\nid: 1-0\r\n\r\n',
        b'event: values\r\ndata: {"n":1}\r\nid: 1-1\r\n\r\n',
        b'event: gap\r\ndata: {"run_id":"r1","last_event_id":"1-1"}\r\n\r\n',
        b'event: updates|child:1\r\ndata: {"a":1}\r\nid: 2-0\r\n\r\n',
        b'event: messages/partial\r\ndata: [{"content":"h"}]\r\nid: 2-1\r\n\r\n',
    ]
    only_updates = await _frames(run_frames(_events(*run), stream_mode=["updates"]))
    assert [f.split(b"\r\n")[0] for f in only_updates] == [
        b"event: metadata",
        b"event: gap",
        b"event: updates|child:1",
    ]
    # An end read from Postgres that says the run failed (its error event lost) is an error.
    failed = await _frames(run_frames(_events(("0-0", "end", {"status": "error"}))))
    assert failed == [
        b'event: error\r\ndata: {"error":"RunError","message":"The run ended with status error"}'
        b"\r\n\r\n"
    ]


async def test_the_thread_stream_says_run_done_after_each_run() -> None:
    thread = [
        ("1-0", "metadata", {"run_id": "r1", "attempt": 1}),
        ("1-1", "values", {"n": 1}),
        ("1-2", "end", {"run_id": "r1", "status": "success"}),
        ("2-0", "metadata", {"run_id": "r1", "attempt": 1}),
        ("2-1", "error", {"error": "ValueError", "message": "no"}),
    ]
    sent = await _frames(thread_frames(_events(*thread)))
    assert [f.split(b"\r\n")[:2] for f in sent] == [
        [b"event: metadata", b'data: {"run_id":"r1","attempt":1}'],
        [b"event: values", b'data: {"n":1}'],
        [b"event: metadata", b'data: {"status":"run_done","run_id":"r1"}'],
        [b"event: metadata", b'data: {"run_id":"r1","attempt":1}'],
        [b"event: error", b'data: {"error":"ValueError","message":"no"}'],
        [b"event: metadata", b'data: {"status":"run_done","run_id":"r1"}'],
    ]
    lifecycle = await _frames(thread_frames(_events(*thread), stream_modes=["lifecycle"]))
    assert len(lifecycle) == 4 and all(f.startswith(b"event: metadata") for f in lifecycle)

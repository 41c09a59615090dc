"""Run streams over WebSocket (graphql-transport-ws, with gql): event order and payloads per
stream mode, resuming with lastEventId, late joins, thread streams, disconnects."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import GraphQLClient, LiveServer
from tests.helpers import (
    JOIN,
    RUN_STREAM,
    THREAD,
    collect,
    create_run,
    eventually,
    new_thread,
    subscribe,
    wait_status,
)


async def test_run_stream_values_and_updates(
    live_server: LiveServer, gql_client: GraphQLClient
) -> None:
    tid = await new_thread(gql_client)
    events = await collect(
        live_server,
        RUN_STREAM,
        {
            "input": {"assistantId": "steps", "threadId": tid, "input": {"count": 0}},
            "modes": ["VALUES", "UPDATES"],
        },
        "runStream",
    )
    names = [e["event"] for e in events]
    assert names[0] == "metadata"
    assert events[0]["data"] == {"run_id": events[0]["runId"], "attempt": 1}
    assert names[-1] == "end"
    assert events[-1]["data"]["status"] == "success"
    values = [e["data"] for e in events if e["event"] == "values"]
    assert values == [
        {"count": 0},
        {"count": 1},
        {"count": 2},
        {"count": 3},
        {"count": 4},
        {"count": 5},
    ]
    updates = [e["data"] for e in events if e["event"] == "updates"]
    assert updates == [{f"step_{i}": {"count": i}} for i in range(1, 6)]
    assert {e["mode"] for e in events if e["event"] == "values"} == {"VALUES"}
    ids = [e["id"] for e in events]
    assert len(set(ids)) == len(ids)


async def test_custom_events_resume_exactly_after_last_event_id(
    live_server: LiveServer, gql_client: GraphQLClient
) -> None:
    tid = await new_thread(gql_client)
    run = await create_run(
        gql_client, assistantId="stream100", threadId=tid, input={}, streamMode=["CUSTOM"]
    )
    first = await collect(live_server, JOIN, {"id": run["id"]}, "joinRunStream", limit=10)
    rest = await collect(
        live_server, JOIN, {"id": run["id"], "last": first[-1]["id"]}, "joinRunStream"
    )
    everything = await collect(live_server, JOIN, {"id": run["id"]}, "joinRunStream")
    assert [e["id"] for e in first + rest] == [e["id"] for e in everything]
    custom = [e["data"]["i"] for e in everything if e["event"] == "custom"]
    assert custom == list(range(100))
    assert everything[-1]["event"] == "end"


async def test_errors_end_the_stream_with_an_error_event(
    live_server: LiveServer, gql_client: GraphQLClient
) -> None:
    events = await collect(
        live_server,
        RUN_STREAM,
        {"input": {"assistantId": "fail", "input": {"message": "nope"}}},
        "runStream",
    )
    assert events[0]["event"] == "metadata"
    assert events[-1]["event"] == "error"
    assert events[-1]["data"] == {"error": "ValueError", "message": "nope"}


async def test_subgraph_events_carry_their_namespace(live_server: LiveServer) -> None:
    events = await collect(
        live_server,
        RUN_STREAM,
        {
            "input": {"assistantId": "subgraph_parent", "input": {"value": "v"}},
            "modes": ["UPDATES"],
            "sub": True,
        },
        "runStream",
    )
    nested = [e for e in events if e["namespace"]]
    assert nested, "the child graph's updates are streamed"
    assert all(e["namespace"][0].startswith("child:") for e in nested)
    assert all(e["event"] == "updates|" + "|".join(e["namespace"]) for e in nested)
    assert any(e["event"] == "updates" and not e["namespace"] for e in events)


async def test_every_other_mode(live_server: LiveServer) -> None:
    events = await collect(
        live_server,
        RUN_STREAM,
        {
            "input": {"assistantId": "steps", "input": {"count": 0}},
            "modes": ["DEBUG", "TASKS", "CHECKPOINTS"],
        },
        "runStream",
    )
    by_mode: dict[str, list[Any]] = {}
    for e in events:
        by_mode.setdefault(e["event"], []).append(e["data"])
    assert {d["type"] for d in by_mode["debug"]} >= {"checkpoint", "task", "task_result"}
    assert any("triggers" in t for t in by_mode["tasks"]) and any(
        "result" in t for t in by_mode["tasks"]
    )
    assert all({"config", "values", "next", "metadata"} <= set(c) for c in by_mode["checkpoints"])


async def test_messages_modes_stream_tokens(live_server: LiveServer) -> None:
    events = await collect(
        live_server,
        RUN_STREAM,
        {
            "input": {
                "assistantId": "chat_model",
                "input": {"messages": [{"role": "user", "content": "hi"}]},
            },
            "modes": ["MESSAGES_TUPLE", "MESSAGES"],
        },
        "runStream",
    )
    tuples = [e["data"] for e in events if e["event"] == "messages"]
    assert len(tuples) > 3, "token by token"
    assert "".join(chunk["content"] for chunk, _ in tuples) == "Hello there, how are you today?"
    assert all(meta["langgraph_node"] == "call_model" for _, meta in tuples)
    assert {e["mode"] for e in events if e["event"] == "messages"} == {"MESSAGES_TUPLE"}
    metadata = [e for e in events if e["event"] == "messages/metadata"]
    partial = [e["data"][0]["content"] for e in events if e["event"] == "messages/partial"]
    assert len(metadata) >= 1
    # messages/partial carries the message so far, not the delta.
    assert partial[-1] == "Hello there, how are you today?"
    assert all(partial[i + 1].startswith(partial[i]) for i in range(len(partial) - 1))


async def test_events_mode(live_server: LiveServer) -> None:
    events = await collect(
        live_server,
        RUN_STREAM,
        {"input": {"assistantId": "steps", "input": {"count": 0}}, "modes": ["EVENTS", "VALUES"]},
        "runStream",
    )
    raw = [e["data"] for e in events if e["event"] == "events"]
    assert any(r["event"] == "on_chain_start" for r in raw)
    assert [e["data"] for e in events if e["event"] == "values"][-1] == {"count": 5}


async def test_thread_stream_follows_runs_in_order(
    live_server: LiveServer, gql_client: GraphQLClient
) -> None:
    tid = await new_thread(gql_client)
    got: list[dict[str, Any]] = []

    async def listen() -> None:
        ends = 0
        async for event in subscribe(live_server, THREAD, {"id": tid}, "threadStream"):
            got.append(event)
            if event["event"] == "end":
                ends += 1
                if ends == 2:
                    return

    # A thread stream without a cursor starts at the thread's first retained event: whenever
    # the listener subscribes, it gets both runs whole.
    listener = asyncio.create_task(listen())
    first = await create_run(gql_client, assistantId="steps", threadId=tid, input={"count": 0})
    second = await create_run(gql_client, assistantId="steps", threadId=tid, input={"count": 10})
    await asyncio.wait_for(listener, 60)
    runs = [e["runId"] for e in got]
    assert runs == sorted(
        runs, key=[first["id"], second["id"]].index
    )  # all of the first, then the second
    assert next(e["event"] for e in got if e["runId"] == second["id"]) == "metadata"
    # Resume the thread stream after the first run's end: only the second run's events.
    first_end = next(e for e in got if e["event"] == "end")
    again: list[dict[str, Any]] = []
    async for event in subscribe(
        live_server, THREAD, {"id": tid, "last": first_end["id"]}, "threadStream"
    ):
        again.append(event)
        if event["event"] == "end":
            break
    assert {e["runId"] for e in again} == {second["id"]}


async def test_on_disconnect_cancel(live_server: LiveServer, gql_client: GraphQLClient) -> None:
    tid = await new_thread(gql_client)
    events = await collect(
        live_server,
        RUN_STREAM,
        {
            "input": {
                "assistantId": "slow",
                "threadId": tid,
                "input": {"seconds": 30},
                "onDisconnect": "CANCEL",
            }
        },
        "runStream",
        limit=2,
    )
    run_id = events[0]["runId"]
    assert (await wait_status(gql_client, run_id, {"INTERRUPTED"}, within=15))[
        "status"
    ] == "INTERRUPTED"
    kept = await collect(
        live_server,
        RUN_STREAM,
        {"input": {"assistantId": "slow", "input": {"seconds": 1}, "onCompletion": "KEEP"}},
        "runStream",
        limit=1,
    )
    assert (await wait_status(gql_client, kept[0]["runId"], {"SUCCESS"}, within=15))[
        "status"
    ] == "SUCCESS"


async def test_stream_errors(live_server: LiveServer) -> None:
    import pytest
    from gql.transport.exceptions import TransportQueryError

    for query, variables, code in (
        (JOIN, {"id": "00000000-0000-0000-0000-000000000000"}, "NOT_FOUND"),
        (JOIN, {"id": "00000000-0000-0000-0000-000000000000", "last": "garbage"}, "BAD_USER_INPUT"),
        (THREAD, {"id": "00000000-0000-0000-0000-000000000000"}, "NOT_FOUND"),
    ):
        with pytest.raises(TransportQueryError) as caught:
            await collect(live_server, query, variables, "x")
        assert caught.value.errors and caught.value.errors[0]["extensions"]["code"] == code


async def test_streams_expire_after_retention(
    engines: Any, database_uri: str, redis_prefix: str
) -> None:
    from tests.conftest import make_settings, start_server

    settings = make_settings(f"{redis_prefix}_retention", resumable_stream_ttl_seconds=1)
    server = await start_server(settings, database_uri=database_uri, redis_uri=engines.redis_uri)
    client = GraphQLClient(server.graphql_url)
    try:
        tid = await new_thread(client)
        run = await create_run(client, assistantId="steps", threadId=tid, input={"count": 0})
        await wait_status(client, run["id"], {"SUCCESS"})
        replay = await collect(server, JOIN, {"id": run["id"]}, "joinRunStream")
        assert replay[0]["event"] == "metadata" and replay[-1]["event"] == "end"
        # Past the retention the events are gone; a late joiner is told how the run ended.

        async def expired() -> list[Any] | None:
            late = await collect(server, JOIN, {"id": run["id"]}, "joinRunStream")
            return late if late[0]["event"] != "metadata" else None

        late = await eventually(expired, within=30, what="the run's events to expire")
        assert [(e["event"], e["data"]["status"]) for e in late] == [("end", "success")]
    finally:
        await client.close()
        await server.stop()


async def test_events_cross_processes(api_only: LiveServer) -> None:
    """The subscriber's API has no worker: the events come from the live server's worker."""
    events = await collect(
        api_only,
        RUN_STREAM,
        {"input": {"assistantId": "stream100", "input": {}}, "modes": ["CUSTOM"]},
        "runStream",
    )
    assert [e["data"]["i"] for e in events if e["event"] == "custom"] == list(range(100))
    assert events[-1]["event"] == "end"

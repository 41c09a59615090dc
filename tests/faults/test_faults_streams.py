"""Streams and the API's Redis users across Redis restarts (issue 10, items 1 and 3).

On a private Redis (and, for the end-to-end test, a private Postgres and a cluster of lgql
processes): Redis is stopped and started again, with its data or empty, under a live run
stream, a run-end waiter, a worker's cancel listener and an event writer. Each must carry on
once Redis is back, and a stream must deliver every event once and in order or say explicitly
(`event: "gap"`) that events were lost, and end with the run's real final status.

Deadlines only guard against hangs; the outage's length is the fault injected, not a measure.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from typing import Any

import asyncpg
import orjson
import pytest
from gql import Client, gql
from gql.transport.websockets import WebsocketsTransport

from app.messaging.queue import Broker, connect_queue
from app.messaging.streams import EventStreams
from tests.fault_servers import FAULTS_CONFIG, PrivateRedis, private_postgres, private_redis
from tests.processes import LgqlCluster, poll_until

pytestmark = pytest.mark.timeout(120)

STEPS = 400

RUN_STREAM = gql(
    """
    subscription($input: RunInput!) {
      runStream(input: $input, streamMode: [VALUES]) { id runId event data }
    }
    """
)
THREAD = gql(
    """
    subscription($id: ID!) {
      threadStream(threadId: $id, streamMode: [VALUES]) { id runId event data }
    }
    """
)
JOIN = gql(
    """
    subscription($id: ID!, $after: String) {
      joinRunStream(runId: $id, lastEventId: $after, streamMode: [VALUES]) { id event data }
    }
    """
)


def seq(event_id: str) -> tuple[int, int]:
    ms, _, n = event_id.partition("-")
    return int(ms), int(n)


def check_stream(events: list[dict[str, Any]], *, steps: int, gap_allowed: bool) -> int:
    """Every `values` count once and in order, or a `gap` event before any hole; the ids of
    real events strictly increasing; the end last. Returns the number of gap events."""
    assert events and events[-1]["event"] == "end", [e["event"] for e in events[-3:]]
    ids = [e["id"] for e in events if e["event"] not in ("gap", "end")]
    assert all(seq(a) < seq(b) for a, b in itertools.pairwise(ids)), "ids out of order"
    gaps, last, gap_since = 0, -1, False
    for event in events:
        if event["event"] == "gap":
            gaps += 1
            gap_since = True
        elif event["event"] == "metadata" and event["data"].get("attempt", 1) > 1:
            gap_since = True  # a new attempt starts again from the last checkpoint
        elif event["event"] == "values":
            count = event["data"].get("count", 0)
            if gap_since:
                assert count >= last, (last, count)
            else:
                assert count == last + 1 or last == -1, f"silent hole: {last} -> {count}"
            last, gap_since = count, False
    assert last == steps, f"the last values seen: {last}"
    if not gap_allowed:
        assert gaps == 0, "a gap where Redis kept its data"
    return gaps


@pytest.mark.parametrize("keep_data", [True, False], ids=["with-data", "empty"])
async def test_a_run_stream_carries_on_across_a_redis_restart(keep_data: bool) -> None:
    async with (
        private_postgres() as database_uri,
        private_redis() as redis,
        LgqlCluster(database_uri, redis.uri, apis=1, workers=1, config=FAULTS_CONFIG) as cluster,
    ):
        client = cluster.client()
        data = await client.data('mutation { createThread(input: {graphId: "counter"}) { id } }')
        thread_id = data["createThread"]["id"]
        ws_url = cluster.graphql_urls[0].replace("http://", "ws://")
        events: list[dict[str, Any]] = []
        enough = asyncio.Event()

        async def follow() -> None:
            transport = WebsocketsTransport(url=ws_url, ping_interval=None)
            async with Client(transport=transport) as session:
                variables = {
                    "input": {
                        "assistantId": "counter",
                        "threadId": thread_id,
                        "input": {"tag": "s", "steps": STEPS},
                    }
                }
                async for item in session.subscribe(RUN_STREAM, variable_values=variables):
                    events.append(item["runStream"])
                    if sum(e["event"] == "values" for e in events) >= 30:
                        enough.set()

        # A thread subscriber, open before the run starts and across the restart.
        threaded: list[dict[str, Any]] = []
        thread_open = asyncio.Event()

        async def follow_thread() -> None:
            transport = WebsocketsTransport(url=ws_url, ping_interval=None)
            async with Client(transport=transport) as session:
                source = session.subscribe(THREAD, variable_values={"id": thread_id})
                thread_open.set()
                async for item in source:
                    threaded.append(item["threadStream"])
                    if threaded[-1]["event"] == "end":
                        return

        thread_follower = asyncio.create_task(follow_thread())
        await asyncio.wait_for(thread_open.wait(), 30)
        follower = asyncio.create_task(follow())
        await asyncio.wait_for(enough.wait(), 60)
        run_id = events[0]["runId"]
        cursor = events[-1]["id"]
        await redis.stop(keep_data=keep_data)
        await redis.start()

        # A second subscriber joins after the restart from the cursor it had before.
        joined: list[dict[str, Any]] = []

        async def join() -> None:
            transport = WebsocketsTransport(url=ws_url, ping_interval=None)
            async with Client(transport=transport) as session:
                variables = {"id": run_id, "after": cursor}
                async for item in session.subscribe(JOIN, variable_values=variables):
                    joined.append(item["joinRunStream"])

        await asyncio.wait_for(asyncio.gather(follower, join(), thread_follower), 90)

        conn = await asyncpg.connect(database_uri)
        try:
            status = await conn.fetchval("SELECT status FROM runs WHERE run_id = $1", run_id)
        finally:
            await conn.close()
        assert status == "success", cluster.logs(40)
        # The end is the run's real status, on both streams.
        assert events[-1]["data"]["status"] == status
        assert joined[-1]["data"]["status"] == status
        check_stream(events, steps=STEPS, gap_allowed=not keep_data)
        check_stream(threaded, steps=STEPS, gap_allowed=not keep_data)
        # The joiner resumes after `cursor`: it gets what follows, or a gap first.
        gaps = check_stream(
            [e for e in events if seq(e["id"]) <= seq(cursor) and e["event"] == "values"] + joined,
            steps=STEPS,
            gap_allowed=not keep_data,
        )
        if not keep_data:
            assert gaps >= 1 and joined[0]["event"] == "gap", joined[:2]
            assert joined[0]["data"].get("last_event_id") == cursor, joined[:2]


# --- the service level, on a private Redis ---------------------------------------------------


async def restart(redis: PrivateRedis, *, keep_data: bool) -> None:
    await redis.stop(keep_data=keep_data)
    await redis.start()


async def test_the_cancel_listener_reconnects_after_a_redis_restart() -> None:
    async with private_redis() as redis:
        queue = await connect_queue(redis.uri, "faults")
        broker = Broker(queue, "faults")
        heard: asyncio.Queue[str] = asyncio.Queue()
        run_id = str(uuid.uuid4())
        try:
            async with broker.cancel_requests(run_id, heard.put_nowait):
                await broker.send_cancel(run_id, "interrupt")
                assert await asyncio.wait_for(heard.get(), 10) == "interrupt"
                await restart(redis, keep_data=False)

                async def cancel_heard() -> str | None:
                    # Sent until the listener has subscribed again (pub/sub keeps nothing).
                    await broker.send_cancel(run_id, "rollback")
                    try:
                        return await asyncio.wait_for(heard.get(), 0.2)
                    except TimeoutError:
                        return None

                assert await poll_until(cancel_heard, deadline=30, what="a cancel") == "rollback"
                listener = broker._cancel_listener
                assert listener is not None and not listener.done()
        finally:
            await broker.close()
            await queue.aclose()


async def test_a_run_end_waiter_asks_the_database_when_redis_comes_back_empty() -> None:
    async with private_redis() as redis:
        queue = await connect_queue(redis.uri, "faults")
        broker = Broker(queue, "faults")
        ended = False
        asked = 0

        async def from_database() -> dict[str, Any] | None:
            nonlocal asked
            asked += 1
            return {"run": {"status": "success"}} if ended else None

        try:
            waiting = asyncio.create_task(
                broker.wait_for_run_end(
                    str(uuid.uuid4()), fallback=from_database, database_every=3600
                )
            )

            async def asked_once() -> bool | None:
                return True if asked else None

            await poll_until(asked_once, deadline=10, what="the first database check")
            # The run ends while Redis is down: its notice and recorded outcome are lost.
            await redis.stop(keep_data=False)
            ended = True
            await redis.start()
            # Only the reconnection can make it ask again before an hour.
            outcome = await asyncio.wait_for(waiting, 60)
            assert outcome["run"]["status"] == "success"
        finally:
            await broker.close()
            await queue.aclose()


async def test_the_writer_marks_a_gap_when_redis_comes_back_empty() -> None:
    async with private_redis() as redis:
        queue = await connect_queue(redis.uri, "faults")
        streams = EventStreams(queue, "faults", retention_seconds=60, maxlen=10_000)
        run_id, thread_id = str(uuid.uuid4()), str(uuid.uuid4())
        key = streams.thread_key(thread_id)
        try:
            async with streams.publisher(run_id, thread_id, 1) as publisher:
                for i in range(5):
                    publisher.emit("custom", {"i": i})

                async def appended(n: int) -> int | None:
                    try:
                        length = int(await queue.xlen(key))
                    except Exception:
                        return None
                    return length if length >= n else None

                await poll_until(lambda: appended(5), deadline=10, what="5 events")
                old = await queue.xrange(key)
                cursor = old[2][0].decode()
                await restart(redis, keep_data=False)
                for i in range(5, 8):
                    publisher.emit("custom", {"i": i})
            # The end, counted like every append: no second gap.
            await streams.finish(
                run_id,
                thread_id,
                1,
                "end",
                {"run_id": run_id, "status": "success"},
                outcome=None,
                outcome_key="faults:unused",
                outcome_channel="faults:unused",
                outcome_ttl=60,
                expected=publisher.sent,
            )
            entries = await queue.xrange(key)
            names = [f[b"event"].decode() for _, f in entries]
            assert names == ["gap", "custom", "custom", "custom", "end"], names
            gap = orjson.loads(entries[0][1][b"data"])
            assert gap["lost"] == 5 and gap["run_id"] == run_id
            # The writer owns the run's appends again; an older attempt is still refused.
            assert await queue.hget(streams.run_key(run_id), "owner") == b"1"
            assert await streams.append(run_id, thread_id, 0, [("custom", b"{}")]) is None
            # A reader with a cursor from before the restart is told its events are gone
            # (although the run's first entry, the writer's gap, comes after its cursor) and
            # reads the gap first; one with a cursor Redis still has is not.
            opened = await streams.open_run(
                run_id, thread_id, after=cursor, outcome_key="faults:unused"
            )
            assert opened.lost and opened.known == cursor
            first_event = await opened.tap.next(10)
            assert first_event is not None and first_event.event == "gap"
            opened.tap.close()
            after_gap = entries[1][0].decode()
            opened = await streams.open_run(
                run_id, thread_id, after=after_gap, outcome_key="faults:unused"
            )
            assert not opened.lost
            opened.tap.close()
        finally:
            await queue.aclose()


async def test_a_retried_append_is_not_written_twice_and_trimming_is_a_gap() -> None:
    async with private_redis() as redis:
        queue = await connect_queue(redis.uri, "faults")
        streams = EventStreams(queue, "faults", retention_seconds=60, maxlen=10)
        run_id, thread_id = str(uuid.uuid4()), str(uuid.uuid4())
        key = streams.thread_key(thread_id)
        try:
            batch = [("custom", b"1"), ("custom", b"2")]
            first = await streams.append(run_id, thread_id, 1, batch, expected=0)
            # The same call again (its answer lost): Redis has it already.
            assert await streams.append(run_id, thread_id, 1, batch, expected=0) == []
            assert first is not None and await queue.xlen(key) == 2
            for i in range(30):
                await streams.append(
                    run_id, thread_id, 1, [("custom", b"3")] * 10, expected=2 + 10 * i
                )
            opened = await streams.open_run(
                run_id, thread_id, after=first[0], outcome_key="faults:unused"
            )
            assert opened.lost  # trimmed away
            opened.tap.close()
        finally:
            await queue.aclose()


# --- through the API, on the machine's servers: events that Redis no longer has ---------------


async def test_a_resume_whose_events_are_gone_is_told_so(
    live_server: Any, gql_client: Any, engines: Any, redis_prefix: str
) -> None:
    """Redis lost a finished run's events (as after a restart empty): a join resuming after an
    event id it had gets `gap`, then `end` with the database's status; a thread stream resuming
    there gets `gap` first; a join without a cursor gets the end (after a gap, once the run ended
    more than a moment ago)."""
    import redis.asyncio as aioredis

    from tests.helpers import JOIN as JOIN_ALL
    from tests.helpers import THREAD, collect, create_run, new_thread, wait_status

    tid = await new_thread(gql_client)
    run = await create_run(gql_client, assistantId="steps", threadId=tid, input={"count": 0})
    await wait_status(gql_client, run["id"], {"SUCCESS"})
    events = await collect(live_server, JOIN_ALL, {"id": run["id"]}, "joinRunStream")
    cursor = events[2]["id"]
    assert [e["event"] for e in events if e["event"] == "gap"] == []

    redis = aioredis.from_url(engines.redis_uri)
    try:
        await redis.delete(
            f"{redis_prefix}:thread:{tid}:events",
            f"{redis_prefix}:run:{run['id']}:stream",
            f"{redis_prefix}:run:{run['id']}:result",
        )
    finally:
        await redis.aclose()

    resumed = await collect(
        live_server, JOIN_ALL, {"id": run["id"], "last": cursor}, "joinRunStream"
    )
    assert [e["event"] for e in resumed] == ["gap", "end"], resumed
    assert resumed[0]["data"]["last_event_id"] == cursor
    assert resumed[0]["mode"] is None
    assert resumed[1]["data"]["status"] == "success"

    thread = await collect(
        live_server, THREAD, {"id": tid, "last": cursor}, "threadStream", limit=1
    )
    assert thread[0]["event"] == "gap" and thread[0]["data"]["thread_id"] == tid

    # A join without a cursor: the end, after a gap once the run ended long enough ago that
    # its events should still be there (tests/streams/test_stream_lost_ends.py pins both cases).
    fresh = await collect(live_server, JOIN_ALL, {"id": run["id"]}, "joinRunStream")
    assert [e["event"] for e in fresh] in (["end"], ["gap", "end"]), fresh


async def test_events_given_up_in_a_long_outage_leave_a_gap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch the writer could not append for its whole patience (here shortened) is counted:
    the next append, once Redis is back with its data, puts a gap event with their number."""
    from app.messaging.streams import EventPublisher

    monkeypatch.setattr(EventPublisher, "GIVE_UP_SECONDS", 0.5)
    async with private_redis() as redis:
        queue = await connect_queue(redis.uri, "faults")
        streams = EventStreams(queue, "faults", retention_seconds=60, maxlen=10_000)
        run_id, thread_id = str(uuid.uuid4()), str(uuid.uuid4())
        key = streams.thread_key(thread_id)
        try:
            async with streams.publisher(run_id, thread_id, 1) as publisher:
                publisher.emit("custom", {"i": 0})

                async def sent(n: int) -> int | None:
                    return publisher.sent if publisher.sent >= n else None

                await poll_until(lambda: sent(1), deadline=10, what="the first event")
                await redis.stop(keep_data=True)
                publisher.emit("custom", {"i": 1})
                publisher.emit("custom", {"i": 2})
                # Given up (counted as sent) while Redis is down.
                await poll_until(lambda: sent(3), deadline=30, what="the batch given up")
                await redis.start()
                publisher.emit("custom", {"i": 3})
            entries = await queue.xrange(key)
            names = [(f[b"event"].decode(), orjson.loads(f[b"data"])) for _, f in entries]
            assert [n for n, _ in names] == ["custom", "gap", "custom"], names
            assert names[1][1]["lost"] == 2
            assert names[2][1] == {"i": 3}
        finally:
            await queue.aclose()

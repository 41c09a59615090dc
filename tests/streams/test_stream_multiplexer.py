"""Event streams at the Redis layer: each event written once (to its thread's stream), cursors
that resume both a thread and a run, fencing inside the append, retention, and the per-process
multiplexer (one reader for every subscriber; slow subscribers detached, never dropped).

These drive `EventStreams` and `Broker` directly on the test Redis with a prefix of their own;
no worker is involved (events are appended as a worker's publisher would).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

import app.messaging.streams as event_streams
from app.messaging.notices import notices_for
from app.messaging.queue import Broker, connect_queue
from app.messaging.streams import EventStreams, StreamEvent, Tap
from tests.conftest import EngineUrls

# A guard against a hang, never a measure: every wait below normally ends in milliseconds.
PATIENCE = 30.0


class Rig:
    def __init__(self, redis: Any, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self.broker = Broker(redis, prefix)
        self.streams = EventStreams(redis, prefix, retention_seconds=60, maxlen=10_000)

    async def append(
        self, run_id: str, thread_id: str, events: list[tuple[str, Any]], *, attempt: int = 1
    ) -> list[str] | None:
        import orjson

        return await self.streams.append(
            run_id, thread_id, attempt, [(name, orjson.dumps(data)) for name, data in events]
        )

    def connections(self) -> int:
        pool = self.redis.connection_pool
        return len(pool._available_connections) + len(pool._in_use_connections)


@pytest_asyncio.fixture(loop_scope="session")
async def rig(engines: EngineUrls, redis_prefix: str) -> AsyncIterator[Rig]:
    prefix = f"{redis_prefix}_mux_{uuid.uuid4().hex[:6]}"
    redis = await connect_queue(engines.redis_uri, prefix)
    made = Rig(redis, prefix)
    try:
        yield made
    finally:
        await made.broker.close()
        keys = [k async for k in redis.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


def ids() -> tuple[str, str]:
    return str(uuid.uuid4()), str(uuid.uuid4())


async def take(tap: Tap, n: int) -> list[StreamEvent]:
    got: list[StreamEvent] = []
    while len(got) < n:
        event = await tap.next(PATIENCE)
        assert event is not None, f"stream went quiet after {len(got)} of {n} events"
        got.append(event)
    return got


async def test_each_event_is_written_once_and_ids_resume_thread_and_run(rig: Rig) -> None:
    thread = str(uuid.uuid4())
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    a = await rig.append(
        first, thread, [("metadata", {"n": 0})] + [("custom", {"n": i}) for i in range(1, 5)]
    )
    b = await rig.append(second, thread, [("custom", {"n": i}) for i in range(5, 10)])
    assert a is not None and b is not None
    key = rig.streams.thread_key(thread)
    assert await rig.redis.xlen(key) == 10  # once each, in the thread's stream only
    streams = [
        k
        async for k in rig.redis.scan_iter(match=f"{rig.prefix}*", count=1000)
        if await rig.redis.type(k) == b"stream"
    ]
    assert streams == [key.encode()]

    everything = await rig.streams.open_thread(thread, after=None)
    got = await take(everything, 10)
    assert [e.id for e in got] == a + b
    assert [e.data["n"] for e in got] == list(range(10))
    assert [e.run_id for e in got] == [first] * 5 + [second] * 5
    everything.close()

    # A thread cursor resumes exactly after itself, into the next run.
    resumed = await rig.streams.open_thread(thread, after=a[2])
    assert [e.id for e in await take(resumed, 7)] == a[3:] + b
    resumed.close()

    # A run's join starts at its first event (the same ids), and resumes after any of them.
    opened = await rig.streams.open_run(
        second, thread, after=None, outcome_key=rig.broker.result_key(second)
    )
    assert opened.start == b[0] and opened.outcome is None
    assert [e.id for e in await take(opened.tap, 5)] == b
    opened.tap.close()
    opened = await rig.streams.open_run(
        first, thread, after=a[1], outcome_key=rig.broker.result_key(first)
    )
    assert [e.id for e in await take(opened.tap, 3)] == a[2:]
    opened.tap.close()


async def test_a_run_that_has_not_appended_is_followed_from_the_thread_s_end(rig: Rig) -> None:
    thread, earlier = ids()
    later = str(uuid.uuid4())
    await rig.append(earlier, thread, [("end", {"status": "success"})])
    opened = await rig.streams.open_run(
        later, thread, after=None, outcome_key=rig.broker.result_key(later)
    )
    assert opened.start is None
    appended = await rig.append(later, thread, [("metadata", {}), ("end", {"status": "success"})])
    got = await take(opened.tap, 2)
    assert [e.id for e in got] == appended and {e.run_id for e in got} == {later}
    opened.tap.close()


async def test_appends_are_fenced_by_the_newest_attempt(rig: Rig) -> None:
    run, thread = ids()
    await rig.streams.claim(run, 2)  # a no-op now: the append script fences by itself
    assert await rig.append(run, thread, [("metadata", {"attempt": 2})], attempt=2)
    assert await rig.append(run, thread, [("custom", {"stale": True})], attempt=1) is None
    assert await rig.append(run, thread, [("custom", {"attempt": 2})], attempt=2)
    assert await rig.append(run, thread, [("metadata", {"attempt": 3})], attempt=3)
    assert await rig.append(run, thread, [("custom", {"stale": True})], attempt=2) is None
    entries = await rig.redis.xrange(rig.streams.thread_key(thread))
    assert [b"stale" not in f[b"data"] for _, f in entries] == [True, True, True]


async def test_retention_starts_when_the_run_ends(rig: Rig) -> None:
    run, thread = ids()
    key, run_key = rig.streams.thread_key(thread), rig.streams.run_key(run)
    await rig.append(run, thread, [("metadata", {})])
    assert await rig.redis.ttl(key) > 3600  # while running: kept (a week at most)
    await rig.append(run, thread, [("end", {"status": "success"})])
    await rig.streams.expire(run, thread)
    assert 0 < await rig.redis.ttl(key) <= 60 and 0 < await rig.redis.ttl(run_key) <= 60
    # A later run of the thread keeps the stream while it runs...
    later = str(uuid.uuid4())
    await rig.append(later, thread, [("metadata", {})])
    assert await rig.redis.ttl(key) > 3600
    # ...and an earlier run's late expiry does not cut it short.
    await rig.streams.expire(run, thread)
    assert await rig.redis.ttl(key) > 3600


async def test_maxlen_trims_the_thread_stream(rig: Rig) -> None:
    streams = EventStreams(rig.redis, rig.prefix, retention_seconds=60, maxlen=10)
    run, thread = ids()
    import orjson

    for i in range(30):
        await streams.append(run, thread, 1, [("custom", orjson.dumps({"i": i}))] * 10)
    assert await rig.redis.xlen(streams.thread_key(thread)) < 300


async def test_many_subscribers_share_one_reader(rig: Rig) -> None:
    threads = [str(uuid.uuid4()) for _ in range(300)]
    await rig.streams.hub.ready()  # the process's notice subscription (one connection)
    before = rig.connections()
    taps = await asyncio.gather(*(rig.streams.open_thread(t, after=None) for t in threads))
    more = await asyncio.gather(
        *(rig.streams.open_thread(threads[0], after=None) for _ in range(5))
    )
    runs = {t: str(uuid.uuid4()) for t in threads[:20]}
    # One after the other: the writers' connections are not what this counts.
    appended = [await rig.append(runs[t], t, [("metadata", {"t": t})]) for t in threads[:20]]
    for tap, t, new_ids in zip(taps[:20], threads[:20], appended, strict=True):
        got = await take(tap, 1)
        assert got[0].id == new_ids[0] and got[0].data == {"t": t}
    for tap in more:
        assert [e.id for e in await take(tap, 1)] == appended[0]
    # Opening 305 subscriptions and serving 20 of them cost no connection per subscription.
    assert rig.connections() - before <= 4
    assert len(rig.streams.hub.feeds) == 300
    for tap in [*taps, *more]:
        tap.close()
    assert rig.streams.hub.feeds == {}


async def test_a_slow_subscriber_neither_holds_up_others_nor_loses_events(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(event_streams, "TAP_BUFFER", 8)
    monkeypatch.setattr(event_streams, "PAGE", 16)
    run, thread = ids()
    slow = await rig.streams.open_thread(thread, after=None)
    fast = await rig.streams.open_thread(thread, after=None)
    written: list[str] = []
    for start in range(0, 100, 7):
        got = await rig.append(
            run, thread, [("custom", {"i": i}) for i in range(start, min(start + 7, 100))]
        )
        assert got is not None
        written += got
    assert [e.id for e in await take(fast, 100)] == written
    assert len(slow.buffer) <= 8 and not slow.attached  # detached, not growing
    got = await take(slow, 100)
    assert [e.id for e in got] == written
    assert [e.data["i"] for e in got] == list(range(100))
    # Caught up, it is served by the hub again.
    more = await rig.append(run, thread, [("custom", {"i": 100})])
    assert [e.id for e in await take(slow, 1)] == more and slow.attached
    slow.close()
    fast.close()


async def test_subscribers_resync_after_the_notice_connection_drops(rig: Rig) -> None:
    run, thread = ids()
    tap = await rig.streams.open_thread(thread, after=None)
    first = await rig.append(run, thread, [("custom", {"i": 0})])
    assert [e.id for e in await take(tap, 1)] == first
    notices = notices_for(rig.redis)
    pubsub = notices._pubsub
    assert pubsub is not None and pubsub.connection is not None
    host, port = pubsub.connection._writer.get_extra_info("sockname")[:2]
    await rig.redis.execute_command("CLIENT", "KILL", "ADDR", f"{host}:{port}")
    # Appended while the listener is (or may be) reconnecting: its notice may be lost.
    second = await rig.append(run, thread, [("custom", {"i": 1})])
    third = await rig.append(run, thread, [("custom", {"i": 2})])
    assert [e.id for e in await take(tap, 2)] == (second or []) + (third or [])
    tap.close()


async def test_run_end_waiters_share_one_subscription(rig: Rig) -> None:
    runs = [str(uuid.uuid4()) for _ in range(50)]

    async def nothing() -> dict[str, Any] | None:
        return None

    before = rig.connections()
    waits = [asyncio.create_task(rig.broker.wait_for_run_end(r, fallback=nothing)) for r in runs]
    # Announced while they start: each gets the notice, or finds the recorded outcome.
    for r in runs:
        await rig.broker.publish_run_end(r, {"run": {"run_id": r, "status": "success"}})
    outcomes = await asyncio.gather(*waits)
    assert [o["run"]["run_id"] for o in outcomes] == runs
    assert rig.connections() - before <= 4  # not one pub/sub connection per waiter
    assert rig.broker._end_waiters == {}
    # An end announced before anyone waits is found at once.
    done = await rig.broker.wait_for_run_end(runs[0], fallback=nothing)
    assert done["run"]["status"] == "success"


async def test_an_end_committed_here_answers_waiters_not_stream_readers(rig: Rig) -> None:
    """`ended_here` (a run ended by this process, its end committed, its last events and end
    notice not yet in Redis) answers those waiting for the outcome alone at once; a stream
    reader is told only by the Redis notice, which follows the run's last events."""
    run = str(uuid.uuid4())

    async def nothing() -> dict[str, Any] | None:
        return None

    told: list[dict[str, Any]] = []
    heard = asyncio.Event()

    def tell(outcome: dict[str, Any]) -> None:
        told.append(outcome)
        heard.set()

    async with rig.broker.run_end_notices(run, tell):  # a stream reader's
        waiting = asyncio.create_task(rig.broker.wait_for_run_end(run, fallback=nothing))
        async with asyncio.timeout(PATIENCE):
            # Its registration has no event of its own: a turn of the loop at a time.
            while len(rig.broker._end_waiters.get(run, ())) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0)
        rig.broker.ended_here(run, {"run": {"run_id": run, "status": "success"}})
        async with asyncio.timeout(PATIENCE):
            outcome = await waiting
        assert outcome["run"]["status"] == "success"
        # Nothing went through Redis, and the stream reader was not told.
        assert await rig.redis.get(rig.broker.result_key(run)) is None
        assert told == []
        await rig.broker.publish_run_end(run, {"run": {"run_id": run, "status": "success"}})
        async with asyncio.timeout(PATIENCE):
            await heard.wait()  # the notice's own round trip through Redis
    assert told[0]["run"]["status"] == "success"


async def test_a_run_executing_here_is_waited_for_from_here(rig: Rig) -> None:
    """A run this process executes (`executing_here`) tells its end to its waiters here, even a
    waiter that starts after the end was committed; once its execution here is over
    (`executed_here`), a waiter looks in Redis again."""

    async def nothing() -> dict[str, Any] | None:
        return None

    run = str(uuid.uuid4())
    rig.broker.executing_here(run)
    waiting = asyncio.create_task(rig.broker.wait_for_run_end(run, fallback=nothing))
    async with asyncio.timeout(PATIENCE):
        while not rig.broker._end_waiters.get(run):  # noqa: ASYNC110
            await asyncio.sleep(0)
    rig.broker.ended_here(run, {"run": {"run_id": run, "status": "success"}})
    async with asyncio.timeout(PATIENCE):
        assert (await waiting)["run"]["status"] == "success"
    rig.broker.executed_here(run)

    # Ended here before anyone waited, nothing in Redis yet: answered from here.
    late = str(uuid.uuid4())
    rig.broker.executing_here(late)
    rig.broker.ended_here(late, {"run": {"run_id": late, "status": "interrupted"}})
    async with asyncio.timeout(PATIENCE):
        done = await rig.broker.wait_for_run_end(late, fallback=nothing)
    assert done["run"]["status"] == "interrupted"
    assert await rig.redis.get(rig.broker.result_key(late)) is None

    # Over here: the outcome recorded in Redis is the one a new waiter finds.
    rig.broker.executed_here(late)
    await rig.broker.publish_run_end(late, {"run": {"run_id": late, "status": "success"}})
    async with asyncio.timeout(PATIENCE):
        done = await rig.broker.wait_for_run_end(late, fallback=nothing)
    assert done["run"]["status"] == "success"
    assert rig.broker._here == {}


async def test_a_lost_end_notice_is_found_by_the_shared_recheck(rig: Rig) -> None:
    run = str(uuid.uuid4())
    asked = 0

    async def record_quietly() -> dict[str, Any] | None:
        # The waiter is listening (it asks the database only then): record the outcome
        # without a notice, as if the notice were lost; the database knows nothing yet.
        nonlocal asked
        asked += 1
        await rig.redis.set(rig.broker.result_key(run), b'{"run": {"status": "error"}}', ex=60)
        return None

    outcome = await rig.broker.wait_for_run_end(
        run, fallback=record_quietly, recheck_seconds=0.05, database_every=3600
    )
    assert outcome["run"]["status"] == "error" and asked == 1


async def test_unused_redis_client_opens_no_notice_connection(engines: EngineUrls) -> None:
    redis = aioredis.from_url(engines.redis_uri)
    try:
        broker = Broker(redis, "lgql_mux_unused")  # type: ignore[arg-type]
        EventStreams(redis, "lgql_mux_unused", retention_seconds=1, maxlen=10)
        assert notices_for(redis)._task is None  # workers that never wait hold no pub/sub
        await broker.close()
    finally:
        await redis.aclose()


async def test_concurrent_first_subscribers_share_one_listener(engines: EngineUrls) -> None:
    """The first users of a process's notices arrive together (a burst of subscriptions at
    start-up): one connection subscribes every pattern, and both kinds of notice arrive."""
    prefix = f"lgql_mux_first_{uuid.uuid4().hex[:6]}"
    redis = await connect_queue(engines.redis_uri, prefix)
    fresh = Rig(redis, prefix)
    try:
        thread, run = ids()

        async def wait_end() -> dict[str, Any]:
            async def nothing() -> dict[str, Any] | None:
                return None

            return await fresh.broker.wait_for_run_end(run, fallback=nothing)

        taps = await asyncio.gather(
            *(fresh.streams.open_thread(thread, after=None) for _ in range(5))
        )
        waiting = [asyncio.create_task(wait_end()) for _ in range(5)]
        appended = await fresh.append(run, thread, [("metadata", {})])
        for tap in taps:
            assert [e.id for e in await take(tap, 1)] == appended
            tap.close()
        await fresh.broker.publish_run_end(run, {"run": {"status": "success"}})
        assert all(o["run"]["status"] == "success" for o in await asyncio.gather(*waiting))
        listeners = [t for t in asyncio.all_tasks() if t.get_name() == "lgql-notices"]
        assert notices_for(redis)._task in listeners
    finally:
        await fresh.broker.close()
        await redis.aclose()


async def test_finish_ends_the_stream_and_announces_the_outcome_in_one_call(rig: Rig) -> None:
    run, thread = ids()

    async def nothing() -> dict[str, Any] | None:
        return None

    opened = await rig.streams.open_run(
        run, thread, after=None, outcome_key=rig.broker.result_key(run)
    )
    waiting = asyncio.create_task(rig.broker.wait_for_run_end(run, fallback=nothing))
    first = await rig.append(run, thread, [("metadata", {"attempt": 1})])
    outcome = {"run": {"run_id": run, "status": "success"}}
    end_id = await rig.streams.finish(
        run,
        thread,
        1,
        "end",
        {"run_id": run, "status": "success"},
        outcome=outcome,
        outcome_key=rig.broker.result_key(run),
        outcome_channel=rig.broker.end_channel(run),
        outcome_ttl=600,
    )
    got = await take(opened.tap, 2)
    assert [e.id for e in got] == (first or []) + [end_id]
    assert got[-1].data == {"run_id": run, "status": "success"}
    opened.tap.close()
    assert await waiting == outcome
    assert await rig.broker.run_outcome(run) == outcome
    assert 0 < await rig.redis.ttl(rig.streams.thread_key(thread)) <= 60
    assert 0 < await rig.redis.ttl(rig.streams.run_key(run)) <= 60
    # A stale attempt's end is refused; the outcome (the database's verdict) still goes out.
    assert await rig.append(run, thread, [("metadata", {"attempt": 2})], attempt=2)
    stale = await rig.streams.finish(
        run,
        thread,
        1,
        "end",
        {"status": "stale"},
        outcome=outcome,
        outcome_key=rig.broker.result_key(run),
        outcome_channel=rig.broker.end_channel(run),
        outcome_ttl=600,
    )
    assert stale is None
    entries = await rig.redis.xrange(rig.streams.thread_key(thread))
    assert all(b"stale" not in f[b"data"] for _, f in entries)


async def test_small_batches_reach_subscribers_in_their_notice(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An in-sync multiplexer takes a small batch from its notice (no read of its own); a batch
    too big for a notice is read from the stream."""
    run, thread = ids()
    await rig.append(run, thread, [("metadata", {})])  # the stream exists before anyone follows
    tap = await rig.streams.open_thread(thread, after=None)
    assert len(await take(tap, 1)) == 1
    reads = 0
    xread = rig.redis.xread

    async def counting_xread(*args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        reads += 1
        return await xread(*args, **kwargs)

    monkeypatch.setattr(rig.redis, "xread", counting_xread)
    small: list[str] = []
    for i in range(3):
        small += await rig.append(run, thread, [("custom", {"i": i}), ("custom", {"i": -i})]) or []
    assert [e.id for e in await take(tap, 6)] == small
    assert reads == 0
    big = "x" * (event_streams.NOTICE_PAYLOAD_MAX + 1)
    large = await rig.append(
        run, thread, [("custom", {"big": big}), ("end", {"status": "success"})]
    )
    got = await take(tap, 2)
    assert [e.id for e in got] == large and got[0].data == {"big": big}
    assert reads >= 1
    tap.close()


async def test_a_batch_keeps_each_event_s_bytes_whatever_its_text_and_size(rig: Rig) -> None:
    """A batch goes to Redis as one MessagePack argument: text of every kind and the sizes at
    each of MessagePack's string widths (fixstr, str8, str16, str32) come back byte for byte,
    from the stream and from the notice that carries a small batch."""
    import orjson

    run, thread = ids()
    await rig.append(run, thread, [("metadata", {})])
    tap = await rig.streams.open_thread(thread, after=None)
    assert len(await take(tap, 1)) == 1
    texts = ["é ü ✓ 漢字 🚀", 'quote " back\\slash', "new\nline\ttab", ""]
    # Padded so that each whole event's JSON (`{"t":"…"}`, 8 bytes of frame) hits the width.
    widths = [31, 32, 255, 256, 65_535, 65_536]
    small = [("custom", {"t": t}) for t in texts] + [("custom|sub:1", {}), ("values", [])]
    sized = [("custom", {"t": "x" * (w - 8)}) for w in widths]
    for batch in (small, sized):
        appended = await rig.append(run, thread, batch)
        assert appended is not None and len(appended) == len(batch)
        got = await take(tap, len(batch))
        assert [(e.id, e.event, e.data) for e in got] == [
            (i, name, data) for i, (name, data) in zip(appended, batch, strict=True)
        ]
        entries = await rig.redis.xrange(rig.streams.thread_key(thread), appended[0], "+")
        assert [(f[b"event"].decode(), f[b"data"]) for _, f in entries] == [
            (name, orjson.dumps(data)) for name, data in batch
        ]
    assert [len(orjson.dumps(d)) for _, d in sized] == widths
    tap.close()

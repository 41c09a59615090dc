"""A stream never ends silently short: when Redis no longer has what a run wrote (it came back
empty, or the run's last events and end notice never reached it), the reader is told with a
`gap` event before the run's end, which always carries the database's status (issue 10, item 3).
Runs that never started, and runs past the retention, end with their end alone."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from app.services import run_lifecycle as lifecycle
from app.services.run_request import RunRequest
from tests.conftest import EngineUrls, private_services


async def _started_run(services: Any) -> tuple[Any, Any]:
    """A run claimed as a worker would, with two events written: (thread, claimed run)."""
    thread = await services.threads.create(graph_id="steps")
    run = await services.runs.create(
        RunRequest(assistant_id="steps", thread_id=str(thread.thread_id), input={"count": 0})
    )
    async with services.db.pool.acquire() as conn:
        claimed = await lifecycle.start(
            lifecycle.RunTx(conn), run.run_id, worker_id="w", lease_seconds=60
        )
    assert claimed is not None
    rid, tid = str(run.run_id), str(thread.thread_id)
    async with services.streams.publisher(rid, tid, claimed.run.attempt) as publisher:
        publisher.emit("metadata", {"run_id": rid, "attempt": claimed.run.attempt})
        publisher.emit("custom", {"i": 1})
    return thread, claimed.run


async def _end_in_database(services: Any, run: Any) -> None:
    """The worker records the end in Postgres, then dies before its end event and end notice
    reach Redis."""
    async with services.db.pool.acquire() as conn:
        ended = await lifecycle.end(
            lifecycle.RunTx(conn), run, status="success", output=None, error=None, state=None
        )
    assert ended is not None


async def _ended_ago(services: Any, run_id: uuid.UUID, seconds: float) -> None:
    async with services.db.pool.acquire() as conn:
        await conn.execute(
            "UPDATE runs SET ended_at = now() - $2::interval WHERE run_id = $1",
            run_id,
            timedelta(seconds=seconds),
        )


async def _follow(services: Any, run_id: uuid.UUID) -> list[Any]:
    return [e async for e in services.run_streams.follow_run(str(run_id))]


async def test_an_end_that_never_reached_redis_is_a_gap_then_the_databases_end(
    engines: EngineUrls, redis_prefix: str
) -> None:
    async with private_services(engines, redis_prefix, name="lostend") as services:
        # Asked sooner than in production, so the test does not wait a minute.
        services.run_streams.DATABASE_EVERY = 0.2
        services.run_streams.END_GRACE = 0.2
        _, run = await _started_run(services)
        await _end_in_database(services, run)
        events = await _follow(services, run.run_id)
    assert [e.event for e in events] == ["metadata", "custom", "gap", "end"], events
    assert events[2].data["reason"] == "end not in the stream"
    assert events[-1].data["status"] == "success"


async def test_a_join_of_a_run_whose_events_redis_lost_is_told_so_unless_past_retention(
    engines: EngineUrls, redis_prefix: str
) -> None:
    async with private_services(engines, redis_prefix, name="lostall") as services:
        thread, run = await _started_run(services)
        await _end_in_database(services, run)
        streams = services.streams
        # Redis came back empty.
        await services.redis.delete(
            streams.thread_key(str(thread.thread_id)), streams.run_key(str(run.run_id))
        )
        await _ended_ago(services, run.run_id, 10)
        within = await _follow(services, run.run_id)
        await _ended_ago(services, run.run_id, streams.retention_seconds + 60)
        expired = await _follow(services, run.run_id)

        # A run cancelled while pending never wrote anything: nothing to have lost.
        never = await services.runs.create(
            RunRequest(assistant_id="steps", thread_id=str(thread.thread_id), input={})
        )
        await services.runs.cancel(str(never.run_id), "interrupt", wait=False)
        await _ended_ago(services, never.run_id, 10)
        cancelled = await _follow(services, never.run_id)
    assert [e.event for e in within] == ["gap", "end"], within
    assert within[0].data["reason"] == "redis lost events"
    assert within[-1].data["status"] == "success"
    assert [e.event for e in expired] == ["end"], expired
    assert [e.event for e in cancelled] == ["end"], cancelled
    assert cancelled[0].data["status"] == "interrupted"

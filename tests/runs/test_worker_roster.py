"""Who is alive is read from the workers' roster in one call, not by scanning Redis's keys: a
worker that beats is counted, one that stops is gone at once, one killed without a word is gone
once its heartbeat expires (and the roster forgets it)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid

import redis.asyncio as aioredis

from app.messaging.heartbeats import heartbeat_key, live_workers, roster_key, worker_census
from tests.conftest import EngineUrls
from tests.helpers import eventually
from workers.heartbeat import report_heartbeats


async def test_the_roster_counts_live_workers_without_a_scan(engines: EngineUrls) -> None:
    redis = aioredis.from_url(engines.redis_uri)
    prefix = f"lgql_test_roster_{uuid.uuid4().hex[:8]}"
    beating = asyncio.create_task(report_heartbeats(redis, prefix, "host:1"))
    try:
        await eventually(lambda: live_workers(redis, prefix), within=10, what="a heartbeat")
        # A worker killed without a word: in the roster, its heartbeat expiring.
        await redis.sadd(roster_key(prefix), "host:2")
        await redis.set(heartbeat_key(prefix, "host:2"), json.dumps({"ready": True}), px=200)
        scans: list[object] = []
        original = redis.scan_iter

        def counting_scan(*args: object, **kwargs: object) -> object:
            scans.append(args)
            return original(*args, **kwargs)  # type: ignore[arg-type]

        redis.scan_iter = counting_scan  # type: ignore[method-assign]
        assert await live_workers(redis, prefix) == 2
        census = await worker_census(redis, prefix)
        # host:2's heartbeat is nearly out: alive, but not counted ready (not fresh).
        assert (census.live, census.ready) == (2, 1)

        async def one_left() -> bool:
            return await live_workers(redis, prefix) == 1

        await eventually(one_left, within=10, what="the killed worker's heartbeat expiring")
        assert await redis.smembers(roster_key(prefix)) == {b"host:1"}
        assert scans == []  # the roster answered every time
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
    # A worker that stops leaves the roster with its heartbeat.
    assert await redis.smembers(roster_key(prefix)) == set()
    assert await live_workers(redis, prefix) == 0
    await redis.aclose()


async def test_known_live_workers_are_checked_again_behind_the_caller(
    engines: EngineUrls,
) -> None:
    """A stale "alive" answers at once and is checked again in the background; "no worker" is
    always checked before answering."""
    from app.services.worker_presence import WorkerPresence

    redis = aioredis.from_url(engines.redis_uri)
    prefix = f"lgql_test_presence_{uuid.uuid4().hex[:8]}"
    presence = WorkerPresence(redis, prefix, max_age=0)  # every answer is stale at once
    assert await presence.alive() is False  # none yet: checked before answering
    await redis.sadd(roster_key(prefix), "host:1")
    await redis.set(heartbeat_key(prefix, "host:1"), json.dumps({"ready": True}), ex=30)
    assert await presence.alive() is True  # "no worker" was checked again before answering
    await redis.delete(heartbeat_key(prefix, "host:1"))
    assert await presence.alive() is True  # known alive: answered at once, checked behind
    assert presence._refresh is not None
    await presence._refresh
    assert await presence.alive() is False
    await redis.aclose()

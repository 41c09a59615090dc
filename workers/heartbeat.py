"""Worker liveness in Redis, so `/ok` and operators can see how many workers are alive."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import redis.asyncio as aioredis

log = logging.getLogger("lgql.heartbeat")

HEARTBEAT_TTL_SECONDS = 30
HEARTBEAT_INTERVAL_SECONDS = 10


def heartbeat_key(prefix: str, worker_id: str) -> str:
    return f"{prefix}:workers:{worker_id}"


async def report_heartbeats(redis: aioredis.Redis, prefix: str, worker_id: str) -> None:
    """Record, every few seconds, that this worker is alive (the key expires unless renewed).

    A loop of each worker's own, not an arq cron job: arq runs a cron once across all workers,
    which would report whichever worker happened to take it.
    """
    key = heartbeat_key(prefix, worker_id)
    try:
        while True:
            try:
                await redis.set(key, str(time.time()), ex=HEARTBEAT_TTL_SECONDS)
            except Exception:  # Redis blinked: the next beat tries again
                log.warning("heartbeat failed", exc_info=True)
            await asyncio.sleep(HEARTBEAT_INTERVAL_SECONDS)
    finally:
        # A stopped worker leaves the count at once instead of when its heartbeat expires.
        with contextlib.suppress(Exception):
            await asyncio.shield(redis.delete(key))


async def live_workers(redis: aioredis.Redis, prefix: str) -> int:
    count = 0
    async for _ in redis.scan_iter(match=f"{prefix}:workers:*", count=500):
        count += 1
    return count

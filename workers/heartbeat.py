"""Worker liveness in Redis, so `/ok` and operators can see how many workers are alive."""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis

HEARTBEAT_TTL_SECONDS = 30


def heartbeat_key(prefix: str, worker_id: str) -> str:
    return f"{prefix}:workers:{worker_id}"


async def report_heartbeat(ctx: dict[str, Any]) -> None:
    """Record that this worker is alive (expires unless renewed)."""
    redis: aioredis.Redis = ctx["redis"]
    await redis.set(
        heartbeat_key(ctx["prefix"], ctx["worker_id"]),
        str(time.time()),
        ex=HEARTBEAT_TTL_SECONDS,
    )


async def live_workers(redis: aioredis.Redis, prefix: str) -> int:
    count = 0
    async for _ in redis.scan_iter(match=f"{prefix}:workers:*", count=500):
        count += 1
    return count

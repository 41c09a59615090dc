"""Workers' heartbeats in Redis: their key, and how the API reads them (`/ready`, `/info`).

Writing them is the worker's (`workers/heartbeat.py`); both sides agree on the key here, so the
API reads them without importing the worker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import redis.asyncio as aioredis

#: A heartbeat not renewed for this long expires: its worker no longer counts.
HEARTBEAT_TTL_SECONDS = 30


def heartbeat_key(prefix: str, worker_id: str) -> str:
    return f"{prefix}:workers:{worker_id}"


async def live_workers(redis: aioredis.Redis, prefix: str) -> int:
    count = 0
    async for _ in redis.scan_iter(match=f"{prefix}:workers:*", count=500):
        count += 1
    return count


@dataclass(frozen=True)
class WorkerCensus:
    #: Workers whose heartbeat has not expired.
    live: int
    #: Of those, the ones that reach Postgres and beat within `HEARTBEAT_FRESH_SECONDS`.
    ready: int
    #: Live workers that beat within `HEARTBEAT_FRESH_SECONDS`, whether they reach Postgres or not.
    fresh: int = 0


#: A heartbeat written longer ago than this is stale: its worker is not counted ready (a worker
#: whose event loop is stuck still has a key until the TTL runs out). Measured on the key's TTL,
#: so no clocks of different machines are compared.
HEARTBEAT_FRESH_SECONDS = 15


async def worker_census(redis: aioredis.Redis, prefix: str) -> WorkerCensus:
    """Workers alive and workers ready, from their heartbeats. A heartbeat of an older lgql (a
    bare timestamp) counts as ready when fresh."""
    keys = [k async for k in redis.scan_iter(match=f"{prefix}:workers:*", count=500)]
    if not keys:
        return WorkerCensus(0, 0, 0)
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.get(key)
            pipe.pttl(key)
        replies = await pipe.execute()
    live = ready = fresh = 0
    stale_below_ms = (HEARTBEAT_TTL_SECONDS - HEARTBEAT_FRESH_SECONDS) * 1000
    for raw, ttl_ms in zip(replies[::2], replies[1::2], strict=True):
        if raw is None:  # expired between the scan and the read
            continue
        live += 1
        if ttl_ms is not None and 0 <= ttl_ms < stale_below_ms:
            continue
        fresh += 1
        try:
            beat = json.loads(raw)
        except ValueError:
            beat = None
        if not isinstance(beat, dict) or beat.get("ready", True):
            ready += 1
    return WorkerCensus(live, ready, fresh)

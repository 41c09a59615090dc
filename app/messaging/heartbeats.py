"""Workers' heartbeats in Redis: their key, and how the API reads them (`/ok`, `/ready`).

Writing them is the worker's (`workers/heartbeat.py`); both sides agree on the key here, so the
API reads them without importing the worker.
"""

from __future__ import annotations

import json

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


async def worker_readiness(redis: aioredis.Redis, prefix: str) -> tuple[int, int]:
    """(workers alive, workers ready) from their heartbeats. A heartbeat of an older lgql (a
    bare timestamp) counts as ready."""
    keys = [k async for k in redis.scan_iter(match=f"{prefix}:workers:*", count=500)]
    if not keys:
        return 0, 0
    ready = 0
    for raw in await redis.mget(keys):
        if raw is None:  # expired between the scan and the read
            continue
        try:
            beat = json.loads(raw)
        except ValueError:
            beat = None
        if not isinstance(beat, dict) or beat.get("ready", True):
            ready += 1
    return len(keys), ready

"""Workers' heartbeats in Redis: their key, and how the API reads them (`/ready`, `/info`).

Writing them is the worker's (`workers/heartbeat.py`); both sides agree on the key here, so the
API reads them without importing the worker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

#: A heartbeat not renewed for this long expires: its worker no longer counts.
HEARTBEAT_TTL_SECONDS = 30


def heartbeat_key(prefix: str, worker_id: str) -> str:
    return f"{prefix}:workers:{worker_id}"


def roster_key(prefix: str) -> str:
    """The set of the ids of workers that beat: read in one call, where a scan for heartbeat
    keys walks all of Redis's keys (it ran on the path of every `runAndWait` and stream)."""
    return f"{prefix}:worker_roster"


# The heartbeats of the roster's workers (value and remaining TTL, in ms), the roster cleaned of
# workers whose heartbeat expired (a worker killed without saying goodbye): one call, O(workers).
_ROSTER = """
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[1] .. id
  local value = redis.call('GET', key)
  if value then
    out[#out + 1] = value
    out[#out + 1] = redis.call('PTTL', key)
  else
    redis.call('SREM', KEYS[1], id)
  end
end
return out
"""


async def _heartbeats(redis: aioredis.Redis, prefix: str) -> list[tuple[bytes | str, int]]:
    """(value, remaining TTL in ms) of every live worker's heartbeat. Workers of an lgql that
    kept no roster are found by a scan, only when the roster is empty."""
    replies: Any = await redis.eval(_ROSTER, 1, roster_key(prefix), heartbeat_key(prefix, ""))  # type: ignore[misc]
    if replies:
        return list(zip(replies[::2], replies[1::2], strict=True))
    keys = [k async for k in redis.scan_iter(match=f"{prefix}:workers:*", count=500)]
    if not keys:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.get(key)
            pipe.pttl(key)
        found = await pipe.execute()
    return [(v, t) for v, t in zip(found[::2], found[1::2], strict=True) if v is not None]


async def live_workers(redis: aioredis.Redis, prefix: str) -> int:
    return len(await _heartbeats(redis, prefix))


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
    live = ready = fresh = 0
    stale_below_ms = (HEARTBEAT_TTL_SECONDS - HEARTBEAT_FRESH_SECONDS) * 1000
    for raw, ttl_ms in await _heartbeats(redis, prefix):
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

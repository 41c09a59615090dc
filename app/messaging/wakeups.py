"""Run wake-ups: which runs a worker should try to start now, as a Redis sorted set.

A wake-up is news, not a decision: the worker that takes one still claims the run in Postgres,
which may refuse (the thread is busy, another worker was first). So the queue can be lean: one
`ZADD NX` to wake a run, one blocking `BZPOPMIN` to take it — where a job protocol (arq) spends
about fifteen commands a job on ids, results and retries that Postgres already covers. `NX`
collapses repeated wake-ups of a run that is still waiting (a sweep during a burst), and the score
(the time of the first wake-up) keeps them first in, first out. A wake-up lost with Redis or with
a worker that died holding it is made again by the sweeper (`workers.schedules`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import redis.asyncio as aioredis


class RunWakeups:
    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self.redis = redis
        self.key = f"{prefix}:runs:ready"

    async def wake(self, run_ids: Iterable[str]) -> None:
        """Ask a worker to try to start each of `run_ids` now (no-op for those still queued)."""
        now = time.time()
        members = {run_id: now for run_id in run_ids}
        if members:
            await self.redis.zadd(self.key, members, nx=True)

    async def take(self, wait_seconds: float) -> str | None:
        """The oldest waiting run id, waiting up to `wait_seconds` seconds for one; None if none came.
        Raises redis errors (the caller retries)."""
        found = await self.redis.bzpopmin(self.key, timeout=wait_seconds)
        if not found:
            return None
        member = found[1]
        return member.decode() if isinstance(member, bytes) else str(member)

    async def waiting(self) -> int:
        """How many wake-ups are queued."""
        return int(await self.redis.zcard(self.key))

"""Worker liveness and readiness in Redis, so `/ok`, `/ready` and operators can see how many
workers are alive and how many can work.

Each worker writes its heartbeat key every few seconds (it expires unless renewed) with what it
can reach: `{"at": <time>, "ready": true|false, "unreachable": {"postgres": <seconds>}}`. A
worker that cannot reach Redis cannot write it, so its key expires: to the API, a worker cut
off from Redis is absent, and one cut off from Postgres is present but not ready. The worker
says the same in its log (`Reachability`): when an outage starts, once when it has lasted
`LONG_OUTAGE_SECONDS` ("not ready"), and when it ends ("ready again"). It never exits over it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from app.messaging.heartbeats import HEARTBEAT_TTL_SECONDS, heartbeat_key, roster_key

__all__ = ["Reachability", "heartbeat_key", "report_heartbeats"]

log = logging.getLogger("lgql.heartbeat")

HEARTBEAT_INTERVAL_SECONDS = 5
#: An outage this long is logged as an error and makes the worker not ready.
LONG_OUTAGE_SECONDS = 10.0


class Reachability:
    """Since when each dependency (`postgres`, `redis`) has been unreachable from this worker,
    fed by every loop that talks to them; logs an outage's start, its becoming long, its end."""

    def __init__(self, worker_id: str, *, long_after: float = LONG_OUTAGE_SECONDS) -> None:
        self.worker_id = worker_id
        self.long_after = long_after
        self._since: dict[str, float] = {}
        self._told_long: set[str] = set()

    def failed(self, dependency: str, exc: BaseException) -> None:
        now = time.monotonic()
        since = self._since.setdefault(dependency, now)
        if since == now:
            log.warning(
                "worker %s cannot reach %s (%s: %s); retrying",
                self.worker_id,
                dependency,
                type(exc).__name__,
                exc,
            )
        elif now - since >= self.long_after and dependency not in self._told_long:
            self._told_long.add(dependency)
            log.error(
                "worker %s not ready: %s unreachable for %.0f s; still retrying (not exiting)",
                self.worker_id,
                dependency,
                now - since,
            )

    def ok(self, dependency: str) -> None:
        since = self._since.pop(dependency, None)
        if since is not None:
            self._told_long.discard(dependency)
            log.warning(
                "worker %s ready again: %s reachable after %.1f s",
                self.worker_id,
                dependency,
                time.monotonic() - since,
            )

    def unreachable(self) -> dict[str, float]:
        """Seconds each unreachable dependency has been so."""
        now = time.monotonic()
        return {name: round(now - since, 1) for name, since in self._since.items()}

    @property
    def ready(self) -> bool:
        return all(seconds < self.long_after for seconds in self.unreachable().values())


async def report_heartbeats(
    redis: aioredis.Redis,
    prefix: str,
    worker_id: str,
    *,
    reachability: Reachability | None = None,
    ping_postgres: Callable[[], Awaitable[object]] | None = None,
) -> None:
    """Record, every few seconds, that this worker is alive and whether it can work (the key
    expires unless renewed); probe Postgres on the way, so an outage with no run going is seen.

    A loop of each worker's own, not an arq cron job: arq runs a cron once across all workers,
    which would report whichever worker happened to take it.
    """
    key = heartbeat_key(prefix, worker_id)
    roster = roster_key(prefix)
    reach = reachability or Reachability(worker_id)
    try:
        while True:
            if ping_postgres is not None:
                try:
                    async with asyncio.timeout(HEARTBEAT_INTERVAL_SECONDS):
                        await ping_postgres()
                    reach.ok("postgres")
                except Exception as exc:
                    reach.failed("postgres", exc)
            value = {"at": time.time(), "ready": reach.ready, "unreachable": reach.unreachable()}
            try:
                async with redis.pipeline(transaction=False) as pipe:
                    pipe.set(key, json.dumps(value), ex=HEARTBEAT_TTL_SECONDS)
                    pipe.sadd(roster, worker_id)
                    await pipe.execute()
                reach.ok("redis")
            except Exception as exc:  # Redis blinked: the next beat tries again
                reach.failed("redis", exc)
            await asyncio.sleep(HEARTBEAT_INTERVAL_SECONDS)
    finally:
        # A stopped worker leaves the count at once instead of when its heartbeat expires.
        with contextlib.suppress(Exception):
            await asyncio.shield(_leave(redis, key, roster, worker_id))


async def _leave(redis: aioredis.Redis, key: str, roster: str, worker_id: str) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.delete(key)
        pipe.srem(roster, worker_id)
        await pipe.execute()

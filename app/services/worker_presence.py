"""Whether any worker is alive to execute runs, so a client is told rather than left waiting.

A run created while no worker is alive stays pending until one starts: `runAndWait` and a stream
would wait without a word. The API asks the workers' heartbeats (`app.messaging.heartbeats`), at
most once per `max_age` seconds per process, so a busy API pays one Redis scan a second or two at
most, never one per run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis

from app import faults
from app.messaging.heartbeats import live_workers

log = logging.getLogger("lgql.workers")

#: Seconds a liveness answer is reused.
MAX_AGE_SECONDS = 2.0

NO_LIVE_WORKER = "NO_LIVE_WORKER"


@dataclass(frozen=True, slots=True)
class NoWorkerNotice:
    """What a client is told: the run waits until a worker starts."""

    run_id: str | None
    message: str
    code: str = NO_LIVE_WORKER

    def as_dict(self) -> dict[str, str | None]:
        return {"code": self.code, "message": self.message, "runId": self.run_id}


class WorkerPresence:
    def __init__(
        self, redis: aioredis.Redis, prefix: str, *, max_age: float = MAX_AGE_SECONDS
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._max_age = max_age
        self._checked_at = -max_age
        self._alive = True
        self._known = False
        self._refresh: asyncio.Task[None] | None = None
        self._here: asyncio.Task[None] | None = None
        self._runs_here: Callable[[str], bool] | None = None

    def running_here(self, task: asyncio.Task[None]) -> None:
        """A worker runs in this process (`lgql dev`) as long as `task` does: alive without
        asking Redis (its first heartbeat may come after the first request)."""
        self._here = task

    def runs_here(self, holds: Callable[[str], bool]) -> None:
        """This process executes some runs itself (`LGQL_API_RUN_SLOTS`): `holds` says which;
        their clients need no word about workers."""
        self._runs_here = holds

    async def alive(self) -> bool:
        """Whether a worker's heartbeat is in Redis (cached for `max_age`). Unknown (Redis
        unreachable) counts as alive: the outage is reported elsewhere, not as this.

        Workers known alive stay so while a stale answer is checked again behind the caller:
        the check is on the path of every `runAndWait` and stream, and a deployment that has
        workers pays nothing for it (a worker that died is noticed by the next caller but one).
        An answer of no worker, or none yet, is checked before answering."""
        if self._here is not None and not self._here.done():
            return True
        if time.monotonic() - self._checked_at < self._max_age:
            return self._alive
        if self._known and self._alive:
            if self._refresh is None or self._refresh.done():
                self._refresh = asyncio.create_task(self._recheck())
            return True
        return await self._check()

    async def _check(self) -> bool:
        try:
            alive = await live_workers(self._redis, self._prefix) > 0
        except Exception as exc:
            if not faults.is_infrastructure_fault(exc):
                raise
            alive = True
        self._checked_at, self._alive, self._known = time.monotonic(), alive, True
        return alive

    async def _recheck(self) -> None:
        try:
            await self._check()
        except Exception:  # the next caller checks again
            log.warning("could not check for live workers", exc_info=True)

    async def notice(self, run_id: str | None = None) -> NoWorkerNotice | None:
        """A notice (logged as a warning) when no worker is alive (and the run is not executed
        by this process); None otherwise."""
        if run_id is not None and self._runs_here is not None and self._runs_here(run_id):
            return None
        if await self.alive():
            return None
        what = f"run {run_id}" if run_id else "the thread's runs"
        message = (
            f"no worker is alive: {what} will wait until one starts "
            "(start `lgql worker`, or use `lgql dev`, which runs one)"
        )
        log.warning("%s", message)
        return NoWorkerNotice(run_id, message)

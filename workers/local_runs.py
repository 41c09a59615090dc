"""Runs executed by the API process whose client waits for them (`LGQL_API_RUN_SLOTS`).

A run created by `runAndWait`, `runStream` (and their REST, MCP and A2A doors) has a client
waiting on this very process. Handing it to a worker costs a hop through Redis and a wake-up of
another process before the claim; with slots here, the API claims it at once and executes it
itself, through the same `RunRunner` a worker uses: the same claim, lease, fencing, cancel
listener, events and end. Nothing else changes: a process that dies under a run leaves its lease
to lapse and a worker takes the run over; a run this process cannot take (every slot busy, or
shutting down) goes to the workers as any other; one that is not startable yet (its thread
busy) is woken by the run before it, as always.

On shutdown, its runs get `BG_JOB_SHUTDOWN_GRACE_PERIOD_SECS` to finish (as a worker's do),
then are handed back for a worker to resume.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from app.services.container import Services
from app.settings import Settings
from workers.runner import RunRunner, run_quietly
from workers.worker import worker_id

log = logging.getLogger("lgql.worker")


class LocalRuns:
    """An executor of at most `slots` runs at a time in this process (`RunsHere`)."""

    def __init__(self, services: Services, *, slots: int, grace_seconds: float) -> None:
        self._runner = RunRunner(services, worker_id())
        self._slots = slots
        self._grace_seconds = grace_seconds
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._closing = False

    def offer(self, run_id: uuid.UUID) -> bool:
        if self._closing or len(self._tasks) >= self._slots or run_id in self._tasks:
            return False
        task = asyncio.create_task(
            run_quietly(self._runner, str(run_id)), name=f"lgql-run-{run_id}"
        )
        self._tasks[run_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(run_id, None))
        return True

    def holds(self, run_id: str) -> bool:
        """Whether this process took the run (its client needs no word about workers)."""
        try:
            return uuid.UUID(run_id) in self._tasks
        except ValueError:
            return False

    async def close(self) -> None:
        """Take no more runs; let those running finish within the grace period, then hand
        them back (the runner does, when its task is cancelled)."""
        self._closing = True
        tasks = list(self._tasks.values())
        if not tasks:
            return
        log.info("waiting up to %gs for %d run(s) of this process", self._grace_seconds, len(tasks))
        _, pending = await asyncio.wait(tasks, timeout=self._grace_seconds)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


def local_runs(settings: Settings, services: Services) -> LocalRuns:
    """The API process's executor (the `LocalRunsFactory` `app.server.create_app` takes)."""
    return LocalRuns(
        services,
        slots=settings.api_run_slots,
        grace_seconds=settings.bg_job_shutdown_grace_period_secs,
    )

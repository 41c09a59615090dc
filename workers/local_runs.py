"""Runs executed by the API process whose client waits for them (`LGQL_API_RUN_SLOTS`).

A run created by `runAndWait`, `runStream` (and their REST, MCP and A2A doors) has a client
waiting on this very process. Handing it to a worker costs a hop through Redis and a wake-up of
another process before the claim; with slots here, a slot is held while the run is created, the
creating call claims it too (one round trip and one commit: `lgql_create_claimed_run`), and the
API executes it itself, through the same `RunRunner` a worker uses: the same claim rule, lease,
fencing, cancel listener, events and end. Nothing else changes: a process that dies under a run
leaves its lease to lapse and a worker takes the run over; a run this process cannot take (every
slot busy, or shutting down) goes to the workers as any other; one that is not startable yet
(its thread busy) stays pending, and is woken for a worker by the run before it, as always.

On shutdown, its runs get `BG_JOB_SHUTDOWN_GRACE_PERIOD_SECS` to finish (as a worker's do),
then are handed back for a worker to resume.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from app.services.container import Services
from app.services.run_lifecycle import Claimed
from app.settings import Settings
from workers.runner import RunRunner, run_quietly
from workers.worker import worker_id

log = logging.getLogger("lgql.worker")


class _Slot:
    """A slot held for a run being created (`HeldSlot`): started or released, once."""

    __slots__ = ("_owner", "_used")

    def __init__(self, owner: LocalRuns) -> None:
        self._owner = owner
        self._used = False

    @property
    def worker_id(self) -> str:
        return self._owner.worker_id

    def start(self, claimed: Claimed) -> None:
        if self._used:
            raise RuntimeError("this slot was used already")
        self._used = True
        self._owner._start(claimed)

    def release(self) -> None:
        if not self._used:
            self._used = True
            self._owner._held -= 1


class LocalRuns:
    """An executor of at most `slots` runs at a time in this process (`RunsHere`)."""

    def __init__(self, services: Services, *, slots: int, grace_seconds: float) -> None:
        self.worker_id = worker_id()
        self._runner = RunRunner(services, self.worker_id)
        self._broker = services.broker
        self._slots = slots
        self._grace_seconds = grace_seconds
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._held = 0  # slots held for runs being created
        self._closing = False

    def hold_slot(self) -> _Slot | None:
        if self._closing or len(self._tasks) + self._held >= self._slots:
            return None
        self._held += 1
        return _Slot(self)

    def _start(self, claimed: Claimed) -> None:
        # Even while closing: the run is claimed for this process, and `close` lets it finish
        # within the grace period or hands it back, as any other.
        self._held -= 1
        run_id = claimed.run.run_id
        # Before the creating call answers, so that its client's wait knows the run's end
        # will be told here.
        self._broker.executing_here(str(run_id))
        task = asyncio.create_task(
            run_quietly(self._runner, str(run_id), claimed), name=f"lgql-run-{run_id}"
        )
        self._tasks[run_id] = task
        task.add_done_callback(lambda _: self._done(run_id))

    def _done(self, run_id: uuid.UUID) -> None:
        self._tasks.pop(run_id, None)
        self._broker.executed_here(str(run_id))

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
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._grace_seconds
        if self._tasks:
            log.info(
                "waiting up to %gs for %d run(s) of this process",
                self._grace_seconds,
                len(self._tasks),
            )
        # Again while runs appear: one whose creating call was under way started meanwhile.
        while self._tasks:
            tasks = list(self._tasks.values())
            _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - loop.time()))
            if pending and loop.time() >= deadline:
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)


def local_runs(settings: Settings, services: Services) -> LocalRuns:
    """The API process's executor (the `LocalRunsFactory` `app.server.create_app` takes)."""
    return LocalRuns(
        services,
        slots=settings.api_run_slots,
        grace_seconds=settings.bg_job_shutdown_grace_period_secs,
    )

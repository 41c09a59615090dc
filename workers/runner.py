"""Executes runs in a worker: the attempt loop. Claim, keep the lease, obey cancel requests,
stop at the timeout, execute the graph; how the attempt ended is handed to
`app.services.run_execution`, which records it and does what follows.

A run goes through here once per attempt. The lease is renewed every third of its length; a
renewal that finds the attempt taken over stops the graph without writing anything more, and one
that finds a cancel request (the database's copy of the Redis message) applies it.

Infrastructure faults (`app.faults`: a lost or terminated Postgres connection, Redis gone) never
end a run: the attempt gives up its lease at once (`RunExecution.retry_later`), the sweeper counts
the lapse against the run's budget (`BG_JOB_MAX_RETRIES`) and wakes it, and the next attempt
resumes from the last checkpoint on fresh connections. Recording the end is retried for a while
first, as the graph's work is done by then. A graph's own exceptions still end the run ERROR.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from langgraph.types import StateSnapshot

from app import faults
from app.errors import NotFound
from app.observability.runs import attempt as observed_attempt
from app.runtime.executor import Executed, FinalSaves, RunSpec, execute
from app.runtime.run_options import RunOptions
from app.services.container import Services
from app.services.run_execution import LostOwnership, RunError, RunRecord
from app.services.run_lifecycle import Claimed

log = logging.getLogger("lgql.worker")


class _Attempt:
    """One attempt's shared flags: why the graph was stopped, if it was."""

    def __init__(self) -> None:
        self.cancel_action: str | None = None
        self.lost = False
        self.graph_task: asyncio.Task[Executed] | None = None

    def stop(self, *, cancel_action: str | None = None, lost: bool = False) -> None:
        if cancel_action is not None and self.cancel_action is None:
            self.cancel_action = cancel_action
        self.lost = self.lost or lost
        if self.graph_task is not None and not self.graph_task.done():
            self.graph_task.cancel()


class RunRunner:
    def __init__(self, services: Services, worker_id: str) -> None:
        self.services = services
        self.worker_id = worker_id
        self.settings = services.settings
        self.execution = services.execution

    async def run(self, run_id: uuid.UUID) -> None:
        """Claim the run if it may start now, and execute it."""
        # Raises when not claimed (it stays pending, and the sweeper wakes it again), or claimed
        # with the answer lost (its lease lapses, and the sweeper requeues it).
        claimed = await self.execution.claim(run_id, self.worker_id)
        if claimed is None:
            return
        await self.execute(claimed)

    async def execute(self, claimed: Claimed) -> None:
        """Execute a run claimed for this worker (by `run`, or by the call that created it)."""
        with _observed(claimed):
            try:
                await self._execute(claimed.run, self._spec(claimed))
            except Exception as exc:
                if not faults.is_infrastructure_fault(exc):
                    raise
                await self.execution.retry_later(claimed.run, exc)

    def _spec(self, claimed: Claimed) -> RunSpec | Exception:
        """What the executor needs, or why the run cannot execute (its assistant was deleted
        under it, or its graph is not served here)."""
        run, assistant = claimed.run, claimed.assistant
        if assistant is None or not self.services.assistants.serves(assistant["graph_id"]):
            return NotFound(
                f"Assistant {run.assistant_id} not found", assistant_id=str(run.assistant_id)
            )
        return RunSpec(
            run_id=str(run.run_id),
            thread_id=str(run.thread_id),
            attempt=run.attempt,
            graph_id=assistant["graph_id"],
            assistant_id=str(run.assistant_id),
            assistant_config=assistant["config"] or {},
            assistant_context=assistant["context"] or {},
            metadata=run.metadata_,
            options=RunOptions.from_kwargs(run.kwargs),
            fresh_thread=claimed.thread_fresh,
        )

    async def _execute(self, run: RunRecord, spec: RunSpec | Exception) -> None:
        attempt = _Attempt()
        services = self.services
        if isinstance(spec, Exception):
            await self.execution.end(run, "error", RunError.of(spec), snapshot=None, publisher=None)
            return
        status = "success"
        error: RunError | None = None
        fault: BaseException | None = None
        snapshot: StateSnapshot | None = None
        saves: FinalSaves | None = None
        publisher = self.execution.publisher(run)
        keeper = asyncio.create_task(self._keep_lease(run, attempt))
        try:
            # Inside the try: if Redis fails here, the lease keeper must still stop, so that
            # the lease lapses and another worker takes the run over.
            await publisher.__aenter__()
            publisher.emit("metadata", {"run_id": str(run.run_id), "attempt": run.attempt})
            async with services.broker.cancel_requests(
                str(run.run_id), lambda action: attempt.stop(cancel_action=action)
            ):
                graph_task = asyncio.create_task(
                    execute(
                        services.graphs,
                        services.checkpointer,
                        spec,
                        sink=publisher.emit,
                        store=services.store.backend,
                    )
                )
                attempt.graph_task = graph_task
                try:
                    # Shielded: a timeout or a shutdown must not cancel the graph behind our
                    # back; we stop it ourselves and wait for it to settle.
                    async with asyncio.timeout(self.settings.bg_job_timeout_secs):
                        executed = await asyncio.shield(graph_task)
                    # The saves still queued go with the end (raising here what a flush raises).
                    saves = await executed.saver.hold_back()
                    snapshot = executed.state
                except TimeoutError:
                    status = "timeout"
                    error = RunError(
                        "TimeoutError",
                        f"Run exceeded BG_JOB_TIMEOUT_SECS ({self.settings.bg_job_timeout_secs:g} s)",
                    )
                    attempt.stop()
                    await _settle(graph_task)
                except asyncio.CancelledError:
                    current = asyncio.current_task()
                    if current is not None and current.cancelling():
                        # This worker is shutting down: another one resumes the run.
                        attempt.stop()
                        await _settle(graph_task)
                        await publisher.close()
                        await self.execution.hand_back(run)
                        raise
                    # The graph was stopped by a cancel request (or a lost lease).
                    status = "interrupted"
                except LostOwnership:
                    attempt.lost = True
                except faults.InfrastructureFault as exc:
                    # lgql's own statement lost its connection (the checkpointer's, the
                    # store's): not the graph's doing.
                    fault = exc
                except Exception as exc:
                    status, error = "error", RunError.of(exc)
                    log.warning("run %s failed: %s", run.run_id, exc, exc_info=exc)
        finally:
            keeper.cancel()
            with contextlib.suppress(BaseException):
                await keeper
        if attempt.lost:
            await publisher.close()
            log.warning("run %s attempt %s was taken over; dropping it", run.run_id, run.attempt)
            return
        if fault is not None:
            if attempt.cancel_action is None:
                await publisher.close()
                await self.execution.retry_later(run, fault)
                return
            status = "interrupted"  # a cancel stopped it meanwhile: the cancel wins
        if attempt.cancel_action == "rollback":
            await self.execution.roll_back(run, spec, publisher)
            return
        if snapshot is None:
            try:
                snapshot = await self.execution.current_state(spec)
            except Exception:
                # The end is recorded without the thread's state (it is refreshed next time).
                log.warning("could not read the state of run %s", run.run_id, exc_info=True)
        # Shielded: a worker stopping now (its grace period over) must not cut the end short,
        # as it carries the run's last checkpoints: it finishes, and only then is the task done.
        ending = asyncio.ensure_future(
            self.execution.end(
                run, status, error, snapshot=snapshot, publisher=publisher, saves=saves
            )
        )
        try:
            await asyncio.shield(ending)
        except asyncio.CancelledError:
            ending.add_done_callback(_log_failure)
            raise

    async def _keep_lease(self, run: RunRecord, attempt: _Attempt) -> None:
        interval = self.settings.run_lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                owned, action = await self.execution.renew_lease(run)
            except Exception:  # the database blinked: try again at the next beat
                log.warning("could not renew the lease of run %s", run.run_id, exc_info=True)
                continue
            if not owned:
                attempt.stop(lost=True)
                return
            if action is not None:
                attempt.stop(cancel_action=action)


async def run_quietly(runner: RunRunner, run_id: str, claimed: Claimed | None = None) -> None:
    """`runner.run` (or, given the run `claimed` already, `runner.execute`), as a task of its
    own: what goes wrong is logged, never raised."""
    try:
        if claimed is None:
            await runner.run(uuid.UUID(run_id))
        else:
            await runner.execute(claimed)
    except asyncio.CancelledError:
        # The process is shutting down (its grace period over) and the runner handed the run
        # back: this task's work is done, not failed.
        return
    except Exception as exc:
        # Its lease lapses (or it stays pending), and the sweeper gives it to a worker again.
        if faults.is_infrastructure_fault(exc):
            log.warning("run %s not started or ended here: %s: %s", run_id, type(exc).__name__, exc)
        else:
            log.exception("run %s failed in this process", run_id)


def _observed(claimed: Claimed) -> contextlib.AbstractContextManager[None]:
    """The attempt's metrics, the run's ids on its log lines, and its span."""
    run = claimed.run
    return observed_attempt(
        run_id=str(run.run_id),
        thread_id=str(run.thread_id),
        assistant_id=str(run.assistant_id),
        graph_id=claimed.assistant["graph_id"] if claimed.assistant else "unknown",
        attempt=run.attempt,
        # A later attempt's wait would count the earlier attempts' time too.
        due_at=run.available_at if run.attempt == 1 else None,
        kwargs=run.kwargs,
    )


def _log_failure(task: asyncio.Future[Any]) -> None:
    """Done callback of an end finishing after its runner was cancelled."""
    if not task.cancelled() and task.exception() is not None:
        log.warning("the end of a run failed after its worker stopped", exc_info=task.exception())


async def _settle(task: asyncio.Task[Any]) -> None:
    with contextlib.suppress(BaseException):
        await task

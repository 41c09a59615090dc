"""Executes runs in a worker: claim, keep the lease, obey cancel requests, record how it ended.

A run goes through here once per attempt. The lease is renewed every third of its length; a
renewal that finds the attempt taken over stops the graph without writing anything more, and one
that finds a cancel request (the database's copy of the Redis message) applies it.

Infrastructure faults (`app.faults`: a lost or terminated Postgres connection, Redis gone) never
end a run: the attempt gives up its lease at once (`_retry_later`), the sweeper counts the lapse
against the run's budget (`BG_JOB_MAX_RETRIES`) and wakes it, and the next attempt resumes from
the last checkpoint on fresh connections. Recording the end is retried for a while first, as the
graph's work is done by then. A graph's own exceptions still end the run ERROR.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from langgraph.types import StateSnapshot

from app import faults
from app.broker import RESULT_TTL_SECONDS
from app.db import run_queue
from app.event_streams import EventPublisher
from app.runtime.checkpointer import LostOwnership
from app.runtime.executor import RunSpec, current_state, execute
from app.runtime.serialization import to_jsonable
from app.runtime.state import interrupts_by_task
from app.services import run_lifecycle as lifecycle
from app.services.container import Services
from app.services.errors import NotFound
from app.services.run_lifecycle import Claimed, Ended, RunTx, ThreadState
from app.services.runs import RunRecord, outcome_of, stopped_outcome

log = logging.getLogger("lgql.worker")

# How long a run's last event is retried while Redis is unreachable.
CLOSE_STREAM_SECONDS = 15.0

# Gives up the lease of the attempt we hold, now: the next sweep requeues the run as if its
# worker had died (one lapse counted), without waiting out the lease.
_LAPSE_NOW = """
UPDATE runs SET lease_until = now() - interval '1 millisecond'
 WHERE run_id = $1 AND attempt = $2 AND status = 'running'
"""


def thread_state_of(snapshot: StateSnapshot) -> ThreadState:
    return ThreadState(
        values=to_jsonable(snapshot.values),
        interrupts=interrupts_by_task(snapshot),
        waiting=bool(snapshot.next),
    )


def output_of(snapshot: StateSnapshot | None) -> dict[str, Any] | None:
    if snapshot is None:
        return None
    return {
        "values": to_jsonable(snapshot.values),
        "interrupts": [to_jsonable(i) for i in snapshot.interrupts],
    }


class _Attempt:
    """One attempt's shared flags: why the graph was stopped, if it was."""

    def __init__(self) -> None:
        self.cancel_action: str | None = None
        self.lost = False
        self.graph_task: asyncio.Task[StateSnapshot] | None = None

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

    async def run(self, run_id: uuid.UUID) -> None:
        """Claim the run if it may start now, and execute it."""
        try:
            async with self.services.db.pool.acquire() as conn:
                claimed = await lifecycle.start(
                    RunTx(conn),
                    run_id,
                    worker_id=self.worker_id,
                    lease_seconds=self.settings.run_lease_seconds,
                )
        except Exception as exc:
            # Not claimed (it stays pending, and the sweeper wakes it again), or claimed with the
            # answer lost (its lease lapses, and the sweeper requeues it).
            if faults.is_infrastructure_fault(exc):
                await self._drop_connections()
            raise
        if claimed is None:
            return
        try:
            await self._execute(claimed.run, self._spec(claimed))
        except Exception as exc:
            if not faults.is_infrastructure_fault(exc):
                raise
            await self._retry_later(claimed.run, exc)

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
            kwargs=run.kwargs,
        )

    async def _execute(self, run: RunRecord, spec: RunSpec | Exception) -> None:
        attempt = _Attempt()
        services = self.services
        if isinstance(spec, Exception):
            await self._end(run, None, "error", _error(spec), snapshot=None, publisher=None)
            return
        status, error = "success", None
        fault: BaseException | None = None
        snapshot: StateSnapshot | None = None
        publisher = services.streams.publisher(str(run.run_id), str(run.thread_id), run.attempt)
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
                        snapshot = await asyncio.shield(graph_task)
                except TimeoutError:
                    status = "timeout"
                    error = {
                        "error": "TimeoutError",
                        "message": "Run exceeded BG_JOB_TIMEOUT_SECS "
                        f"({self.settings.bg_job_timeout_secs:g} s)",
                    }
                    attempt.stop()
                    await _settle(graph_task)
                except asyncio.CancelledError:
                    current = asyncio.current_task()
                    if current is not None and current.cancelling():
                        # This worker is shutting down: another one resumes the run.
                        attempt.stop()
                        await _settle(graph_task)
                        await publisher.close()
                        await self._hand_back(run)
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
                    status, error = "error", _error(exc)
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
                await self._retry_later(run, fault)
                return
            status = "interrupted"  # a cancel stopped it meanwhile: the cancel wins
        if attempt.cancel_action == "rollback":
            await self._roll_back(run, spec, publisher)
            return
        if snapshot is None:
            with contextlib.suppress(Exception):
                snapshot = await current_state(services.graphs, services.checkpointer, spec)
        await self._end(run, spec, status, error, snapshot=snapshot, publisher=publisher)

    async def _keep_lease(self, run: RunRecord, attempt: _Attempt) -> None:
        interval = self.settings.run_lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                async with self.services.db.pool.acquire() as conn:
                    owned, action = await lifecycle.renew_lease(
                        RunTx(conn), run, lease_seconds=self.settings.run_lease_seconds
                    )
            except Exception:  # the database blinked: try again at the next beat
                log.warning("could not renew the lease of run %s", run.run_id, exc_info=True)
                continue
            if not owned:
                attempt.stop(lost=True)
                return
            if action is not None:
                attempt.stop(cancel_action=action)

    async def _end(
        self,
        run: RunRecord,
        spec: RunSpec | None,
        status: str,
        error: dict[str, Any] | None,
        *,
        snapshot: StateSnapshot | None,
        publisher: EventPublisher | None,
    ) -> None:
        services = self.services
        state = thread_state_of(snapshot) if snapshot is not None else None
        output = output_of(snapshot)
        temporary = bool(run.kwargs.get("temporary"))
        tx, ended = await self._record_end(run, status, output, error, state)
        if ended is None:
            if publisher is not None:
                await publisher.close()
            return
        await services.runs.announce_webhooks(tx.deliveries)
        await self._close_stream(run, publisher, status, error, outcome=outcome_of(ended.run))
        if ended.next_run is not None and not temporary:
            await services.runs.wake(*ended.next_run)

    async def _record_end(
        self,
        run: RunRecord,
        status: str,
        output: dict[str, Any] | None,
        error: dict[str, Any] | None,
        state: ThreadState | None,
    ) -> tuple[RunTx, Ended | None]:
        """Record how the run ended; on an infrastructure fault, again on a fresh connection
        (with backoff, for up to a lease), as the graph's work is done. Raises the last fault
        when the database stays unreachable (the lease lapses and another attempt ends it)."""
        services = self.services
        temporary = bool(run.kwargs.get("temporary"))
        deadline = asyncio.get_running_loop().time() + self.settings.run_lease_seconds
        delay, faulted = 0.05, False
        while True:
            try:
                async with services.db.pool.acquire() as conn:
                    # The end alone is one call that commits by itself; with a webhook to record
                    # or a stateless run's thread to delete, all of it is one transaction: no one
                    # ever sees the run ended without its webhook, or with its temporary thread
                    # still there.
                    atomic = (
                        conn.transaction() if run.webhook or temporary else contextlib.nullcontext()
                    )
                    async with atomic:
                        tx = RunTx(conn)
                        ended = await lifecycle.end(
                            tx, run, status=status, output=output, error=error, state=state
                        )
                        if ended is not None and temporary:
                            await services.threads.delete_in(conn, run.thread_id)
                    if ended is None and faulted:
                        # A first try whose commit went through but whose answer was lost.
                        row = await run_queue.get(conn, run.run_id)
                        if row is not None and row.attempt == run.attempt and row.status == status:
                            ended = Ended(row, None)  # the sweeper wakes the thread's next run
                return tx, ended
            except Exception as exc:
                if not faults.is_infrastructure_fault(exc):
                    raise
                await self._drop_connections()
                if asyncio.get_running_loop().time() + delay > deadline:
                    raise
                log.warning("could not record the end of run %s (%s); retrying", run.run_id, exc)
                faulted = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def _retry_later(self, run: RunRecord, exc: BaseException) -> None:
        """Hand an attempt hit by an infrastructure fault back: its lease lapses now, the sweeper
        requeues the run (one attempt of its budget spent) and another attempt resumes it from
        its last checkpoint. When even that statement fails, the lease lapses by itself."""
        log.warning(
            "run %s attempt %s hit an infrastructure fault (%s: %s); it will be retried from its "
            "last checkpoint",
            run.run_id,
            run.attempt,
            type(exc.__cause__ or exc).__name__,
            exc.__cause__ or exc,
        )
        await self._drop_connections()
        try:
            async with self.services.db.pool.acquire() as conn:
                await conn.execute(_LAPSE_NOW, run.run_id, run.attempt)
        except Exception:
            log.warning("could not give up the lease of run %s; it lapses", run.run_id)

    async def _drop_connections(self) -> None:
        """Replace the pool's connections: after a lost server or a terminated backend the idle
        ones are as dead, and one reused mid-failure answers "another operation is in
        progress"."""
        with contextlib.suppress(Exception):
            await self.services.db.pool.expire_connections()

    async def _close_stream(
        self,
        run: RunRecord,
        publisher: EventPublisher | None,
        status: str,
        error: dict[str, Any] | None,
        *,
        outcome: dict[str, Any] | None = None,
    ) -> None:
        """The run's last event (`error`, or `end` with its status), its retention and, given
        `outcome`, the run-end notice for waiters (`Broker.publish_run_end`): one Redis round
        trip, in the order readers rely on (the event is in the stream before the outcome is
        announced). What the attempt's publisher still holds goes first."""
        services = self.services
        rid = str(run.run_id)
        if publisher is not None:
            await publisher.close()
        if error is not None and status in ("error", "timeout"):
            event, data = "error", error
        else:
            event, data = "end", {"run_id": rid, "status": status}
        # Retried through a Redis blip (the count makes a retry of a call that went through a
        # no-op); past that, the run's row has its end, and waiters and readers ask the
        # database for it.
        delay, deadline = 0.1, asyncio.get_running_loop().time() + CLOSE_STREAM_SECONDS
        while True:
            try:
                await services.streams.finish(
                    rid,
                    str(run.thread_id),
                    run.attempt,
                    event,
                    data,
                    outcome=outcome,
                    outcome_key=services.broker.result_key(rid),
                    outcome_channel=services.broker.end_channel(rid),
                    outcome_ttl=RESULT_TTL_SECONDS,
                    expected=None if publisher is None else publisher.sent,
                )
                return
            except Exception as exc:
                if (
                    not faults.is_infrastructure_fault(exc)
                    or asyncio.get_running_loop().time() + delay > deadline
                ):
                    log.warning("could not close the event stream of run %s", rid, exc_info=True)
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _roll_back(self, run: RunRecord, spec: RunSpec, publisher: EventPublisher) -> None:
        services = self.services
        temporary = bool(run.kwargs.get("temporary"))
        async with services.db.pool.acquire() as conn, conn.transaction():
            tx = RunTx(conn)
            deleted = await lifecycle.roll_back(tx, run)
            if deleted:
                await services.checkpointer.delete_for_runs_in(conn, [str(run.run_id)])
                if temporary:
                    await services.threads.delete_in(conn, run.thread_id)
        if not deleted:
            await publisher.close()
            return
        await services.runs.announce_webhooks(tx.deliveries)
        await self._close_stream(run, publisher, "rollback", None)
        if not temporary:
            snapshot = await current_state(services.graphs, services.checkpointer, spec)
            async with services.db.pool.acquire() as conn:
                await lifecycle.refresh_thread(
                    RunTx(conn), run.thread_id, state=thread_state_of(snapshot)
                )
        await services.broker.publish_run_end(str(run.run_id), stopped_outcome(run, deleted=True))
        if not temporary:
            await services.runs.wake_next(run.thread_id)

    async def _hand_back(self, run: RunRecord) -> None:
        try:
            async with self.services.db.pool.acquire() as conn, conn.transaction():
                handed = await lifecycle.hand_back(RunTx(conn), run)
            if handed:
                log.info("handed run %s back to the queue", run.run_id)
                await self.services.runs.wake(run.run_id, run.available_at)
        except Exception:
            # Its lease lapses instead, and the sweeper requeues it (counting a lapse).
            log.warning("could not hand run %s back", run.run_id, exc_info=True)


async def _settle(task: asyncio.Task[Any]) -> None:
    with contextlib.suppress(BaseException):
        await task


def _error(exc: BaseException) -> dict[str, str]:
    return {"error": type(exc).__name__, "message": str(exc)}

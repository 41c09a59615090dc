"""How a run ends, in one place: finishing, rolling back and handing back a run, and what follows
once that is committed (webhooks announced, the run's stream closed and its end published, the
thread's next run woken).

The worker's attempt loop (`workers/runner.py`) claims and executes; every way a run stops (the
graph finished, failed, timed out or was cancelled; a rollback; a worker shutting down; a cancel
of a pending run; a lapsed lease that ran out of attempts) goes through `RunExecution`, so the
after-commit sequence exists once.

Infrastructure faults (`app.faults`) never end a run: `retry_later` gives up the attempt's lease at
once and the sweeper requeues it. Recording an end is retried on fresh connections for a while
first, as the graph's work is done by then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from datetime import datetime
from typing import Protocol

from langgraph.types import StateSnapshot

from app import faults
from app.db import run_queue
from app.db.engine import Database
from app.db.models import Run as RunRecord
from app.messaging.queue import RESULT_TTL_SECONDS, Broker
from app.messaging.streams import EventPublisher, EventStreams
from app.messaging.wakeups import RunWakeups
from app.observability import metrics, tracing
from app.observability.runs import attempt_ended
from app.persistence.checkpointer import LostOwnership, PostgresCheckpointer
from app.runtime.executor import FinalSaves, RunSpec, current_state
from app.runtime.graphs import GraphRegistry
from app.services import run_lifecycle as lifecycle
from app.services.common import new_id
from app.services.run_lifecycle import Claimed, Ended, RunTx, ThreadState
from app.services.run_outcome import RunError, RunOutcome, RunOutput
from app.services.threads import ThreadService
from app.services.webhooks import enqueue_recorded

__all__ = ["HeldSlot", "LostOwnership", "RunError", "RunExecution", "RunRecord", "RunsHere"]

log = logging.getLogger("lgql.worker")

# How long a run's last event is retried while Redis is unreachable.
CLOSE_STREAM_SECONDS = 15.0

# Gives up the lease of the attempt we hold, now: the next sweep requeues the run as if its
# worker had died (one lapse counted), without waiting out the lease.
_LAPSE_NOW = """
UPDATE runs SET lease_until = now() - interval '1 millisecond'
 WHERE run_id = $1 AND attempt = $2 AND status = 'running'
"""


class HeldSlot(Protocol):
    """A slot of this process's executor, held for a run about to be created and claimed in
    the same call: either `start` (the run was claimed for `worker_id`) or `release` (it was
    not: not created, or not startable yet, or the call failed), once."""

    @property
    def worker_id(self) -> str:
        """Who the run is claimed for (this process's executor)."""
        ...

    def start(self, claimed: Claimed) -> None:
        """Execute the committed claimed run here, as a worker that claimed it would."""
        ...

    def release(self) -> None: ...


class RunsHere(Protocol):
    """What executes runs in an API process (`workers.local_runs`, `LGQL_API_RUN_SLOTS`)."""

    def hold_slot(self) -> HeldSlot | None:
        """A free slot, held; None when every slot is taken or it is closing."""
        ...


class RunExecution:
    """Claims, lease renewals and every end of a run, with their after-commit sequence."""

    def __init__(
        self,
        *,
        db: Database,
        broker: Broker,
        wakeups: RunWakeups,
        streams: EventStreams,
        graphs: GraphRegistry,
        checkpointer: PostgresCheckpointer,
        threads: ThreadService,
        lease_seconds: float,
    ) -> None:
        self._db = db
        self._broker = broker
        self._wakeups = wakeups
        self._streams = streams
        self._graphs = graphs
        self._checkpointer = checkpointer
        self._threads = threads
        self._lease_seconds = lease_seconds
        self._here: RunsHere | None = None

    def execute_here(self, here: RunsHere | None) -> None:
        """Runs whose callers wait for them may be executed by `here`, in this process."""
        self._here = here

    def slot_here(self) -> HeldSlot | None:
        """A slot of this process's executor (see `execute_here`) for a run about to be created
        and claimed at once, or None: the run is the workers' to start."""
        return None if self._here is None else self._here.hold_slot()

    @property
    def lease_seconds(self) -> float:
        """How long a claim holds a run before its lease must be renewed."""
        return self._lease_seconds

    # --- an attempt -------------------------------------------------------------------------

    async def claim(self, run_id: uuid.UUID, worker_id: str) -> Claimed | None:
        """Start the run for this worker if it may start now (None otherwise). Raises what the
        database raised: not claimed (it stays pending, and the sweeper wakes it again), or
        claimed with the answer lost (its lease lapses, and the sweeper requeues it)."""
        try:
            async with self._db.pool.acquire() as conn:
                return await lifecycle.start(
                    RunTx(conn), run_id, worker_id=worker_id, lease_seconds=self._lease_seconds
                )
        except Exception as exc:
            if faults.is_infrastructure_fault(exc):
                await self.drop_connections()
            raise

    async def renew_lease(self, run: RunRecord) -> tuple[bool, str | None]:
        """(still ours, the cancel action requested in the row, if any)."""
        async with self._db.pool.acquire() as conn:
            return await lifecycle.renew_lease(RunTx(conn), run, lease_seconds=self._lease_seconds)

    def publisher(self, run: RunRecord) -> EventPublisher:
        """The attempt's writer of the run's event stream."""
        return self._streams.publisher(str(run.run_id), str(run.thread_id), run.attempt)

    async def current_state(self, spec: RunSpec) -> StateSnapshot:
        return await current_state(self._graphs, self._checkpointer, spec)

    # --- ends -------------------------------------------------------------------------------

    async def end(
        self,
        run: RunRecord,
        status: str,
        error: RunError | None,
        *,
        snapshot: StateSnapshot | None,
        publisher: EventPublisher | None,
        saves: FinalSaves | None = None,
    ) -> None:
        """Record how the attempt ended (retried through database faults, see `_record_end`),
        with the checkpoint saves the graph's end left (`saves`), then announce its webhook,
        close its stream with its outcome, and wake the thread's next run. An attempt that no
        longer holds the run only flushes its stream."""
        state = ThreadState.of_snapshot(snapshot) if snapshot is not None else None
        temporary = bool(run.kwargs.get("temporary"))
        output = RunOutput.of_snapshot(snapshot) if snapshot is not None else None
        try:
            tx, ended = await self._record_end(run, status, output, error, state, saves)
        except Exception as exc:
            if faults.is_infrastructure_fault(exc):
                raise
            # Postgres refused a value of the end (a NUL character in the state, which JSONB
            # cannot hold; or in the last saves): the run ends ERROR saying so, without the
            # state, rather than staying RUNNING and failing the same way at every attempt.
            log.warning("run %s: Postgres refused its end: %s", run.run_id, exc)
            status, error, output, state = "error", RunError.of(exc), None, None
            try:
                tx, ended = await self._record_end(run, status, output, error, state, saves)
            except Exception as again:
                if saves is None or faults.is_infrastructure_fault(again):
                    raise
                # The saves themselves are refused: the end goes without them.
                tx, ended = await self._record_end(run, status, output, error, state, None)
        if ended is None:
            if publisher is not None:
                await publisher.close()
            return
        attempt_ended(status)
        outcome = RunOutcome.of(ended.run)
        # Committed: whoever waits here for the outcome alone (a `runAndWait` whose run this
        # process executed) has it now, while the last events and the end go to Redis.
        self._broker.ended_here(str(run.run_id), outcome.to_json())
        await self.announce_webhooks(tx.deliveries)
        await self._close_stream(run, publisher, status, error, outcome=outcome)
        if ended.next_run is not None and not temporary:
            await self.wake(*ended.next_run)

    async def _record_end(
        self,
        run: RunRecord,
        status: str,
        output: RunOutput | None,
        error: RunError | None,
        state: ThreadState | None,
        saves: FinalSaves | None,
    ) -> tuple[RunTx, Ended | None]:
        """Record how the run ended; on an infrastructure fault, again on a fresh connection
        (with backoff, for up to a lease), as the graph's work is done. Raises the last fault
        when the database stays unreachable (the lease lapses and another attempt ends it)."""
        temporary = bool(run.kwargs.get("temporary"))
        deadline = asyncio.get_running_loop().time() + self._lease_seconds
        delay, faulted = 0.05, False
        while True:
            try:
                async with self._db.pool.acquire() as conn:
                    # The end (with a stateless run's thread, deleted in the same call) is one
                    # call that commits by itself; with a webhook to record, all of it is one
                    # transaction: no one ever sees the run ended without its webhook.
                    atomic = conn.transaction() if run.webhook else contextlib.nullcontext()
                    # The end call carrying the last checkpoints is observed as their write
                    # (its own label), under a span of its own in the run's trace.
                    observed = (
                        metrics.checkpoint_write_at_end()
                        if saves is not None and not temporary
                        else contextlib.nullcontext()
                    )
                    async with atomic:
                        tx = RunTx(conn)
                        with observed, tracing.span("lgql.run.end"):
                            ended = await lifecycle.end(
                                tx,
                                run,
                                status=status,
                                output=output,
                                error=error,
                                state=state,
                                delete_thread=temporary,
                                saves=saves,
                            )
                    if ended is None and faulted:
                        # A first try whose commit went through but whose answer was lost.
                        row = await run_queue.get(conn, run.run_id)
                        if row is not None and row.attempt == run.attempt and row.status == status:
                            ended = Ended(row, None)  # the sweeper wakes the thread's next run
                return tx, ended
            except Exception as exc:
                if not faults.is_infrastructure_fault(exc):
                    raise
                await self.drop_connections()
                if asyncio.get_running_loop().time() + delay > deadline:
                    raise
                log.warning("could not record the end of run %s (%s); retrying", run.run_id, exc)
                faulted = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def roll_back(self, run: RunRecord, spec: RunSpec, publisher: EventPublisher) -> None:
        """A running run's rollback: delete it with its checkpoints (and a stateless run's
        thread), then announce its webhook, close its stream, refresh the thread from what is
        left, publish its end and wake the thread's next run."""
        temporary = bool(run.kwargs.get("temporary"))
        async with self._db.pool.acquire() as conn, conn.transaction():
            tx = RunTx(conn)
            deleted = await lifecycle.roll_back(tx, run)
            if deleted:
                await self._checkpointer.delete_for_runs_in(conn, [str(run.run_id)])
                if temporary:
                    await self._threads.delete_in(conn, run.thread_id)
        if not deleted:
            await publisher.close()
            return
        attempt_ended("rollback")
        await self.announce_webhooks(tx.deliveries)
        await self._close_stream(run, publisher, "rollback", None)
        if not temporary:
            snapshot = await self.current_state(spec)
            async with self._db.pool.acquire() as conn:
                await lifecycle.refresh_thread(
                    RunTx(conn), run.thread_id, state=ThreadState.of_snapshot(snapshot)
                )
        await self.announce_stopped(run, deleted=True, wake_next=not temporary)

    async def cancel_pending(self, tx: RunTx, run: RunRecord, action: str) -> None:
        """A pending run's cancel, inside the caller's transaction (which holds the thread's
        lock): it ends interrupted, or is deleted with its checkpoints for a rollback. Once
        committed, hand it to `announce_stopped`."""
        await lifecycle.cancel_pending(tx, [run], action)
        if action == "rollback":
            await self._checkpointer.delete_for_runs_in(tx.conn, [str(run.run_id)])
        await lifecycle.refresh_thread(tx, run.thread_id, state=None)

    async def announce_stopped(self, run: RunRecord, *, deleted: bool, wake_next: bool) -> None:
        """After the commit of a run stopped before it produced anything of its own (a pending
        run cancelled, or a rollback): its end to waiters, and the thread's next run woken."""
        outcome = RunOutcome.stopped(run, deleted=deleted)
        await self._broker.publish_run_end(str(run.run_id), outcome.to_json())
        if wake_next:
            await self.wake_next(run.thread_id)

    async def hand_back(self, run: RunRecord) -> None:
        """A worker shutting down returns its attempt to the queue (not counted as a lapse)."""
        try:
            async with self._db.pool.acquire() as conn, conn.transaction():
                handed = await lifecycle.hand_back(RunTx(conn), run)
            if handed:
                log.info("handed run %s back to the queue", run.run_id)
                await self.wake(run.run_id, run.available_at)
        except Exception:
            # Its lease lapses instead, and the sweeper requeues it (counting a lapse).
            log.warning("could not hand run %s back", run.run_id, exc_info=True)

    async def retry_later(self, run: RunRecord, exc: BaseException) -> None:
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
        await self.drop_connections()
        try:
            async with self._db.pool.acquire() as conn:
                await conn.execute(_LAPSE_NOW, run.run_id, run.attempt)
        except Exception:
            log.warning("could not give up the lease of run %s; it lapses", run.run_id)

    async def lapse_leases(self, *, max_attempts: int) -> list[RunRecord]:
        """The sweeper's part: runs whose lease lapsed go back to pending, or end ERROR when out
        of attempts (their webhooks announced and their end published here). Returns them."""
        async with self._db.pool.acquire() as conn, conn.transaction():
            tx = RunTx(conn)
            lapsed = await lifecycle.lapse_leases(tx, max_attempts=max_attempts)
        await self.announce_webhooks(tx.deliveries)
        for run in lapsed:
            if run.status == "error":
                attempt_ended("error")  # out of attempts: counted under graph `unknown`
                await self._broker.publish_run_end(str(run.run_id), RunOutcome.of(run).to_json())
        return lapsed

    async def drop_connections(self) -> None:
        """Replace the pool's connections: after a lost server or a terminated backend the idle
        ones are as dead, and one reused mid-failure answers "another operation is in
        progress"."""
        try:
            await self._db.pool.expire_connections()
        except Exception:
            log.warning("could not expire the database pool's connections", exc_info=True)

    async def _close_stream(
        self,
        run: RunRecord,
        publisher: EventPublisher | None,
        status: str,
        error: RunError | None,
        *,
        outcome: RunOutcome | None = None,
    ) -> None:
        """The run's last event (`error`, or `end` with its status), its retention and, given
        `outcome`, the run-end notice for waiters (`Broker.publish_run_end`): one Redis round
        trip, in the order readers rely on (the event is in the stream before the outcome is
        announced). What the attempt's publisher still holds goes first."""
        rid = str(run.run_id)
        if publisher is not None:
            await publisher.close()
        data: dict[str, str]
        if error is not None and status in ("error", "timeout"):
            event, data = "error", error.to_json()
        else:
            event, data = "end", {"run_id": rid, "status": status}
        notice = None if outcome is None else outcome.to_json()
        # Retried through a Redis blip (the count makes a retry of a call that went through a
        # no-op); past that, the run's row has its end, and waiters and readers ask the
        # database for it.
        delay, deadline = 0.1, asyncio.get_running_loop().time() + CLOSE_STREAM_SECONDS
        while True:
            try:
                await self._streams.finish(
                    rid,
                    str(run.thread_id),
                    run.attempt,
                    event,
                    data,
                    outcome=notice,
                    outcome_key=self._broker.result_key(rid),
                    outcome_channel=self._broker.end_channel(rid),
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

    # --- after commit -----------------------------------------------------------------------

    async def announce_webhooks(self, deliveries: list[uuid.UUID]) -> None:
        """Enqueue the webhooks a committed transaction recorded (runs it ended)."""
        await enqueue_recorded(self._broker, deliveries)

    async def wake_next(self, thread_id: uuid.UUID) -> None:
        """Wake a worker for the thread's next pending run, if there is one."""
        async with self._db.pool.acquire() as conn:
            nxt = await run_queue.next_pending(conn, thread_id)
        if nxt is not None:
            await self.wake(nxt.run_id, nxt.available_at)

    async def wake(self, run_id: uuid.UUID, available_at: datetime) -> None:
        """Ask a worker to start a pending run: now, or when its `afterSeconds` delay is over
        (a deferred arq job, whose task wakes it then)."""
        delay = available_at.timestamp() - time.time()
        if delay > 0:
            await self._broker.enqueue_run(
                str(run_id), job_key=f"after:{new_id()}", defer_seconds=delay
            )
        else:
            await self._wakeups.wake([str(run_id)])

"""The run and thread state machine, in one place.

Every status change of a run goes through a function here; each names the statuses it moves
from and to, holds the thread's row lock while it decides, and refreshes the thread's status in
the same transaction, so a thread is never seen idle with a run going, or busy with none.

    (create) ──────────────▶ pending                      thread → busy
    pending ── start ──────▶ running   (attempt + 1, lease)
    running ── end ────────▶ success | error | timeout | interrupted
    running ── hand back ──▶ pending   (worker shutting down)
    running ── lease lapsed ▶ pending | error (out of attempts)
    pending ── cancel ─────▶ interrupted
    pending/running ── rollback ▶ (deleted, with its checkpoints)

Every move to a final status (and every rollback) also records the run's webhook, if it has
one, in the same transaction (`app.services.webhooks.record_run_end`), and stamps `ended_at`;
the first start stamps `started_at`.

Thread status, recomputed at each of these: busy while any run is pending or running; else error
if the last run failed; else interrupted if the latest checkpoint waits on a node or interrupt;
else idle.

The functions work in a `RunTx`: an asyncpg connection, and the webhook deliveries recorded on it,
to enqueue once committed (the statements are `app.db.run_queue`'s, prepared, without the ORM:
they run for every run). The connection is inside a transaction, except for `start`, and for an
`end` that records nothing else (no webhook, no thread to delete): each of those is one call that
takes the thread's lock and commits by itself, one round trip.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from langgraph.types import StateSnapshot
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import run_queue as db
from app.db.engine import driver_connection
from app.db.models import ACTIVE_RUN_STATUSES, FINAL_RUN_STATUSES, Run, RunStatus, ThreadStatus
from app.runtime.executor import FinalSaves
from app.runtime.serialization import to_jsonable
from app.runtime.state import interrupts_by_task
from app.services.run_outcome import RunError, RunOutput
from app.services.webhooks import record_run_end, recorded_in

__all__ = [
    "ACTIVE_STATUSES",
    "FINAL_STATUSES",
    "Claimed",
    "Ended",
    "RunStatus",
    "RunTx",
    "ThreadState",
    "ThreadStatus",
]

# The run statuses' one definition is the table's (app.db.models); these are its names here.
FINAL_STATUSES = FINAL_RUN_STATUSES
ACTIVE_STATUSES = ACTIVE_RUN_STATUSES


@dataclass
class RunTx:
    """A unit of work of the state machine: its connection (in a transaction, or not for a
    single call), and the webhook deliveries recorded on it (for
    `RunService.announce_webhooks` once committed)."""

    conn: asyncpg.Connection
    deliveries: list[uuid.UUID] = field(default_factory=list)

    @classmethod
    async def of_session(cls, session: AsyncSession) -> RunTx:
        """The state machine inside a SQLAlchemy session's transaction; deliveries it records
        are the session's (`announce_webhooks(session)` sends them)."""
        return cls(await driver_connection(session), recorded_in(session))

    async def record_webhook(
        self, run: Run, *, status: str | None = None, values: dict[str, Any] | None = None
    ) -> None:
        delivery = await record_run_end(self.conn, run, status=status, values=values)
        if delivery is not None:
            self.deliveries.append(delivery)


@dataclass(frozen=True)
class ThreadState:
    """What the latest checkpoint says: values, interrupts, and whether a node is due next."""

    values: dict[str, Any] | None
    interrupts: dict[str, Any]
    waiting: bool

    @classmethod
    def of_snapshot(cls, snapshot: StateSnapshot) -> ThreadState:
        return cls(
            values=to_jsonable(snapshot.values),
            interrupts=interrupts_by_task(snapshot),
            waiting=bool(snapshot.next),
        )


@dataclass(frozen=True)
class Claimed:
    """A run just started by this worker, with the assistant it runs (None if deleted), and
    whether its thread had no checkpoint yet."""

    run: Run
    assistant: dict[str, Any] | None
    thread_fresh: bool = False


@dataclass(frozen=True)
class Ended:
    """A run just ended, and its thread's next pending run (id, due time), if any."""

    run: Run
    next_run: tuple[uuid.UUID, datetime] | None


async def start(
    tx: RunTx, run_id: uuid.UUID, *, worker_id: str, lease_seconds: float
) -> Claimed | None:
    """pending → running, if the run is its thread's next and the thread has none running."""
    claimed = await db.claim(tx.conn, run_id, worker_id=worker_id, lease_seconds=lease_seconds)
    return None if claimed is None else Claimed(*claimed)


async def end(
    tx: RunTx,
    run: Run,
    *,
    status: str,
    output: RunOutput | None,
    error: RunError | None,
    state: ThreadState | None,
    delete_thread: bool = False,
    saves: FinalSaves | None = None,
) -> Ended | None:
    """running → `status` (success, error, timeout or interrupted) for the attempt we hold;
    with `delete_thread` (a stateless run), its thread and checkpoints go with it; `saves`
    (the attempt's checkpoint saves still unwritten) are written with the end.

    None when the attempt is no longer ours (then nothing is written).
    """
    assert status in FINAL_STATUSES
    finished = await db.finish(
        tx.conn,
        run.run_id,
        run.attempt,
        status=status,
        output=None if output is None else output.to_json(),
        error=None if error is None else error.to_json(),
        values=state.values if state is not None else None,
        interrupts=state.interrupts if state is not None else None,
        waiting=state.waiting if state is not None else None,
        has_state=state is not None,
        delete_thread=delete_thread,
        saves=saves,
    )
    if finished is None:
        return None
    ended, nxt = finished
    if ended.webhook:
        values = state.values if state is not None else (output.values if output else None)
        await tx.record_webhook(ended, values=values)
    return Ended(ended, nxt)


async def hand_back(tx: RunTx, run: Run) -> bool:
    """running → pending: this worker is stopping; another one resumes the run."""
    await db.lock_thread_of_run(tx.conn, run.run_id)
    return await db.hand_back(tx.conn, run.run_id, run.attempt)


async def roll_back(tx: RunTx, run: Run) -> bool:
    """running → deleted (its checkpoints are the caller's to delete in this transaction)."""
    await db.lock_thread_of_run(tx.conn, run.run_id)
    deleted = await db.delete_held(tx.conn, run.run_id, run.attempt)
    if deleted is None:
        return False
    await tx.record_webhook(deleted, status="rollback")
    await refresh_thread(tx, run.thread_id, state=None)
    return True


async def cancel_pending(tx: RunTx, runs: list[Run], action: str) -> list[uuid.UUID]:
    """pending → interrupted (or deleted, for rollback). The caller holds the thread lock."""
    pending = [r for r in runs if r.status == "pending"]
    ids = [r.run_id for r in pending]
    if action == "rollback":
        # Recorded before the rows go: the webhook carries the run as it was.
        for run in pending:
            await tx.record_webhook(run, status="rollback")
        return await db.delete_runs(tx.conn, ids, statuses=["pending"])
    ended = await db.set_status(tx.conn, ids, from_status="pending", to_status="interrupted")
    for run in ended:
        await tx.record_webhook(run)
    return [r.run_id for r in ended]


async def request_cancel(tx: RunTx, run_ids: list[uuid.UUID], action: str) -> None:
    """Record a cancel on running runs, for their workers' lease renewal to apply."""
    await db.request_cancel(tx.conn, run_ids, action)


async def lapse_leases(tx: RunTx, *, max_attempts: int) -> list[Run]:
    """running → pending (or error, out of attempts) for runs whose worker stopped renewing."""
    lapsed = await db.expire_leases(tx.conn, max_attempts=max_attempts)
    for run in (r for r in lapsed if r.status == "error"):
        await tx.record_webhook(run)
        await refresh_thread(tx, run.thread_id, state=None, last_error=True)
    return lapsed


async def refresh_thread(
    tx: RunTx,
    thread_id: uuid.UUID,
    *,
    state: ThreadState | None,
    last_error: bool = False,
) -> str | None:
    """Recompute a thread's status (and, given `state`, its values) after runs changed; its new
    status, or None when the thread is gone."""
    return await db.refresh_thread(
        tx.conn,
        thread_id,
        last_error=last_error,
        values=state.values if state is not None else None,
        interrupts=state.interrupts if state is not None else None,
        waiting=state.waiting if state is not None else None,
        has_state=state is not None,
    )


async def renew_lease(tx: RunTx, run: Run, *, lease_seconds: float) -> tuple[bool, str | None]:
    """running → running, lease extended, for the attempt we hold. Returns (still ours,
    cancel action asked for meanwhile)."""
    return await db.renew_lease(tx.conn, run.run_id, run.attempt, lease_seconds)


async def next_pending(tx: RunTx, thread_id: uuid.UUID) -> Run | None:
    """The thread's next run to start, if any."""
    return await db.next_pending(tx.conn, thread_id)


async def startable(tx: RunTx, *, grace_seconds: float) -> list[uuid.UUID]:
    """Pending runs that may start now and have waited at least `grace_seconds`."""
    return await db.startable_runs(tx.conn, grace_seconds=grace_seconds)

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
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import runs as db
from app.db import threads as threads_db
from app.db.models import Run, Thread
from app.services.webhooks import record_run_end

RUN_STATUSES = ("pending", "running", "success", "error", "timeout", "interrupted")
FINAL_STATUSES = ("success", "error", "timeout", "interrupted")


@dataclass(frozen=True)
class ThreadState:
    """What the latest checkpoint says: values, interrupts, and whether a node is due next."""

    values: dict[str, Any] | None
    interrupts: dict[str, Any]
    waiting: bool


def thread_status(*, active: bool, last_error: bool, waiting: bool) -> str:
    if active:
        return "busy"
    if last_error:
        return "error"
    return "interrupted" if waiting else "idle"


async def _refresh_thread(
    session: AsyncSession,
    thread_id: uuid.UUID,
    *,
    last_error: bool,
    state: ThreadState | None,
) -> Thread | None:
    active = bool(await db.active_runs(session, thread_id))
    fields: dict[str, Any] = {"updated_at": db_now()}
    if state is not None:
        fields.update(values=state.values, interrupts=state.interrupts, state_updated_at=db_now())
        waiting = state.waiting
    else:
        current = await threads_db.get(session, thread_id)
        waiting = current is not None and current.status == "interrupted"
    fields["status"] = thread_status(active=active, last_error=last_error, waiting=waiting)
    return await threads_db.update_fields(session, thread_id, **fields)


def db_now() -> Any:
    from sqlalchemy import func

    return func.now()


async def start(
    session: AsyncSession, run_id: uuid.UUID, *, worker_id: str, lease_seconds: float
) -> Run | None:
    """pending → running, if the run is its thread's next and the thread has none running."""
    if await db.lock_thread_of_run(session, run_id) is None:
        return None
    return await db.claim(session, run_id, worker_id=worker_id, lease_seconds=lease_seconds)


async def end(
    session: AsyncSession,
    run: Run,
    *,
    status: str,
    output: dict[str, Any] | None,
    error: dict[str, Any] | None,
    state: ThreadState | None,
) -> Run | None:
    """running → `status` (success, error, timeout or interrupted) for the attempt we hold.

    None when the attempt is no longer ours (then nothing is written).
    """
    assert status in FINAL_STATUSES
    await db.lock_thread_of_run(session, run.run_id)
    ended = await db.fenced_finish(
        session, run.run_id, run.attempt, status=status, output=output, error=error
    )
    if ended is not None:
        values = state.values if state is not None else (output or {}).get("values")
        await record_run_end(session, ended, values=values)
        await _refresh_thread(
            session, run.thread_id, last_error=status in ("error", "timeout"), state=state
        )
    return ended


async def hand_back(session: AsyncSession, run: Run) -> bool:
    """running → pending: this worker is stopping; another one resumes the run."""
    await db.lock_thread_of_run(session, run.run_id)
    return await db.fenced_hand_back(session, run.run_id, run.attempt)


async def roll_back(session: AsyncSession, run: Run) -> bool:
    """running → deleted (its checkpoints are the caller's to delete in this transaction)."""
    await db.lock_thread_of_run(session, run.run_id)
    deleted = await db.fenced_delete(session, run.run_id, run.attempt)
    if deleted:
        await record_run_end(session, run, status="rollback")
        await _refresh_thread(session, run.thread_id, last_error=False, state=None)
    return deleted


async def cancel_pending(session: AsyncSession, runs: list[Run], action: str) -> list[uuid.UUID]:
    """pending → interrupted (or deleted, for rollback). The caller holds the thread lock."""
    pending = [r for r in runs if r.status == "pending"]
    ids = [r.run_id for r in pending]
    if action == "rollback":
        # Recorded before the rows go: the webhook carries the run as it was.
        for run in pending:
            await record_run_end(session, run, status="rollback")
        return await db.delete_runs(session, ids, statuses=["pending"])
    ended = await db.set_status(session, ids, from_status="pending", to_status="interrupted")
    for run in ended:
        await record_run_end(session, run)
    return [r.run_id for r in ended]


async def lapse_leases(session: AsyncSession, *, max_attempts: int) -> list[Run]:
    """running → pending (or error, out of attempts) for runs whose worker stopped renewing."""
    lapsed = await db.expire_leases(session, max_attempts=max_attempts)
    for run in (r for r in lapsed if r.status == "error"):
        await record_run_end(session, run)
        await _refresh_thread(session, run.thread_id, last_error=True, state=None)
    return lapsed


async def refresh_thread(
    session: AsyncSession,
    thread_id: uuid.UUID,
    *,
    state: ThreadState | None,
    last_error: bool = False,
) -> Thread | None:
    """Recompute a thread's status (and, given `state`, its values) after runs changed."""
    return await _refresh_thread(session, thread_id, last_error=last_error, state=state)


async def renew_lease(
    session: AsyncSession, run: Run, *, lease_seconds: float
) -> tuple[bool, str | None]:
    """running → running, lease extended, for the attempt we hold. Returns (still ours,
    cancel action asked for meanwhile)."""
    return await db.renew_lease(session, run.run_id, run.attempt, lease_seconds)


async def next_pending(session: AsyncSession, thread_id: uuid.UUID) -> Run | None:
    """The thread's next run to start, if any."""
    return await db.next_pending(session, thread_id)


async def startable(session: AsyncSession, *, grace_seconds: float) -> list[tuple[uuid.UUID, int]]:
    """Pending runs that may start now and have waited at least `grace_seconds`."""
    return await db.startable_runs(session, grace_seconds=grace_seconds)

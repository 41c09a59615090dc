"""Persistence of runs and the queue's statements: plain async functions taking a session.

Every write a worker makes for a run it executes is fenced: it names the attempt it holds and
does nothing once another claim bumped the attempt (`fenced_*` functions).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, and_, delete, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import Run, Thread

ACTIVE = ("pending", "running")


def _values(fields: dict[str, Any]) -> dict[str, Any]:
    values = dict(fields)
    if "metadata" in values:
        values["metadata_"] = values.pop("metadata")
    return values


async def insert_run(session: AsyncSession, fields: dict[str, Any]) -> Run:
    stmt = insert(Run).values(**_values(fields)).returning(Run)
    return (await session.execute(stmt)).scalar_one()


async def get(session: AsyncSession, run_id: uuid.UUID) -> Run | None:
    return (
        await session.execute(select(Run).where(col(Run.run_id) == run_id))
    ).scalar_one_or_none()


async def active_runs(session: AsyncSession, thread_id: uuid.UUID) -> list[Run]:
    """The thread's pending and running runs, oldest first."""
    stmt = (
        select(Run)
        .where(col(Run.thread_id) == thread_id, col(Run.status).in_(ACTIVE))
        .order_by(col(Run.created_at), col(Run.run_id))
    )
    return list((await session.execute(stmt)).scalars())


async def lock_thread_of_run(session: AsyncSession, run_id: uuid.UUID) -> uuid.UUID | None:
    """Lock the thread row of a run (serialises every start and end on that thread)."""
    stmt = (
        select(col(Thread.thread_id))
        .join(Run, col(Run.thread_id) == col(Thread.thread_id))
        .where(col(Run.run_id) == run_id)
        .with_for_update(of=Thread)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


_CLAIM = text(
    """
    UPDATE runs SET status = 'running', attempt = attempt + 1, worker_id = :worker_id,
           lease_until = now() + make_interval(secs => :lease), cancel_action = NULL,
           started_at = COALESCE(started_at, now()), updated_at = now()
     WHERE run_id = :run_id AND status = 'pending' AND available_at <= now()
       AND NOT EXISTS (SELECT 1 FROM runs o
                        WHERE o.thread_id = runs.thread_id AND o.status = 'running')
       AND NOT EXISTS (SELECT 1 FROM runs o
                        WHERE o.thread_id = runs.thread_id AND o.status = 'pending'
                          AND (o.created_at, o.run_id) < (runs.created_at, runs.run_id))
    RETURNING *
    """
)


async def claim(
    session: AsyncSession, run_id: uuid.UUID, *, worker_id: str, lease_seconds: float
) -> Run | None:
    """pending → running for the oldest pending run of an idle thread; None if not claimable.

    The caller must hold the thread lock (`lock_thread_of_run`) in the same transaction: the
    lock, then this statement's fresh snapshot, make the "no other running run" check safe.
    """
    stmt = select(Run).from_statement(_CLAIM)
    result = await session.execute(
        stmt, {"run_id": run_id, "worker_id": worker_id, "lease": lease_seconds}
    )
    return result.scalar_one_or_none()


async def renew_lease(
    session: AsyncSession, run_id: uuid.UUID, attempt: int, lease_seconds: float
) -> tuple[bool, str | None]:
    """Extend the lease of a run we hold. Returns (still ours, cancel action requested)."""
    result = await session.execute(
        text(
            """
            UPDATE runs SET lease_until = now() + make_interval(secs => :lease)
             WHERE run_id = :run_id AND attempt = :attempt AND status = 'running'
            RETURNING cancel_action
            """
        ),
        {"run_id": run_id, "attempt": attempt, "lease": lease_seconds},
    )
    row = result.first()
    return (row is not None, row[0] if row is not None else None)


def _held(run_id: uuid.UUID, attempt: int) -> Any:
    """The fence: the run is still running under the attempt the caller claimed."""
    return and_(
        col(Run.run_id) == run_id, col(Run.attempt) == attempt, col(Run.status) == "running"
    )


async def fenced_finish(
    session: AsyncSession,
    run_id: uuid.UUID,
    attempt: int,
    *,
    status: str,
    output: dict[str, Any] | None,
    error: dict[str, Any] | None,
) -> Run | None:
    """running → a final status, only if we still hold `attempt`."""
    stmt = (
        update(Run)
        .where(_held(run_id, attempt))
        .values(
            status=status,
            output=output,
            error=error,
            lease_until=None,
            worker_id=None,
            ended_at=text("now()"),
            updated_at=text("now()"),
        )
        .returning(Run)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def fenced_hand_back(session: AsyncSession, run_id: uuid.UUID, attempt: int) -> bool:
    """running → pending (a worker shutting down gives the run to another)."""
    stmt = (
        update(Run)
        .where(_held(run_id, attempt))
        .values(status="pending", lease_until=None, worker_id=None, updated_at=text("now()"))
        .returning(col(Run.run_id))
    )
    return (await session.execute(stmt)).scalar_one_or_none() is not None


async def fenced_delete(session: AsyncSession, run_id: uuid.UUID, attempt: int) -> bool:
    stmt = delete(Run).where(_held(run_id, attempt)).returning(col(Run.run_id))
    return (await session.execute(stmt)).scalar_one_or_none() is not None


async def set_status(
    session: AsyncSession,
    run_ids: Sequence[uuid.UUID],
    *,
    from_status: str,
    to_status: str,
    error: dict[str, Any] | None = None,
) -> list[Run]:
    """Runs moved from `from_status` to `to_status`; a final `to_status` stamps their end."""
    if not run_ids:
        return []
    ended = {"ended_at": text("now()")} if to_status not in ACTIVE else {}
    stmt = (
        update(Run)
        .where(col(Run.run_id).in_(run_ids), col(Run.status) == from_status)
        .values(status=to_status, error=error, updated_at=text("now()"), **ended)
        .returning(Run)
        .execution_options(populate_existing=True)
    )
    return list((await session.execute(stmt)).scalars())


async def request_cancel(session: AsyncSession, run_ids: Sequence[uuid.UUID], action: str) -> None:
    if run_ids:
        await session.execute(
            update(Run)
            .where(col(Run.run_id).in_(run_ids), col(Run.status) == "running")
            .values(cancel_action=action)
        )


async def delete_runs(
    session: AsyncSession, run_ids: Sequence[uuid.UUID], *, statuses: Sequence[str] | None = None
) -> list[uuid.UUID]:
    if not run_ids:
        return []
    stmt = delete(Run).where(col(Run.run_id).in_(run_ids))
    if statuses is not None:
        stmt = stmt.where(col(Run.status).in_(statuses))
    return list((await session.execute(stmt.returning(col(Run.run_id)))).scalars())


_EXPIRE = text(
    """
    UPDATE runs SET
        lapses = lapses + 1,
        status = CASE WHEN lapses + 1 >= :max_attempts THEN 'error' ELSE 'pending' END,
        error = CASE WHEN lapses + 1 >= :max_attempts THEN jsonb_build_object(
            'error', 'RunAttemptsExceeded',
            'message', format('Run %s exceeded its %s attempts: its worker stopped '
                              'renewing its lease each time (killed, out of memory, or hung)',
                              run_id, lapses + 1))
            ELSE error END,
        ended_at = CASE WHEN lapses + 1 >= :max_attempts THEN now() ELSE ended_at END,
        lease_until = NULL, worker_id = NULL, updated_at = now()
     WHERE run_id IN (SELECT run_id FROM runs WHERE status = 'running' AND lease_until < now()
                      ORDER BY lease_until LIMIT 500 FOR UPDATE SKIP LOCKED)
    RETURNING *
    """
)


async def expire_leases(session: AsyncSession, *, max_attempts: int) -> list[Run]:
    """Runs whose lease lapsed: back to pending, or error once their workers died under them
    `max_attempts` times. Only lapses count: a run handed back by a worker shutting down cleanly
    (a deploy) keeps its budget."""
    stmt = select(Run).from_statement(_EXPIRE)
    return list((await session.execute(stmt, {"max_attempts": max_attempts})).scalars())


_DUE = text(
    """
    SELECT r.run_id, r.attempt FROM runs r
     WHERE r.status = 'pending' AND r.available_at <= now() - make_interval(secs => :grace)
       AND NOT EXISTS (SELECT 1 FROM runs o WHERE o.thread_id = r.thread_id AND o.status = 'running')
       AND NOT EXISTS (SELECT 1 FROM runs o
                        WHERE o.thread_id = r.thread_id AND o.status = 'pending'
                          AND (o.created_at, o.run_id) < (r.created_at, r.run_id))
     ORDER BY r.available_at
     LIMIT 500
    """
)


async def startable_runs(
    session: AsyncSession, *, grace_seconds: float
) -> list[tuple[uuid.UUID, int]]:
    """Pending runs that could start now and have waited `grace_seconds` (their wake-up was
    lost, delayed, or due now)."""
    result = await session.execute(_DUE, {"grace": grace_seconds})
    return [(row[0], int(row[1])) for row in result]


async def next_pending(session: AsyncSession, thread_id: uuid.UUID) -> Run | None:
    stmt = (
        select(Run)
        .where(col(Run.thread_id) == thread_id, col(Run.status) == "pending")
        .order_by(col(Run.created_at), col(Run.run_id))
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def last_finished(session: AsyncSession, thread_id: uuid.UUID) -> Run | None:
    stmt = (
        select(Run)
        .where(col(Run.thread_id) == thread_id, col(Run.status).not_in(ACTIVE))
        .order_by(col(Run.updated_at).desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


def search(*, thread_id: uuid.UUID | None = None, status: str | None = None) -> Select[Any]:
    stmt = select(Run)
    if thread_id is not None:
        stmt = stmt.where(col(Run.thread_id) == thread_id)
    if status is not None:
        stmt = stmt.where(col(Run.status) == status)
    return stmt

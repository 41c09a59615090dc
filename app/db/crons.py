"""Persistence of crons: plain async functions taking a session."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import Cron, Run, Thread, attribute_values


async def insert_cron(session: AsyncSession, fields: dict[str, Any]) -> Cron:
    stmt = insert(Cron).values(**attribute_values(fields)).returning(Cron)
    return (await session.execute(stmt)).scalar_one()


async def get(
    session: AsyncSession, cron_id: uuid.UUID, *, for_update: bool = False
) -> Cron | None:
    stmt = select(Cron).where(col(Cron.cron_id) == cron_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def update_fields(session: AsyncSession, cron_id: uuid.UUID, **fields: Any) -> Cron | None:
    stmt = (
        update(Cron)
        .where(col(Cron.cron_id) == cron_id)
        .values(**attribute_values(fields))
        .returning(Cron)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def delete_one(session: AsyncSession, cron_id: uuid.UUID) -> bool:
    stmt = delete(Cron).where(col(Cron.cron_id) == cron_id).returning(col(Cron.cron_id))
    return (await session.execute(stmt)).scalar_one_or_none() is not None


async def database_now(session: AsyncSession) -> datetime:
    """The database's clock: every worker, on any machine, judges what is due by the same one."""
    now: datetime = (await session.execute(select(func.now()))).scalar_one()
    return now


async def claim_due(session: AsyncSession, now: datetime, *, limit: int) -> list[Cron]:
    """Lock up to `limit` crons due at `now` (enabled, not past their end time), skipping those
    another transaction holds: each due cron is claimed by exactly one transaction.

    A thread cron is claimed together with its thread's row, and skipped while that row is
    locked: firing then never waits for a lock while holding others, so it cannot deadlock with
    a thread being deleted (which locks the thread, then its crons) or with another firer.
    A skipped cron stays due and is fired at the next pass."""
    due = (
        col(Cron.enabled),
        col(Cron.next_run_at) <= now,
        or_(col(Cron.end_time).is_(None), col(Cron.end_time) > now),
    )
    on_threads = (
        select(Cron)
        .join(Thread, col(Thread.thread_id) == col(Cron.thread_id))
        .where(*due)
        .order_by(col(Cron.next_run_at))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claimed = list((await session.execute(on_threads)).scalars())
    if len(claimed) < limit:
        stateless = (
            select(Cron)
            .where(col(Cron.thread_id).is_(None), *due)
            .order_by(col(Cron.next_run_at))
            .limit(limit - len(claimed))
            .with_for_update(skip_locked=True)
        )
        claimed += (await session.execute(stateless)).scalars()
    return claimed


def search(
    *,
    assistant_id: uuid.UUID | None = None,
    thread_id: uuid.UUID | None = None,
    enabled: bool | None = None,
    metadata: dict[str, Any] | None = None,
) -> Select[Any]:
    stmt = select(Cron)
    if assistant_id is not None:
        stmt = stmt.where(col(Cron.assistant_id) == assistant_id)
    if thread_id is not None:
        stmt = stmt.where(col(Cron.thread_id) == thread_id)
    if enabled is not None:
        stmt = stmt.where(col(Cron.enabled) == enabled)
    if metadata:
        stmt = stmt.where(col(Cron.metadata_).contains(metadata))
    return stmt


def runs_of(cron_id: uuid.UUID) -> Select[Any]:
    """The runs a cron fired that still exist (each carries `metadata.cron_id`). The `?` test
    lets a partial index on runs that carry a cron id serve this query."""
    metadata: Any = col(Run.metadata_)  # JSONB operators (`?`, `->>`) are untyped
    return select(Run).where(
        metadata.has_key("cron_id"), metadata["cron_id"].astext == str(cron_id)
    )

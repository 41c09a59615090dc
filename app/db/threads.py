"""Persistence of threads: plain async functions taking a session."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from sqlalchemy import Select, exists, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import ACTIVE_RUN_STATUSES, Run, Thread, attribute_values


async def get(
    session: AsyncSession, thread_id: uuid.UUID, *, for_update: bool = False
) -> Thread | None:
    stmt = select(Thread).where(col(Thread.thread_id) == thread_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


_THREAD_COLUMNS = (
    "thread_id, metadata::text AS metadata, config::text AS config, status,"
    " values::text AS values, interrupts::text AS interrupts, error::text AS error, ttl_minutes,"
    " ttl_strategy, expires_at, created_at, updated_at, state_updated_at"
)

# On asyncpg without the ORM: creating a thread is on the path of every new conversation (and of
# every stateless run), inside a run's transaction or on its own.
_INSERT = f"""
INSERT INTO threads (thread_id, metadata, config, status, values, interrupts, created_at,
                     updated_at, state_updated_at, ttl_minutes, ttl_strategy, expires_at)
VALUES ($1, $2::jsonb, $3::jsonb, $4, $5::jsonb, $6::jsonb, $7::timestamptz, $7, $7, $8, $9, $10)
ON CONFLICT (thread_id) DO NOTHING
RETURNING {_THREAD_COLUMNS}
"""


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def thread_of(row: asyncpg.Record) -> Thread:
    """A `Thread` from a row selected with `_THREAD_COLUMNS` (no validation: the row is the
    truth)."""
    values = row["values"]
    error = row["error"]
    return Thread.model_construct(
        thread_id=row["thread_id"],
        metadata_=orjson.loads(row["metadata"]),
        config=orjson.loads(row["config"]),
        status=row["status"],
        values=None if values is None else orjson.loads(values),
        interrupts=orjson.loads(row["interrupts"]),
        error=None if error is None else orjson.loads(error),
        ttl_minutes=row["ttl_minutes"],
        ttl_strategy=row["ttl_strategy"],
        expires_at=row["expires_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        state_updated_at=row["state_updated_at"],
    )


async def insert_if_absent(
    conn: asyncpg.Connection,
    *,
    thread_id: uuid.UUID,
    metadata: dict[str, Any],
    now: datetime,
    status: str = "idle",
    values: dict[str, Any] | None = None,
    interrupts: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    ttl: dict[str, Any] | None = None,
) -> Thread | None:
    """Insert a thread (`ttl`: its TTL columns); None when the id is taken (nothing written)."""
    ttl = ttl or {}
    row = await conn.fetchrow(
        _INSERT,
        thread_id,
        _json(metadata),
        _json(config or {}),
        status,
        _json(values),
        _json(interrupts or {}),
        now,
        ttl.get("ttl_minutes"),
        ttl.get("ttl_strategy"),
        ttl.get("expires_at"),
    )
    return None if row is None else thread_of(row)


async def update_fields(
    session: AsyncSession, thread_id: uuid.UUID, **fields: Any
) -> Thread | None:
    stmt = (
        update(Thread)
        .where(col(Thread.thread_id) == thread_id)
        .values(**attribute_values(fields))
        .returning(Thread)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def delete_one(conn: asyncpg.Connection, thread_id: uuid.UUID) -> bool:
    """Delete a thread; its runs and crons go with it (foreign keys cascade). On asyncpg
    directly: a stateless run's thread goes in the statement-level transaction that ends it."""
    found = await conn.fetchval(
        "DELETE FROM threads WHERE thread_id = $1 RETURNING thread_id", thread_id
    )
    return found is not None


async def has_active_runs(session: AsyncSession, thread_id: uuid.UUID) -> bool:
    stmt = select(
        exists().where(
            col(Run.thread_id) == thread_id,
            col(Run.status).in_(ACTIVE_RUN_STATUSES),
        )
    )
    return bool((await session.execute(stmt)).scalar())


def search(
    *,
    ids: Sequence[uuid.UUID] | None = None,
    metadata: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
    status: str | None = None,
) -> Select[Any]:
    stmt = select(Thread)
    if ids is not None:
        stmt = stmt.where(col(Thread.thread_id).in_(ids))
    if metadata:
        stmt = stmt.where(col(Thread.metadata_).contains(metadata))
    if values:
        stmt = stmt.where(col(Thread.values).contains(values))
    if status is not None:
        stmt = stmt.where(col(Thread.status) == status)
    return stmt


async def lock_expiring(session: AsyncSession, *, limit: int) -> list[Thread]:
    """Threads whose `expires_at` has passed, oldest first, locked; rows another sweeper (or a
    run being created) holds are skipped rather than waited for."""
    stmt = (
        select(Thread)
        .where(col(Thread.expires_at).is_not(None), col(Thread.expires_at) <= text("now()"))
        .order_by(col(Thread.expires_at))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await session.execute(stmt)).scalars())


def ids_where(condition: Any) -> Select[Any]:
    """The ids of the threads `condition` selects, as a subquery."""
    return select(col(Thread.thread_id)).where(condition)

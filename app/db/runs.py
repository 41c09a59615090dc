"""Reading runs through the ORM (lists and pages for the API). The run queue's own statements,
every write of a run included, are `app.db.run_queue`'s: raw asyncpg on every run's path."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import Run


async def get(session: AsyncSession, run_id: uuid.UUID) -> Run | None:
    return (
        await session.execute(select(Run).where(col(Run.run_id) == run_id))
    ).scalar_one_or_none()


def search(*, thread_id: uuid.UUID | None = None, status: str | None = None) -> Select[Any]:
    stmt = select(Run)
    if thread_id is not None:
        stmt = stmt.where(col(Run.thread_id) == thread_id)
    if status is not None:
        stmt = stmt.where(col(Run.status) == status)
    return stmt

"""Listing runs through the ORM (pages for the API). Every other statement on runs, reading one
run and every write included, is `app.db.run_queue`'s: raw asyncpg, on every run's path."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select, select
from sqlmodel import col

from app.db.models import Run


def search(*, thread_id: uuid.UUID | None = None, status: str | None = None) -> Select[Any]:
    stmt = select(Run)
    if thread_id is not None:
        stmt = stmt.where(col(Run.thread_id) == thread_id)
    if status is not None:
        stmt = stmt.where(col(Run.status) == status)
    return stmt

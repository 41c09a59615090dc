"""Persistence of assistants and their versions: plain async functions taking a session."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import Assistant, AssistantVersion, attribute_values

_VERSIONED = ("graph_id", "name", "description", "config", "context", "metadata")


def _version_values(
    assistant_id: uuid.UUID, version: int, fields: dict[str, Any], now: datetime
) -> dict[str, Any]:
    return {
        "assistant_id": assistant_id,
        "version": version,
        "created_at": now,
        **{k: fields[k] for k in _VERSIONED},
    }


async def get(
    session: AsyncSession, assistant_id: uuid.UUID, graph_ids: Collection[str]
) -> Assistant | None:
    """The assistant, unless its graph is not served here (then it is hidden, as on LangGraph
    Server). The graph check is done here rather than in SQL: this lookup is on every run's path
    and an IN list makes SQLAlchemy compile a fresh statement each time."""
    stmt = select(Assistant).where(col(Assistant.assistant_id) == assistant_id)
    found = (await session.execute(stmt)).scalar_one_or_none()
    return found if found is not None and found.graph_id in graph_ids else None


async def insert_if_absent(
    session: AsyncSession, fields: dict[str, Any], now: datetime
) -> Assistant | None:
    """Insert version 1 of an assistant; None when the id is taken (nothing written then)."""
    stmt = (
        insert(Assistant)
        .values(**attribute_values(fields), version=1, created_at=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=["assistant_id"])
        .returning(Assistant)
    )
    created = (await session.execute(stmt)).scalar_one_or_none()
    if created is not None:
        await session.execute(
            insert(AssistantVersion).values(
                **attribute_values(_version_values(created.assistant_id, 1, fields, now))
            )
        )
    return created


async def get_for_update(
    session: AsyncSession, assistant_id: uuid.UUID, graph_ids: Collection[str]
) -> Assistant | None:
    stmt = (
        select(Assistant)
        .where(col(Assistant.assistant_id) == assistant_id, col(Assistant.graph_id).in_(graph_ids))
        .with_for_update()
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def add_version(
    session: AsyncSession, assistant_id: uuid.UUID, fields: dict[str, Any], now: datetime
) -> Assistant:
    """Append a version with `fields` and make it current. The caller holds the row lock."""
    latest = await session.execute(
        select(func.max(col(AssistantVersion.version))).where(
            col(AssistantVersion.assistant_id) == assistant_id
        )
    )
    version = int(latest.scalar_one() or 0) + 1
    await session.execute(
        insert(AssistantVersion).values(
            **attribute_values(_version_values(assistant_id, version, fields, now))
        )
    )
    return await _set_current(session, assistant_id, version, fields, now)


async def _set_current(
    session: AsyncSession,
    assistant_id: uuid.UUID,
    version: int,
    fields: dict[str, Any],
    now: datetime,
) -> Assistant:
    stmt = (
        update(Assistant)
        .where(col(Assistant.assistant_id) == assistant_id)
        .values(
            **attribute_values({k: fields[k] for k in _VERSIONED}), version=version, updated_at=now
        )
        .returning(Assistant)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one()


async def get_version(
    session: AsyncSession, assistant_id: uuid.UUID, version: int
) -> AssistantVersion | None:
    stmt = select(AssistantVersion).where(
        col(AssistantVersion.assistant_id) == assistant_id,
        col(AssistantVersion.version) == version,
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def set_latest(session: AsyncSession, version: AssistantVersion, now: datetime) -> Assistant:
    fields = version_fields(version)
    return await _set_current(session, version.assistant_id, version.version, fields, now)


def version_fields(row: Assistant | AssistantVersion) -> dict[str, Any]:
    return {
        "graph_id": row.graph_id,
        "name": row.name,
        "description": row.description,
        "config": row.config,
        "context": row.context,
        "metadata": row.metadata_,
    }


async def delete_one(
    session: AsyncSession, assistant_id: uuid.UUID, graph_ids: Collection[str]
) -> bool:
    stmt = (
        delete(Assistant)
        .where(col(Assistant.assistant_id) == assistant_id, col(Assistant.graph_id).in_(graph_ids))
        .returning(col(Assistant.assistant_id))
    )
    return (await session.execute(stmt)).scalar_one_or_none() is not None


def search(
    graph_ids: Collection[str],
    *,
    graph_id: str | None = None,
    name: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Select[Any]:
    stmt = select(Assistant).where(col(Assistant.graph_id).in_(graph_ids))
    if graph_id is not None:
        stmt = stmt.where(col(Assistant.graph_id) == graph_id)
    if name is not None:
        # Substring match, case-insensitive, as LangGraph's; % and _ are literal here.
        escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(col(Assistant.name).ilike(f"%{escaped}%", escape="\\"))
    if metadata:
        stmt = stmt.where(col(Assistant.metadata_).contains(metadata))
    return stmt


def versions(assistant_id: uuid.UUID, metadata: dict[str, Any] | None = None) -> Select[Any]:
    stmt = select(AssistantVersion).where(col(AssistantVersion.assistant_id) == assistant_id)
    if metadata:
        stmt = stmt.where(col(AssistantVersion.metadata_).contains(metadata))
    return stmt


async def refresh_system_assistant(
    session: AsyncSession, assistant_id: uuid.UUID, *, name: str, description: str | None
) -> None:
    """Update a system assistant's name and description in place, if they changed."""
    await session.execute(
        update(Assistant)
        .where(
            col(Assistant.assistant_id) == assistant_id,
            col(Assistant.metadata_)["created_by"].astext == "system",
            (col(Assistant.name) != name)
            | col(Assistant.description).is_distinct_from(description),
        )
        .values(name=name, description=description)
    )

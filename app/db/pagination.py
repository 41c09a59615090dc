"""Keyset pages over any select: the one paging query every list uses."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, func, literal, literal_column, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import DateTime, Uuid

from app.pagination import Cursor, Page, PageRequest, SortOrder, cursor_value

T = TypeVar("T")


def _keyed(column: ColumnElement[Any]) -> tuple[ColumnElement[Any], ColumnElement[Any] | None]:
    """The sort column as pages order and compare it, and what stands for its nulls. A nullable
    column is read through COALESCE with a value above all others: its nulls keep the place
    Postgres gives them (last ascending, first descending), and a cursor on a null row still
    compares (a row comparison with a null is unknown, and the next page came back empty)."""
    expr = getattr(column, "expression", column)
    if not getattr(expr, "nullable", False):
        return column, None
    high: ColumnElement[Any]
    if isinstance(expr.type, DateTime):
        high = literal_column("'infinity'::timestamptz")
    elif isinstance(expr.type, Uuid):
        high = literal_column("'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid")
    else:
        return column, None
    return func.coalesce(column, high, type_=expr.type), high


def _typed(column: ColumnElement[Any], value: object) -> object:
    if value is not None and isinstance(column.type, DateTime):
        return datetime.fromisoformat(str(value))
    return value


async def fetch_page(
    session: AsyncSession,
    stmt: Select[Any],
    *,
    sort_by: str,
    sort_column: ColumnElement[Any],
    id_column: ColumnElement[Any],
    order: SortOrder,
    page: PageRequest,
    to_item: Callable[[Any], T] = lambda row: row,
) -> Page[T]:
    """Run `stmt` (which selects one entity) sorted by (sort_column, id_column) from `page.after`."""
    sort_key, null_value = _keyed(sort_column)
    if page.after is not None:
        after = Cursor.decode(page.after, sort_by=sort_by)
        key = tuple_(sort_key, id_column)
        value: Any = null_value
        if after.value is not None or null_value is None:
            # Typed as the column: a row comparison does not type its bound (a UUID cursor was
            # sent as text, and Postgres has no uuid > text).
            value = literal(_typed(sort_column, after.value), type_=sort_column.type)
        bound = tuple_(value, uuid.UUID(after.id))
        stmt = stmt.where(key < bound if order is SortOrder.DESC else key > bound)
    if order is SortOrder.DESC:
        stmt = stmt.order_by(sort_key.desc(), id_column.desc())
    else:
        stmt = stmt.order_by(sort_key.asc(), id_column.asc())
    if page.offset:
        stmt = stmt.offset(page.offset)
    rows = (await session.execute(stmt.limit(page.first + 1))).scalars().all()
    has_next = len(rows) > page.first
    rows = rows[: page.first]
    items = [to_item(row) for row in rows]
    sort_attr, id_attr = str(sort_column.key), str(id_column.key)
    cursors = [
        Cursor(
            sort_by=sort_by,
            value=cursor_value(getattr(row, sort_attr)),
            id=str(getattr(row, id_attr)),
        ).encode()
        for row in rows
    ]
    return Page(
        items=items,
        cursors=cursors,
        has_next_page=has_next,
        has_previous_page=page.after is not None or page.offset > 0,
    )


async def count(session: AsyncSession, stmt: Select[Any]) -> int:
    result = await session.execute(select(func.count()).select_from(stmt.order_by(None).subquery()))
    return int(result.scalar_one())


@dataclass(frozen=True)
class Listing:
    """How a resource's rows are listed: the columns they may be sorted by, and their id (the
    tie-breaker, and the cursor's second half). Every list of the resource (a search, its
    count) reads through it, each in a session of its own."""

    id_column: Any
    sort_columns: Mapping[str, Any]

    async def page(
        self,
        sessions: Callable[[], Any],
        stmt: Select[Any],
        page: PageRequest,
        *,
        sort_by: str = "created_at",
        order: SortOrder = SortOrder.DESC,
    ) -> Page[Any]:
        """`fetch_page` of the rows `stmt` selects."""
        async with sessions() as session:
            return await fetch_page(
                session,
                stmt,
                sort_by=sort_by,
                sort_column=self.sort_columns[sort_by],
                id_column=self.id_column,
                order=order,
                page=page,
            )

    async def count(self, sessions: Callable[[], Any], stmt: Select[Any]) -> int:
        """How many rows `stmt` selects."""
        async with sessions() as session:
            return await count(session, stmt)

"""Keyset pagination shared by every list: opaque cursors and page bounds.

A cursor encodes the sort key and the id of the last row seen, so pages stay stable while rows are
inserted (offset cursors would skip or repeat rows).
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Generic, TypeVar

import orjson

from app.errors import BadUserInput

T = TypeVar("T")


class SortOrder(StrEnum):
    ASC = "asc"
    DESC = "desc"


@dataclass(frozen=True)
class Cursor:
    """Position after a row: its sort value (ISO time, text or number) and its id."""

    sort_by: str
    value: str | int | float | None
    id: str

    def encode(self) -> str:
        raw = orjson.dumps([self.sort_by, self.value, self.id])
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str, *, sort_by: str) -> Cursor:
        try:
            padded = text + "=" * (-len(text) % 4)
            key, value, row_id = orjson.loads(base64.urlsafe_b64decode(padded))
            uuid.UUID(str(row_id))
        except Exception as exc:
            raise BadUserInput("invalid cursor", argument="after") from exc
        if key != sort_by:
            raise BadUserInput("this cursor belongs to a list sorted differently", argument="after")
        return cls(sort_by=key, value=value, id=str(row_id))


def cursor_value(value: object) -> str | int | float | None:
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float):
        return value
    return str(value)


@dataclass(frozen=True)
class PageRequest:
    first: int
    after: str | None = None
    #: Rows skipped before the page, for APIs that page by offset (LangGraph's REST API);
    #: with `after`, counted from the cursor.
    offset: int = 0

    @classmethod
    def checked(
        cls, first: int | None, after: str | None, *, default: int, maximum: int
    ) -> PageRequest:
        if first is None:
            first = default
        if first < 0:
            raise BadUserInput("`first` must not be negative", argument="first")
        if first > maximum:
            raise BadUserInput(f"`first` must be at most {maximum}", argument="first")
        return cls(first=first, after=after)


@dataclass
class Page(Generic[T]):
    items: list[T]
    cursors: list[str]
    has_next_page: bool
    has_previous_page: bool

"""Scalars: `JSON` for LangGraph's free-form values (state, config, metadata…); `DateTime` is
Strawberry's built-in ISO 8601 scalar."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # For the type checker a JSON value is whatever JSON decodes to; services validate its shape.
    JSON = Any
else:
    from strawberry.scalars import JSON

__all__ = ["JSON"]

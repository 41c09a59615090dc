"""The filters authorization handlers return, checked once and applied to `metadata`.

LangGraph's filter language: `{"owner": "alice"}` or `{"owner": {"$eq": "alice"}}` (equal),
`{"tags": {"$contains": "a"}}` / `{"tags": {"$contains": ["a", "b"]}}` (the list holds them
all), several keys ANDed, and `{"$or": [f, g, ...]}` / `{"$and": [f, g, ...]}`. The same filter
is turned into SQL for lists and searches and evaluated in Python where one row is at hand;
`tests/auth/test_auth_filters.py` checks the two agree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, cast, false, func, literal, or_, true
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement

MAX_DEPTH = 8


class AuthFilterError(ValueError):
    """An authorization handler returned something that is not a filter: a bug in the auth file,
    reported to the operator (logged) and to the client as an internal error."""


@dataclass(frozen=True)
class _Eq:
    key: str
    value: Any


@dataclass(frozen=True)
class _Contains:
    key: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class _Any:
    parts: tuple[AuthFilter, ...]


Condition = _Eq | _Contains | _Any


@dataclass(frozen=True)
class AuthFilter:
    """All of `conditions` must hold (an empty filter matches everything)."""

    conditions: tuple[Condition, ...] = ()

    @classmethod
    def parse(cls, raw: Any, *, _depth: int = 0) -> AuthFilter:
        """Raises AuthFilterError naming what is wrong with `raw`."""
        if _depth > MAX_DEPTH:
            raise AuthFilterError(f"auth filter nested deeper than {MAX_DEPTH} levels")
        if not isinstance(raw, Mapping):
            raise AuthFilterError(f"auth filter must be a dict, got {type(raw).__name__}")
        conditions: list[Condition] = []
        for key, value in raw.items():
            if not isinstance(key, str):
                raise AuthFilterError(f"auth filter key {key!r} is not a string")
            if key in ("$or", "$and"):
                if not isinstance(value, list) or not value:
                    raise AuthFilterError(f"{key} takes a non-empty list of filters")
                parts = tuple(cls.parse(v, _depth=_depth + 1) for v in value)
                if key == "$or":
                    conditions.append(_Any(parts))
                else:
                    conditions.extend(c for part in parts for c in part.conditions)
            elif key.startswith("$"):
                raise AuthFilterError(f"unknown auth filter operator {key!r}")
            elif isinstance(value, Mapping):
                if len(value) != 1:
                    raise AuthFilterError(
                        f"auth filter on {key!r} must be a value or one of $eq / $contains"
                    )
                op, operand = next(iter(value.items()))
                _check_json(operand, key)
                if op == "$eq":
                    conditions.append(_Eq(key, operand))
                elif op == "$contains":
                    values = operand if isinstance(operand, list) else [operand]
                    if any(isinstance(v, Mapping | list) for v in values):
                        # jsonb containment would look inside nested values; LangGraph does
                        # not support them here either.
                        raise AuthFilterError(f"$contains on {key!r} takes scalar values only")
                    conditions.append(_Contains(key, tuple(values)))
                else:
                    raise AuthFilterError(f"unknown auth filter operator {op!r} on {key!r}")
            else:
                _check_json(value, key)
                conditions.append(_Eq(key, value))
        return cls(tuple(conditions))

    def __and__(self, other: AuthFilter) -> AuthFilter:
        return AuthFilter(self.conditions + other.conditions)

    def matches(self, metadata: Mapping[str, Any] | None) -> bool:
        data = metadata or {}
        return all(_holds(c, data) for c in self.conditions)

    def equalities(self) -> dict[str, Any]:
        """The filter as `{key: value}` equalities (what the store's search filter takes).
        Raises AuthFilterError when it holds `$contains` or `$or`."""
        result: dict[str, Any] = {}
        for c in self.conditions:
            if not isinstance(c, _Eq) or (
                c.key in result and _norm(result[c.key]) != _norm(c.value)
            ):
                raise AuthFilterError("store auth filters may only test fields for equality")
            result[c.key] = c.value
        return result

    def to_sql(self, column: Any) -> ColumnElement[bool]:
        """A WHERE clause on a jsonb `column` (a resource's metadata)."""
        if not self.conditions:
            return true()
        return and_(*(_sql(c, column) for c in self.conditions))


def combine(*filters: AuthFilter | None) -> AuthFilter | None:
    """The filters ANDed; None when there are none."""
    present = [f for f in filters if f is not None]
    if not present:
        return None
    result = present[0]
    for f in present[1:]:
        result = result & f
    return result


def _check_json(value: Any, key: str) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise AuthFilterError(f"auth filter value for {key!r} is not JSON: {exc}") from None


def _norm(value: Any) -> Any:
    """A form of a JSON value that compares as jsonb does: 1 == 1.0, true != 1, key order free."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("num", float(value))
    if isinstance(value, list | tuple):
        return ("list", tuple(_norm(v) for v in value))
    if isinstance(value, Mapping):
        return ("obj", frozenset((k, _norm(v)) for k, v in value.items()))
    return (type(value).__name__, value)


def _holds(condition: Condition, data: Mapping[str, Any]) -> bool:
    if isinstance(condition, _Any):
        return any(part.matches(data) for part in condition.parts)
    if condition.key not in data:
        return False
    actual = data[condition.key]
    if isinstance(condition, _Eq):
        return _norm(actual) == _norm(condition.value)
    if not isinstance(actual, list):
        return False
    present = [_norm(v) for v in actual]
    return all(_norm(v) in present for v in condition.values)


def _jsonb(value: Any) -> Any:
    return cast(literal(json.dumps(value)), JSONB)


def _sql(condition: Condition, column: Any) -> ColumnElement[bool]:
    if isinstance(condition, _Any):
        return (
            or_(*(part.to_sql(column) for part in condition.parts)) if condition.parts else false()
        )
    element = column.op("->")(condition.key)
    if isinstance(condition, _Eq):
        return element == _jsonb(condition.value)
    checks = [element.op("@>")(_jsonb([value])) for value in condition.values]
    return and_(func.jsonb_typeof(element) == "array", *checks)

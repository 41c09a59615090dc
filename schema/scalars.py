"""Scalars: `JSON` for LangGraph's free-form values (state, config, metadata…); `DateTime` is
Strawberry's built-in ISO 8601 scalar.

Types annotate with `JSON` (Strawberry's marker); the scalar behind it is built per schema by
`json_scalar`, so each schema enforces its own size and depth limits on every `JSON` input,
whether sent as a variable or written inline in the document, before any resolver runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson
from graphql import GraphQLError, ListValueNode, ObjectValueNode, Undefined, ValueNode
from graphql.utilities import value_from_ast_untyped
from strawberry.types.scalar import ScalarDefinition, scalar

if TYPE_CHECKING:
    # For the type checker a JSON value is whatever JSON decodes to; services validate its shape.
    JSON = Any
else:
    from strawberry.scalars import JSON

__all__ = [
    "DEFAULT_MAX_JSON_BYTES",
    "DEFAULT_MAX_JSON_DEPTH",
    "JSON",
    "JSONLimitError",
    "check_json_value",
    "json_scalar",
]

DEFAULT_MAX_JSON_DEPTH = 32
DEFAULT_MAX_JSON_BYTES = 1024 * 1024

# What orjson (our JSON encoder, for Postgres and Redis alike) can write; past it a value would
# be accepted here and fail when stored.
_MIN_INT = -(2**63)
_MAX_INT = 2**64 - 1

# Same name, description and URL as Strawberry's own `JSON`, so the SDL does not change.
_SPECIFIED_BY = (
    "https://ecma-international.org/wp-content/uploads/ECMA-404_2nd_edition_december_2017.pdf"
)
_DESCRIPTION = (
    f"The `JSON` scalar type represents JSON values as specified by [ECMA-404]({_SPECIFIED_BY})."
)


class JSONLimitError(GraphQLError):
    """A `JSON` input value over a limit or not storable: `BAD_USER_INPUT`.

    A `GraphQLError` (not a `ServiceError`) because graphql-core reports those raised by a
    scalar as they are, prefixed with the variable and path, where any other exception would
    be an unexpected error."""

    def __init__(self, message: str) -> None:
        super().__init__(message, extensions={"code": "BAD_USER_INPUT"})


def check_json_value(value: Any, *, max_depth: int, max_bytes: int) -> Any:
    """Return `value` (decoded JSON) when it fits the limits; raise `JSONLimitError` otherwise.

    Iterative, so a value nested far past the limit cannot exhaust the interpreter's stack.
    Besides depth and size it refuses what Postgres `jsonb` cannot hold or JSON cannot express:
    NaN and infinities, integers past 64 bits, and the character U+0000.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
            for key in item:
                _check_string(key)
        elif isinstance(item, list | tuple):
            children = item
        else:
            _check_leaf(item)
            continue
        if depth + 1 > max_depth:
            raise JSONLimitError(
                f"JSON value is nested deeper than {max_depth} levels (LGQL_MAX_JSON_DEPTH)."
            )
        stack.extend((child, depth + 1) for child in children)
    try:
        size = len(orjson.dumps(value))
    except TypeError as exc:  # not a JSON value at all (e.g. a Python object from a resolver)
        raise JSONLimitError(f"Not a JSON value: {exc}.") from None
    if size > max_bytes:
        raise JSONLimitError(
            f"JSON value is {size} bytes serialized, more than {max_bytes} (LGQL_MAX_JSON_BYTES)."
        )
    return value


def _check_leaf(item: Any) -> None:
    if isinstance(item, str):
        _check_string(item)
    elif isinstance(item, bool) or item is None:
        return
    elif isinstance(item, int):
        if not _MIN_INT <= item <= _MAX_INT:
            raise JSONLimitError("JSON integers must fit in 64 bits.")
    elif isinstance(item, float):
        if not math.isfinite(item):
            raise JSONLimitError("JSON numbers must be finite (no NaN or Infinity).")


def _check_string(text: Any) -> None:
    if isinstance(text, str) and "\x00" in text:
        raise JSONLimitError("JSON strings cannot contain the character U+0000.")


def _literal_depth_within(node: ValueNode, max_depth: int) -> bool:
    """Whether an inline literal nests no deeper than `max_depth`, without recursing: graphql-core
    turns literals into values recursively, which a deep enough literal would overflow."""
    stack: list[tuple[ValueNode, int]] = [(node, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, ListValueNode):
            children = list(item.values)
        elif isinstance(item, ObjectValueNode):
            children = [field.value for field in item.fields]
        else:
            continue
        if depth + 1 > max_depth:
            return False
        stack.extend((child, depth + 1) for child in children)
    return True


def json_scalar(
    *, max_depth: int = DEFAULT_MAX_JSON_DEPTH, max_bytes: int = DEFAULT_MAX_JSON_BYTES
) -> ScalarDefinition:
    """The `JSON` scalar with these limits, for `strawberry.Schema(scalar_overrides={JSON: …})`."""

    def parse_value(value: Any) -> Any:
        return check_json_value(value, max_depth=max_depth, max_bytes=max_bytes)

    def parse_literal(node: ValueNode, variables: dict[str, Any] | None = None) -> Any:
        if not _literal_depth_within(node, max_depth):
            raise JSONLimitError(
                f"JSON value is nested deeper than {max_depth} levels (LGQL_MAX_JSON_DEPTH)."
            )
        value = value_from_ast_untyped(node, variables)
        # Undefined: a variable the request left out, which graphql-core handles itself.
        return value if value is Undefined else parse_value(value)

    return scalar(
        name="JSON",
        description=_DESCRIPTION,
        specified_by_url=_SPECIFIED_BY,
        serialize=_identity,
        parse_value=parse_value,
        parse_literal=parse_literal,
    )


def _identity(value: Any) -> Any:
    return value

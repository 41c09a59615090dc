"""GraphQL enums made from the services' own enums, so that a value has one definition: the
service's Python enum is the GraphQL enum (resolvers get and return its members), with the
descriptions the SDL shows."""

from __future__ import annotations

import enum
from typing import TypeVar

import strawberry

E = TypeVar("E", bound=type[enum.Enum])


def graphql_enum(
    cls: E, *, description: str, values: dict[str, str] | None = None, name: str | None = None
) -> E:
    """`strawberry.enum(cls)`, with a description for some of its members (by member name)."""
    made = strawberry.enum(cls, name=name, description=description)
    described = values or {}
    unknown = set(described) - {member.name for member in cls}
    if unknown:
        raise ValueError(f"{cls.__name__} has no member {sorted(unknown)}")
    for value in made.__strawberry_definition__.values:  # type: ignore[attr-defined]
        value.description = described.get(value.name)
    return made

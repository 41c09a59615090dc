"""Small helpers every service uses: id parsing, JSON-shape checks, the 'not given' marker, time."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

import uuid_utils

from app.errors import BadUserInput


class _Unset(enum.Enum):
    UNSET = "UNSET"

    def __bool__(self) -> bool:
        return False


#: "The caller did not give this field" — distinct from an explicit null.
UNSET = _Unset.UNSET
Unset = _Unset


class IfExists(enum.StrEnum):
    RAISE = "raise"
    DO_NOTHING = "do_nothing"


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_uuid(value: str | uuid.UUID, what: str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise BadUserInput(f"Invalid {what} ID: must be a UUID", argument=what) from None


def new_id() -> uuid.UUID:
    """A time-ordered id (UUIDv7), as LangGraph Server generates."""
    return uuid.UUID(str(uuid_utils.uuid7()))


def require_object(value: Any, field: str, *, optional: bool = True) -> dict[str, Any] | None:
    """Check that a JSON argument is an object (a mapping), as LangGraph's schemas require."""
    if value is None:
        if optional:
            return None
        raise BadUserInput(f"`{field}` must be a JSON object, not null", field=field)
    if not isinstance(value, dict):
        raise BadUserInput(
            f"`{field}` must be a JSON object, got {type(value).__name__}", field=field
        )
    return value


def merge_metadata(current: dict[str, Any], patch: dict[str, Any] | None) -> dict[str, Any]:
    """LangGraph merges metadata shallowly on update: given keys replace, others stay."""
    return {**current, **(patch or {})}


#: A value decoded from client JSON: its shape is checked by the service that receives it.
JsonValue = Any


def require_checkpoint_map(value: Any, field: str = "checkpoint_map") -> dict[str, str] | None:
    """Check a LangGraph `checkpoint_map`: the checkpoint id chosen for each graph namespace
    (`""` for the root), as a subgraph's checkpoint config carries it."""
    checked = require_object(value, field)
    if checked is not None and not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in checked.items()
    ):
        raise BadUserInput(
            f"`{field}` must map graph namespaces to checkpoint ids (strings)", field=field
        )
    return checked

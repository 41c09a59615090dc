"""Graph values to plain JSON: what a client sees of messages, interrupts, commands and sends."""

from __future__ import annotations

import dataclasses
import enum
import uuid
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import orjson
from langgraph.types import Command, Interrupt, Send
from pydantic import BaseModel
from pydantic.v1 import BaseModel as BaseModelV1


def _default(obj: Any) -> Any:
    if isinstance(obj, Interrupt):
        return {"value": obj.value, "id": obj.id}
    if isinstance(obj, Send):
        return {"node": obj.node, "arg": obj.arg}
    if isinstance(obj, Command):
        return {k: v for k, v in dataclasses.asdict(obj).items() if v not in (None, (), [])}
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, BaseModelV1):
        return obj.dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, datetime | date | time):
        return obj.isoformat()
    if isinstance(obj, timedelta):
        return obj.total_seconds()
    if isinstance(obj, uuid.UUID):
        return str(obj)
    if isinstance(obj, Decimal):
        return float(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, set | frozenset):
        return list(obj)
    if isinstance(obj, bytes | bytearray):
        return obj.decode(errors="replace")
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, Sequence) and not isinstance(obj, str):
        return list(obj)
    if hasattr(obj, "to_json"):
        return obj.to_json()
    # Anything else still reaches the client, as text, rather than failing the whole response.
    return repr(obj)


_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_default, option=_OPTIONS)


def to_jsonable(value: Any) -> Any:
    """A deep copy of `value` made only of dicts, lists, strings, numbers, booleans and None."""
    return orjson.loads(dumps(value))

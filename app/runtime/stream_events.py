"""LangGraph stream chunks as LangGraph Server names and shapes its events.

- one event per requested mode, named after it (`values`, `updates`, `custom`, `debug`, `tasks`,
  `checkpoints`); with subgraphs, `<mode>|<namespace>…` for events from inside a subgraph;
- `messages-tuple`: event `messages` with `[message chunk, metadata]` (token deltas);
- `messages`: `messages/metadata` the first time a message is seen, then `messages/partial` with the
  message accumulated so far (not the delta) or `messages/complete` for a whole message;
- `events`: the raw `astream_events` (v2) dicts.
"""

from __future__ import annotations

import enum
from typing import Any

from langchain_core.messages import BaseMessage, BaseMessageChunk, convert_to_messages
from langchain_core.messages.utils import message_chunk_to_message

from app.runtime.serialization import to_jsonable


class StreamMode(enum.StrEnum):
    """What a run's stream carries, as a client asks for it."""

    VALUES = "values"
    UPDATES = "updates"
    MESSAGES = "messages"
    MESSAGES_TUPLE = "messages-tuple"
    CUSTOM = "custom"
    EVENTS = "events"
    DEBUG = "debug"
    TASKS = "tasks"
    CHECKPOINTS = "checkpoints"

    @classmethod
    def of_event(cls, name: str) -> StreamMode | None:
        """The mode of an event named `name` (without its `|namespace`); None for `metadata`,
        `end`, `error` and the like, which belong to every stream."""
        return _MODE_OF_EVENT.get(name)


#: Stream modes LangGraph's `astream` produces; `events` and `messages-tuple` are ours to derive.
NATIVE_MODES = frozenset(StreamMode) - {StreamMode.EVENTS, StreamMode.MESSAGES_TUPLE}

#: The mode an event belongs to, by its name (before any `|namespace`): most are named after
#: theirs; `messages-tuple` sends `messages`, and `messages` sends `messages/…`.
_MODE_OF_EVENT: dict[str, StreamMode] = {
    **{mode.value: mode for mode in StreamMode if mode is not StreamMode.MESSAGES_TUPLE},
    "messages": StreamMode.MESSAGES_TUPLE,
    "messages/partial": StreamMode.MESSAGES,
    "messages/complete": StreamMode.MESSAGES,
    "messages/metadata": StreamMode.MESSAGES,
}


def langgraph_modes(requested: list[str]) -> list[str]:
    modes = {"messages" if m in ("messages", "messages-tuple") else m for m in requested}
    return sorted(m for m in modes if m in NATIVE_MODES)


def _name(mode: str, namespace: tuple[str, ...]) -> str:
    return f"{mode}|{'|'.join(namespace)}" if namespace else mode


class EventShaper:
    def __init__(self, requested: list[str]) -> None:
        self.requested = set(requested)
        self._messages: dict[str, BaseMessage] = {}

    def shape(self, mode: str, namespace: tuple[str, ...], payload: Any) -> list[tuple[str, Any]]:
        if mode != "messages":
            if mode in self.requested:
                return [(_name(mode, namespace), payload)]
            return []
        out: list[tuple[str, Any]] = []
        message, metadata = payload
        if "messages-tuple" in self.requested:
            out.append((_name("messages", namespace), [message, metadata]))
        if "messages" in self.requested:
            out += self._accumulate(message, metadata)
        return out

    def _accumulate(self, message: Any, metadata: dict[str, Any]) -> list[tuple[str, Any]]:
        if isinstance(message, dict):
            message = convert_to_messages([message])[0]
        out: list[tuple[str, Any]] = []
        key = message.id or ""
        if key in self._messages:
            self._messages[key] = self._messages[key] + message
        else:
            self._messages[key] = message
            out.append(("messages/metadata", {key: {"metadata": to_jsonable(metadata)}}))
        seen = self._messages[key]
        if isinstance(message, BaseMessageChunk):
            out.append(("messages/partial", [seen]))
        else:
            out.append(("messages/complete", [message_chunk_to_message(seen)]))
        return out

"""LangGraph state snapshots as LangGraph Server shows them (`ThreadState`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.types import Interrupt, PregelTask, StateSnapshot

from app.runtime.run_error import RunError
from app.runtime.serialization import to_jsonable


def checkpoint_of(config: RunnableConfig | None) -> dict[str, Any] | None:
    if not config:
        return None
    conf = config.get("configurable", {})
    if "checkpoint_id" not in conf:
        return None
    return {
        "thread_id": conf.get("thread_id"),
        "checkpoint_ns": conf.get("checkpoint_ns", ""),
        "checkpoint_id": conf.get("checkpoint_id"),
        "checkpoint_map": conf.get("checkpoint_map"),
    }


def _interrupts(items: Iterable[Interrupt]) -> list[dict[str, Any]]:
    return [to_jsonable(i) for i in items]


def _task(task: PregelTask) -> dict[str, Any]:
    state = task.state
    return {
        "id": task.id,
        "name": task.name,
        "path": to_jsonable(list(task.path)),
        "error": _error(task.error),
        "interrupts": _interrupts(task.interrupts),
        "checkpoint": checkpoint_of(state) if isinstance(state, dict) else None,
        "state": snapshot_to_dict(state) if isinstance(state, StateSnapshot) else None,
        "result": to_jsonable(task.result),
    }


def _error(error: Exception | None) -> dict[str, str] | None:
    return None if error is None else RunError.of(error).to_json()


def snapshot_to_dict(snapshot: StateSnapshot) -> dict[str, Any]:
    return {
        "values": to_jsonable(snapshot.values),
        "next": list(snapshot.next),
        "tasks": [_task(t) for t in snapshot.tasks],
        "checkpoint": checkpoint_of(snapshot.config),
        "parent_checkpoint": checkpoint_of(snapshot.parent_config),
        "metadata": to_jsonable(snapshot.metadata or {}),
        "created_at": snapshot.created_at,
        "interrupts": _interrupts(snapshot.interrupts),
    }


def interrupts_by_task(snapshot: StateSnapshot) -> dict[str, list[dict[str, Any]]]:
    """Pending interrupts keyed by task id, the shape of LangGraph Server's `thread.interrupts`."""
    return {t.id: _interrupts(t.interrupts) for t in snapshot.tasks if t.interrupts}


def empty_state() -> dict[str, Any]:
    """The state of a thread that has no checkpoint yet."""
    return {
        "values": {},
        "next": [],
        "tasks": [],
        "checkpoint": None,
        "parent_checkpoint": None,
        "metadata": {},
        "created_at": None,
        "interrupts": [],
    }

"""Thread state as LangGraph shows it: values, next nodes, tasks, checkpoints, interrupts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from schema.scalars import JSON


@strawberry.type(description="A pending `interrupt()` of a task: the value it raised and its id.")
class Interrupt:
    id: str | None = strawberry.field(description="The interrupt id; resume a given one with it.")
    value: JSON = strawberry.field(description="The value passed to `interrupt()`.")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Interrupt:
        return cls(id=data.get("id"), value=data.get("value"))


@strawberry.type(description="A checkpoint's address (LangGraph `CheckpointConfig`).")
class Checkpoint:
    thread_id: str | None
    checkpoint_ns: str = strawberry.field(
        description="Subgraph namespace; empty for the root graph."
    )
    checkpoint_id: str | None
    checkpoint_map: JSON | None = strawberry.field(
        description="Checkpoint ids of parent graphs, for subgraph checkpoints."
    )

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Checkpoint | None:
        if not data:
            return None
        return cls(
            thread_id=data.get("thread_id"),
            checkpoint_ns=data.get("checkpoint_ns") or "",
            checkpoint_id=data.get("checkpoint_id"),
            checkpoint_map=data.get("checkpoint_map"),
        )


@strawberry.type(description="A task (node execution) scheduled at a checkpoint.")
class ThreadTask:
    id: str
    name: str = strawberry.field(description="The node the task runs.")
    path: JSON
    error: JSON | None = strawberry.field(description="`{error, message}` if the task failed.")
    interrupts: list[Interrupt]
    checkpoint: Checkpoint | None = strawberry.field(
        description="The subgraph's checkpoint, if any."
    )
    state: ThreadState | None = strawberry.field(
        description="The subgraph's state, when the state was read with `subgraphs: true`."
    )
    result: JSON | None = strawberry.field(description="What the task wrote, once it finished.")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ThreadTask:
        return cls(
            id=data["id"],
            name=data["name"],
            path=data.get("path"),
            error=data.get("error"),
            interrupts=[Interrupt.from_dict(i) for i in data.get("interrupts") or []],
            checkpoint=Checkpoint.from_dict(data.get("checkpoint")),
            state=ThreadState.from_dict(data["state"]) if data.get("state") else None,
            result=data.get("result"),
        )


@strawberry.type(description="The state of a thread at one checkpoint (LangGraph `StateSnapshot`).")
class ThreadState:
    values: JSON = strawberry.field(description="The graph's state values.")
    next: list[str] = strawberry.field(
        description="Nodes that run next; empty when the graph ended."
    )
    tasks: list[ThreadTask]
    checkpoint: Checkpoint | None
    parent_checkpoint: Checkpoint | None
    metadata: JSON = strawberry.field(
        description="Checkpoint metadata: `source` (input|loop|update|fork), `step`, `parents`, run metadata."
    )
    created_at: datetime | None
    interrupts: list[Interrupt]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ThreadState:
        created = data.get("created_at")
        return cls(
            values=data.get("values"),
            next=list(data.get("next") or []),
            tasks=[ThreadTask.from_dict(t) for t in data.get("tasks") or []],
            checkpoint=Checkpoint.from_dict(data.get("checkpoint")),
            parent_checkpoint=Checkpoint.from_dict(data.get("parent_checkpoint")),
            metadata=data.get("metadata") or {},
            created_at=datetime.fromisoformat(created) if isinstance(created, str) else created,
            interrupts=[Interrupt.from_dict(i) for i in data.get("interrupts") or []],
        )

"""`Thread`: a conversation and its checkpointed state; its inputs, filters and connection."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any

import strawberry

from app.services import thread_ttl
from app.services.run_lifecycle import ThreadStatus
from app.services.thread_ttl import ThreadTTLStrategy
from app.services.threads import StateWrite, ThreadRecord
from app.services.threads import ThreadFilter as ServiceThreadFilter
from schema.context import Context, services
from schema.enums import graphql_enum
from schema.pagination import Connection, connection, page_request
from schema.scalars import JSON
from schema.types.common import IfExists
from schema.types.node import Node
from schema.types.run import CommandInput, Run, RunStatus
from schema.types.state import Checkpoint, Interrupt, ThreadState

Info = strawberry.Info[Context, Any]


graphql_enum(
    ThreadStatus,
    description="A thread's status, kept up to date by runs and state updates.",
    values={
        "IDLE": "No active run; the last run (if any) completed.",
        "BUSY": "A run is pending or running.",
        "INTERRUPTED": "The graph stopped at an interrupt or breakpoint; resume with a run.",
        "ERROR": "The last run failed.",
    },
)
graphql_enum(
    ThreadTTLStrategy,
    description="What happens to a thread when its TTL runs out.",
    values={
        "DELETE": "Delete the thread with its runs, crons and checkpoints.",
        "KEEP_LATEST": "Keep the thread and its latest checkpoint; prune older ones.",
    },
)


@strawberry.type(description="A thread's time-to-live: it expires after this long untouched.")
class ThreadTTL:
    strategy: ThreadTTLStrategy
    minutes: float = strawberry.field(description="Inactivity, in minutes, before it expires.")
    expires_at: datetime = strawberry.field(
        description="When it expires if no run, state update or thread update touches it first."
    )


@strawberry.input(description="A thread's time-to-live (LangGraph's `ttl`).")
class ThreadTTLInput:
    minutes: float = strawberry.field(description="Inactivity, in minutes, before it expires.")
    strategy: ThreadTTLStrategy = ThreadTTLStrategy.DELETE

    def to_service(self) -> thread_ttl.ThreadTTL:
        return thread_ttl.ThreadTTL.checked(self.minutes, self.strategy.value)


@strawberry.enum(description="Fields threads can be sorted by.")
class ThreadSortBy(enum.Enum):
    CREATED_AT = "created_at"
    UPDATED_AT = "updated_at"
    STATE_UPDATED_AT = "state_updated_at"
    THREAD_ID = "thread_id"
    STATUS = "status"


@strawberry.type(description="A thread: a conversation whose state LangGraph checkpoints.")
class Thread(Node):
    id: strawberry.ID = strawberry.field(description="The thread id (a UUID).")
    status: ThreadStatus
    metadata: JSON
    values: JSON | None = strawberry.field(description="The state values at the latest checkpoint.")
    created_at: datetime
    updated_at: datetime
    state_updated_at: datetime = strawberry.field(description="When the state last changed.")
    _record: strawberry.Private[ThreadRecord]

    @classmethod
    def from_record(cls, row: ThreadRecord) -> Thread:
        return cls(
            id=strawberry.ID(str(row.thread_id)),
            status=ThreadStatus(row.status),
            metadata=row.metadata_,
            values=row.values,
            created_at=row.created_at,
            updated_at=row.updated_at,
            state_updated_at=row.state_updated_at,
            _record=row,
        )

    @strawberry.field(
        description="Its time-to-live (own, or langgraph.json `checkpointer.ttl.default_ttl`); "
        "null when it never expires."
    )
    def ttl(self) -> ThreadTTL | None:
        ttl, expires_at = thread_ttl.ttl_of(self._record), thread_ttl.expires_at(self._record)
        if ttl is None or expires_at is None:
            return None
        return ThreadTTL(
            strategy=ttl.strategy,
            minutes=ttl.minutes,
            expires_at=expires_at,
        )

    @strawberry.field(description="Pending interrupts at the latest checkpoint, across all tasks.")
    def interrupts(self) -> list[Interrupt]:
        return [
            Interrupt.from_dict(item)
            for items in (self._record.interrupts or {}).values()
            for item in items
        ]

    @strawberry.field(
        description="The state at the latest checkpoint, or at `checkpointId`; a subgraph's with "
        "`checkpointNs` (its namespace, as in a task's `checkpoint.checkpointNs`) and "
        "`checkpointMap` (as in the checkpoint's)."
    )
    async def state(
        self,
        info: Info,
        checkpoint_id: str | None = None,
        subgraphs: bool = False,
        checkpoint_ns: str = "",
        checkpoint_map: JSON | None = None,
    ) -> ThreadState:
        data = await services(info).threads.state(
            self._record,
            checkpoint_id=checkpoint_id,
            subgraphs=subgraphs,
            checkpoint_ns=checkpoint_ns,
            checkpoint_map=checkpoint_map,
        )
        return ThreadState.from_dict(data)

    @strawberry.field(
        description="Past states, newest first. `before` is a checkpoint id; `metadata` filters on "
        'checkpoint metadata (e.g. `{source: "update"}`).'
    )
    async def history(
        self,
        info: Info,
        limit: int = 10,
        before: str | None = None,
        metadata: JSON | None = None,
        checkpoint_ns: Annotated[
            str, strawberry.argument(description="A subgraph's namespace: its history.")
        ] = "",
        checkpoint_map: Annotated[
            JSON | None,
            strawberry.argument(description="As in the `before` checkpoint's `checkpointMap`."),
        ] = None,
    ) -> list[ThreadState]:
        states = await services(info).threads.history(
            self._record,
            limit=min(limit, services(info).settings.max_page_size),
            before=before,
            metadata=metadata,
            checkpoint_ns=checkpoint_ns,
            checkpoint_map=checkpoint_map,
        )
        return [ThreadState.from_dict(s) for s in states]

    @strawberry.field(description="The thread's runs, newest first.")
    async def runs(
        self,
        info: Info,
        status: RunStatus | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[Run]:
        svc = services(info).runs
        tid = str(self._record.thread_id)
        state = status.name.lower() if status else None
        page = await svc.search(page_request(first, after), thread_id=tid, status=state)
        return connection(page, Run.from_record, lambda: svc.count(thread_id=tid, status=state))


@strawberry.input(description="Which threads to list; all given conditions must hold.")
class ThreadFilter:
    ids: list[strawberry.ID] | None = None
    metadata: JSON | None = strawberry.field(
        default=None, description="Metadata containing these keys/values."
    )
    values: JSON | None = strawberry.field(
        default=None, description="State values containing these keys/values."
    )
    status: ThreadStatus | None = None

    def to_service(self) -> ServiceThreadFilter:
        return ServiceThreadFilter(
            ids=[str(i) for i in self.ids] if self.ids is not None else None,
            metadata=self.metadata,
            values=self.values,
            status=self.status.name.lower() if self.status else None,
        )


@strawberry.input(
    description="One write of a superstep: `values` (or a `command`) as if `asNode` ran."
)
class StateWriteInput:
    as_node: str = strawberry.field(
        description="The node that writes (or `__input__`, `__copy__`, `__end__`)."
    )
    values: JSON | None = None
    command: CommandInput | None = None

    def to_service(self) -> StateWrite:
        command: dict[str, Any] | None = None
        if self.command is not None:
            command = {"update": self.command.update, "goto": self.command.goto}
            if self.command.resume is not None:
                command["resume"] = self.command.resume.value
            command = {k: v for k, v in command.items() if v is not None or k == "resume"}
        return StateWrite(as_node=self.as_node, values=self.values, command=command)


@strawberry.input(description="One step of a thread's history: writes applied together.")
class ThreadSuperstepInput:
    updates: list[StateWriteInput]


@strawberry.enum(description="What `pruneThreads` does to each thread.")
class PruneStrategy(enum.Enum):
    DELETE = strawberry.enum_value(
        "delete", description="Delete the thread with its runs, crons and checkpoints."
    )
    KEEP_LATEST = strawberry.enum_value(
        "keep_latest", description="Keep the thread and its latest checkpoint; delete the older."
    )


@strawberry.input(description="A new thread.")
class CreateThreadInput:
    thread_id: strawberry.ID | None = strawberry.field(
        default=None, description="A UUID; generated when absent."
    )
    metadata: JSON | None = None
    if_exists: IfExists = IfExists.RAISE
    graph_id: str | None = strawberry.field(
        default=None, description="Bind the thread to a graph now (stored as `metadata.graph_id`)."
    )
    ttl: ThreadTTLInput | None = strawberry.field(
        default=None,
        description="Expire the thread after this long untouched; default: langgraph.json "
        "`checkpointer.ttl.default_ttl`, else never.",
    )
    idempotency_key: str | None = strawberry.field(
        default=None,
        description="Names this request (at most 255 characters) so a retry after an ambiguous "
        "failure (a timeout, a lost connection, SERVICE_UNAVAILABLE) never creates a second thread: "
        "a repeat with the same key and input returns the thread the first request made; the same "
        "key with a different input is a CONFLICT. Keys are kept 24 hours, per user.",
    )
    supersteps: list[ThreadSuperstepInput] | None = strawberry.field(
        default=None,
        description="Seed the new thread's history (LangGraph `supersteps`, e.g. to import a "
        "conversation): each superstep's updates apply together, in order. Needs `graphId` (or, with "
        "`ifExists: DO_NOTHING`, an existing thread's graph). When they fail the thread stays, "
        "as on LangGraph Server, and the error names it.",
    )


@strawberry.input(description="Changes to a thread.")
class UpdateThreadInput:
    metadata: JSON | None = strawberry.field(default=None, description="Merged into the metadata.")
    ttl: strawberry.Maybe[ThreadTTLInput | None] = strawberry.field(
        description="A new time-to-live, counted from now; null removes it."
    )


@strawberry.type(
    description="The result of `updateThreadState`: the new checkpoint and the thread."
)
class ThreadStateUpdate:
    checkpoint: Checkpoint | None
    thread: Thread


ThreadConnection = Connection[Thread]

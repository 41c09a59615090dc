"""`Run`: one execution of a graph on a thread; its inputs, enums, results and connection."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from app.services.run_lifecycle import RunStatus
from app.services.run_outcome import EndedRun
from app.services.run_outcome import RunError as ServiceRunError
from app.services.run_request import (
    Durability,
    IfNotExists,
    MultitaskStrategy,
    OnCompletion,
    OnDisconnect,
    RunCommand,
    RunRequest,
    StreamMode,
    public_kwargs,
)
from app.services.runs import RunRecord
from schema.context import Context
from schema.enums import graphql_enum
from schema.pagination import Connection
from schema.scalars import JSON
from schema.types.node import Node
from schema.types.state import Interrupt

if TYPE_CHECKING:
    from schema.types.assistant import Assistant
    from schema.types.thread import Thread

Info = strawberry.Info[Context, Any]


graphql_enum(
    RunStatus,
    description="A run's status, as on LangGraph Server.",
    values={
        "PENDING": "Waiting to start (queued or delayed).",
        "RUNNING": "A worker is executing it.",
        "SUCCESS": "Finished; also when the graph stopped at an interrupt.",
        "ERROR": "The graph raised; see `error`.",
        "TIMEOUT": "Ran longer than BG_JOB_TIMEOUT_SECS.",
        "INTERRUPTED": "Cancelled, or superseded by a double-text (INTERRUPT).",
    },
)
graphql_enum(
    MultitaskStrategy,
    description="What a new run does when its thread already has an active run.",
    values={
        "REJECT": "Refuse the new run (CONFLICT).",
        "ENQUEUE": "Run after the active ones (default).",
        "INTERRUPT": "Stop the active run, keeping its progress; then run.",
        "ROLLBACK": "Stop and delete the active run and its checkpoints; then run.",
    },
)
graphql_enum(
    IfNotExists,
    description="What to do when `threadId` names a thread that does not exist.",
)
graphql_enum(
    OnCompletion,
    description="What happens to a stateless run's temporary thread afterwards.",
)
graphql_enum(
    OnDisconnect,
    description="What happens to a streamed run when its client goes away.",
)
graphql_enum(
    Durability,
    description="When checkpoints are saved (LangGraph durability).",
    values={
        "SYNC": "Before the next step starts.",
        "ASYNC": "While the next step runs (default).",
        "EXIT": "Only when the run ends.",
    },
)
graphql_enum(StreamMode, description="LangGraph stream modes.")


@strawberry.enum(description="How to cancel a run.")
class CancelAction(enum.Enum):
    INTERRUPT = strawberry.enum_value(
        "interrupt", description="Stop it; it ends INTERRUPTED and keeps its checkpoints."
    )
    ROLLBACK = strawberry.enum_value(
        "rollback", description="Stop it and delete it with the checkpoints it wrote."
    )


@strawberry.type(description="Why a run failed: the exception's type and message.")
class RunError:
    type: str
    message: str

    @classmethod
    def of(cls, error: ServiceRunError | None) -> RunError | None:
        return None if error is None else cls(type=error.type, message=error.message)


@strawberry.type(description="A run: one execution of an assistant's graph on a thread.")
class Run(Node):
    id: strawberry.ID
    thread_id: strawberry.ID
    assistant_id: strawberry.ID
    status: RunStatus
    attempt: int = strawberry.field(description="How many times a worker has started it.")
    metadata: JSON
    multitask_strategy: MultitaskStrategy
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = strawberry.field(
        description="When a worker first started it; null while pending (LangGraph "
        "`run_started_at`)."
    )
    ended_at: datetime | None = strawberry.field(
        description="When it ended (success, error, timeout, interrupted); null while active "
        "(LangGraph `run_ended_at`)."
    )
    output: JSON | None = strawberry.field(
        description="When ended: `{values, interrupts}` of the state it stopped in."
    )
    error: RunError | None
    kwargs: JSON = strawberry.field(
        description="The options it was created with (LangGraph `kwargs`)."
    )

    @classmethod
    def from_record(cls, row: RunRecord) -> Run:
        return cls(
            id=strawberry.ID(str(row.run_id)),
            thread_id=strawberry.ID(str(row.thread_id)),
            assistant_id=strawberry.ID(str(row.assistant_id)),
            status=RunStatus(row.status),
            attempt=row.attempt,
            metadata=row.metadata_,
            multitask_strategy=MultitaskStrategy(row.multitask_strategy),
            created_at=row.created_at,
            updated_at=row.updated_at,
            started_at=row.started_at,
            ended_at=row.ended_at,
            output=row.output,
            error=RunError.of(ServiceRunError.from_json(row.error)),
            kwargs=public_kwargs(row.kwargs),
        )

    @classmethod
    def from_ended(cls, run: EndedRun) -> Run:
        """A run as its end notice tells it (its row may be gone)."""
        return cls(
            id=strawberry.ID(str(run.run_id)),
            thread_id=strawberry.ID(str(run.thread_id)),
            assistant_id=strawberry.ID(str(run.assistant_id)),
            status=RunStatus(run.status),
            attempt=run.attempt,
            metadata=run.metadata,
            multitask_strategy=MultitaskStrategy(run.multitask_strategy),
            created_at=run.created_at,
            updated_at=run.updated_at,
            started_at=run.started_at,
            ended_at=run.ended_at,
            output=None if run.output is None else run.output.to_json(),
            error=RunError.of(run.error),
            kwargs=public_kwargs(run.kwargs),
        )

    @strawberry.field(description="The run's thread (null once a stateless run's thread is gone).")
    async def thread(
        self, info: Info
    ) -> Annotated[Thread, strawberry.lazy("schema.types.thread")] | None:
        from schema.types.thread import Thread

        record = await info.context.loaders.thread.load(str(self.thread_id))
        return Thread.from_record(record) if record is not None else None

    @strawberry.field(description="The assistant the run executes.")
    async def assistant(
        self, info: Info
    ) -> Annotated[Assistant, strawberry.lazy("schema.types.assistant")] | None:
        from schema.types.assistant import Assistant

        record = await info.context.loaders.assistant.load(str(self.assistant_id))
        return Assistant.from_record(record) if record is not None else None


@strawberry.enum(description="Which active runs `cancelRuns` cancels by status.")
class CancelRunsStatus(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    ALL = strawberry.enum_value("all", description="Pending and running.")


@strawberry.type(description="How a run ended, for `runAndWait`.")
class RunResult:
    run: Run
    values: JSON | None = strawberry.field(description="The state values it ended with.")
    interrupts: list[Interrupt] = strawberry.field(
        description="Pending interrupts, when the graph stopped at `interrupt()`."
    )
    error: RunError | None


@strawberry.input(
    description="LangGraph `Command`: resume an interrupt, update state, go to nodes."
)
class CommandInput:
    resume: strawberry.Maybe[JSON | None] = strawberry.field(
        default=None, description="The value `interrupt()` returns (or `{interruptId: value}`)."
    )
    update: JSON | None = strawberry.field(
        default=None, description="State update: object or [[key, value]]."
    )
    goto: JSON | None = strawberry.field(
        default=None, description="Node name, list of names, or `{node, input}` sends."
    )


@strawberry.input(description="A new run, as LangGraph's run-create body.")
class RunInput:
    assistant_id: str = strawberry.field(
        description="An assistant id, or a graph id for its default assistant."
    )
    thread_id: strawberry.ID | None = strawberry.field(
        default=None, description="The thread; absent for a stateless run on a temporary thread."
    )
    input: JSON | None = None
    command: CommandInput | None = None
    config: JSON | None = strawberry.field(
        default=None, description="Merged over the assistant's config."
    )
    context: JSON | None = strawberry.field(
        default=None, description="Merged over the assistant's context."
    )
    metadata: JSON | None = None
    stream_mode: list[StreamMode] | None = None
    stream_subgraphs: bool = False
    stream_resumable: bool = False
    interrupt_before: list[str] | None = strawberry.field(
        default=None, description='Node names, or ["*"].'
    )
    interrupt_after: list[str] | None = strawberry.field(
        default=None, description='Node names, or ["*"].'
    )
    checkpoint_id: str | None = strawberry.field(
        default=None,
        description="Start from this earlier checkpoint of the thread (a fork); a subgraph's "
        "with `checkpointNs`.",
    )
    checkpoint_ns: str = strawberry.field(
        default="",
        description="The chosen checkpoint's namespace. With a subgraph's (as in a task's "
        "`state.checkpoint.checkpointNs`), the run starts where the graph was when that "
        "checkpoint was written: LangGraph starts the root graph from `checkpointMap`'s root "
        "entry.",
    )
    checkpoint_map: JSON | None = strawberry.field(
        default=None,
        description='The checkpoint id for each graph namespace (`""`: the root), as in a '
        "subgraph checkpoint's `checkpointMap`. Without it, a subgraph's checkpoint brings the "
        "map it was written under (LangGraph Server would ignore `checkpointId` instead).",
    )
    webhook: str | None = strawberry.field(
        default=None, description="URL to POST the run to when it ends."
    )
    multitask_strategy: MultitaskStrategy = MultitaskStrategy.ENQUEUE
    if_not_exists: IfNotExists | None = strawberry.field(
        default=None,
        description="For a `threadId` that does not exist: REJECT (default) or CREATE.",
    )
    on_completion: OnCompletion | None = strawberry.field(
        default=None, description="Stateless runs: DELETE (default) or KEEP the temporary thread."
    )
    on_disconnect: OnDisconnect = OnDisconnect.CONTINUE
    after_seconds: float = strawberry.field(
        default=0, description="Delay before the run may start."
    )
    durability: Durability = Durability.ASYNC
    idempotency_key: str | None = strawberry.field(
        default=None,
        description="Names this request (at most 255 characters) so a retry after an ambiguous "
        "failure (a timeout, a lost connection, SERVICE_UNAVAILABLE) never creates a second run: "
        "a repeat with the same key and input returns the run the first request made; the same "
        "key with a different input is a CONFLICT. Keys are kept 24 hours, per user.",
    )

    def to_request(self, configurable_headers: dict[str, str] | None = None) -> RunRequest:
        """The service's request; `configurable_headers`: the request headers its config carries
        (`schema.fields.runs.configurable_headers`)."""
        command = None
        if self.command is not None:
            command = RunCommand(
                resume=self.command.resume.value if self.command.resume is not None else None,
                update=self.command.update,
                goto=self.command.goto,
                has_resume=self.command.resume is not None,
            )
        return RunRequest(
            assistant_id=self.assistant_id,
            thread_id=str(self.thread_id) if self.thread_id is not None else None,
            input=self.input,
            command=command,
            config=self.config,
            context=self.context,
            metadata=self.metadata,
            stream_mode=[m.value for m in self.stream_mode] if self.stream_mode else ["values"],
            stream_subgraphs=self.stream_subgraphs,
            stream_resumable=self.stream_resumable,
            interrupt_before=self.interrupt_before,
            interrupt_after=self.interrupt_after,
            checkpoint_id=self.checkpoint_id,
            checkpoint_ns=self.checkpoint_ns,
            checkpoint_map=self.checkpoint_map,
            webhook=self.webhook,
            multitask_strategy=self.multitask_strategy,
            if_not_exists=self.if_not_exists,
            on_completion=self.on_completion,
            on_disconnect=self.on_disconnect,
            after_seconds=self.after_seconds,
            durability=self.durability,
            idempotency_key=self.idempotency_key,
            configurable_headers=dict(configurable_headers or {}),
        )


RunConnection = Connection[Run]

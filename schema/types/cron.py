"""`Cron`: runs started on a schedule; its inputs, filter, sort and connection."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import strawberry

from app.services.common import UNSET
from app.services.crons import CronFilter as ServiceCronFilter
from app.services.crons import CronRecord
from schema.context import Context, services
from schema.pagination import Connection, connection, page_request
from schema.scalars import JSON
from schema.types.node import Node
from schema.types.run import Durability, MultitaskStrategy, OnCompletion, Run, StreamMode

Info = strawberry.Info[Context, Any]


@strawberry.enum(
    description="Fields crons can be sorted by; crons with no value (a stateless cron's thread, "
    "no end time, no next run) come last ascending, first descending."
)
class CronSortBy(enum.Enum):
    CREATED_AT = "created_at"
    UPDATED_AT = "updated_at"
    NEXT_RUN_AT = "next_run_at"
    CRON_ID = "cron_id"
    ASSISTANT_ID = "assistant_id"
    THREAD_ID = "thread_id"
    END_TIME = "end_time"


@strawberry.type(
    description="A cron: a run started on a schedule, on one thread or on a new thread each time."
)
class Cron(Node):
    id: strawberry.ID = strawberry.field(description="The cron id (a UUID).")
    assistant_id: strawberry.ID = strawberry.field(description="The assistant its runs execute.")
    thread_id: strawberry.ID | None = strawberry.field(
        description="The thread its runs use; null for a stateless cron (a new thread per run)."
    )
    schedule: str = strawberry.field(
        description="5-field cron expression: minute hour day-of-month month day-of-week."
    )
    timezone: str = strawberry.field(description="IANA timezone the schedule is read in.")
    payload: JSON = strawberry.field(
        description="The run options of each firing, as LangGraph's run-create body "
        "(snake_case keys: assistant_id, input, config, context, metadata, webhook…)."
    )
    enabled: bool = strawberry.field(description="Disabled crons do not fire.")
    on_run_completed: OnCompletion | None = strawberry.field(
        description="Stateless crons: DELETE or KEEP each run's thread afterwards; null for "
        "thread crons."
    )
    end_time: datetime | None = strawberry.field(description="After this time it fires no more.")
    next_run_at: datetime | None = strawberry.field(description="When it fires next (UTC).")
    metadata: JSON = strawberry.field(
        description="The cron's metadata; each run it starts gets it too, with `cron_id`."
    )
    created_at: datetime
    updated_at: datetime
    _record: strawberry.Private[CronRecord]

    @classmethod
    def from_record(cls, row: CronRecord) -> Cron:
        return cls(
            id=strawberry.ID(str(row.cron_id)),
            assistant_id=strawberry.ID(str(row.assistant_id)),
            thread_id=strawberry.ID(str(row.thread_id)) if row.thread_id is not None else None,
            schedule=row.schedule,
            timezone=row.timezone or "UTC",
            payload=row.payload,
            enabled=row.enabled,
            on_run_completed=OnCompletion(row.on_run_completed) if row.on_run_completed else None,
            end_time=row.end_time,
            next_run_at=row.next_run_at,
            metadata=row.metadata_,
            created_at=row.created_at,
            updated_at=row.updated_at,
            _record=row,
        )

    @strawberry.field(
        description="Runs it started that still exist, newest first (found by their "
        "`metadata.cron_id`). A stateless cron's runs go with their thread unless it KEEPs them."
    )
    async def runs(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[Run]:
        svc = services(info).crons
        cid = self._record.cron_id
        page = await svc.runs_of(cid, page_request(first, after))
        return connection(page, Run.from_record, lambda: svc.count_runs_of(cid))


@strawberry.input(description="Which crons to list; all given conditions must hold.")
class CronFilter:
    assistant_id: str | None = strawberry.field(
        default=None, description="An assistant id, or a graph id for its default assistant."
    )
    thread_id: strawberry.ID | None = None
    enabled: bool | None = None
    metadata: JSON | None = strawberry.field(
        default=None, description="Metadata containing these keys/values."
    )

    def to_service(self) -> ServiceCronFilter:
        return ServiceCronFilter(
            assistant_id=self.assistant_id,
            thread_id=str(self.thread_id) if self.thread_id is not None else None,
            enabled=self.enabled,
            metadata=self.metadata,
        )


@strawberry.input(description="The options of the runs a cron starts (as in `RunInput`).")
class CronRunOptions:
    input: JSON | None = strawberry.field(default=None, description="The graph's input.")
    config: JSON | None = strawberry.field(
        default=None, description="Merged over the assistant's config."
    )
    context: JSON | None = strawberry.field(
        default=None, description="Merged over the assistant's context."
    )
    run_metadata: JSON | None = strawberry.field(
        default=None,
        description="Metadata of each run only, over the cron's `metadata` (stored as the "
        "payload's `metadata`).",
    )
    webhook: str | None = strawberry.field(
        default=None, description="URL to POST each run to when it ends."
    )
    interrupt_before: list[str] | None = strawberry.field(
        default=None, description='Node names, or ["*"].'
    )
    interrupt_after: list[str] | None = strawberry.field(
        default=None, description='Node names, or ["*"].'
    )
    stream_mode: list[StreamMode] | None = strawberry.field(
        default=None, description="Stream modes recorded for `joinRunStream` (VALUES by default)."
    )
    stream_subgraphs: bool | None = strawberry.field(
        default=None, description="Stream subgraph events too."
    )
    stream_resumable: bool | None = strawberry.field(
        default=None, description="Keep the stream for late joiners."
    )
    multitask_strategy: MultitaskStrategy | None = strawberry.field(
        default=None,
        description="Thread crons: what a firing does while the thread is busy (ENQUEUE by "
        "default).",
    )
    durability: Durability | None = strawberry.field(
        default=None, description="When checkpoints are saved (ASYNC by default)."
    )

    def payload(self) -> dict[str, Any]:
        """The given options, keyed as LangGraph's run-create body."""
        values: dict[str, Any] = {
            "input": self.input,
            "config": self.config,
            "context": self.context,
            "metadata": self.run_metadata,
            "webhook": self.webhook,
            "interrupt_before": self.interrupt_before,
            "interrupt_after": self.interrupt_after,
            "stream_mode": [m.value for m in self.stream_mode] if self.stream_mode else None,
            "stream_subgraphs": self.stream_subgraphs,
            "stream_resumable": self.stream_resumable,
            "multitask_strategy": self.multitask_strategy.value
            if self.multitask_strategy
            else None,
            "durability": self.durability.value if self.durability else None,
        }
        return {k: v for k, v in values.items() if v is not None}


@strawberry.input(
    description="A new cron. With `threadId` it runs on that thread; without, each firing runs "
    "on a new thread (deleted afterwards unless `onRunCompleted: KEEP`)."
)
class CreateCronInput(CronRunOptions):
    assistant_id: str = strawberry.field(
        description="An assistant id, or a graph id for its default assistant."
    )
    schedule: str = strawberry.field(
        description='5-field cron expression, e.g. "*/5 * * * *" (every 5 minutes).'
    )
    thread_id: strawberry.ID | None = strawberry.field(
        default=None, description="The thread its runs use; absent for a stateless cron."
    )
    timezone: str | None = strawberry.field(
        default=None, description='IANA timezone of the schedule, e.g. "Europe/Paris" (UTC).'
    )
    end_time: datetime | None = strawberry.field(
        default=None, description="Stop firing after this time (the cron stays)."
    )
    enabled: bool = strawberry.field(default=True, description="Disabled crons do not fire.")
    metadata: JSON | None = strawberry.field(
        default=None, description="The cron's metadata, also given to each of its runs."
    )
    on_run_completed: OnCompletion | None = strawberry.field(
        default=None,
        description="Stateless crons only: DELETE (default) or KEEP each run's thread.",
    )


@strawberry.input(description="Changes to a cron; give at least one field.")
class UpdateCronInput(CronRunOptions):
    schedule: str | None = strawberry.field(
        default=None, description="A new schedule (sets `nextRunAt` anew)."
    )
    timezone: str | None = strawberry.field(
        default=None, description="A new timezone (sets `nextRunAt` anew)."
    )
    end_time: strawberry.Maybe[datetime | None] = strawberry.field(
        default=None, description="A new end time; null clears it."
    )
    enabled: bool | None = strawberry.field(
        default=None, description="Enable (its next time counts from now) or disable it."
    )
    metadata: JSON | None = strawberry.field(
        default=None, description="Merged into the cron's metadata."
    )
    on_run_completed: OnCompletion | None = strawberry.field(
        default=None, description="Stateless crons only: DELETE or KEEP each run's thread."
    )

    def end_time_change(self) -> Any:
        return self.end_time.value if self.end_time is not None else UNSET


CronConnection = Connection[Cron]

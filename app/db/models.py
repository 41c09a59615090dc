"""SQLModel tables: one class per table, named as in the GraphQL contract.

The checkpointer's own tables (`checkpoints`, `checkpoint_blobs`, `checkpoint_writes`) are written in raw
SQL by `app.persistence.checkpointer`, not mapped here: they are hot-path storage, not domain objects.
Every table is created by Alembic (`migrations/`), never by `create_all`.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlmodel import Field, SQLModel


class RunStatus(enum.StrEnum):
    """A run's `status` (the state machine is `app.services.run_lifecycle`'s)."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    ERROR = "error"
    TIMEOUT = "timeout"
    INTERRUPTED = "interrupted"


#: A run that has not ended: its thread is busy.
ACTIVE_RUN_STATUSES: tuple[str, ...] = (RunStatus.PENDING.value, RunStatus.RUNNING.value)
#: How a run may end.
FINAL_RUN_STATUSES: tuple[str, ...] = tuple(
    s.value for s in RunStatus if s.value not in ACTIVE_RUN_STATUSES
)


class ThreadStatus(enum.StrEnum):
    """A thread's `status`, recomputed whenever its runs or state change (the rule is
    `app.db.run_queue.refresh_thread`'s)."""

    IDLE = "idle"
    BUSY = "busy"
    INTERRUPTED = "interrupted"
    ERROR = "error"


def _ts(nullable: bool = False) -> Any:
    return Field(
        sa_column=Column(
            DateTime(timezone=True),
            nullable=nullable,
            server_default=None if nullable else func.now(),
        ),
        default=None,
    )


def attribute_values(fields: dict[str, Any]) -> dict[str, Any]:
    """`fields` named by column, as the models' attributes are named: the `metadata` column is
    the `metadata_` attribute (SQLAlchemy reserves `metadata`)."""
    if "metadata" not in fields:
        return fields
    values = dict(fields)
    values["metadata_"] = values.pop("metadata")
    return values


def _json(name: str, *, nullable: bool = False, default: str = "'{}'::jsonb") -> Any:
    return Field(
        sa_column=Column(
            name, JSONB, nullable=nullable, server_default=None if nullable else text(default)
        ),
        default=None,
    )


class Assistant(SQLModel, table=True):
    __tablename__ = "assistants"
    __table_args__ = (
        Index("ix_assistants_graph_id", "graph_id"),
        Index("ix_assistants_created_at", "created_at"),
        Index("ix_assistants_updated_at", "updated_at"),
        Index("ix_assistants_metadata", "metadata", postgresql_using="gin"),
    )

    assistant_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    graph_id: str = Field(sa_column=Column(Text, nullable=False))
    name: str = Field(sa_column=Column(Text, nullable=False))
    description: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    config: dict[str, Any] = _json("config")
    context: dict[str, Any] = _json("context")
    # `metadata` is reserved on SQLAlchemy declarative classes, hence the trailing underscore.
    metadata_: dict[str, Any] = _json("metadata")
    version: int = Field(sa_column=Column(Integer, nullable=False, server_default="1"))
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class AssistantVersion(SQLModel, table=True):
    __tablename__ = "assistant_versions"

    assistant_id: uuid.UUID = Field(
        sa_column=Column(
            UUID(as_uuid=True),
            ForeignKey("assistants.assistant_id", ondelete="CASCADE"),
            primary_key=True,
        )
    )
    version: int = Field(sa_column=Column(Integer, primary_key=True))
    graph_id: str = Field(sa_column=Column(Text, nullable=False))
    name: str = Field(sa_column=Column(Text, nullable=False))
    description: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    config: dict[str, Any] = _json("config")
    context: dict[str, Any] = _json("context")
    metadata_: dict[str, Any] = _json("metadata")
    created_at: datetime = _ts()


class Thread(SQLModel, table=True):
    __tablename__ = "threads"
    __table_args__ = (
        Index("ix_threads_created_at", "created_at"),
        Index("ix_threads_updated_at", "updated_at"),
        Index("ix_threads_status", "status"),
        Index("ix_threads_metadata", "metadata", postgresql_using="gin"),
        Index("ix_threads_values", "values", postgresql_using="gin"),
        Index(
            "ix_threads_expires_at",
            "expires_at",
            postgresql_where=text("expires_at IS NOT NULL"),
        ),
    )

    thread_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    metadata_: dict[str, Any] = _json("metadata")
    config: dict[str, Any] = _json("config")
    status: str = Field(sa_column=Column(Text, nullable=False, server_default="idle"))
    # Latest checkpoint's values and interrupts, cached so thread search and lists need no graph.
    values: dict[str, Any] | None = _json("values", nullable=True)
    interrupts: dict[str, Any] = _json("interrupts")
    error: dict[str, Any] | None = _json("error", nullable=True)
    ttl_minutes: float | None = Field(
        default=None, sa_column=Column("ttl_minutes", Float, nullable=True)
    )
    ttl_strategy: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    expires_at: datetime | None = _ts(nullable=True)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    state_updated_at: datetime = _ts()


# The pydantic mypy plugin sees the `kwargs` column clash with its synthesized `__init__(**kwargs)`.
class Run(SQLModel, table=True):  # type: ignore[no-redef]
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_thread_id_created_at", "thread_id", "created_at"),
        Index("ix_runs_status_created_at", "status", "created_at"),
        # The queue's own lookups: a thread's active runs, due pending runs, lapsed leases.
        Index(
            "ix_runs_active_by_thread",
            "thread_id",
            "created_at",
            postgresql_where=text("status IN ('pending', 'running')"),
        ),
        Index("ix_runs_pending_due", "available_at", postgresql_where=text("status = 'pending'")),
        Index("ix_runs_running_lease", "lease_until", postgresql_where=text("status = 'running'")),
        # `Cron.runs`: the runs a cron fired, newest first.
        Index(
            "ix_runs_cron_id",
            text("(metadata ->> 'cron_id')"),
            "created_at",
            postgresql_where=text("metadata ? 'cron_id'"),
        ),
    )

    run_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    thread_id: uuid.UUID = Field(
        sa_column=Column(
            UUID(as_uuid=True),
            ForeignKey("threads.thread_id", ondelete="CASCADE"),
            nullable=False,
        )
    )
    assistant_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), nullable=False))
    status: str = Field(sa_column=Column(Text, nullable=False, server_default="pending"))
    metadata_: dict[str, Any] = _json("metadata")
    kwargs: dict[str, Any] = _json("kwargs")
    multitask_strategy: str = Field(
        sa_column=Column(Text, nullable=False, server_default="enqueue")
    )
    attempt: int = Field(sa_column=Column(Integer, nullable=False, server_default="0"))
    lease_until: datetime | None = _ts(nullable=True)
    # Times a worker died under the run (its lease lapsed): the retry budget. `attempt` counts
    # every claim and is the fencing token; clean hand-backs must not use up the budget.
    lapses: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    # The worker holding the lease, for operators; ownership itself is the attempt number.
    worker_id: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # When a pending run may start (creation time plus `afterSeconds`).
    available_at: datetime = _ts()
    # A cancel asked for while the run was running ("interrupt" or "rollback"), for the worker.
    cancel_action: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    output: dict[str, Any] | None = _json("output", nullable=True)
    error: dict[str, Any] | None = _json("error", nullable=True)
    webhook: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # When a worker first started the run and when it reached its final status.
    started_at: datetime | None = _ts(nullable=True)
    ended_at: datetime | None = _ts(nullable=True)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class Cron(SQLModel, table=True):
    __tablename__ = "crons"
    __table_args__ = (
        Index("ix_crons_next_run_at", "next_run_at"),
        # Every thread delete (each stateless run's thread too) cascades here.
        Index("ix_crons_thread_id", "thread_id"),
    )

    cron_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    assistant_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), nullable=False))
    thread_id: uuid.UUID | None = Field(
        default=None,
        sa_column=Column(
            UUID(as_uuid=True),
            ForeignKey("threads.thread_id", ondelete="CASCADE"),
            nullable=True,
        ),
    )
    schedule: str = Field(sa_column=Column(Text, nullable=False))
    timezone: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    payload: dict[str, Any] = _json("payload")
    metadata_: dict[str, Any] = _json("metadata")
    enabled: bool = Field(sa_column=Column(Boolean, nullable=False, server_default="true"))
    on_run_completed: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    end_time: datetime | None = _ts(nullable=True)
    next_run_at: datetime | None = _ts(nullable=True)
    user_id: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class StoreItem(SQLModel, table=True):
    __tablename__ = "store_items"
    __table_args__ = (
        Index("ix_store_items_expires_at", "expires_at"),
        Index("ix_store_items_value", "value", postgresql_using="gin"),
    )

    # "C" collation: bytewise order, so a namespace prefix is a range of the primary key
    # (app.persistence.store_sql).
    namespace: list[str] = Field(sa_column=Column(ARRAY(Text(collation="C")), primary_key=True))
    key: str = Field(sa_column=Column(Text, primary_key=True))
    value: dict[str, Any] = _json("value")
    ttl_minutes: float | None = Field(
        default=None, sa_column=Column("ttl_minutes", Float, nullable=True)
    )
    expires_at: datetime | None = _ts(nullable=True)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class WebhookDelivery(SQLModel, table=True):
    """An outbox row: a run's webhook, written in the transaction that ends the run, so that no
    crash or Redis loss can drop it. It outlives the run (rolled-back and deleted runs notify too).
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_webhook_deliveries_run_id", "run_id"),
    )

    delivery_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    run_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), nullable=False))
    url: str = Field(sa_column=Column(Text, nullable=False))
    payload: dict[str, Any] = _json("payload")
    # "pending" until delivered, then "sent", or "failed" once its attempts are used up.
    status: str = Field(sa_column=Column(Text, nullable=False, server_default="pending"))
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    next_attempt_at: datetime = _ts()
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    sent_at: datetime | None = _ts(nullable=True)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class IdempotencyKey(SQLModel, table=True):
    """A create request's idempotency key: written in the transaction that creates the object, so
    a retried create (after a lost answer) finds the object made the first time instead of making
    a second. Scoped by kind (`run`, `thread`, `assistant`) and by user; kept until `expires_at`
    (`app.services.idempotency.RETENTION`), then overwritten by a new use or swept."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_keys_expires_at", "expires_at"),)

    kind: str = Field(sa_column=Column(Text, primary_key=True))
    # The user's identity under custom auth ('' without): one user's keys never meet another's.
    owner: str = Field(sa_column=Column(Text, primary_key=True))
    key: str = Field(sa_column=Column(Text, primary_key=True))
    # SHA-256 of the request's input, to tell a retry from a different request reusing the key.
    request_hash: str = Field(sa_column=Column(Text, nullable=False))
    resource_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), nullable=False))
    created_at: datetime = _ts()
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))

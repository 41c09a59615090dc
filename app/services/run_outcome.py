"""How a run ended, as told to whoever waits for it (`runAndWait`, A2A's `message/send`, MCP
tools): the run as it ended, the values and interrupts of the state it stopped in, or its error.

Each has one JSON form: `RunOutput` is the run row's `output`; `EndedRun` is also what its
webhook POSTs (`webhook_json`, LangGraph's body); `RunOutcome` is what a run-end notice carries
and what Redis keeps for waiters that come later (`Broker.publish_run_end`), the
run's row being possibly gone by then (rolled back, or a stateless run's, deleted with its
thread).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from langgraph.types import StateSnapshot

from app.db.models import Run as RunRecord
from app.runtime.run_error import RunError
from app.runtime.serialization import to_jsonable
from app.services.run_request import public_kwargs

__all__ = ["EndedRun", "RunError", "RunOutcome", "RunOutput"]


@dataclass(slots=True, frozen=True)
class RunOutput:
    """What a run ended with: the values of the state it stopped in, and its interrupts."""

    values: Any = None
    interrupts: list[Any] = field(default_factory=list)

    @classmethod
    def of_snapshot(cls, snapshot: StateSnapshot) -> RunOutput:
        return cls(
            values=to_jsonable(snapshot.values),
            interrupts=[to_jsonable(i) for i in snapshot.interrupts],
        )

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> RunOutput | None:
        if data is None:
            return None
        return cls(values=data.get("values"), interrupts=data.get("interrupts") or [])

    def to_json(self) -> dict[str, Any]:
        return {"values": self.values, "interrupts": self.interrupts}


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _from_iso(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


@dataclass(slots=True, frozen=True)
class EndedRun:
    """A run as it ended."""

    run_id: uuid.UUID
    thread_id: uuid.UUID
    assistant_id: uuid.UUID
    status: str
    attempt: int
    metadata: dict[str, Any]
    kwargs: dict[str, Any]
    multitask_strategy: str
    output: RunOutput | None
    error: RunError | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None  # None: it never started
    ended_at: datetime | None = None

    @classmethod
    def of(cls, run: RunRecord, *, status: str | None = None) -> EndedRun:
        return cls(
            run_id=run.run_id,
            thread_id=run.thread_id,
            assistant_id=run.assistant_id,
            status=status or run.status,
            attempt=run.attempt,
            metadata=run.metadata_,
            kwargs=run.kwargs,
            multitask_strategy=run.multitask_strategy,
            output=RunOutput.from_json(run.output),
            error=RunError.from_json(run.error),
            created_at=run.created_at,
            updated_at=run.updated_at,
            started_at=run.started_at,
            ended_at=run.ended_at,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": str(self.run_id),
            "thread_id": str(self.thread_id),
            "assistant_id": str(self.assistant_id),
            "status": self.status,
            "attempt": self.attempt,
            "metadata": self.metadata,
            "kwargs": self.kwargs,
            "multitask_strategy": self.multitask_strategy,
            "output": None if self.output is None else self.output.to_json(),
            "error": None if self.error is None else self.error.to_json(),
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "started_at": _iso(self.started_at),
            "ended_at": _iso(self.ended_at),
        }

    def webhook_json(self, values: Any) -> dict[str, Any]:
        """The run as its webhook POSTs it, in LangGraph Server's form (`webhook_sent_at` is
        added at send time): the options without the caller's private ones, the error only
        for a failed run."""
        body: dict[str, Any] = {
            "run_id": str(self.run_id),
            "thread_id": str(self.thread_id),
            "assistant_id": str(self.assistant_id),
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "run_started_at": _iso(self.started_at),
            # A deleted (rolled back) run has no row to stamp: it ended now.
            "run_ended_at": _iso(self.ended_at) or datetime.now(UTC).isoformat(),
            "metadata": self.metadata,
            "kwargs": public_kwargs(self.kwargs),
            "multitask_strategy": self.multitask_strategy,
            "status": self.status,
            "values": values,
        }
        if self.error is not None and self.status in ("error", "timeout"):
            body["error"] = self.error.to_json()
        return body

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EndedRun:
        return cls(
            run_id=uuid.UUID(data["run_id"]),
            thread_id=uuid.UUID(data["thread_id"]),
            assistant_id=uuid.UUID(data["assistant_id"]),
            status=data["status"],
            attempt=data["attempt"],
            metadata=data["metadata"],
            kwargs=data["kwargs"],
            multitask_strategy=data["multitask_strategy"],
            output=RunOutput.from_json(data["output"]),
            error=RunError.from_json(data["error"]),
            created_at=datetime.fromisoformat(data["created_at"]),
            updated_at=datetime.fromisoformat(data["updated_at"]),
            started_at=_from_iso(data.get("started_at")),
            ended_at=_from_iso(data.get("ended_at")),
        )


@dataclass(slots=True, frozen=True)
class RunOutcome:
    """How a run ended. `deleted`: rolled back, its row gone."""

    run: EndedRun
    values: Any
    interrupts: list[Any]
    error: RunError | None
    deleted: bool = False

    @classmethod
    def of(cls, run: RunRecord) -> RunOutcome:
        """The outcome of a run whose row holds its end."""
        ended = EndedRun.of(run)
        output = ended.output or RunOutput()
        return cls(ended, output.values, output.interrupts, ended.error)

    @classmethod
    def stopped(cls, run: RunRecord, *, deleted: bool) -> RunOutcome:
        """The outcome of a run stopped before it produced anything of its own (cancelled while
        pending, or rolled back: then `deleted`, its row gone)."""
        return cls(EndedRun.of(run, status="interrupted"), None, [], None, deleted)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "run": self.run.to_json(),
            "values": self.values,
            "interrupts": self.interrupts,
            "error": None if self.error is None else self.error.to_json(),
        }
        if self.deleted:
            data["deleted"] = True
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunOutcome:
        return cls(
            run=EndedRun.from_json(data["run"]),
            values=data.get("values"),
            interrupts=data.get("interrupts") or [],
            error=RunError.from_json(data.get("error")),
            deleted=bool(data.get("deleted")),
        )

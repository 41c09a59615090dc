"""What a cron may hold: a schedule, a timezone and the run options of its firings (its
`payload`), checked before anything is written, as `run_request` checks a run."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from app.errors import BadUserInput
from app.services.run_request import Durability, MultitaskStrategy, OnCompletion, RunRequest

DEFAULT_TIMEZONE = "UTC"
#: The run options a cron's payload may hold (LangGraph's run-create body keys).
PAYLOAD_KEYS = frozenset(
    {
        "assistant_id",
        "input",
        "config",
        "context",
        "metadata",
        "webhook",
        "interrupt_before",
        "interrupt_after",
        "stream_mode",
        "stream_subgraphs",
        "stream_resumable",
        "multitask_strategy",
        "durability",
    }
)


def checked_schedule(schedule: str) -> str:
    """A standard 5-field cron expression (minute hour day-of-month month day-of-week)."""
    fields = schedule.split()
    if len(fields) != 5 or not croniter.is_valid(" ".join(fields)):
        raise BadUserInput(
            f"Invalid cron schedule {schedule!r}: expected 5 fields "
            "(minute hour day-of-month month day-of-week)",
            field="schedule",
        )
    return " ".join(fields)


def checked_timezone(timezone: str | None) -> str:
    """An IANA zone name; None stands for UTC."""
    name = DEFAULT_TIMEZONE if timezone is None else timezone
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadUserInput(
            f"Invalid timezone {name!r}: not an IANA zone", field="timezone"
        ) from None
    return name


def next_run_after(schedule: str, timezone: str, after: datetime) -> datetime:
    """The first time after `after` that `schedule` names, read in `timezone`; in UTC."""
    local = after.astimezone(ZoneInfo(timezone))
    following: datetime = croniter(schedule, local).get_next(datetime)
    return following.astimezone(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # a time without offset is taken as UTC
    return value


def run_request(
    payload: dict[str, Any], *, thread_id: uuid.UUID | None, on_run_completed: str | None
) -> RunRequest:
    """The run a cron's payload describes (not yet `checked()`). Raises BadUserInput."""
    try:
        return RunRequest(
            assistant_id=str(payload["assistant_id"]),
            thread_id=str(thread_id) if thread_id is not None else None,
            input=payload.get("input"),
            config=payload.get("config"),
            context=payload.get("context"),
            metadata=payload.get("metadata"),
            stream_mode=list(payload.get("stream_mode") or ["values"]),
            stream_subgraphs=bool(payload.get("stream_subgraphs", False)),
            stream_resumable=bool(payload.get("stream_resumable", False)),
            interrupt_before=payload.get("interrupt_before"),
            interrupt_after=payload.get("interrupt_after"),
            webhook=payload.get("webhook"),
            multitask_strategy=MultitaskStrategy(payload.get("multitask_strategy", "enqueue")),
            on_completion=OnCompletion(on_run_completed or "delete") if thread_id is None else None,
            durability=Durability(payload.get("durability", "async")),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise BadUserInput(f"Invalid cron payload: {exc}", field="payload") from exc


def checked_payload(payload: dict[str, Any]) -> dict[str, Any]:
    unknown = set(payload) - PAYLOAD_KEYS
    if unknown:
        raise BadUserInput(f"Unknown run option(s) {sorted(unknown)}", field="payload")
    return {k: v for k, v in payload.items() if v is not None}

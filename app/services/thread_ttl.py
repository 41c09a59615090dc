"""Thread time-to-live, as LangGraph Server has it: a thread (with its runs, crons and
checkpoints) is removed, or pruned to its latest checkpoint, after `minutes` of inactivity.

Inactivity is measured from the thread's last change (`updated_at`, `state_updated_at`), which
every run start and end, state update and thread update bumps. `expires_at` on the row is a lower
bound kept for the sweeper's index: the sweeper re-checks the real deadline and pushes `expires_at`
forward when the thread was active since, so the hot paths never have to maintain it.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from app.errors import BadUserInput
from app.runtime.langgraph_config import ConfigError

DEFAULT_SWEEP_INTERVAL_MINUTES = 5.0
DEFAULT_SWEEP_LIMIT = 1000


class ThreadTTLStrategy(enum.StrEnum):
    DELETE = "delete"
    KEEP_LATEST = "keep_latest"


@dataclass(frozen=True)
class ThreadTTL:
    minutes: float
    strategy: ThreadTTLStrategy = ThreadTTLStrategy.DELETE

    @classmethod
    def checked(cls, minutes: Any, strategy: Any = ThreadTTLStrategy.DELETE) -> ThreadTTL:
        """Raises BadUserInput unless `minutes` is a positive finite number and `strategy` known."""
        if isinstance(minutes, bool) or not isinstance(minutes, int | float):
            raise BadUserInput("ttl minutes must be a number", field="ttl")
        if not math.isfinite(minutes) or minutes <= 0:
            raise BadUserInput("ttl minutes must be a positive number", field="ttl")
        try:
            chosen = ThreadTTLStrategy(strategy)
        except ValueError:
            known = ", ".join(s.value for s in ThreadTTLStrategy)
            raise BadUserInput(
                f"Unknown ttl strategy {strategy!r}; expected one of {known}", field="ttl"
            ) from None
        return cls(minutes=float(minutes), strategy=chosen)

    def deadline(self, last_activity: datetime) -> datetime:
        return last_activity + timedelta(minutes=self.minutes)

    def row_fields(self, now: datetime) -> dict[str, Any]:
        """The thread-row columns that give a thread this TTL, counted from `now`."""
        return {
            "ttl_minutes": self.minutes,
            "ttl_strategy": self.strategy.value,
            "expires_at": self.deadline(now),
        }


NO_TTL_FIELDS: dict[str, Any] = {"ttl_minutes": None, "ttl_strategy": None, "expires_at": None}


@dataclass(frozen=True)
class ThreadTTLConfig:
    """langgraph.json `checkpointer.ttl`: the default TTL of new threads and the sweep cadence."""

    default: ThreadTTL | None = None
    sweep_interval_seconds: float = DEFAULT_SWEEP_INTERVAL_MINUTES * 60
    sweep_limit: int = DEFAULT_SWEEP_LIMIT

    @classmethod
    def from_langgraph(cls, checkpointer: dict[str, Any] | None) -> ThreadTTLConfig:
        """Raises ConfigError naming the key when the config is malformed (start-up refuses it)."""
        ttl = (checkpointer or {}).get("ttl")
        if ttl is None:
            return cls()
        if not isinstance(ttl, dict):
            raise ConfigError("checkpointer.ttl must be an object")
        default: ThreadTTL | None = None
        if ttl.get("default_ttl") is not None:
            try:
                default = ThreadTTL.checked(
                    ttl["default_ttl"], ttl.get("strategy", ThreadTTLStrategy.DELETE)
                )
            except BadUserInput as exc:
                raise ConfigError(f"checkpointer.ttl: {exc.message}") from None
        interval = ttl.get("sweep_interval_minutes", DEFAULT_SWEEP_INTERVAL_MINUTES)
        limit = ttl.get("sweep_limit", DEFAULT_SWEEP_LIMIT)
        if isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0:
            raise ConfigError("checkpointer.ttl.sweep_interval_minutes must be a positive number")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            raise ConfigError("checkpointer.ttl.sweep_limit must be a positive integer")
        return cls(default=default, sweep_interval_seconds=float(interval) * 60, sweep_limit=limit)


def ttl_of(row: Any) -> ThreadTTL | None:
    """The TTL a thread row carries, if any."""
    if row.ttl_minutes is None:
        return None
    return ThreadTTL(row.ttl_minutes, ThreadTTLStrategy(row.ttl_strategy or "delete"))


def expires_at(row: Any) -> datetime | None:
    """When the thread expires if nothing touches it: its TTL after its last change."""
    ttl = ttl_of(row)
    if ttl is None:
        return None
    return ttl.deadline(max(row.updated_at, row.state_updated_at))

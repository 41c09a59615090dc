"""What a worker's attempt at a run is observed by, in one place: its metrics (started, active,
queue wait, end and duration), the run's ids on every log line, and its span."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from app.observability import logs, metrics, tracing

__all__ = ["attempt", "attempt_ended"]

_current: contextvars.ContextVar[metrics.Attempt | None] = contextvars.ContextVar(
    "lgql_attempt", default=None
)


@contextlib.contextmanager
def attempt(
    *,
    run_id: str,
    thread_id: str,
    assistant_id: str,
    graph_id: str,
    attempt: int,
    due_at: datetime | None,
    kwargs: dict[str, Any],
) -> Iterator[None]:
    """Around one attempt at a run, in the task that executes it (tasks it starts inherit it)."""
    observed = metrics.Attempt(graph_id, due_at)
    token = _current.set(observed)
    try:
        with (
            logs.run_context(run_id, thread_id, graph_id),
            tracing.run_span(
                run_id=run_id,
                thread_id=thread_id,
                assistant_id=assistant_id,
                graph_id=graph_id,
                attempt=attempt,
                trace_context=kwargs.get(tracing.TRACE_CONTEXT_KEY),
            ),
        ):
            yield
    finally:
        _current.reset(token)
        observed.close()


def attempt_ended(status: str) -> None:
    """The current attempt's run ended with `status` (recorded in the database). Outside an
    attempt (a sweep ending a run whose worker died) it counts under graph `unknown`."""
    observed = _current.get()
    if observed is None:
        metrics.run_ended("unknown", status)
        return
    observed.ended(status)
    tracing.run_status(status)

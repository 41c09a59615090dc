"""One log set-up for every lgql process: lgql's loggers, uvicorn's, arq's and Alembic's all go
through the root logger's one handler, in one format.

`LGQL_LOG_FORMAT=json` writes one JSON object a line (`time`, `level`, `logger`, `message`, and
`run_id`/`thread_id`/`graph_id` on every line logged while a run executes, a graph's own logging
included: the worker binds them for the attempt's task with `run_context`, and tasks the graph
starts inherit them). The default is one text line: `time LEVEL logger: message`.

Quiet at INFO: Alembic's plugin and context lines, arq's per-job lines and its shutdown notice
(`shutdown on SIGUSR1` when `lgql dev` stops its in-process worker), and httpx's request lines
(webhook deliveries) show only at DEBUG; lgql says what matters itself (the migration done, the
worker ready and what it serves).
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import orjson

__all__ = ["FORMATS", "JsonFormatter", "configure", "current_run", "run_context"]

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Chatty below WARNING and saying nothing an operator acts on (see the module docstring).
_QUIET = ("alembic", "arq", "httpx", "httpcore")

_run: contextvars.ContextVar[tuple[str, str, str] | None] = contextvars.ContextVar(
    "lgql_run", default=None
)


@contextmanager
def run_context(run_id: str, thread_id: str, graph_id: str) -> Iterator[None]:
    """Every line logged in this task (and the tasks it starts) while inside carries the run."""
    token = _run.set((run_id, thread_id, graph_id))
    try:
        yield
    finally:
        _run.reset(token)


def current_run() -> tuple[str, str, str] | None:
    """(run_id, thread_id, graph_id) of the run this task executes, if any."""
    return _run.get()


def _plain_names(record: logging.LogRecord) -> bool:
    # uvicorn logs its life ("Started server process") as `uvicorn.error`: no error at all.
    if record.name == "uvicorn.error":
        record.name = "uvicorn"
    return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line, with the run's ids when a run is executing."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        run = _run.get()
        if run is not None:
            line["run_id"], line["thread_id"], line["graph_id"] = run
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()


def configure(level: str = "INFO", log_format: str = "text") -> None:
    """Make the root logger's one handler (stderr) the only place lines go, in `log_format`
    (`text` or `json`: `LGQL_LOG_FORMAT`). Called once by each `lgql` command; calling it again
    replaces the handler (no line is written twice)."""
    log_format = log_format.lower()
    if log_format not in FORMATS:
        raise ValueError(f"LGQL_LOG_FORMAT must be one of {', '.join(FORMATS)}, not {log_format!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_plain_names)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    root.setLevel(numeric)
    # Python's warnings too, as log lines (`py.warnings`), not bare text on stderr.
    logging.captureWarnings(True)
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
    # uvicorn's loggers keep their own level (the one `lgql` passes it) and reach the root
    # handler: `lgql` runs uvicorn with `log_config=None`, so no handler of uvicorn's own.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.propagate = True

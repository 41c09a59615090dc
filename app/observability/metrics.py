"""lgql's Prometheus metrics (prometheus-client), and their exposition.

Every metric is named `lgql_…` (counters end `_total`, times are `_seconds`), and label values
come from small fixed sets (statuses, outcomes, operation types, transports) or from the graphs
langgraph.json names: never an id. docs/observability.md says what each one means.

Hooks are one line where the measured thing happens, and cost a counter increment or a histogram
observation (a lock and a float add; no allocation once a label's child exists). Figures read
from elsewhere (the queue in Postgres, the connection pools) are sampled only when scraped, by
the `Sampler`s the process registers (`register_sampler`); the queue's figures come from a
service that reads Postgres at most every few seconds.

Multiprocess: with `PROMETHEUS_MULTIPROC_DIR` set (before the process starts, to an empty folder
shared by the processes of one host), prometheus-client keeps every value in a memory-mapped file
per process, and a scrape of any of them returns the sum over all of them (gauges as declared
below: live sums, or the most recent value for figures every process reads alike). Without it,
each process exposes its own values from memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

__all__ = [
    "CONTENT_TYPE",
    "MULTIPROCESS",
    "exposition",
    "register_sampler",
]

log = logging.getLogger("lgql.metrics")

#: prometheus-client chooses its value store when it is first imported, from this variable.
MULTIPROCESS = bool(
    os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")
)
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Runs last from milliseconds (a tool call) to hours (an agent left working).
_RUN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 14400)
_WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
_API_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

# --- runs ------------------------------------------------------------------------------------

RUNS_CREATED = Counter("lgql_runs_created", "Runs created (API, crons), by graph.", ["graph_id"])
RUNS_STARTED = Counter(
    "lgql_runs_started",
    "Run attempts a worker started (a run retried after a crash starts again), by graph.",
    ["graph_id"],
)
RUNS_ENDED = Counter(
    "lgql_runs_ended",
    "Runs ended, by graph and status (success, error, timeout, interrupted, rollback).",
    ["graph_id", "status"],
)
RUN_DURATION = Histogram(
    "lgql_run_duration_seconds",
    "Time from a worker starting a run's attempt to recording its end, by graph and status.",
    ["graph_id", "status"],
    buckets=_RUN_BUCKETS,
)
RUN_QUEUE_WAIT = Histogram(
    "lgql_run_queue_wait_seconds",
    "Time a run waited between becoming due and a worker starting it, by graph.",
    ["graph_id"],
    buckets=_WAIT_BUCKETS,
)
RUNS_PENDING = Gauge(
    "lgql_runs_pending",
    "Runs due and not started (the queue's depth; from Postgres, a few seconds old at most).",
    multiprocess_mode="mostrecent",
)
RUNS_RUNNING = Gauge(
    "lgql_runs_running",
    "Runs a worker is executing, cluster-wide (from Postgres, a few seconds old at most).",
    multiprocess_mode="mostrecent",
)
OLDEST_PENDING_AGE = Gauge(
    "lgql_oldest_pending_run_age_seconds",
    "How long the longest-waiting due run has waited (0 when none waits).",
    multiprocess_mode="mostrecent",
)

# --- workers ---------------------------------------------------------------------------------

WORKER_ACTIVE_RUNS = Gauge(
    "lgql_worker_active_runs",
    "Runs this worker is executing now.",
    multiprocess_mode="livesum",
)
WORKER_SLOTS = Gauge(
    "lgql_worker_slots",
    "Runs this worker may execute at once (N_JOBS_PER_WORKER).",
    multiprocess_mode="livesum",
)

# --- API -------------------------------------------------------------------------------------

SUBSCRIPTIONS = Gauge(
    "lgql_subscriptions_active",
    "GraphQL subscriptions open now, by transport (websocket, sse, multipart).",
    ["transport"],
    multiprocess_mode="livesum",
)
GRAPHQL_OPERATIONS = Counter(
    "lgql_graphql_operations",
    "GraphQL operations, by type (query, mutation, subscription, unknown) and outcome "
    "(success; error: an error in the result; rejected: refused before execution).",
    ["operation_type", "outcome"],
)
GRAPHQL_DURATION = Histogram(
    "lgql_graphql_operation_duration_seconds",
    "Time to answer a query or mutation (subscriptions are not timed: they last as long as "
    "their client listens).",
    ["operation_type"],
    buckets=_API_BUCKETS,
)

# --- streams, webhooks, crons ----------------------------------------------------------------

STREAM_EVENTS = Counter(
    "lgql_stream_events_written", "Run events written to the Redis streams subscribers read."
)
WEBHOOK_DELIVERIES = Counter(
    "lgql_webhook_deliveries",
    "Webhook delivery attempts, by outcome (sent, retry, failed: given up).",
    ["outcome"],
)
CRON_FIRINGS = Counter(
    "lgql_cron_firings",
    "Cron firings, by outcome (started: its run created; failed: it could not fire).",
    ["outcome"],
)

# --- persistence -----------------------------------------------------------------------------

CHECKPOINTER_SECONDS = Histogram(
    "lgql_checkpointer_operation_seconds",
    "Latency of the checkpointer's statements, by operation (get, write).",
    ["operation"],
    buckets=_DB_BUCKETS,
)
STORE_SECONDS = Histogram(
    "lgql_store_operation_seconds",
    "Latency of store batches, by operation (get, search, put, list_namespaces; batch when "
    "one call mixes them).",
    ["operation"],
    buckets=_DB_BUCKETS,
)

# --- connections -----------------------------------------------------------------------------

DB_POOL_CONNECTIONS = Gauge(
    "lgql_db_pool_connections",
    "Connections of the Postgres pool, by state (in_use, idle).",
    ["state"],
    multiprocess_mode="livesum",
)
DB_POOL_MAX = Gauge(
    "lgql_db_pool_max_connections",
    "Most connections the Postgres pool may open.",
    multiprocess_mode="livesum",
)
REDIS_CONNECTIONS = Gauge(
    "lgql_redis_connections",
    "Connections of the Redis pool, by state (in_use, idle).",
    ["state"],
    multiprocess_mode="livesum",
)

# Children built once: the hot paths pay no label lookup.
_CHECKPOINT_GET = CHECKPOINTER_SECONDS.labels("get")
_CHECKPOINT_WRITE = CHECKPOINTER_SECONDS.labels("write")
_CHECKPOINT_WRITE_AT_END = CHECKPOINTER_SECONDS.labels("write_at_end")


# --- hooks -----------------------------------------------------------------------------------


def run_created(graph_id: str) -> None:
    RUNS_CREATED.labels(graph_id).inc()


def run_ended(graph_id: str, status: str, seconds: float | None = None) -> None:
    """A run's end recorded (`seconds`: its attempt's duration, when a worker ran it)."""
    RUNS_ENDED.labels(graph_id, status).inc()
    if seconds is not None:
        RUN_DURATION.labels(graph_id, status).observe(seconds)


class Attempt:
    """A worker's attempt at a run, while it executes: counts it started and active, and its
    end (`ended`) with its duration. `run_context` in `app.observability.logs` and the run's span
    (`app.observability.tracing`) go with it (`app.observability.runs.attempt`)."""

    __slots__ = ("ended_status", "graph_id", "started")

    def __init__(self, graph_id: str, due_at: datetime | None) -> None:
        self.graph_id = graph_id
        self.started = time.perf_counter()
        self.ended_status: str | None = None
        RUNS_STARTED.labels(graph_id).inc()
        if due_at is not None:
            RUN_QUEUE_WAIT.labels(graph_id).observe(max(0.0, time.time() - due_at.timestamp()))
        WORKER_ACTIVE_RUNS.inc()

    def ended(self, status: str) -> None:
        if self.ended_status is None:
            self.ended_status = status
            run_ended(self.graph_id, status, time.perf_counter() - self.started)

    def close(self) -> None:
        WORKER_ACTIVE_RUNS.dec()


def worker_slots(slots: int) -> None:
    """A worker started in this process (`lgql dev`'s, or `lgql worker`'s) with `slots`."""
    WORKER_SLOTS.inc(slots)


def worker_stopped(slots: int) -> None:
    WORKER_SLOTS.dec(slots)


def graphql_operation(operation_type: str, outcome: str, seconds: float | None) -> None:
    GRAPHQL_OPERATIONS.labels(operation_type, outcome).inc()
    if seconds is not None:
        GRAPHQL_DURATION.labels(operation_type).observe(seconds)


def stream_events(count: int) -> None:
    STREAM_EVENTS.inc(count)


def webhook_delivery(status: str) -> None:
    """`status`: the delivery's after the attempt (sent, pending: a retry follows, failed)."""
    WEBHOOK_DELIVERIES.labels("retry" if status == "pending" else status).inc()


def cron_fired(outcome: str) -> None:
    CRON_FIRINGS.labels(outcome).inc()


def checkpoint_get() -> Timer:
    return Timer(_CHECKPOINT_GET)


def checkpoint_write() -> Timer:
    return Timer(_CHECKPOINT_WRITE)


def checkpoint_write_at_end() -> Timer:
    """The call that ends a run and writes its last batch of checkpoints with it."""
    return Timer(_CHECKPOINT_WRITE_AT_END)


def store_batch(operation: str) -> Timer:
    return Timer(STORE_SECONDS.labels(operation))


class Timer:
    """`with metrics.checkpoint_write():` observes the block's duration (errors included)."""

    __slots__ = ("_histogram", "_start")

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram
        self._start = 0.0

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self._histogram.observe(time.perf_counter() - self._start)


# --- sampled at scrape time ------------------------------------------------------------------

#: Sets gauges from what it reads (the queue's figures, the pools' sizes) right before a scrape.
Sampler = Callable[[], Awaitable[None]]


class ConnectionPool(Protocol):
    """What is sampled of an asyncpg pool."""

    def get_size(self) -> int: ...
    def get_idle_size(self) -> int: ...
    def get_max_size(self) -> int: ...


class QueueFigures(Protocol):
    """What is sampled of the queue (`app.db.queue_stats.QueueStats`)."""

    @property
    def pending(self) -> int: ...
    @property
    def running(self) -> int: ...
    @property
    def oldest_pending_seconds(self) -> float | None: ...


#: (sampler, whether it samples this process's own state): the queue is the same whichever
#: process reads it, and is read only for a scrape; a process's pools are its own.
_samplers: list[tuple[Sampler, bool]] = []


def register_sampler(sampler: Sampler, *, own: bool) -> Callable[[], None]:
    """Run `sampler` before each scrape this process answers; `own` (it samples this process's
    own state): in multiprocess mode also every few seconds (`sample_forever`), as another
    process may answer the scrapes. Returns its unregistration."""
    entry = (sampler, own)
    _samplers.append(entry)

    def unregister() -> None:
        with contextlib.suppress(ValueError):
            _samplers.remove(entry)

    return unregister


async def sample(*, own_only: bool = False) -> None:
    for sampler, own in list(_samplers):
        if own_only and not own:
            continue
        try:
            await sampler()
        except Exception as exc:  # a scrape during an outage still answers, with what it has
            log.debug("metrics sampler failed: %s: %s", type(exc).__name__, exc)


async def sample_forever(interval: float = 5.0) -> None:
    """In multiprocess mode, keep this process's own gauges (its pools) fresh for the scrapes
    another process answers."""
    while True:
        await sample(own_only=True)
        await asyncio.sleep(interval)


def pool_sampler(db_pool: ConnectionPool, redis: object) -> Sampler:
    """Samples an asyncpg pool and a redis-py client's connection pool (redis-py keeps its
    counts in private attributes: read defensively)."""

    async def sampler() -> None:
        redis_pool = getattr(redis, "connection_pool", None)
        size, idle = db_pool.get_size(), db_pool.get_idle_size()
        DB_POOL_CONNECTIONS.labels("in_use").set(size - idle)
        DB_POOL_CONNECTIONS.labels("idle").set(idle)
        DB_POOL_MAX.set(db_pool.get_max_size())
        REDIS_CONNECTIONS.labels("in_use").set(len(getattr(redis_pool, "_in_use_connections", ())))
        REDIS_CONNECTIONS.labels("idle").set(len(getattr(redis_pool, "_available_connections", ())))

    return sampler


def queue_sampler(read_queue: Callable[[], Awaitable[QueueFigures]]) -> Sampler:
    """Samples the queue's figures from `read_queue`: a service that reads Postgres at most every
    few seconds (`SystemService.queue`)."""

    async def sampler() -> None:
        stats = await read_queue()
        RUNS_PENDING.set(stats.pending)
        RUNS_RUNNING.set(stats.running)
        OLDEST_PENDING_AGE.set(stats.oldest_pending_seconds or 0.0)

    return sampler


def watch(
    db_pool: ConnectionPool,
    redis: object,
    read_queue: Callable[[], Awaitable[QueueFigures]] | None,
) -> Callable[[], None]:
    """Sample a process's pools (and, given `read_queue`, the queue) for the scrapes it answers;
    returns the function that stops it. Call it on the event loop."""
    undo = [register_sampler(pool_sampler(db_pool, redis), own=True)]
    if read_queue is not None:
        undo.append(register_sampler(queue_sampler(read_queue), own=False))
    task = (
        asyncio.create_task(sample_forever(), name="lgql-metrics-sampler") if MULTIPROCESS else None
    )

    def stop() -> None:
        for step in undo:
            step()
        if task is not None:
            task.cancel()

    return stop


async def exposition() -> bytes:
    """The text a scrape gets: this process's metrics, or every process's in multiprocess mode."""
    await sample()
    if not MULTIPROCESS:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    # Reads one file per process: off the event loop.
    return await asyncio.to_thread(generate_latest, registry)


def process_exiting() -> None:
    """In multiprocess mode, drop this process's live gauges (its active runs, its pools)."""
    if MULTIPROCESS:
        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(os.getpid())

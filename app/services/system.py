"""What this server is and whether it can serve: health (`/ok`), readiness (`/ready`), and the
status `/info` and `serverInfo` report (version, graphs, workers, queue depth)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from importlib.metadata import version

import redis.asyncio as aioredis
from sqlalchemy import text

from app import __version__
from app.db.engine import Database
from app.db.queue_stats import QueueStats, queue_stats
from app.messaging.heartbeats import WorkerCensus, worker_census
from app.runtime.graphs import GraphRegistry, default_assistant_id

#: `/info` and `serverInfo` may be polled often (dashboards, autoscalers): the queue's figures are
#: read from Postgres at most this often per process.
QUEUE_STATS_MAX_AGE_SECONDS = 2.0


@dataclass(frozen=True)
class GraphSummary:
    graph_id: str
    description: str | None
    default_assistant_id: str


@dataclass(frozen=True)
class ServerStatus:
    version: str
    langgraph_version: str
    graphs: list[GraphSummary]
    workers: WorkerCensus
    queue: QueueStats


@dataclass(frozen=True)
class Readiness:
    services: dict[str, str]
    workers: WorkerCensus | None
    problems: list[str]

    @property
    def ready(self) -> bool:
        return not self.problems


class SystemService:
    def __init__(self, db: Database, redis: aioredis.Redis, prefix: str, graphs: GraphRegistry):
        self.db = db
        self.redis = redis
        self.prefix = prefix
        self.graphs = graphs
        self._queue: tuple[float, QueueStats] | None = None
        self._queue_lock = asyncio.Lock()

    async def health(self, *, check_db: bool = False) -> dict[str, str]:
        """Reachability of Postgres and Redis: "ok" or "error: <kind>" each. `check_db` also runs
        a query through the ORM's pool (besides the raw pool's): both must hand out working
        connections."""
        status: dict[str, str] = {}
        try:
            async with self.db.pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
            if check_db:
                async with self.db.engine.connect() as orm:
                    await orm.execute(text("SELECT 1"))
            status["postgres"] = "ok"
        except Exception as exc:  # reported, not raised: /ok must answer even when a store is down
            status["postgres"] = f"error: {type(exc).__name__}"
        try:
            await self.redis.ping()
            status["redis"] = "ok"
        except Exception as exc:
            status["redis"] = f"error: {type(exc).__name__}"
        return status

    async def readiness(self) -> Readiness:
        """Whether runs can be served end to end: this process reaches Postgres and Redis, and at
        least one worker is alive, reaching both and beating (a worker cut off from Redis has
        no heartbeat; one cut off from Postgres says so in it)."""
        health = await self.health()
        problems = [f"{name} unreachable" for name, v in health.items() if v != "ok"]
        workers: WorkerCensus | None = None
        if health.get("redis") == "ok":
            try:
                workers = await worker_census(self.redis, self.prefix)
            except Exception as exc:  # reported, not raised, as in /ok
                problems.append(f"workers unknown: {type(exc).__name__}")
            else:
                if workers.live == 0:
                    problems.append("no worker is reachable")
                elif workers.fresh == 0:
                    problems.append("no worker has a fresh heartbeat (stuck workers?)")
                elif workers.ready == 0:
                    problems.append("no worker reaches Postgres")
        return Readiness(services=health, workers=workers, problems=problems)

    async def workers(self) -> WorkerCensus:
        return await worker_census(self.redis, self.prefix)

    async def queue(self) -> QueueStats:
        """Runs waiting and executing, at most `QUEUE_STATS_MAX_AGE_SECONDS` old."""
        cached = self._queue
        if cached is not None and time.monotonic() - cached[0] < QUEUE_STATS_MAX_AGE_SECONDS:
            return cached[1]
        async with self._queue_lock:  # one query for a burst of callers
            cached = self._queue
            if cached is not None and time.monotonic() - cached[0] < QUEUE_STATS_MAX_AGE_SECONDS:
                return cached[1]
            stats = await queue_stats(self.db.pool)
            self._queue = (time.monotonic(), stats)
            return stats

    def graph_summaries(self) -> list[GraphSummary]:
        return [
            GraphSummary(
                graph_id=g,
                description=self.graphs.info(g).description,
                default_assistant_id=str(default_assistant_id(g)),
            )
            for g in self.graphs.graph_ids
        ]

    async def status(self) -> ServerStatus:
        workers, queue = await asyncio.gather(self.workers(), self.queue())
        return ServerStatus(
            version=__version__,
            langgraph_version=version("langgraph"),
            graphs=self.graph_summaries(),
            workers=workers,
            queue=queue,
        )

"""`ServerInfo`: what this server is and serves, its workers and its queue."""

from __future__ import annotations

from typing import Any

import strawberry

from app.services.system import GraphSummary
from schema.context import Context, services

Info = strawberry.Info[Context, Any]


@strawberry.type(description="A graph declared in langgraph.json.")
class GraphInfo:
    graph_id: str
    description: str | None
    default_assistant_id: strawberry.ID = strawberry.field(
        description="The id of the assistant created for this graph at start-up (as LangGraph Server's)."
    )

    @classmethod
    def from_summary(cls, summary: GraphSummary) -> GraphInfo:
        return cls(
            graph_id=summary.graph_id,
            description=summary.description,
            default_assistant_id=strawberry.ID(summary.default_assistant_id),
        )


@strawberry.type(description="Workers, as their heartbeats in Redis tell.")
class WorkerCount:
    live: int = strawberry.field(description="Workers whose heartbeat has not expired.")
    ready: int = strawberry.field(
        description="Workers reaching Postgres and Redis, with a heartbeat of the last 15 seconds."
    )


@strawberry.type(description="Runs waiting for a worker and runs executing (a few seconds old).")
class QueueDepth:
    pending: int = strawberry.field(description="Runs due (not delayed) that no worker started.")
    running: int = strawberry.field(description="Runs a worker is executing.")
    oldest_pending_seconds: float | None = strawberry.field(
        description="How long the longest-waiting due run has waited; null when none waits."
    )


@strawberry.type(description="The server's version and graphs, its workers and its queue.")
class ServerInfo:
    version: str
    langgraph_version: str
    graphs: list[GraphInfo]

    @strawberry.field(description="Workers serving this server's queue.")
    async def workers(self, info: Info) -> WorkerCount:
        census = await services(info).system.workers()
        return WorkerCount(live=census.live, ready=census.ready)

    @strawberry.field(description="Runs waiting and executing, across all servers and workers.")
    async def queue(self, info: Info) -> QueueDepth:
        stats = await services(info).system.queue()
        return QueueDepth(
            pending=stats.pending,
            running=stats.running,
            oldest_pending_seconds=stats.oldest_pending_seconds,
        )

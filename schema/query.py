"""Root `Query`: thin resolvers that call services."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import strawberry

from app import __version__
from schema.context import Context, services
from schema.cron_fields import CronQueries
from schema.pagination import Connection, connection, page_request
from schema.scalars import JSON
from schema.store_fields import StoreQueries
from schema.types.assistant import Assistant, AssistantFilter, AssistantSortBy
from schema.types.common import SortOrder
from schema.types.run import Run, RunStatus
from schema.types.server_info import GraphInfo, ServerInfo
from schema.types.thread import Thread, ThreadFilter, ThreadSortBy

Info = strawberry.Info[Context, Any]


@strawberry.type
class Query(CronQueries, StoreQueries):
    @strawberry.field(
        description="An assistant by id, or a graph id for that graph's default assistant."
    )
    async def assistant(self, info: Info, id: strawberry.ID) -> Assistant | None:
        return Assistant.from_record(await services(info).assistants.get(str(id)))

    @strawberry.field(description="Assistants matching `filter`, newest first by default.")
    async def assistants(
        self,
        info: Info,
        filter: AssistantFilter | None = None,
        sort_by: AssistantSortBy = AssistantSortBy.CREATED_AT,
        sort_order: SortOrder = SortOrder.DESC,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[Assistant]:
        svc = services(info).assistants
        flt = (filter or AssistantFilter()).to_service()
        page = await svc.search(
            flt, page_request(first, after), sort_by=sort_by.value, order=sort_order.to_service()
        )
        return connection(page, Assistant.from_record, lambda: svc.count(flt))

    @strawberry.field(description="A thread by id.")
    async def thread(self, info: Info, id: strawberry.ID) -> Thread | None:
        return Thread.from_record(await services(info).threads.get(str(id)))

    @strawberry.field(description="Threads matching `filter`, newest first by default.")
    async def threads(
        self,
        info: Info,
        filter: ThreadFilter | None = None,
        sort_by: ThreadSortBy = ThreadSortBy.CREATED_AT,
        sort_order: SortOrder = SortOrder.DESC,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[Thread]:
        svc = services(info).threads
        flt = (filter or ThreadFilter()).to_service()
        page = await svc.search(
            flt, page_request(first, after), sort_by=sort_by.value, order=sort_order.to_service()
        )
        return connection(page, Thread.from_record, lambda: svc.count(flt))

    @strawberry.field(description="A run by id.")
    async def run(self, info: Info, id: strawberry.ID) -> Run | None:
        return Run.from_record(await services(info).runs.get(str(id)))

    @strawberry.field(description="Runs, newest first; of one thread with `threadId`.")
    async def runs(
        self,
        info: Info,
        thread_id: strawberry.ID | None = None,
        status: RunStatus | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[Run]:
        svc = services(info).runs
        tid = str(thread_id) if thread_id is not None else None
        state = status.name.lower() if status else None
        page = await svc.search(page_request(first, after), thread_id=tid, status=state)
        return connection(page, Run.from_record, lambda: svc.count(thread_id=tid, status=state))

    @strawberry.field(description="This server's version and graphs.")
    def server_info(self, info: Info) -> ServerInfo:
        graphs = services(info).graphs
        return ServerInfo(
            version=__version__,
            langgraph_version=version("langgraph"),
            graphs=[
                GraphInfo(
                    graph_id=g,
                    description=graphs.info(g).description,
                    default_assistant_id=strawberry.ID(
                        str(services(info).assistants.resolve_id(g))
                    ),
                )
                for g in graphs.graph_ids
            ],
        )


# Kept importable for type annotations elsewhere.
__all__ = ["JSON", "Query"]

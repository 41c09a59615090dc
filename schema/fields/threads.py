"""Root fields for threads (`ThreadQueries`, `ThreadMutations`): thin resolvers over
`ThreadService`."""

from __future__ import annotations

from typing import Any

import strawberry

from app.services.common import UNSET, Unset
from app.services.thread_ttl import ThreadTTL
from schema.context import Context, services
from schema.pagination import Connection, connection, page_request
from schema.scalars import JSON
from schema.types.common import SortOrder
from schema.types.state import Checkpoint
from schema.types.thread import (
    CreateThreadInput,
    PruneStrategy,
    Thread,
    ThreadFilter,
    ThreadSortBy,
    ThreadStateUpdate,
    UpdateThreadInput,
)

Info = strawberry.Info[Context, Any]


@strawberry.type
class ThreadQueries:
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
            flt, page_request(first, after), sort_by=sort_by.value, order=sort_order
        )
        return connection(page, Thread.from_record, lambda: svc.count(flt))


@strawberry.type
class ThreadMutations:
    @strawberry.mutation(
        description="Create a thread (idle, no state yet; with `supersteps`, their state)."
    )
    async def create_thread(self, info: Info, input: CreateThreadInput | None = None) -> Thread:
        data = input or CreateThreadInput()
        seeded = await services(info).threads.create_seeded(
            [[w.to_service() for w in step.updates] for step in data.supersteps or ()],
            thread_id=str(data.thread_id) if data.thread_id else None,
            metadata=data.metadata,
            if_exists=data.if_exists,
            graph_id=data.graph_id,
            ttl=data.ttl.to_service() if data.ttl else None,
            idempotency_key=data.idempotency_key,
        )
        if seeded.problem is not None:
            raise seeded.problem
        return Thread.from_record(seeded.thread)

    @strawberry.mutation(
        description="Prune threads (LangGraph `threads.prune`): DELETE removes each with its runs, "
        "crons and checkpoints; KEEP_LATEST keeps each thread with only its latest checkpoint. "
        "Returns how many were pruned (absent ones, or not yours, are skipped)."
    )
    async def prune_threads(
        self,
        info: Info,
        thread_ids: list[strawberry.ID],
        strategy: PruneStrategy = PruneStrategy.DELETE,
    ) -> int:
        return await services(info).threads.prune(
            [str(t) for t in thread_ids], strategy=strategy.name.lower()
        )

    @strawberry.mutation(description="Update a thread's metadata (merged) and time-to-live.")
    async def update_thread(
        self, info: Info, id: strawberry.ID, input: UpdateThreadInput
    ) -> Thread:
        ttl: ThreadTTL | Unset | None = UNSET
        if input.ttl is not None:  # given: a new TTL, or null to remove it
            ttl = input.ttl.value.to_service() if input.ttl.value else None
        record = await services(info).threads.update(str(id), metadata=input.metadata, ttl=ttl)
        return Thread.from_record(record)

    @strawberry.mutation(
        description="Delete a thread with its runs, crons and checkpoints. Returns its id."
    )
    async def delete_thread(self, info: Info, id: strawberry.ID) -> strawberry.ID:
        return strawberry.ID(str(await services(info).threads.delete(str(id))))

    @strawberry.mutation(
        description="Copy a thread: a new id with the same metadata and state history."
    )
    async def copy_thread(self, info: Info, id: strawberry.ID) -> Thread:
        return Thread.from_record(await services(info).threads.copy(str(id)))

    @strawberry.mutation(
        description="Update a thread's state as if `asNode` had run (LangGraph `update_state`), making a "
        "new checkpoint; from `checkpointId` to fork an earlier one; a subgraph's state with "
        "`checkpointNs` (its namespace; `asNode` is then one of its nodes) and `checkpointMap`."
    )
    async def update_thread_state(
        self,
        info: Info,
        thread_id: strawberry.ID,
        values: JSON | None = None,
        as_node: str | None = None,
        checkpoint_id: str | None = None,
        checkpoint_ns: str = "",
        checkpoint_map: JSON | None = None,
    ) -> ThreadStateUpdate:
        svc = services(info).threads
        result = await svc.update_state(
            str(thread_id),
            values=values,
            as_node=as_node,
            checkpoint_id=checkpoint_id,
            checkpoint_ns=checkpoint_ns,
            checkpoint_map=checkpoint_map,
        )
        thread = await svc.get(str(thread_id))
        return ThreadStateUpdate(
            checkpoint=Checkpoint.from_dict(result["checkpoint"]), thread=Thread.from_record(thread)
        )

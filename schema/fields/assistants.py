"""Root fields for assistants (`AssistantQueries`, `AssistantMutations`): thin resolvers over
`AssistantService`."""

from __future__ import annotations

from typing import Any

import strawberry

from app.services.common import UNSET
from schema.context import Context, services
from schema.pagination import Connection, connection, page_request
from schema.types.assistant import (
    Assistant,
    AssistantFilter,
    AssistantSortBy,
    CreateAssistantInput,
    UpdateAssistantInput,
)
from schema.types.common import SortOrder

Info = strawberry.Info[Context, Any]


@strawberry.type
class AssistantQueries:
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
            flt, page_request(first, after), sort_by=sort_by.value, order=sort_order
        )
        return connection(page, Assistant.from_record, lambda: svc.count(flt))


@strawberry.type
class AssistantMutations:
    @strawberry.mutation(description="Create an assistant (version 1).")
    async def create_assistant(self, info: Info, input: CreateAssistantInput) -> Assistant:
        record = await services(info).assistants.create(
            graph_id=input.graph_id,
            assistant_id=str(input.assistant_id) if input.assistant_id else None,
            config=input.config,
            context=input.context,
            metadata=input.metadata,
            name=input.name,
            description=input.description,
            if_exists=input.if_exists,
            idempotency_key=input.idempotency_key,
        )
        return Assistant.from_record(record)

    @strawberry.mutation(
        description="Update an assistant: saves a new version and makes it current."
    )
    async def update_assistant(
        self, info: Info, id: strawberry.ID, input: UpdateAssistantInput
    ) -> Assistant:
        record = await services(info).assistants.update(
            str(id),
            graph_id=input.graph_id,
            config=input.config,
            context=input.context,
            metadata=input.metadata,
            name=input.name,
            description=input.description.value if input.description is not None else UNSET,
        )
        return Assistant.from_record(record)

    @strawberry.mutation(description="Make an earlier version of an assistant the current one.")
    async def set_assistant_latest_version(
        self, info: Info, id: strawberry.ID, version: int
    ) -> Assistant:
        return Assistant.from_record(
            await services(info).assistants.set_latest_version(str(id), version)
        )

    @strawberry.mutation(
        description="Delete an assistant and all its versions. Returns its id. With "
        "`deleteThreads`, also the threads its runs stamped with its id (`metadata.assistant_id`), "
        "as LangGraph Server's `delete_threads`."
    )
    async def delete_assistant(
        self, info: Info, id: strawberry.ID, delete_threads: bool = False
    ) -> strawberry.ID:
        aid = await services(info).assistants.delete(str(id))
        if delete_threads:
            await services(info).threads.delete_of_assistant(aid)
        return strawberry.ID(str(aid))

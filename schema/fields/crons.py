"""Root fields for crons (`CronQueries`, `CronMutations`): thin resolvers over `CronService`."""

from __future__ import annotations

from typing import Any

import strawberry

from schema.context import Context, services
from schema.pagination import Connection, connection, page_request
from schema.types.common import SortOrder
from schema.types.cron import CreateCronInput, Cron, CronFilter, CronSortBy, UpdateCronInput

Info = strawberry.Info[Context, Any]


@strawberry.type
class CronQueries:
    @strawberry.field(description="A cron by id.")
    async def cron(self, info: Info, id: strawberry.ID) -> Cron | None:
        return Cron.from_record(await services(info).crons.get(str(id)))

    @strawberry.field(description="Crons matching `filter`, newest first by default.")
    async def crons(
        self,
        info: Info,
        filter: CronFilter | None = None,
        sort_by: CronSortBy = CronSortBy.CREATED_AT,
        sort_order: SortOrder = SortOrder.DESC,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[Cron]:
        svc = services(info).crons
        flt = (filter or CronFilter()).to_service()
        page = await svc.search(
            flt, page_request(first, after), sort_by=sort_by.value, order=sort_order
        )
        return connection(page, Cron.from_record, lambda: svc.count(flt))


@strawberry.type
class CronMutations:
    @strawberry.mutation(
        description="Create a cron: a run started on `schedule`, on `threadId` or on a new "
        "thread each time. Its run options are checked now, as a run's would be."
    )
    async def create_cron(self, info: Info, input: CreateCronInput) -> Cron:
        record = await services(info).crons.create(
            assistant_id=input.assistant_id,
            schedule=input.schedule,
            payload=input.payload(),
            thread_id=str(input.thread_id) if input.thread_id is not None else None,
            timezone=input.timezone,
            end_time=input.end_time,
            enabled=input.enabled,
            metadata=input.metadata,
            on_run_completed=input.on_run_completed.value if input.on_run_completed else None,
        )
        return Cron.from_record(record)

    @strawberry.mutation(
        description="Change a cron: run options replace the given keys of its payload, "
        "`metadata` is merged, `endTime: null` clears the end time."
    )
    async def update_cron(self, info: Info, id: strawberry.ID, input: UpdateCronInput) -> Cron:
        record = await services(info).crons.update(
            str(id),
            schedule=input.schedule,
            timezone=input.timezone,
            end_time=input.end_time_change(),
            enabled=input.enabled,
            metadata=input.metadata,
            on_run_completed=input.on_run_completed.value if input.on_run_completed else None,
            payload=input.payload(),
        )
        return Cron.from_record(record)

    @strawberry.mutation(description="Delete a cron (its past runs stay). Returns its id.")
    async def delete_cron(self, info: Info, id: strawberry.ID) -> strawberry.ID:
        return strawberry.ID(str(await services(info).crons.delete(str(id))))

"""Root `Mutation`: thin resolvers that call services."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import strawberry
from starlette.requests import Request

from app.errors import ServiceError
from app.services.common import UNSET, Unset
from app.services.run_execution import record_from_snapshot
from app.services.run_request import OnDisconnect
from app.services.runs import RunService
from app.services.thread_ttl import ThreadTTL
from schema.context import Context, services
from schema.cron_fields import CronMutations
from schema.scalars import JSON
from schema.store_fields import StoreMutations
from schema.types.assistant import Assistant, CreateAssistantInput, UpdateAssistantInput
from schema.types.run import CancelAction, Run, RunError, RunInput, RunResult
from schema.types.state import Checkpoint, Interrupt
from schema.types.thread import CreateThreadInput, Thread, ThreadStateUpdate, UpdateThreadInput

Info = strawberry.Info[Context, Any]


@strawberry.type
class Mutation(CronMutations, StoreMutations):
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
            if_exists=input.if_exists.to_service(),
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

    @strawberry.mutation(description="Delete an assistant and all its versions. Returns its id.")
    async def delete_assistant(self, info: Info, id: strawberry.ID) -> strawberry.ID:
        return strawberry.ID(str(await services(info).assistants.delete(str(id))))

    @strawberry.mutation(description="Create a thread (idle, no state yet).")
    async def create_thread(self, info: Info, input: CreateThreadInput | None = None) -> Thread:
        data = input or CreateThreadInput()
        record = await services(info).threads.create(
            thread_id=str(data.thread_id) if data.thread_id else None,
            metadata=data.metadata,
            if_exists=data.if_exists.to_service(),
            graph_id=data.graph_id,
            ttl=data.ttl.to_service() if data.ttl else None,
            idempotency_key=data.idempotency_key,
        )
        return Thread.from_record(record)

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
        "new checkpoint; from `checkpointId` to fork an earlier one."
    )
    async def update_thread_state(
        self,
        info: Info,
        thread_id: strawberry.ID,
        values: JSON | None = None,
        as_node: str | None = None,
        checkpoint_id: str | None = None,
    ) -> ThreadStateUpdate:
        svc = services(info).threads
        result = await svc.update_state(
            str(thread_id), values=values, as_node=as_node, checkpoint_id=checkpoint_id
        )
        thread = await svc.get(str(thread_id))
        return ThreadStateUpdate(
            checkpoint=Checkpoint.from_dict(result["checkpoint"]), thread=Thread.from_record(thread)
        )

    @strawberry.mutation(description="Start a run in the background; returns it at once (PENDING).")
    async def create_run(self, info: Info, input: RunInput) -> Run:
        return Run.from_record(await services(info).runs.create(input.to_request()))

    @strawberry.mutation(
        description="Start a run and wait for it to end: its final values, its interrupts, or its error."
    )
    async def run_and_wait(self, info: Info, input: RunInput) -> RunResult:
        svc = services(info).runs
        request = input.to_request()
        run = await svc.create(request)
        if request.on_disconnect is not OnDisconnect.CANCEL:
            return run_result(await svc.wait(run))
        watcher = asyncio.create_task(_cancel_on_disconnect(info, svc, str(run.run_id)))
        try:
            return run_result(await svc.wait(run))
        finally:
            watcher.cancel()

    @strawberry.mutation(description="Start a batch of stateless runs in the background.")
    async def create_runs(self, info: Info, inputs: list[RunInput]) -> list[Run]:
        records = await services(info).runs.create_many([i.to_request() for i in inputs])
        return [Run.from_record(r) for r in records]

    @strawberry.mutation(
        description="Cancel a pending or running run and wait for it to stop. INTERRUPT keeps its "
        "progress (the run ends INTERRUPTED); ROLLBACK deletes it with its checkpoints (returns null)."
    )
    async def cancel_run(
        self,
        info: Info,
        id: strawberry.ID,
        action: CancelAction = CancelAction.INTERRUPT,
        wait: bool = True,
    ) -> Run | None:
        record = await services(info).runs.cancel(str(id), action.name.lower(), wait=wait)
        return Run.from_record(record) if record is not None else None

    @strawberry.mutation(description="Delete an ended run and its checkpoints. Returns its id.")
    async def delete_run(self, info: Info, id: strawberry.ID) -> strawberry.ID:
        return strawberry.ID(str(await services(info).runs.delete(str(id))))


def run_result(outcome: dict[str, Any]) -> RunResult:
    record = record_from_snapshot(outcome["run"])
    return RunResult(
        run=Run.from_record(record),
        values=outcome.get("values"),
        interrupts=[Interrupt.from_dict(i) for i in outcome.get("interrupts") or []],
        error=RunError.from_dict(outcome.get("error")),
    )


async def _cancel_on_disconnect(info: Info, svc: RunService, run_id: str) -> None:
    """Cancel the run if the HTTP client of `runAndWait` goes away (`onDisconnect: CANCEL`)."""
    request = info.context.request
    if not isinstance(request, Request):
        return
    # Starlette offers no disconnect event for a request whose body was read: poll it.
    while not await request.is_disconnected():  # noqa: ASYNC110
        await asyncio.sleep(0.5)
    with contextlib.suppress(ServiceError):
        await svc.cancel(run_id, "interrupt", wait=False)

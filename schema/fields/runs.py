"""Root fields for runs (`RunQueries`, `RunMutations`): thin resolvers over `RunService`.
The run subscriptions are in `schema/subscription.py`."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import strawberry
from starlette.requests import Request

from app.errors import ServiceError
from app.services.run_outcome import RunOutcome
from app.services.run_request import OnDisconnect, headers_for_configurable
from app.services.runs import RunService
from schema.context import Context, services
from schema.pagination import Connection, connection, page_request
from schema.types.run import (
    CancelAction,
    CancelRunsStatus,
    Run,
    RunError,
    RunInput,
    RunResult,
    RunStatus,
)
from schema.types.state import Interrupt

Info = strawberry.Info[Context, Any]


@strawberry.type
class RunQueries:
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

    @strawberry.field(
        description="Wait for an existing run to end and return its outcome, as `runAndWait` does "
        "(LangGraph `runs.join`); at once when it has ended."
    )
    async def join_run(self, info: Info, run_id: strawberry.ID) -> RunResult:
        svc = services(info).runs
        return run_result(await svc.wait(await svc.get(str(run_id))))


@strawberry.type
class RunMutations:
    @strawberry.mutation(description="Start a run in the background; returns it at once (PENDING).")
    async def create_run(self, info: Info, input: RunInput) -> Run:
        request = input.to_request(configurable_headers(info))
        return Run.from_record(await services(info).runs.create(request))

    @strawberry.mutation(
        description="Start a run and wait for it to end: its final values, its interrupts, or its error."
    )
    async def run_and_wait(self, info: Info, input: RunInput) -> RunResult:
        svc = services(info).runs
        request = input.to_request(configurable_headers(info))
        run = await svc.create(request, attached=True)
        notice = await services(info).workers.notice(str(run.run_id))
        if notice is not None:  # the client is told, in `extensions.warnings`
            info.context.warnings.append(notice.as_dict())
        if request.on_disconnect is not OnDisconnect.CANCEL:
            return run_result(await svc.wait(run))
        watcher = asyncio.create_task(_cancel_on_disconnect(info, svc, str(run.run_id)))
        try:
            return run_result(await svc.wait(run))
        finally:
            watcher.cancel()

    @strawberry.mutation(description="Start a batch of stateless runs in the background.")
    async def create_runs(self, info: Info, inputs: list[RunInput]) -> list[Run]:
        headers = configurable_headers(info)
        records = await services(info).runs.create_many([i.to_request(headers) for i in inputs])
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

    @strawberry.mutation(
        description="Cancel several active runs without waiting for them to stop (LangGraph "
        "`runs.cancel_many`): those of `runIds`, or of `status`, within `threadId` when given; or "
        "`threadId` alone: all its active runs. Returns the ids of the runs cancelled (ended or "
        "unknown ones are skipped)."
    )
    async def cancel_runs(
        self,
        info: Info,
        thread_id: strawberry.ID | None = None,
        run_ids: list[strawberry.ID] | None = None,
        status: CancelRunsStatus | None = None,
        action: CancelAction = CancelAction.INTERRUPT,
    ) -> list[strawberry.ID]:
        cancelled = await services(info).runs.cancel_many(
            thread_id=str(thread_id) if thread_id is not None else None,
            run_ids=[str(r) for r in run_ids] if run_ids is not None else None,
            status=status.name.lower() if status is not None else None,
            action=action.name.lower(),
        )
        return [strawberry.ID(str(r)) for r in cancelled]

    @strawberry.mutation(description="Delete an ended run and its checkpoints. Returns its id.")
    async def delete_run(self, info: Info, id: strawberry.ID) -> strawberry.ID:
        return strawberry.ID(str(await services(info).runs.delete(str(id))))


def configurable_headers(info: Info) -> dict[str, str]:
    """The headers of the request (HTTP, or a WebSocket's handshake) a new run's config carries,
    as langgraph.json `http.configurable_headers` says (LangGraph Server's rule)."""
    headers = getattr(info.context.request, "headers", None)
    if headers is None:
        return {}
    return headers_for_configurable(headers, services(info).langgraph_config.http)


def run_result(outcome: RunOutcome) -> RunResult:
    return RunResult(
        run=Run.from_ended(outcome.run),
        values=outcome.values,
        interrupts=[Interrupt.from_dict(i) for i in outcome.interrupts],
        error=RunError.of(outcome.error),
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

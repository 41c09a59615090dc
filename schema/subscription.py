"""Root `Subscription`: live run streams (WebSocket, SSE or multipart)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Annotated, Any

import strawberry

from app.services.run_lifecycle import ACTIVE_STATUSES
from app.services.run_streams import ThreadStreamMode, in_thread_modes
from schema.context import Context, services
from schema.fields.runs import configurable_headers
from schema.types.run import RunInput, StreamMode
from schema.types.run_event import RunEvent

Info = strawberry.Info[Context, Any]


def _wanted(modes: list[StreamMode] | None) -> set[StreamMode] | None:
    return set(modes) if modes else None


def _keep(event: RunEvent, wanted: set[StreamMode] | None) -> bool:
    return wanted is None or event.mode is None or event.mode in wanted


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Create a run and stream its events until it ends. `streamMode` and "
        "`streamSubgraphs` override those of `input`."
    )
    async def run_stream(
        self,
        info: Info,
        input: RunInput,
        stream_mode: list[StreamMode] | None = None,
        stream_subgraphs: bool | None = None,
    ) -> AsyncGenerator[RunEvent, None]:
        request = input.to_request(configurable_headers(info))
        if stream_mode:
            request.stream_mode = [m.value for m in stream_mode]
        if stream_subgraphs is not None:
            request.stream_subgraphs = stream_subgraphs
        run, events = await services(info).run_streams.stream_new_run(request)
        notice = await services(info).workers.notice(str(run.run_id))
        if notice is not None:
            yield RunEvent.warning(notice)
        async for event in events:
            yield RunEvent.from_stream(event)

    @strawberry.subscription(
        description="Follow an existing run: its events after `lastEventId` (from its start "
        "without one, while retained), then live until it ends."
    )
    async def join_run_stream(
        self,
        info: Info,
        run_id: strawberry.ID,
        last_event_id: str | None = None,
        stream_mode: list[StreamMode] | None = None,
    ) -> AsyncGenerator[RunEvent, None]:
        wanted = _wanted(stream_mode)
        if not await services(info).workers.alive():
            run = await services(info).runs.get(str(run_id))
            notice = None
            if run.status in ACTIVE_STATUSES:  # it needs a worker to go on
                notice = await services(info).workers.notice(str(run.run_id))
            if notice is not None:
                yield RunEvent.warning(notice)
        async for event in services(info).run_streams.follow_run(
            str(run_id), last_event_id=last_event_id
        ):
            shaped = RunEvent.from_stream(event)
            if _keep(shaped, wanted):
                yield shaped

    @strawberry.subscription(
        description="Follow every run of a thread, in order, including runs created later; "
        "resumes after `lastEventId`. Never ends by itself."
    )
    async def thread_stream(
        self,
        info: Info,
        thread_id: strawberry.ID,
        last_event_id: str | None = None,
        stream_mode: list[StreamMode] | None = None,
        thread_modes: Annotated[
            list[ThreadStreamMode] | None,
            strawberry.argument(
                description="What to show: RUN_MODES (the default), LIFECYCLE, STATE_UPDATE."
            ),
        ] = None,
    ) -> AsyncGenerator[RunEvent, None]:
        wanted = _wanted(stream_mode)
        modes = set(thread_modes or [ThreadStreamMode.RUN_MODES])
        notice = await services(info).workers.notice()
        if notice is not None:
            yield RunEvent.warning(notice)
        async for event in services(info).run_streams.follow_thread(
            str(thread_id), last_event_id=last_event_id
        ):
            if not in_thread_modes(event, modes):
                continue
            shaped = RunEvent.from_stream(event)
            if _keep(shaped, wanted):
                yield shaped

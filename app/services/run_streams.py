"""Following runs' event streams: a run, a new run, or every run of a thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator

from app.db import runs as runs_db
from app.db.engine import Database
from app.event_streams import EventStreams, StreamEvent
from app.services.common import parse_uuid
from app.services.errors import BadUserInput, NotFound
from app.services.run_lifecycle import FINAL_STATUSES
from app.services.run_request import OnDisconnect, RunRequest
from app.services.runs import RunRecord, RunService
from app.services.threads import ThreadService

log = logging.getLogger("lgql.run_streams")


def _check_cursor(last_event_id: str | None) -> str | None:
    if last_event_id is None or last_event_id in ("", "-1", "0", "0-0"):
        return None
    parts = last_event_id.split("-")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise BadUserInput(
            "`lastEventId` must be an event id as sent (`<ms>-<seq>`)", argument="lastEventId"
        )
    return last_event_id


class RunStreamService:
    def __init__(
        self, db: Database, streams: EventStreams, runs: RunService, threads: ThreadService
    ) -> None:
        self._db = db
        self._streams = streams
        self._runs = runs
        self._threads = threads

    async def _status(self, run_id: uuid.UUID) -> str | None:
        async with self._db.sessions() as session:
            run = await runs_db.get(session, run_id)
        return None if run is None else run.status

    async def follow_run(
        self, run_id: str, *, last_event_id: str | None = None
    ) -> AsyncIterator[StreamEvent]:
        """The run's events after `last_event_id` (from the start without one), live until its
        `end` or `error`. Raises NotFound, BadUserInput (cursor)."""
        rid = parse_uuid(run_id, "run")
        cursor = _check_cursor(last_event_id)
        run = await self._runs.get(rid)
        key = self._streams.run_key(str(rid))

        async def ended_and_gone() -> bool:
            status = await self._status(rid)
            return (status is None or status in FINAL_STATUSES) and not await self._streams.exists(
                key
            )

        if await ended_and_gone():
            # Ended longer ago than the retention: only its end is left to tell.
            yield StreamEvent(
                id="0-0",
                run_id=str(rid),
                event="end",
                data={"run_id": str(rid), "status": run.status},
            )
            return
        async for event in self._streams.read(
            key, after=cursor, stop_at_end=True, when_idle=ended_and_gone
        ):
            yield event

    async def stream_new_run(
        self, request: RunRequest
    ) -> tuple[RunRecord, AsyncIterator[StreamEvent]]:
        """Create a run and follow it from its first event."""
        run = await self._runs.create(request)
        return run, self._follow_created(run, request.on_disconnect)

    async def _follow_created(
        self, run: RunRecord, on_disconnect: OnDisconnect
    ) -> AsyncIterator[StreamEvent]:
        finished = False
        try:
            async for event in self.follow_run(str(run.run_id)):
                yield event
            finished = True
        finally:
            if not finished and on_disconnect is OnDisconnect.CANCEL:
                # The client went away mid-run: cancel it, without holding up the disconnect.
                task = asyncio.create_task(self._cancel_quietly(run.run_id))
                task.add_done_callback(lambda _: None)

    async def _cancel_quietly(self, run_id: uuid.UUID) -> None:
        with contextlib.suppress(Exception):
            await self._runs.cancel(str(run_id), "interrupt", wait=False)

    async def follow_thread(
        self, thread_id: str, *, last_event_id: str | None = None
    ) -> AsyncIterator[StreamEvent]:
        """Every event of every run of the thread, in order, including runs created later; never
        ends by itself (the client closes it). Raises NotFound, BadUserInput."""
        thread = await self._threads.get(thread_id)
        cursor = _check_cursor(last_event_id)
        key = self._streams.thread_key(str(thread.thread_id))

        async def thread_gone() -> bool:
            try:
                await self._threads.get(thread.thread_id)
            except NotFound:
                return True
            return False

        async for event in self._streams.read(
            key, after=cursor, stop_at_end=False, when_idle=thread_gone
        ):
            yield event

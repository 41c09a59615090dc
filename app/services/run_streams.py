"""Following runs' event streams: a run, a new run, or every run of a thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator

from app.broker import Broker
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


class _EndWatch:
    """Whether a silent run has ended: the run's stream and its end notice live in Redis, so
    that is where to look; the database is asked only when Redis has neither (a pending run
    that has not started, or a Redis that lost them), and then at most once a minute."""

    DATABASE_EVERY = 60.0

    def __init__(self, service: RunStreamService, run_id: uuid.UUID, key: str) -> None:
        self.service = service
        self.run_id = run_id
        self.key = key
        self.status: str | None = None
        self._asked_database_at = -self.DATABASE_EVERY

    async def check(self, *, force_database: bool = False) -> bool:
        if await self.service._streams.exists(self.key):
            return False
        outcome = await self.service._broker.run_outcome(str(self.run_id))
        if outcome is not None:
            self.status = outcome.get("run", {}).get("status")
            return True
        now = time.monotonic()
        if not force_database and now - self._asked_database_at < self.DATABASE_EVERY:
            return False
        self._asked_database_at = now
        self.status = await self.service._status(self.run_id)
        return self.status is None or self.status in FINAL_STATUSES

    def event(self, status: str | None) -> StreamEvent:
        return StreamEvent(
            id="0-0",
            run_id=str(self.run_id),
            event="end",
            data={"run_id": str(self.run_id), "status": status},
        )


class RunStreamService:
    def __init__(
        self,
        db: Database,
        streams: EventStreams,
        broker: Broker,
        runs: RunService,
        threads: ThreadService,
    ) -> None:
        self._db = db
        self._streams = streams
        self._broker = broker
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
        ended = _EndWatch(self, rid, key)
        if not await self._streams.exists(key) and await ended.check(force_database=True):
            # Ended longer ago than the retention: only its end is left to tell.
            yield ended.event(run.status)
            return
        saw_end = False
        async for event in self._streams.read(
            key, after=cursor, stop_at_end=True, when_idle=ended.check
        ):
            saw_end = event.event in ("end", "error")
            yield event
        if not saw_end:
            yield ended.event(ended.status or run.status)

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

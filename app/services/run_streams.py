"""Following runs' event streams: a run, a new run, or every run of a thread."""

from __future__ import annotations

import asyncio
import enum
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Collection
from contextlib import aclosing
from typing import Any

from app import faults
from app.db import run_queue as queue_db
from app.db.engine import Database
from app.db.models import Thread as ThreadRecord
from app.errors import BadUserInput, Conflict, NotFound
from app.messaging.queue import Broker
from app.messaging.streams import (
    TERMINAL_EVENTS,
    EventStreams,
    StreamEvent,
    Tap,
    gap_event,
    lost_after,
)
from app.services.common import parse_uuid, utcnow
from app.services.run_lifecycle import FINAL_STATUSES
from app.services.run_request import OnDisconnect, RunRequest
from app.services.runs import RunRecord, RunService
from app.services.threads import ThreadService

log = logging.getLogger("lgql.run_streams")


_MAX_ID_PART = 2**64 - 1


def check_cursor(last_event_id: str | None) -> str | None:
    """A stream cursor as sent (`<ms>-<seq>`; None, empty, `-1` or `0-0`: from the start), for
    transports that check it before they start answering. Raises BadUserInput."""
    if last_event_id is None or last_event_id in ("", "-1", "0", "0-0"):
        return None
    parts = last_event_id.split("-")
    if (
        len(parts) != 2
        or not all(p.isdigit() for p in parts)
        or int(parts[0]) >= _MAX_ID_PART
        or int(parts[1]) > _MAX_ID_PART
    ):
        raise BadUserInput(
            "`lastEventId` must be an event id as sent (`<ms>-<seq>`)", argument="lastEventId"
        )
    return last_event_id


def _status_of(outcome: dict[str, Any]) -> str | None:
    status = outcome.get("run", {}).get("status")
    return None if status is None else str(status)


def _end(run_id: str, status: str | None) -> StreamEvent:
    """The end of a stream whose `end` event is not in Redis (never written: the run never
    started; or gone: past the retention), with the run's final status."""
    return StreamEvent(
        id="0-0", run_id=run_id, event="end", data={"run_id": run_id, "status": status}
    )


class _GapWatch:
    """Tells a reader when events it should have had are gone (see `lost_after`): at opening,
    and after every reconnection of Redis. One gap is said once: a writer's own `gap` event
    that follows the reader's (the same loss, seen from the other side) is not repeated."""

    def __init__(
        self, streams: EventStreams, tap: Tap, known: str | None, *, thread_id: str | None = None
    ) -> None:
        self._streams = streams
        self._tap = tap
        self.known = known  # the last entry the reader had (or its cursor, or its run's start)
        self._thread_id = thread_id
        self._said = False  # a gap was just told, with nothing delivered since
        tap.wake_on_resync = True

    def gap(self, run_id: str, last_event_id: str | None, reason: str) -> StreamEvent:
        self._said = True
        extra: dict[str, Any] = {"reason": reason}
        if self._thread_id is not None:
            extra["thread_id"] = self._thread_id
        return gap_event(run_id, last_event_id, **extra)

    def saw(self, event: StreamEvent) -> None:
        self.known = event.id

    def passes(self, event: StreamEvent) -> bool:
        if event.event == "gap":
            if self._said:
                return False
            self._said = True
            return True
        self._said = False
        return True

    async def check(self, run_id: str) -> StreamEvent | None:
        """After a reconnection: a gap event when what the reader had is no longer in Redis."""
        try:
            first = await self._streams.first_id(self._tap.key)
        except Exception:
            # Redis is gone again: look at the next reconnection.
            log.debug("could not look for lost events", exc_info=True)
            return None
        if not lost_after(self.known, first) or self._said:
            return None
        return self.gap(run_id, self.known, "redis lost events")


class ThreadStreamMode(enum.StrEnum):
    """What a thread's follower asks for (LangGraph Server's thread stream `stream_modes`)."""

    RUN_MODES = "run_modes"  # every event of every run
    LIFECYCLE = "lifecycle"  # each run's start (`metadata`) and end (`end` or `error`)
    STATE_UPDATE = "state_update"  # the thread's state updates (not by runs)


def in_thread_modes(event: StreamEvent, modes: Collection[ThreadStreamMode | str]) -> bool:
    """Whether a thread stream asking for `modes` shows `event`; a `gap` always shows."""
    if event.event == "gap":
        return True
    if event.event == "state_update":
        return ThreadStreamMode.STATE_UPDATE in modes
    if ThreadStreamMode.RUN_MODES in modes:
        return True
    return ThreadStreamMode.LIFECYCLE in modes and event.event in ("metadata", "end", "error")


class RunStreamService:
    #: A silent stream asks the database whether its run (or thread) is still there this often:
    #: only in case Redis lost the run's end notice (or the thread was deleted).
    DATABASE_EVERY = 60.0
    #: Once the database says a run ended, how long its end event may take to follow (while
    #: the worker's last events are still on their way) before the end is told from the
    #: database's status.
    END_GRACE = 5.0

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

    async def _current(self, run_id: uuid.UUID) -> RunRecord | None:
        async with self._db.pool.acquire() as conn:
            return await queue_db.get(conn, run_id)

    async def _status(self, run_id: uuid.UUID) -> str | None:
        run = await self._current(run_id)
        return None if run is None else run.status

    def _should_still_hold_events(self, run: RunRecord) -> bool:
        """Whether Redis should still hold the events of `run`, which has ended: it started (a
        run cancelled while pending never wrote any), and it ended within the retention, long
        enough ago for its last events to have been written (they follow its end in the
        database by a moment)."""
        if run.started_at is None or run.ended_at is None:
            return False
        ago = (utcnow() - run.ended_at).total_seconds()
        return self.END_GRACE < ago < self._streams.retention_seconds - self.END_GRACE

    async def follow_run(
        self, run_id: str, *, last_event_id: str | None = None
    ) -> AsyncIterator[StreamEvent]:
        """The run's events after `last_event_id` (from the start without one), live until its
        `end` or `error`. Raises NotFound, BadUserInput (cursor)."""
        rid = parse_uuid(run_id, "run")
        cursor = check_cursor(last_event_id)
        run = await self._runs.get(rid)
        async for event in self._follow(run, cursor):
            yield event

    def follow_read_run(
        self, run: RunRecord, *, last_event_id: str | None = None
    ) -> AsyncIterator[StreamEvent]:
        """`follow_run` for a run its caller has read (`RunService.get`, so authorized)
        already: the auth handlers are not asked twice. Raises BadUserInput (cursor)."""
        return self._follow(run, check_cursor(last_event_id))

    async def _follow(self, run: RunRecord, cursor: str | None) -> AsyncIterator[StreamEvent]:
        """`run`'s events (read from the database just before) after `cursor`.

        Ordering is what makes this right whatever the run does meanwhile: listen for the
        run's end first; then, in one atomic look at Redis, find where the run's events start
        (or, if it has appended nothing yet, where its thread's stream ends: any event it
        appends later comes after that) and its recorded outcome. A run that had ended when
        it was read from the database and has nothing in Redis is past the retention (or never
        started): its end is all there is to tell. Otherwise the stream is followed until the
        run's `end`/`error` event; if the run ends without one (cancelled while pending, given
        up by the sweeper), its end notice says so, once everything it wrote is delivered.
        """
        rid = str(run.run_id)
        ended: list[dict[str, Any]] = []
        tap: Tap | None = None

        def on_end(outcome: dict[str, Any]) -> None:
            ended.append(outcome)
            if tap is not None:
                tap.poke()

        async with self._broker.run_end_notices(rid, on_end):
            opened = await self._streams.open_run(
                rid, str(run.thread_id), after=cursor, outcome_key=self._broker.result_key(rid)
            )
            tap = opened.tap
            watch = _GapWatch(self._streams, tap, opened.known)
            try:
                if opened.outcome is not None:
                    ended.append(opened.outcome)
                if opened.lost:
                    yield watch.gap(rid, cursor, "not retained")
                if opened.start is None and run.status in FINAL_STATUSES:
                    if not opened.lost and self._should_still_hold_events(run):
                        # Ended within the retention, yet nothing of it is in Redis: lost (a
                        # Redis that came back empty), not expired.
                        yield watch.gap(rid, cursor, "redis lost events")
                    outcome = ended[0] if ended else None
                    yield _end(rid, _status_of(outcome) if outcome else run.status)
                    return
                if ended:
                    # Ended already: all it wrote is in Redis; read it straight through.
                    tap.poke()
                asked_database_at = time.monotonic()
                final_status: str | None = None  # the database says it ended (not Redis)
                while True:
                    idle = self.DATABASE_EVERY if final_status is None else self.END_GRACE
                    event = await tap.next(idle)
                    if event is not None:
                        watch.saw(event)
                        if event.run_id == rid and watch.passes(event):
                            yield event
                            if event.event in TERMINAL_EVENTS:
                                return
                        continue
                    check_database = False
                    if tap.resynced():
                        # Redis reconnected: it may have come back empty (events lost, the
                        # run's end with them) or the end notice may have been missed.
                        gap = await watch.check(rid)
                        if gap is not None:
                            yield gap
                        check_database = True
                    elif time.monotonic() - asked_database_at >= self.DATABASE_EVERY:
                        check_database = True  # silent for a minute: the end notice was lost?
                    if not ended and final_status is None and check_database:
                        asked_database_at = time.monotonic()
                        try:
                            status = await self._status(run.run_id)
                        except Exception as exc:
                            if not faults.is_infrastructure_fault(exc):
                                raise
                            # Postgres is away too: the stream goes on; asked again later.
                            log.warning("could not read the status of run %s: %s", rid, exc)
                            continue
                        if status is None or status in FINAL_STATUSES:
                            # Its end event may still be on its way (the worker records the
                            # end in the database, then writes its last events): wait for it
                            # while events keep coming, END_GRACE at most after the last.
                            final_status = status or run.status
                            continue
                    if ended or (final_status is not None and event is None):
                        # The run has ended, and everything it wrote is in Redis by now (it
                        # writes its events before it announces its end): deliver the rest,
                        # reading it ourselves (the hub need not read it too).
                        tap.close()
                        async for event in tap.rest():
                            watch.saw(event)
                            if event.run_id == rid and watch.passes(event):
                                yield event
                                if event.event in TERMINAL_EVENTS:
                                    return
                        if ended:
                            status_now = _status_of(ended[0])
                        else:
                            outcome = await self._broker.run_outcome(rid)
                            status_now = _status_of(outcome) if outcome else final_status
                        if status_now is None or status_now not in FINAL_STATUSES:
                            # Always the run's real final status: the database has it.
                            status_now = await self._status(run.run_id) or status_now
                        if not ended and outcome is None:
                            # The end comes from the database: neither the run's end event nor
                            # its end notice reached Redis, so what it wrote last may be lost
                            # too (a run that never started wrote nothing). Said, not silent.
                            current = await self._current(run.run_id)
                            if current is None or current.started_at is not None:
                                yield watch.gap(rid, watch.known, "end not in the stream")
                        yield _end(rid, status_now)
                        return
            finally:
                tap.close()

    async def stream_new_run(
        self, request: RunRequest
    ) -> tuple[RunRecord, AsyncIterator[StreamEvent]]:
        """Create a run and follow it from its first event."""
        run = await self._runs.create(request, attached=True)
        return run, self._follow_created(run, request.on_disconnect)

    async def _follow_created(
        self, run: RunRecord, on_disconnect: OnDisconnect
    ) -> AsyncIterator[StreamEvent]:
        finished = False
        try:
            async for event in self._follow(run, None):
                yield event
            finished = True
        finally:
            if not finished and on_disconnect is OnDisconnect.CANCEL:
                # The client went away mid-run: cancel it, without holding up the disconnect.
                task = asyncio.create_task(self._cancel_quietly(run.run_id))
                task.add_done_callback(lambda _: None)

    async def _cancel_quietly(self, run_id: uuid.UUID) -> None:
        try:
            await self._runs.cancel(str(run_id), "interrupt", wait=False)
        except (Conflict, NotFound):
            pass  # it ended (or was deleted) meanwhile: nothing left to cancel
        except Exception:
            log.warning("could not cancel run %s after its client left", run_id, exc_info=True)

    async def follow_thread(
        self, thread_id: str, *, last_event_id: str | None = None
    ) -> AsyncIterator[StreamEvent]:
        """Every event of every run of the thread, in order, including runs created later; never
        ends by itself (the client closes it), unless the thread is deleted. Raises NotFound,
        BadUserInput."""
        thread = await self._threads.get(thread_id)
        async with aclosing(self.follow_read_thread(thread, last_event_id=last_event_id)) as events:
            async for event in events:
                yield event

    async def follow_read_thread(
        self, thread: ThreadRecord, *, last_event_id: str | None = None
    ) -> AsyncGenerator[StreamEvent, None]:
        """`follow_thread` for a thread its caller has read (`ThreadService.get`, so
        authorized) already: the auth handlers are not asked twice. Raises BadUserInput."""
        cursor = check_cursor(last_event_id)
        opened = await self._streams.open_thread_checked(str(thread.thread_id), after=cursor)
        tap = opened.tap
        watch = _GapWatch(self._streams, tap, opened.known, thread_id=str(thread.thread_id))
        try:
            if opened.lost:
                yield watch.gap("", cursor, "not retained")
            while True:
                event = await tap.next(self.DATABASE_EVERY)
                if event is not None:
                    watch.saw(event)
                    if watch.passes(event):
                        yield event
                    continue
                if tap.resynced():
                    gap = await watch.check("")
                    if gap is not None:
                        yield gap
                    continue
                try:
                    await self._threads.get(thread.thread_id)
                except NotFound:
                    return
        finally:
            tap.close()

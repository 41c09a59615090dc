"""Crons: runs started on a schedule, as on LangGraph Server.

A cron is a row holding a 5-field cron schedule, an IANA timezone (UTC by default), the run to
start (`payload`: the run-create options, checked like a run's when the cron is written) and
`next_run_at`. Every worker calls `fire_due` in a loop; it claims due crons with
`FOR UPDATE SKIP LOCKED`, creates their runs through the normal run path and advances
`next_run_at`, all in one transaction: however many workers there are, a due time fires once,
and a crash cannot leave a run created without its cron advanced (or the reverse).

Each firing of a thread cron is a run on its thread; each firing of a stateless cron is a run on
a new thread, deleted after the run (`on_run_completed` "delete", the default) or kept ("keep").
Runs carry `metadata.cron_id` and `config.configurable.cron_id`, so `runs_of` finds them.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.auth.context import require_visible
from app.db import crons as db
from app.db.engine import Database
from app.db.models import Cron as CronRecord
from app.db.models import Run as RunRecord
from app.db.pagination import Listing
from app.errors import BadUserInput, NotFound, ServiceError
from app.observability import metrics
from app.pagination import Page, PageRequest, SortOrder
from app.services.assistants import AssistantService
from app.services.common import (
    UNSET,
    JsonValue,
    Unset,
    merge_metadata,
    new_id,
    parse_uuid,
    require_object,
    utcnow,
)
from app.services.cron_request import (
    DEFAULT_TIMEZONE,
    as_utc,
    checked_payload,
    checked_schedule,
    checked_timezone,
    next_run_after,
    run_request,
)
from app.services.run_lifecycle import RunTx
from app.services.run_request import OnCompletion, RunRequest
from app.services.runs import CreatedRun, RunService
from app.services.threads import ThreadService

__all__ = ["CronFilter", "CronRecord", "CronService"]

log = logging.getLogger("lgql.crons")

SORT_COLUMNS = {
    "created_at": CronRecord.created_at,
    "updated_at": CronRecord.updated_at,
    "next_run_at": CronRecord.next_run_at,
    "cron_id": CronRecord.cron_id,
    "assistant_id": CronRecord.assistant_id,
    # Nullable: for offset pages (LangGraph's REST API), not for cursors.
    "thread_id": CronRecord.thread_id,
    "end_time": CronRecord.end_time,
}
_CRONS = Listing(CronRecord.cron_id, SORT_COLUMNS)
_RUNS = Listing(RunRecord.run_id, {"created_at": RunRecord.created_at})


@dataclass(frozen=True)
class CronFilter:
    assistant_id: str | None = None
    thread_id: str | None = None
    enabled: bool | None = None
    metadata: JsonValue = None


def _not_found(cron_id: uuid.UUID) -> NotFound:
    return NotFound(f"Cron {cron_id} not found", cron_id=str(cron_id))


class CronService:
    def __init__(
        self,
        db: Database,
        runs: RunService,
        assistants: AssistantService,
        threads: ThreadService,
        *,
        batch_size: int = 100,
    ) -> None:
        self.db = db
        self.runs = runs
        self.assistants = assistants
        self.threads = threads
        self.batch_size = batch_size
        self.auth = threads.auth

    # --- write -------------------------------------------------------------------------------

    async def create(
        self,
        *,
        assistant_id: str,
        schedule: str,
        payload: dict[str, Any] | None = None,
        thread_id: str | None = None,
        timezone: str | None = None,
        end_time: datetime | None = None,
        enabled: bool = True,
        metadata: JsonValue = None,
        on_run_completed: str | None = None,
    ) -> CronRecord:
        """A cron on `thread_id` (its runs use the thread), or stateless (a new thread per run,
        deleted after it unless `on_run_completed` is "keep"). `payload` holds the other run
        options (PAYLOAD_KEYS). Raises BadUserInput (schedule, timezone, run options), NotFound
        (assistant, thread)."""
        tid = parse_uuid(thread_id, "thread") if thread_id is not None else None
        if tid is not None and on_run_completed is not None:
            raise BadUserInput(
                "`onRunCompleted` applies to stateless crons only (no threadId)",
                field="onRunCompleted",
            )
        completed = None if tid is not None else (on_run_completed or OnCompletion.DELETE.value)
        schedule = checked_schedule(schedule)
        zone = checked_timezone(timezone)
        meta = dict(require_object(metadata, "metadata") or {})
        aid = self.assistants.resolve_id(assistant_id)
        body = {**checked_payload(payload or {}), "assistant_id": str(aid)}
        self.runs.checked(run_request(body, thread_id=tid, on_run_completed=completed))
        value: dict[str, Any] = {
            "assistant_id": str(aid),
            "thread_id": str(tid) if tid else None,
            "schedule": schedule,
            "timezone": zone,
            "payload": body,
            "metadata": meta,
            "end_time": end_time,
        }
        await self.auth.check("crons", "create", value)
        meta = dict(require_object(value.get("metadata"), "metadata") or {})
        if aid not in self.assistants.system_ids:
            await self.assistants.get(aid)
        if tid is not None:  # its runs will be runs on that thread
            await self.threads.get(tid, action="create_run")
        now = utcnow()
        next_run = self._next_run(schedule, zone, now)
        async with self.db.sessions.begin() as session:
            return await db.insert_cron(
                session,
                {
                    "cron_id": new_id(),
                    "assistant_id": aid,
                    "thread_id": tid,
                    "schedule": schedule,
                    "timezone": zone,
                    "payload": body,
                    "metadata": meta,
                    "enabled": enabled,
                    "on_run_completed": completed,
                    "end_time": as_utc(end_time),
                    "next_run_at": next_run,
                    "user_id": self.auth.identity(),
                    "created_at": now,
                    "updated_at": now,
                },
            )

    async def update(
        self,
        cron_id: str,
        *,
        schedule: str | None = None,
        timezone: str | None = None,
        end_time: datetime | Unset | None = UNSET,
        enabled: bool | None = None,
        metadata: JsonValue = None,
        on_run_completed: str | None = None,
        payload: dict[str, Any] | None = None,
    ) -> CronRecord:
        """Change any of a cron's fields: `metadata` is merged into the cron's, `payload` into
        its run options (given keys replace); `end_time=None` clears the end time. A new
        schedule or timezone, or enabling a disabled cron, sets `next_run_at` anew from now.
        Raises NotFound, BadUserInput (nothing to change, or as `create`)."""
        cid = parse_uuid(cron_id, "cron")
        patch = checked_payload(payload or {})
        meta = require_object(metadata, "metadata")
        if (
            not patch
            and all(v is None for v in (schedule, timezone, enabled, metadata, on_run_completed))
            and isinstance(end_time, Unset)
        ):
            raise BadUserInput("Nothing to update: give at least one field", argument="input")
        if "assistant_id" in patch:
            raise BadUserInput("A cron's assistant cannot be changed", field="assistantId")
        new_schedule = checked_schedule(schedule) if schedule is not None else None
        new_zone = checked_timezone(timezone) if timezone is not None else None
        value: dict[str, Any] = {
            "cron_id": str(cid),
            "payload": patch,
            "schedule": new_schedule,
            "timezone": new_zone,
            "enabled": enabled,
            "metadata": meta,
        }
        flt = await self.auth.check("crons", "update", value)
        meta = require_object(value.get("metadata"), "metadata")
        async with self.db.sessions.begin() as session:
            current = await db.get(session, cid, for_update=True)
            if current is None:
                raise NotFound(f"Cron {cid} not found", cron_id=str(cid))
            require_visible(flt, current.metadata_, _not_found(cid))
            if on_run_completed is not None and current.thread_id is not None:
                raise BadUserInput(
                    "`onRunCompleted` applies to stateless crons only", field="onRunCompleted"
                )
            body = {**current.payload, **patch}
            completed = on_run_completed or current.on_run_completed
            self.runs.checked(
                run_request(body, thread_id=current.thread_id, on_run_completed=completed)
            )
            now = utcnow()
            fields: dict[str, Any] = {
                "payload": body,
                "metadata": merge_metadata(current.metadata_, meta),
                "on_run_completed": completed,
                "updated_at": now,
            }
            if new_schedule is not None:
                fields["schedule"] = new_schedule
            if new_zone is not None:
                fields["timezone"] = new_zone
            if enabled is not None:
                fields["enabled"] = enabled
            if not isinstance(end_time, Unset):
                fields["end_time"] = as_utc(end_time)
            if new_schedule or new_zone or (enabled and not current.enabled):
                fields["next_run_at"] = self._next_run(
                    new_schedule or current.schedule,
                    new_zone or current.timezone or DEFAULT_TIMEZONE,
                    now,
                )
            updated = await db.update_fields(session, cid, **fields)
        assert updated is not None
        return updated

    async def delete(self, cron_id: str) -> uuid.UUID:
        """Delete the cron (the runs it started stay). Raises NotFound."""
        cid = parse_uuid(cron_id, "cron")
        flt = await self.auth.check("crons", "delete", {"cron_id": str(cid)})
        async with self.db.sessions.begin() as session:
            current = await db.get(session, cid, for_update=True)
            if current is None:
                raise NotFound(f"Cron {cid} not found", cron_id=str(cid))
            require_visible(flt, current.metadata_, _not_found(cid))
            await db.delete_one(session, cid)
        return cid

    @staticmethod
    def _next_run(schedule: str, timezone: str, now: datetime) -> datetime:
        try:
            return next_run_after(schedule, timezone, now)
        except Exception as exc:  # croniter finds no such date (say, February 30th)
            raise BadUserInput(
                f"Cron schedule {schedule!r} never fires: {exc}", field="schedule"
            ) from exc

    # --- read --------------------------------------------------------------------------------

    async def get(self, cron_id: str | uuid.UUID) -> CronRecord:
        cid = parse_uuid(cron_id, "cron")
        flt = await self.auth.check("crons", "read", {"cron_id": str(cid)})
        async with self.db.sessions() as session:
            found = await db.get(session, cid)
        if found is None:
            raise NotFound(f"Cron {cid} not found", cron_id=str(cid))
        require_visible(flt, found.metadata_, _not_found(cid))
        return found

    async def search(
        self,
        filter: CronFilter,
        page: PageRequest,
        *,
        sort_by: str = "created_at",
        order: SortOrder = SortOrder.DESC,
    ) -> Page[CronRecord]:
        stmt = await self._search_stmt(filter)
        return await _CRONS.page(self.db.sessions, stmt, page, sort_by=sort_by, order=order)

    async def count(self, filter: CronFilter) -> int:
        return await _CRONS.count(self.db.sessions, await self._search_stmt(filter))

    async def _search_stmt(self, filter: CronFilter) -> Any:
        aid = None
        if filter.assistant_id is not None:
            try:
                aid = self.assistants.resolve_id(filter.assistant_id)
            except NotFound:
                raise BadUserInput(
                    "Invalid assistant ID: must be a UUID or a graph id", argument="assistant"
                ) from None
        tid = parse_uuid(filter.thread_id, "thread") if filter.thread_id else None
        metadata = require_object(filter.metadata, "metadata")
        flt = await self.auth.check(
            "crons",
            "search",
            {
                "assistant_id": str(aid) if aid else None,
                "thread_id": str(tid) if tid else None,
                "enabled": filter.enabled,
                "metadata": metadata,
            },
        )
        stmt = db.search(assistant_id=aid, thread_id=tid, enabled=filter.enabled, metadata=metadata)
        return stmt if flt is None else stmt.where(flt.to_sql(CronRecord.metadata_))

    async def runs_of(self, cron_id: uuid.UUID, page: PageRequest) -> Page[RunRecord]:
        """The runs the cron started that still exist, newest first (a stateless cron's runs
        go with their thread unless it keeps them)."""
        return await _RUNS.page(self.db.sessions, db.runs_of(cron_id), page)

    async def count_runs_of(self, cron_id: uuid.UUID) -> int:
        return await _RUNS.count(self.db.sessions, db.runs_of(cron_id))

    # --- fire --------------------------------------------------------------------------------

    async def fire_due(self) -> int:
        """Start one run for every cron due now, batch by batch; returns how many started.
        Missed times (workers were down) collapse into this one firing: `next_run_at` moves to
        the schedule's first time after now. A cron that cannot fire (its assistant was deleted,
        its thread is busy under REJECT…) is logged and advanced; the others still fire."""
        fired = 0
        while True:
            created, claimed, session = await self._fire_batch()
            await self.runs.announce_webhooks(session)  # of runs the firings cancelled
            for run in created:
                await self.runs.announce(run)
            fired += len(created)
            if claimed < self.batch_size:
                return fired

    async def _fire_batch(self) -> tuple[list[CreatedRun], int, Any]:
        created: list[CreatedRun] = []
        async with self.db.sessions.begin() as session:
            now = await db.database_now(session)
            due = await db.claim_due(session, now, limit=self.batch_size)
            for cron in due:
                try:
                    # A savepoint per cron: one that fails leaves the others' runs intact.
                    async with session.begin_nested():
                        created.append(
                            await self.runs.create_in(
                                await RunTx.of_session(session), self._firing(cron)
                            )
                        )
                    metrics.cron_fired("started")
                except ServiceError as exc:
                    metrics.cron_fired("failed")
                    log.warning("cron %s could not fire: %s", cron.cron_id, exc.message)
                except Exception:
                    metrics.cron_fired("failed")
                    log.exception("cron %s could not fire", cron.cron_id)
                await db.update_fields(session, cron.cron_id, next_run_at=self._advance(cron, now))
        return created, len(due), session

    def _firing(self, cron: CronRecord) -> RunRequest:
        payload = cron.payload
        # Checked again: the server's webhook policy may have changed since the cron was written.
        request = self.runs.checked(
            run_request(
                {**payload, "assistant_id": str(cron.assistant_id)},
                thread_id=cron.thread_id,
                on_run_completed=cron.on_run_completed or OnCompletion.DELETE.value,
            )
        )
        # Added after the checks: a payload with `context` may not carry `configurable` itself.
        request.metadata = {
            **cron.metadata_,
            **(payload.get("metadata") or {}),
            "cron_id": str(cron.cron_id),
        }
        request.add_configurable(cron_id=str(cron.cron_id))
        if cron.user_id is not None:  # runs of a cron act for the user who created it
            request.add_configurable(langgraph_auth_user_id=cron.user_id)
        return request

    @staticmethod
    def _advance(cron: CronRecord, now: datetime) -> datetime | None:
        try:
            return next_run_after(cron.schedule, cron.timezone or DEFAULT_TIMEZONE, now)
        except Exception:  # only a schedule written around the API can fail here
            log.exception("cron %s has an unusable schedule; it will not fire again", cron.cron_id)
            return None

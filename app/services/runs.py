"""Runs on the API side: create (with double-texting), wait, cancel, delete, read."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from app.broker import Broker
from app.db import runs as db
from app.db import threads as threads_db
from app.db.engine import Database, driver_connection
from app.db.models import Run as RunRecord
from app.db.pagination import count, fetch_page
from app.runtime.checkpointer import PostgresCheckpointer
from app.services import run_lifecycle as lifecycle
from app.services.assistants import AssistantService
from app.services.common import new_id, parse_uuid, utcnow
from app.services.errors import BadUserInput, Conflict, NotFound
from app.services.pagination import Page, PageRequest, SortOrder
from app.services.run_request import IfNotExists, MultitaskStrategy, RunRequest
from app.services.threads import ThreadService

__all__ = ["RunRecord", "RunService"]

log = logging.getLogger("lgql.runs")


def run_snapshot(run: RunRecord) -> dict[str, Any]:
    """A run as JSON, carried in run-end notices (the row may be gone by the time it is read)."""
    return {
        "run_id": str(run.run_id),
        "thread_id": str(run.thread_id),
        "assistant_id": str(run.assistant_id),
        "status": run.status,
        "attempt": run.attempt,
        "metadata": run.metadata_,
        "kwargs": run.kwargs,
        "multitask_strategy": run.multitask_strategy,
        "output": run.output,
        "error": run.error,
        "created_at": run.created_at.isoformat(),
        "updated_at": run.updated_at.isoformat(),
    }


def record_from_snapshot(data: dict[str, Any]) -> RunRecord:
    return RunRecord(
        run_id=uuid.UUID(data["run_id"]),
        thread_id=uuid.UUID(data["thread_id"]),
        assistant_id=uuid.UUID(data["assistant_id"]),
        status=data["status"],
        attempt=data["attempt"],
        metadata_=data["metadata"],
        kwargs=data["kwargs"],
        multitask_strategy=data["multitask_strategy"],
        output=data["output"],
        error=data["error"],
        created_at=datetime.fromisoformat(data["created_at"]),
        updated_at=datetime.fromisoformat(data["updated_at"]),
    )


class RunService:
    def __init__(
        self,
        db: Database,
        broker: Broker,
        assistants: AssistantService,
        threads: ThreadService,
        checkpointer: PostgresCheckpointer,
    ) -> None:
        self._db = db
        self._broker = broker
        self._assistants = assistants
        self._threads = threads
        self._checkpointer = checkpointer

    # --- create ------------------------------------------------------------------------------

    async def create(self, request: RunRequest) -> RunRecord:
        """Insert the run (pending) and wake a worker. Raises NotFound (assistant, thread,
        checkpoint), Conflict (thread busy under REJECT), BadUserInput."""
        request.checked()
        assistant_id = self._assistants.resolve_id(request.assistant_id)
        if request.checkpoint_id is not None and request.thread_id is not None:
            thread_record = await self._threads.get(request.thread_id)
            await self._threads.require_checkpoint(thread_record, request.checkpoint_id)
        now = utcnow()
        run_id = new_id()
        stateless = request.thread_id is None
        thread_id = new_id() if stateless else parse_uuid(request.thread_id or "", "thread")
        cancel_running: list[uuid.UUID] = []
        async with self._db.sessions.begin() as session:
            assistant = await self._assistants.get_in(session, assistant_id)
            thread = await threads_db.get(session, thread_id, for_update=True)
            stamp = {"graph_id": assistant.graph_id, "assistant_id": str(assistant.assistant_id)}
            if thread is None:
                if not stateless and request.if_not_exists is not IfNotExists.CREATE:
                    raise NotFound(f"Thread {thread_id} not found", thread_id=str(thread_id))
                thread = await threads_db.insert_if_absent(
                    session,
                    thread_id=thread_id,
                    metadata={**(request.metadata or {}), **stamp},
                    now=now,
                    status="busy",
                )
                if thread is None:  # created concurrently by another request: lock it
                    thread = await threads_db.get(session, thread_id, for_update=True)
                assert thread is not None
            active = await db.active_runs(session, thread_id)
            strategy = request.multitask_strategy
            if active and strategy is MultitaskStrategy.REJECT:
                raise Conflict(
                    "Thread is already running a task. Wait for it to finish or choose a "
                    "different multitask strategy.",
                    thread_id=str(thread_id),
                    active_run_id=str(active[0].run_id),
                )
            run = await db.insert_run(
                session,
                {
                    "run_id": run_id,
                    "thread_id": thread_id,
                    "assistant_id": assistant.assistant_id,
                    "status": "pending",
                    "metadata": dict(request.metadata or {}),
                    "kwargs": request.kwargs(),
                    "multitask_strategy": strategy.value,
                    "webhook": request.webhook,
                    "created_at": now,
                    "updated_at": now,
                    "available_at": now + _seconds(request.after_seconds),
                },
            )
            if active and strategy in (MultitaskStrategy.INTERRUPT, MultitaskStrategy.ROLLBACK):
                await lifecycle.cancel_pending(session, active, strategy.value)
                cancel_running = [r.run_id for r in active if r.status == "running"]
                await db.request_cancel(session, cancel_running, strategy.value)
            await threads_db.update_fields(
                session,
                thread_id,
                status="busy",
                metadata={**thread.metadata_, **stamp},
                updated_at=now,
            )
        # The run is committed: from here on, Redis only makes things faster. If it is down,
        # the cancel flag in the row and the workers' sweep do the same, a little later.
        try:
            for active_id in cancel_running:
                await self._broker.send_cancel(str(active_id), strategy.value)
            await self._broker.enqueue_run(
                str(run.run_id), job_key="created", defer_seconds=request.after_seconds
            )
        except Exception:
            log.warning(
                "could not notify workers of run %s; the sweep will start it",
                run.run_id,
                exc_info=True,
            )
        return run

    async def create_many(self, requests: list[RunRequest]) -> list[RunRecord]:
        """A batch of stateless runs, all inserted (or none, if one is invalid)."""
        for request in requests:
            if request.thread_id is not None:
                raise BadUserInput(
                    "`createRuns` takes stateless runs only (no threadId)", field="threadId"
                )
            request.checked()
            await self._assistants.get(request.assistant_id)
        return list(await asyncio.gather(*(self.create(r) for r in requests)))

    # --- wait --------------------------------------------------------------------------------

    async def wait(self, run: RunRecord) -> dict[str, Any]:
        """Block until `run` ends; its outcome: {run, values, interrupts, error}."""

        missing_checks = 0

        async def from_database() -> dict[str, Any] | None:
            nonlocal missing_checks
            async with self._db.sessions() as session:
                current = await db.get(session, run.run_id)
            if current is None:
                # Deleted (rolled back, or a stateless run with its thread): its outcome is in
                # Redis; give the notice one more period before concluding Redis lost it.
                missing_checks += 1
                if missing_checks < 2:
                    return None
                return stopped_outcome(run, deleted=True)
            if current.status in lifecycle.FINAL_STATUSES:
                return outcome_of(current)
            return None

        return await self._broker.wait_for_run_end(str(run.run_id), fallback=from_database)

    # --- read --------------------------------------------------------------------------------

    async def get(self, run_id: str | uuid.UUID) -> RunRecord:
        rid = parse_uuid(run_id, "run")
        async with self._db.sessions() as session:
            found = await db.get(session, rid)
        if found is None:
            raise NotFound(f"Run {rid} not found", run_id=str(rid))
        return found

    async def search(
        self, page: PageRequest, *, thread_id: str | None = None, status: str | None = None
    ) -> Page[RunRecord]:
        stmt = self._search_stmt(thread_id, status)
        async with self._db.sessions() as session:
            return await fetch_page(
                session,
                stmt,
                sort_by="created_at",
                sort_column=RunRecord.created_at,  # type: ignore[arg-type]
                id_column=RunRecord.run_id,  # type: ignore[arg-type]
                order=SortOrder.DESC,
                page=page,
                to_item=lambda row: row,
            )

    async def count(self, *, thread_id: str | None = None, status: str | None = None) -> int:
        async with self._db.sessions() as session:
            return await count(session, self._search_stmt(thread_id, status))

    def _search_stmt(self, thread_id: str | None, status: str | None) -> Any:
        tid = parse_uuid(thread_id, "thread") if thread_id is not None else None
        return db.search(thread_id=tid, status=status)

    # --- cancel and delete -------------------------------------------------------------------

    async def cancel(self, run_id: str, action: str, *, wait: bool = True) -> RunRecord | None:
        """Cancel a pending or running run. Returns it once ended (None if rolled back).
        Raises NotFound, Conflict (already ended)."""
        rid = parse_uuid(run_id, "run")
        async with self._db.sessions.begin() as session:
            run = await self._locked_run(session, rid)
            if run.status not in db.ACTIVE:
                raise Conflict(f"Run {rid} has already ended ({run.status})", status=run.status)
            if run.status == "pending":
                await lifecycle.cancel_pending(session, [run], action)
                if action == "rollback":
                    await self._checkpoints_for_runs_deleted(session, [rid])
                await lifecycle.refresh_thread(session, run.thread_id, state=None)
            else:
                await db.request_cancel(session, [rid], action)
        if run.status == "pending":
            await self._broker.publish_run_end(
                str(rid), stopped_outcome(run, deleted=action == "rollback")
            )
            await self.wake_next(run.thread_id)
        else:
            await self._broker.send_cancel(str(rid), action)
        if not wait:
            return await self._maybe_get(rid)
        if run.status == "running":
            await self.wait(run)
        return await self._maybe_get(rid)

    async def _locked_run(self, session: Any, rid: uuid.UUID) -> RunRecord:
        """The run, with its thread's row locked (no run of it starts or ends meanwhile)."""
        if await db.lock_thread_of_run(session, rid) is None:
            raise NotFound(f"Run {rid} not found", run_id=str(rid))
        run = await db.get(session, rid)
        assert run is not None
        return run

    async def _checkpoints_for_runs_deleted(self, session: Any, run_ids: list[uuid.UUID]) -> None:
        await self._checkpointer.delete_for_runs_in(
            await driver_connection(session), [str(r) for r in run_ids]
        )

    async def _maybe_get(self, rid: uuid.UUID) -> RunRecord | None:
        async with self._db.sessions() as session:
            return await db.get(session, rid)

    async def wake_next(self, thread_id: uuid.UUID) -> None:
        """Wake a worker for the thread's next pending run, if there is one."""
        async with self._db.sessions() as session:
            nxt = await db.next_pending(session, thread_id)
        if nxt is not None:
            await self.wake(nxt)

    async def wake(self, run: RunRecord) -> None:
        """Enqueue a pending run: due now, or when its `afterSeconds` delay is over."""
        delay = max(0.0, run.available_at.timestamp() - time.time())
        await self._broker.enqueue_run(
            str(run.run_id), job_key=f"after:{new_id()}", defer_seconds=delay
        )

    async def delete(self, run_id: str) -> uuid.UUID:
        """Delete an ended run with its checkpoints. Raises NotFound, Conflict (still active)."""
        rid = parse_uuid(run_id, "run")
        async with self._db.sessions.begin() as session:
            run = await self._locked_run(session, rid)
            if run.status in db.ACTIVE:
                raise Conflict(
                    f"Run {rid} is {run.status}: cancel it before deleting it", status=run.status
                )
            await db.delete_runs(session, [rid])
            await self._checkpoints_for_runs_deleted(session, [rid])
        return rid


def stopped_outcome(run: RunRecord, *, deleted: bool) -> dict[str, Any]:
    """The outcome of a run stopped before it produced anything of its own (cancelled while
    pending, or rolled back: then `deleted`, its row gone)."""
    outcome: dict[str, Any] = {
        "run": {**run_snapshot(run), "status": "interrupted"},
        "values": None,
        "interrupts": [],
        "error": None,
    }
    if deleted:
        outcome["deleted"] = True
    return outcome


def outcome_of(run: RunRecord) -> dict[str, Any]:
    output = run.output or {}
    return {
        "run": run_snapshot(run),
        "values": output.get("values"),
        "interrupts": output.get("interrupts") or [],
        "error": run.error,
    }


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)

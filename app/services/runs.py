"""Runs on the API side: create (with double-texting), wait, cancel, delete, read."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.auth.context import is_visible, require_visible
from app.auth.filters import AuthFilter
from app.db import run_queue as queue_db
from app.db import runs as db
from app.db import threads as threads_db
from app.db.engine import Database
from app.db.models import Run as RunRecord
from app.db.pagination import Listing
from app.errors import BadUserInput, Conflict, NotFound
from app.messaging.queue import Broker
from app.observability import metrics
from app.observability.tracing import carry as carry_trace
from app.pagination import Page, PageRequest
from app.persistence.checkpointer import PostgresCheckpointer
from app.services import run_lifecycle as lifecycle
from app.services.assistants import AssistantService
from app.services.common import (
    new_id,
    parse_uuid,
    require_checkpoint_map,
    require_object,
    utcnow,
)
from app.services.idempotency import IdempotencyKey, maybe_sweep
from app.services.run_execution import RunExecution
from app.services.run_lifecycle import Claimed, RunTx
from app.services.run_outcome import RunOutcome
from app.services.run_request import IfNotExists, MultitaskStrategy, RunRequest
from app.services.threads import ThreadService
from app.services.webhook_policy import WebhookPolicy
from app.services.webhooks import recorded_in

__all__ = ["CreatedRun", "RunRecord", "RunService"]

log = logging.getLogger("lgql.runs")

_RUNS = Listing(RunRecord.run_id, {"created_at": RunRecord.created_at})


@dataclass(frozen=True)
class CreatedRun:
    """A run just inserted, and the running runs it superseded (to stop once committed); with
    `claimed`, the run was also claimed in the same call, for this process to execute."""

    run: RunRecord
    cancel_running: list[uuid.UUID]
    claimed: Claimed | None = None


@dataclass(frozen=True)
class _CreateVisibility:
    """The filters a new run's thread and assistant must pass (None: no limit)."""

    thread: AuthFilter | None = None
    assistant: AuthFilter | None = None

    @property
    def filtered(self) -> bool:
        return self.thread is not None or self.assistant is not None


#: The strategies whose new run supersedes the thread's active runs (cancels them).
_SUPERSEDING = (MultitaskStrategy.INTERRUPT, MultitaskStrategy.ROLLBACK)


class RunService:
    def __init__(
        self,
        db: Database,
        broker: Broker,
        assistants: AssistantService,
        threads: ThreadService,
        checkpointer: PostgresCheckpointer,
        execution: RunExecution,
        *,
        webhook_policy: WebhookPolicy | None = None,
    ) -> None:
        self._db = db
        self._broker = broker
        self._assistants = assistants
        self._threads = threads
        self._checkpointer = checkpointer
        self._execution = execution
        self._webhook_policy = webhook_policy or WebhookPolicy()

    def checked(self, request: RunRequest) -> RunRequest:
        """`request.checked()`, and its webhook against the server's webhook policy (SSRF
        rules). Raises BadUserInput."""
        request.checked()
        if request.webhook is not None:
            self._webhook_policy.check_url(request.webhook)
        return request

    # --- create ------------------------------------------------------------------------------

    async def create(self, request: RunRequest, *, attached: bool = False) -> RunRecord:
        """Insert the run (pending) and wake a worker. Raises NotFound (assistant, thread,
        checkpoint), Conflict (thread busy under REJECT; an idempotency key used before for
        another request, or whose run is gone), BadUserInput. With `request.idempotency_key`,
        a repeat of an earlier request returns the run that request made. `attached`: the
        caller waits for the run or streams it, so this process may execute it itself
        (`RunExecution.slot_here`): claimed in the creating call, with no hop to a worker."""
        return await self._create_checked(self.checked(request), attached=attached)

    async def _create_checked(self, request: RunRequest, *, attached: bool = False) -> RunRecord:
        """`create` for a request already `checked()`."""
        # Hashed before the auth handlers stamp the request: a retry is compared as sent.
        key = (
            IdempotencyKey.of(
                "run",
                request.idempotency_key,
                owner=self._threads.auth.identity(),
                request=request.fingerprint_fields(),
            )
            # The fingerprint is a deep copy of the request: only worth it with a key.
            if request.idempotency_key is not None
            else None
        )
        if key is not None:
            maybe_sweep(self._db.pool)  # expired keys go where keys are used
        # Built once: the auth handlers see the run's options, and the run keeps them.
        kwargs = request.kwargs()
        visibility = await self._authorize_create(request, kwargs)
        if request.thread_id is not None and (
            request.checkpoint_id is not None or request.checkpoint_ns or request.checkpoint_map
        ):
            thread_record = await self._threads.get(request.thread_id)
            chosen_map = await self._threads.run_checkpoint_map(
                thread_record,
                request.checkpoint_id,
                request.checkpoint_ns,
                require_checkpoint_map(request.checkpoint_map),
            )
            if chosen_map:
                request.checkpoint_map = kwargs["checkpoint_map"] = chosen_map
        run_id = new_id()
        # Without a key, filters or runs to supersede, the creation is one call that commits by
        # itself; otherwise all of it is one transaction.
        atomic = (
            key is not None or visibility.filtered or request.multitask_strategy in _SUPERSEDING
        )
        # A run its caller waits for, due now and superseding none, may be executed here: a
        # slot is held for it, and the creating call claims it too if it may start at once.
        slot = (
            self._execution.slot_here()
            if attached
            and request.after_seconds <= 0
            and request.multitask_strategy not in _SUPERSEDING
            else None
        )
        try:
            async with (
                self._db.pool.acquire() as conn,
                conn.transaction() if atomic else contextlib.nullcontext(),
            ):
                tx = RunTx(conn)
                # The key first: a concurrent repeat waits here for this transaction to end.
                earlier = await key.claim(conn, run_id) if key is not None else None
                if earlier is None:
                    created = await self.create_in(
                        tx,
                        request,
                        visibility=visibility,
                        run_id=run_id,
                        kwargs=kwargs,
                        claim_for=slot.worker_id if slot is not None else None,
                    )
            if earlier is None and created.claimed is not None and slot is not None:
                slot.start(created.claimed)  # committed: it is this process's to execute
                slot = None
        finally:
            if slot is not None:
                slot.release()
        if earlier is not None:
            assert key is not None
            try:
                return await self.get(earlier)
            except NotFound:
                raise key.gone(earlier) from None
        await self.announce_webhooks(tx.deliveries)  # of the runs it cancelled
        if created.claimed is None:
            await self.announce(created)
        return created.run

    async def _authorize_create(
        self, request: RunRequest, kwargs: dict[str, Any]
    ) -> _CreateVisibility:
        """LangGraph's `threads.create_run` check (its handler may stamp `metadata`), and
        `assistants.read` unless the assistant is a graph's own; the run's config learns who
        it runs for (in `request` and in its `kwargs`)."""
        auth = self._threads.auth
        if not auth.enabled:
            return _CreateVisibility()
        value: dict[str, Any] = {
            "thread_id": request.thread_id,
            "assistant_id": request.assistant_id,
            "metadata": dict(request.metadata or {}),
            "multitask_strategy": request.multitask_strategy.value,
            "if_not_exists": request.if_not_exists.value if request.if_not_exists else None,
            "after_seconds": request.after_seconds,
            "kwargs": kwargs,
        }
        thread_filter = await auth.check("threads", "create_run", value)
        request.metadata = require_object(value.get("metadata"), "metadata")
        assistant_id = self._assistants.resolve_id(request.assistant_id)
        assistant_filter = None
        if assistant_id not in self._assistants.system_ids:
            assistant_filter = await auth.check(
                "assistants", "read", {"assistant_id": str(assistant_id)}
            )
        request.add_configurable(**auth.user_fields())
        kwargs["config"] = request.config
        return _CreateVisibility(thread_filter, assistant_filter)

    async def create_in(
        self,
        tx: RunTx,
        request: RunRequest,
        *,
        visibility: _CreateVisibility | None = None,
        run_id: uuid.UUID | None = None,
        kwargs: dict[str, Any] | None = None,
        claim_for: str | None = None,
    ) -> CreatedRun:
        """`create`'s writes inside the caller's transaction, for a request already `checked()`
        (a cron's firing commits its run together with the advance of its schedule). Once the
        transaction is committed, hand the result to `announce`. Raises as `create`.
        `visibility`: what the caller may see (a thread or assistant it may not is NotFound);
        `run_id`: the new run's id (an idempotency key names it before it exists); `kwargs`:
        `request.kwargs()`, when the caller has it already; `claim_for`: a worker id to claim
        the run for in the same call, if it may start now (`CreatedRun.claimed`)."""
        seen = visibility or _CreateVisibility()
        assistant_id = self._assistants.resolve_id(request.assistant_id)
        now = utcnow()
        stateless = request.thread_id is None
        thread_id = new_id() if stateless else parse_uuid(request.thread_id or "", "thread")
        strategy = request.multitask_strategy
        made = await queue_db.create_run(
            tx.conn,
            run_id=run_id or new_id(),
            thread_id=thread_id,
            assistant_id=assistant_id,
            graphs=self._assistants.served_graphs(),
            create_thread=stateless or request.if_not_exists is IfNotExists.CREATE,
            thread_metadata=dict(request.metadata or {}),
            now=now,
            ttl=self._threads.default_ttl_fields(now),
            reject=strategy is MultitaskStrategy.REJECT,
            metadata=dict(request.metadata or {}),
            kwargs=carry_trace(kwargs if kwargs is not None else request.kwargs()),
            multitask_strategy=strategy.value,
            webhook=request.webhook,
            after_seconds=request.after_seconds,
            claim_for=claim_for,
            lease_seconds=self._execution.lease_seconds,
        )
        # What the caller may not see is not found: with filters, the caller's transaction
        # rolls back what the call wrote (`_needs_transaction`).
        no_assistant = NotFound(
            f"Assistant {assistant_id} not found", assistant_id=str(assistant_id)
        )
        if made.outcome == "no_assistant":
            raise no_assistant
        require_visible(seen.assistant, made.assistant_metadata, no_assistant)
        if made.thread_metadata is not None:
            require_visible(
                seen.thread,
                made.thread_metadata,
                NotFound(f"Thread {thread_id} not found", thread_id=str(thread_id)),
            )
        if made.outcome == "no_thread":
            raise NotFound(f"Thread {thread_id} not found", thread_id=str(thread_id))
        if made.outcome == "conflict":
            raise Conflict(
                "Thread is already running a task. Wait for it to finish or choose a "
                "different multitask strategy.",
                thread_id=str(thread_id),
                active_run_id=str(made.active_run_id),
            )
        run = made.run
        assert run is not None and made.graph_id is not None
        metrics.run_created(made.graph_id)
        cancel_running: list[uuid.UUID] = []
        if made.active_run_id is not None and strategy in _SUPERSEDING:
            # The thread's lock is held: its active runs are those the call saw, and this one.
            active = [
                r for r in await queue_db.active_runs(tx.conn, thread_id) if r.run_id != run.run_id
            ]
            await lifecycle.cancel_pending(tx, active, strategy.value)
            cancel_running = [r.run_id for r in active if r.status == "running"]
            await lifecycle.request_cancel(tx, cancel_running, strategy.value)
        claimed = Claimed(run, made.assistant, made.thread_fresh) if made.claimed else None
        return CreatedRun(run, cancel_running, claimed)

    async def announce_webhooks(self, recorded: list[uuid.UUID] | AsyncSession) -> None:
        """Enqueue the webhooks a committed transaction recorded (runs it ended): a `RunTx`'s
        `deliveries`, or those of a SQLAlchemy session."""
        deliveries = recorded if isinstance(recorded, list) else recorded_in(recorded)
        await self._execution.announce_webhooks(deliveries)

    async def announce(self, created: CreatedRun) -> None:
        """Wake a worker for a committed new run, and stop the runs it superseded."""
        run = created.run
        # The run is committed: from here on, Redis only makes things faster. If it is down,
        # the cancel flag in the row and the workers' sweep do the same, a little later.
        try:
            for active_id in created.cancel_running:
                await self._broker.send_cancel(str(active_id), run.multitask_strategy)
            await self._execution.wake(run.run_id, run.available_at)
        except Exception:
            log.warning(
                "could not notify workers of run %s; the sweep will start it",
                run.run_id,
                exc_info=True,
            )

    async def create_many(self, requests: list[RunRequest]) -> list[RunRecord]:
        """A batch of stateless runs, all inserted (or none, if one is invalid)."""
        for request in requests:
            if request.thread_id is not None:
                raise BadUserInput(
                    "`createRuns` takes stateless runs only (no threadId)", field="threadId"
                )
            self.checked(request)
            if self._assistants.resolve_id(request.assistant_id) not in self._assistants.system_ids:
                await self._assistants.get(request.assistant_id)
        # Each request was checked above: the creates do not check it again.
        return list(await asyncio.gather(*(self._create_checked(r) for r in requests)))

    # --- wait --------------------------------------------------------------------------------

    async def wait(self, run: RunRecord) -> RunOutcome:
        """Block until `run` ends; how it ended."""

        missing_checks = 0

        async def from_database() -> dict[str, Any] | None:
            nonlocal missing_checks
            async with self._db.pool.acquire() as conn:
                current = await queue_db.get(conn, run.run_id)
            if current is None:
                # Deleted (rolled back, or a stateless run with its thread): its outcome is in
                # Redis; give the notice one more period before concluding Redis lost it.
                missing_checks += 1
                if missing_checks < 2:
                    return None
                return RunOutcome.stopped(run, deleted=True).to_json()
            if current.status in lifecycle.FINAL_STATUSES:
                return RunOutcome.of(current).to_json()
            return None

        ended = await self._broker.wait_for_run_end(str(run.run_id), fallback=from_database)
        return RunOutcome.from_json(ended)

    # --- read --------------------------------------------------------------------------------

    async def get(
        self,
        run_id: str | uuid.UUID,
        *,
        action: str = "read",
        thread_id: uuid.UUID | None = None,
    ) -> RunRecord:
        """The run, if the current user may do `action` on its thread (and, given `thread_id`,
        it is that thread's). Raises NotFound."""
        rid = parse_uuid(run_id, "run")
        async with self._db.pool.acquire() as conn:
            found = await queue_db.get(conn, rid)
        if found is not None and thread_id is not None and found.thread_id != thread_id:
            found = None
        if found is not None and self._threads.auth.enabled:
            flt = await self._threads.visible(found.thread_id, action, run_id=str(rid))
            async with self._db.sessions() as session:
                thread = await threads_db.get(session, found.thread_id)
            if thread is None or not is_visible(flt, thread.metadata_):
                found = None
        if found is None:
            raise NotFound(f"Run {rid} not found", run_id=str(rid))
        return found

    async def search(
        self, page: PageRequest, *, thread_id: str | None = None, status: str | None = None
    ) -> Page[RunRecord]:
        stmt = await self._search_stmt(thread_id, status)
        return await _RUNS.page(self._db.sessions, stmt, page)

    async def count(self, *, thread_id: str | None = None, status: str | None = None) -> int:
        return await _RUNS.count(self._db.sessions, await self._search_stmt(thread_id, status))

    async def _search_stmt(self, thread_id: str | None, status: str | None) -> Any:
        tid = parse_uuid(thread_id, "thread") if thread_id is not None else None
        stmt = db.search(thread_id=tid, status=status)
        # Listing runs is searching threads (LangGraph's `threads.search`): only runs of the
        # threads the filter lets through.
        flt = await self._threads.auth.check(
            "threads", "search", {"thread_id": thread_id, "status": status}
        )
        if flt is not None:
            stmt = stmt.where(col(RunRecord.thread_id).in_(self._threads.visible_ids(flt)))
        return stmt

    # --- cancel and delete -------------------------------------------------------------------

    async def cancel(
        self,
        run_id: str,
        action: str,
        *,
        wait: bool = True,
        thread_id: uuid.UUID | None = None,
    ) -> RunRecord | None:
        """Cancel a pending or running run (of `thread_id` when given). Returns it once ended
        (None if rolled back). Raises NotFound, Conflict (already ended)."""
        rid = parse_uuid(run_id, "run")
        # LangGraph: cancelling is updating the thread.
        await self.get(rid, action="update", thread_id=thread_id)
        return await self._cancel(rid, action, wait=wait)

    async def _cancel(self, rid: uuid.UUID, action: str, *, wait: bool) -> RunRecord | None:
        """`cancel`, the auth handlers asked already."""
        async with self._db.pool.acquire() as conn, conn.transaction():
            tx = RunTx(conn)
            run = await self._locked_run(conn, rid)
            if run.status not in lifecycle.ACTIVE_STATUSES:
                raise Conflict(f"Run {rid} has already ended ({run.status})", status=run.status)
            was_pending = run.status == "pending"
            if was_pending:
                await self._execution.cancel_pending(tx, run, action)
            else:
                await lifecycle.request_cancel(tx, [rid], action)
        await self.announce_webhooks(tx.deliveries)
        if was_pending:
            await self._execution.announce_stopped(
                run, deleted=action == "rollback", wake_next=True
            )
        else:
            await self._broker.send_cancel(str(rid), action)
        if not wait:
            return await self._maybe_get(rid)
        if not was_pending:
            await self.wait(run)
        return await self._maybe_get(rid)

    async def cancel_many(
        self,
        *,
        thread_id: str | None = None,
        run_ids: list[str] | None = None,
        status: str | None = None,
        action: str = "interrupt",
    ) -> list[uuid.UUID]:
        """Cancel several runs at once (LangGraph's `/runs/cancel`), without waiting for them to
        stop: those of `run_ids`, or the active runs of `status` (`pending`, `running` or `all`),
        either within `thread_id` when given; or `thread_id` alone: its active runs. Runs that
        ended (or went) meanwhile, and runs not the user's to update, are skipped. Returns the
        ids of the runs cancelled. Raises BadUserInput (nothing chosen, an unknown status)."""
        if status is not None and status not in ("pending", "running", "all"):
            raise BadUserInput(
                f"Unknown status {status!r}; expected pending, running or all", field="status"
            )
        if status is not None and run_ids:
            raise BadUserInput("Give `runIds` or `status`, not both", field="status")
        if thread_id is None and not run_ids and status is None:
            raise BadUserInput("Say which runs to cancel: a thread, run ids or a status")
        tid = parse_uuid(thread_id, "thread") if thread_id is not None else None
        ids = list(dict.fromkeys(parse_uuid(r, "run") for r in run_ids or ()))
        # As LangGraph Server: one `threads.update` for the whole request, whose filter says
        # which threads' runs may be cancelled.
        flt = await self._threads.auth.check(
            "threads",
            "update",
            {
                "thread_id": thread_id,
                "action": action,
                "metadata": {"run_ids": run_ids, "status": status},
            },
        )
        if ids:
            found = await self._cancellable(flt, tid, col(RunRecord.run_id).in_(ids))
            by_id = {run.run_id: run for run in found}
            chosen = [rid for rid in ids if rid in by_id]
        else:
            statuses = ("pending", "running") if status in (None, "all") else (status,)
            chosen = [
                run.run_id
                for state in statuses
                for run in await self._cancellable(flt, tid, col(RunRecord.status) == state)
            ]
        cancelled: list[uuid.UUID] = []
        for rid in chosen:
            try:
                await self._cancel(rid, action, wait=False)
            except (Conflict, NotFound):
                continue
            cancelled.append(rid)
        return cancelled

    async def _cancellable(
        self, flt: AuthFilter | None, thread_id: uuid.UUID | None, condition: Any
    ) -> list[RunRecord]:
        """The runs meeting `condition` (of `thread_id` when given) whose threads `flt` lets
        through, newest first."""
        stmt = db.search(thread_id=thread_id).where(condition)
        if flt is not None:
            stmt = stmt.where(col(RunRecord.thread_id).in_(self._threads.visible_ids(flt)))
        stmt = stmt.order_by(col(RunRecord.created_at).desc())
        async with self._db.sessions() as session:
            return list((await session.execute(stmt)).scalars())

    async def _locked_run(self, conn: asyncpg.Connection, rid: uuid.UUID) -> RunRecord:
        """The run, with its thread's row locked (no run of it starts or ends meanwhile)."""
        if await queue_db.lock_thread_of_run(conn, rid) is None:
            raise NotFound(f"Run {rid} not found", run_id=str(rid))
        run = await queue_db.get(conn, rid)
        assert run is not None
        return run

    async def _maybe_get(self, rid: uuid.UUID) -> RunRecord | None:
        async with self._db.pool.acquire() as conn:
            return await queue_db.get(conn, rid)

    async def delete(self, run_id: str, *, thread_id: uuid.UUID | None = None) -> uuid.UUID:
        """Delete an ended run (of `thread_id` when given) with its checkpoints. Raises
        NotFound, Conflict (still active)."""
        rid = parse_uuid(run_id, "run")
        await self.get(rid, action="delete", thread_id=thread_id)
        async with self._db.pool.acquire() as conn, conn.transaction():
            run = await self._locked_run(conn, rid)
            if run.status in lifecycle.ACTIVE_STATUSES:
                raise Conflict(
                    f"Run {rid} is {run.status}: cancel it before deleting it", status=run.status
                )
            await queue_db.delete_runs(conn, [rid])
            await self._checkpointer.delete_for_runs_in(conn, [str(rid)])
        return rid

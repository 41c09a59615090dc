"""Threads: conversations with their checkpointed state, as on LangGraph Server."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import asyncpg
import orjson
from langchain_core.runnables import RunnableConfig
from langgraph.errors import EmptyInputError, InvalidUpdateError
from langgraph.types import StateUpdate

from app.auth.context import Authorization, is_visible, require_visible
from app.auth.filters import AuthFilter
from app.db import threads as db
from app.db.engine import Database, driver_connection
from app.db.models import Thread as ThreadRecord
from app.db.pagination import Listing
from app.errors import BadUserInput, Conflict, NotFound, ServiceError
from app.messaging.streams import EventStreams
from app.pagination import Page, PageRequest, SortOrder
from app.persistence.checkpointer import PostgresCheckpointer
from app.runtime.commands import command_from_json
from app.runtime.graphs import AccessContext, AnyPregel, GraphRegistry
from app.runtime.state import checkpoint_of, empty_state, snapshot_to_dict
from app.services import run_lifecycle as lifecycle
from app.services.common import (
    UNSET,
    IfExists,
    JsonValue,
    Unset,
    merge_metadata,
    new_id,
    parse_uuid,
    require_checkpoint_map,
    require_object,
    utcnow,
)
from app.services.idempotency import IdempotencyKey, maybe_sweep
from app.services.run_lifecycle import RunTx, ThreadState, ThreadStatus
from app.services.thread_ttl import (
    NO_TTL_FIELDS,
    ThreadTTL,
    ThreadTTLConfig,
    ThreadTTLStrategy,
    expires_at,
    ttl_of,
)

__all__ = ["StateWrite", "ThreadFilter", "ThreadRecord", "ThreadService"]

log = logging.getLogger("lgql.threads")


THREAD_STATUSES = frozenset(ThreadStatus)

SORT_COLUMNS = {
    "created_at": ThreadRecord.created_at,
    "updated_at": ThreadRecord.updated_at,
    "state_updated_at": ThreadRecord.state_updated_at,
    "thread_id": ThreadRecord.thread_id,
    "status": ThreadRecord.status,
}
_THREADS = Listing(ThreadRecord.thread_id, SORT_COLUMNS)


@dataclass(frozen=True)
class ThreadFilter:
    ids: list[str] | None = None
    metadata: JsonValue = None
    values: JsonValue = None
    status: str | None = None


def _not_found(thread_id: uuid.UUID) -> NotFound:
    return NotFound(f"Thread {thread_id} not found", thread_id=str(thread_id))


@dataclass(frozen=True)
class StateWrite:
    """One write of a superstep: `values` (or a `command`, as LangGraph's JSON gives it) as if
    `as_node` had run."""

    as_node: str
    values: Any = None
    command: dict[str, Any] | None = None


@dataclass(frozen=True)
class SeededThread:
    """A thread made by `ThreadService.create_seeded`, and what went wrong seeding it (the
    thread stays either way, as on LangGraph Server)."""

    thread: ThreadRecord
    problem: ServiceError | None = None


#: `as_node` values LangGraph reads as no node of the graph: the input (a superstep that seeds a
#: conversation), a copy of the previous checkpoint (a fork), the end (values written as final).
_PSEUDO_NODES = frozenset({"__input__", "__copy__", "__end__"})


@dataclass(frozen=True)
class _ChosenCheckpoint:
    """Where a state write applies: the latest checkpoint, or a chosen one (a fork), of the
    root graph or of the subgraph `checkpoint_ns` names."""

    checkpoint_id: str | None = None
    checkpoint_ns: str = ""
    checkpoint_map: dict[str, str] | None = None


async def _graph_of_namespace(graph: AnyPregel, checkpoint_ns: str) -> AnyPregel:
    """The (sub)graph a checkpoint namespace names: `child:<task id>|inner:<task id>` is
    subgraph `inner` of subgraph `child` (LangGraph's separators; numeric parts count
    repeated calls)."""
    if not checkpoint_ns:
        return graph
    path = "|".join(part.split(":")[0] for part in checkpoint_ns.split("|") if not part.isdigit())
    async for _, subgraph in graph.aget_subgraphs(namespace=path, recurse=True):
        return cast(AnyPregel, subgraph)
    raise BadUserInput(f"No subgraph {path!r} in the graph", field="checkpoint_ns")


def _check_node(graph: AnyPregel, as_node: str | None) -> None:
    if as_node is not None and as_node not in graph.nodes and as_node not in _PSEUDO_NODES:
        raise BadUserInput(f"Node '{as_node}' does not exist in the graph", field="asNode")


class ThreadService:
    def __init__(
        self,
        db: Database,
        graphs: GraphRegistry,
        checkpointer: PostgresCheckpointer,
        ttl_config: ThreadTTLConfig | None = None,
        auth: Authorization | None = None,
        streams: EventStreams | None = None,
    ) -> None:
        self._db = db
        self._graphs = graphs
        self._checkpointer = checkpointer
        self.ttl_config = ttl_config or ThreadTTLConfig()
        self.auth = auth or Authorization(None)
        # Where a state update is told to the thread's followers (`state_update`); none in
        # tests that build the service alone.
        self._streams = streams

    async def visible(self, thread_id: uuid.UUID, action: str, **value: Any) -> AuthFilter | None:
        """The filter the current user is held to for `action` on this thread (runs are
        checked as actions on their thread, as on LangGraph Server)."""
        return await self.auth.check("threads", action, {"thread_id": str(thread_id), **value})

    def default_ttl_fields(self, now: datetime) -> dict[str, Any]:
        """TTL columns of a thread created without a TTL of its own (`checkpointer.ttl`)."""
        default = self.ttl_config.default
        return default.row_fields(now) if default else {}

    async def create(
        self,
        *,
        thread_id: str | None = None,
        metadata: JsonValue = None,
        if_exists: IfExists = IfExists.RAISE,
        graph_id: str | None = None,
        ttl: ThreadTTL | None = None,
        idempotency_key: str | None = None,
    ) -> ThreadRecord:
        """Create an idle thread, with `ttl` or else the configured default TTL. Raises Conflict
        (id taken, `RAISE`; an idempotency key used before for another request, or whose thread
        is gone), BadUserInput, NotFound (graph). With `idempotency_key`, a repeat of an earlier
        request returns the thread that request made."""
        key = IdempotencyKey.of(
            "thread",
            idempotency_key,
            owner=self.auth.identity(),
            request={
                "thread_id": thread_id,
                "metadata": metadata,
                "if_exists": if_exists.value,
                "graph_id": graph_id,
                "ttl": [ttl.strategy.value, ttl.minutes] if ttl else None,
            },
        )
        if key is not None:
            maybe_sweep(self._db.pool)  # expired keys go where keys are used
        tid = parse_uuid(thread_id, "thread") if thread_id else new_id()
        meta = dict(require_object(metadata, "metadata") or {})
        if graph_id is not None:
            if graph_id not in self._graphs.graph_ids:
                raise NotFound(f"Graph '{graph_id}' not found", graph_id=graph_id)
            meta["graph_id"] = graph_id
        value: dict[str, Any] = {
            "thread_id": str(tid),
            "metadata": meta,
            "if_exists": if_exists.value,
            "ttl": {"strategy": ttl.strategy.value, "ttl": ttl.minutes} if ttl else None,
        }
        flt = await self.auth.check("threads", "create", value)
        meta = dict(require_object(value.get("metadata"), "metadata") or {})
        now = utcnow()
        ttl_fields = ttl.row_fields(now) if ttl else self.default_ttl_fields(now)
        if key is not None:
            return await self._create_once(key, tid, meta, now, ttl_fields, if_exists)
        async with self._db.pool.acquire() as conn:
            created = await db.insert_if_absent(
                conn, thread_id=tid, metadata=meta, now=now, ttl=ttl_fields
            )
        if created is not None:
            return created
        if if_exists is IfExists.DO_NOTHING:
            async with self._db.sessions() as session:
                existing = await db.get(session, tid)
            if existing is not None and is_visible(flt, existing.metadata_):
                return existing
        raise Conflict(f"Thread {tid} already exists", thread_id=str(tid))

    async def create_seeded(
        self,
        supersteps: Sequence[Sequence[StateWrite]] | None = None,
        *,
        thread_id: str | None = None,
        metadata: JsonValue = None,
        if_exists: IfExists = IfExists.RAISE,
        graph_id: str | None = None,
        ttl: ThreadTTL | None = None,
        idempotency_key: str | None = None,
    ) -> SeededThread:
        """`create`, then `bulk_update_state` with `supersteps` on the thread it returns, as
        LangGraph Server creates a thread with `supersteps`: when they fail, the thread stays
        and `problem` says so (the same kind of error, its message naming the thread); a
        failed `create` raises as `create`."""
        thread = await self.create(
            thread_id=thread_id,
            metadata=metadata,
            if_exists=if_exists,
            graph_id=graph_id,
            ttl=ttl,
            idempotency_key=idempotency_key,
        )
        if not supersteps:
            return SeededThread(thread)
        try:
            await self.bulk_update_state(str(thread.thread_id), supersteps)
        except ServiceError as exc:
            problem = type(exc)(
                f"Thread {thread.thread_id} was created, but there were problems updating "
                f"the state: {exc.message}",
                **{**exc.details, "thread_id": str(thread.thread_id)},
            )
            return SeededThread(thread, problem)
        return SeededThread(await self.get(thread.thread_id))

    async def _create_once(
        self,
        key: IdempotencyKey,
        tid: uuid.UUID,
        meta: dict[str, Any],
        now: datetime,
        ttl_fields: dict[str, Any],
        if_exists: IfExists,
    ) -> ThreadRecord:
        """`create` with an idempotency key: the key and the thread in one transaction, or the
        thread an earlier request with the key made."""
        async with self._db.pool.acquire() as conn:
            async with conn.transaction():
                earlier = await key.claim(conn, tid)
                if earlier is None:
                    created = await db.insert_if_absent(
                        conn, thread_id=tid, metadata=meta, now=now, ttl=ttl_fields
                    )
                    if created is None and if_exists is not IfExists.DO_NOTHING:
                        # Raised inside the transaction: the key is rolled back with it.
                        raise Conflict(f"Thread {tid} already exists", thread_id=str(tid))
        if earlier is None and created is not None:
            return created
        try:
            return await self.get(earlier or tid)
        except NotFound:
            if earlier is None:  # DO_NOTHING on a thread this user may not see
                raise Conflict(f"Thread {tid} already exists", thread_id=str(tid)) from None
            raise key.gone(earlier) from None

    async def get(self, thread_id: str | uuid.UUID, *, action: str = "read") -> ThreadRecord:
        """The thread, if the current user may do `action` on it. Raises NotFound."""
        tid = parse_uuid(thread_id, "thread")
        flt = await self.visible(tid, action)
        async with self._db.sessions() as session:
            found = await db.get(session, tid)
        if found is None:
            raise NotFound(f"Thread {tid} not found", thread_id=str(tid))
        require_visible(flt, found.metadata_, _not_found(tid))
        return found

    async def get_many(self, thread_ids: list[str]) -> list[ThreadRecord | None]:
        """Threads by id, in the order asked (None where absent): one query for many lookups."""
        ids = [parse_uuid(t, "thread") for t in thread_ids]
        filters = [await self.visible(i, "read") for i in ids]
        async with self._db.sessions() as session:
            result = await session.execute(db.search(ids=ids))
            found = {row.thread_id: row for row in result.scalars()}
        return [
            row if (row := found.get(i)) and is_visible(f, row.metadata_) else None
            for i, f in zip(ids, filters, strict=True)
        ]

    async def update(
        self,
        thread_id: str,
        *,
        metadata: dict[str, Any] | None = None,
        ttl: ThreadTTL | Unset | None = UNSET,
    ) -> ThreadRecord:
        """Merge `metadata` into the thread's (given keys replace, others stay); set its `ttl`
        (None removes it, UNSET leaves it)."""
        tid = parse_uuid(thread_id, "thread")
        value: dict[str, Any] = {"metadata": require_object(metadata, "metadata")}
        flt = await self.visible(tid, "update", **value)
        patch = require_object(value.get("metadata"), "metadata")
        async with self._db.sessions.begin() as session:
            current = await db.get(session, tid, for_update=True)
            if current is None:
                raise NotFound(f"Thread {tid} not found", thread_id=str(tid))
            require_visible(flt, current.metadata_, _not_found(tid))
            now = utcnow()
            fields: dict[str, Any] = {}
            if not isinstance(ttl, Unset):
                fields = ttl.row_fields(now) if ttl else dict(NO_TTL_FIELDS)
            updated = await db.update_fields(
                session,
                tid,
                metadata=merge_metadata(current.metadata_, patch),
                updated_at=now,
                **fields,
            )
        assert updated is not None
        return updated

    async def delete(self, thread_id: str) -> uuid.UUID:
        """Delete the thread, its runs, crons and checkpoints, all in one transaction."""
        tid = parse_uuid(thread_id, "thread")
        flt = await self.visible(tid, "delete")
        async with self._db.sessions.begin() as session:
            current = await db.get(session, tid, for_update=True)
            if current is None:
                raise NotFound(f"Thread {tid} not found", thread_id=str(tid))
            require_visible(flt, current.metadata_, _not_found(tid))
            await self.delete_in(await driver_connection(session), tid)
        return tid

    async def delete_of_assistant(self, assistant_id: uuid.UUID) -> int:
        """Delete the threads whose metadata names `assistant_id` (its runs stamp it there), as
        LangGraph Server's `delete_threads` does with an assistant; each through `delete`'s
        checks. Returns how many went."""
        flt = ThreadFilter(metadata={"assistant_id": str(assistant_id)})
        deleted = 0
        while True:
            page = await self.search(flt, PageRequest(first=100))
            before = deleted
            for thread in page.items:
                try:
                    await self.delete(str(thread.thread_id))
                except NotFound:
                    continue  # went meanwhile, or one the user may see but not delete
                deleted += 1
            # The next page is the first one again; a page with nothing deletable ends it.
            if not page.has_next_page or deleted == before:
                return deleted

    async def delete_in(self, conn: asyncpg.Connection, thread_id: uuid.UUID) -> bool:
        """`delete`, inside the caller's transaction on `conn` (a stateless run's thread goes in
        the transaction that ends the run). False if there was no such thread."""
        if not await db.delete_one(conn, thread_id):
            return False
        await self._checkpointer.delete_thread_in(conn, str(thread_id))
        return True

    async def sweep_expired(self) -> tuple[int, int]:
        """One pass of the thread TTL sweeper over at most `sweep_limit` threads whose TTL has
        run out: `delete` removes each (runs, crons, checkpoints too), `keep_latest` prunes it
        to its latest checkpoint. Threads active since, or with a pending or running run, get
        a later `expires_at` instead. Safe with many sweepers: rows are taken with SKIP LOCKED.
        Returns (deleted, pruned)."""
        deleted = pruned = 0
        retry_later = timedelta(seconds=self.ttl_config.sweep_interval_seconds)
        async with self._db.sessions.begin() as session:
            now = utcnow()
            for row in await db.lock_expiring(session, limit=self.ttl_config.sweep_limit):
                ttl, due = ttl_of(row), expires_at(row)
                if ttl is None or due is None:
                    await db.update_fields(session, row.thread_id, **NO_TTL_FIELDS)
                elif due > now:
                    await db.update_fields(session, row.thread_id, expires_at=due)
                elif await db.has_active_runs(session, row.thread_id):
                    await db.update_fields(session, row.thread_id, expires_at=now + retry_later)
                elif ttl.strategy is ThreadTTLStrategy.DELETE:
                    await self.delete_in(await driver_connection(session), row.thread_id)
                    deleted += 1
                else:
                    conn = await driver_connection(session)
                    try:
                        await self._checkpointer.prune_in(conn, [str(row.thread_id)])
                        pruned += 1
                    except NotImplementedError as exc:  # a DeltaChannel thread: kept whole
                        log.warning("thread %s not pruned: %s", row.thread_id, exc)
                    await db.update_fields(session, row.thread_id, expires_at=ttl.deadline(now))
        return deleted, pruned

    async def copy(self, thread_id: str) -> ThreadRecord:
        """A new thread with the same metadata and the whole checkpoint history of the source."""
        tid = parse_uuid(thread_id, "thread")
        new_tid = new_id()
        flt = await self.visible(tid, "read")
        async with self._db.sessions.begin() as session:
            source = await db.get(session, tid, for_update=True)
            if source is None:
                raise NotFound(f"Thread {tid} not found", thread_id=str(tid))
            require_visible(flt, source.metadata_, _not_found(tid))
            # As LangGraph: copying reads the source and creates a thread (whose handler may
            # stamp the new owner into its metadata).
            value: dict[str, Any] = {"thread_id": str(new_tid), "metadata": dict(source.metadata_)}
            await self.auth.check("threads", "create", value)
            conn = await driver_connection(session)
            await self._checkpointer.copy_thread_in(conn, str(tid), str(new_tid))
            copied = await db.insert_if_absent(
                conn,
                thread_id=new_tid,
                metadata=dict(require_object(value.get("metadata"), "metadata") or {}),
                config=dict(source.config),
                # A copy has no runs, so it cannot be busy; otherwise it shows what its state shows.
                status="idle" if source.status == "busy" else source.status,
                values=source.values,
                interrupts=source.interrupts,
                now=(now := utcnow()),
                ttl=ttl.row_fields(now)
                if (ttl := ttl_of(source))
                else self.default_ttl_fields(now),
            )
        assert copied is not None
        return copied

    async def search(
        self,
        filter: ThreadFilter,
        page: PageRequest,
        *,
        sort_by: str = "created_at",
        order: SortOrder = SortOrder.DESC,
    ) -> Page[ThreadRecord]:
        stmt = await self._search_stmt(filter)
        return await _THREADS.page(self._db.sessions, stmt, page, sort_by=sort_by, order=order)

    async def count(self, filter: ThreadFilter) -> int:
        return await _THREADS.count(self._db.sessions, await self._search_stmt(filter))

    async def _search_stmt(self, filter: ThreadFilter) -> Any:
        if filter.status is not None and filter.status not in THREAD_STATUSES:
            raise BadUserInput(f"unknown thread status {filter.status!r}", field="status")
        ids = [parse_uuid(i, "thread") for i in filter.ids] if filter.ids is not None else None
        metadata = require_object(filter.metadata, "metadata")
        values = require_object(filter.values, "values")
        flt = await self.auth.check(
            "threads", "search", {"metadata": metadata, "values": values, "status": filter.status}
        )
        stmt = db.search(ids=ids, metadata=metadata, values=values, status=filter.status)
        return stmt if flt is None else stmt.where(flt.to_sql(ThreadRecord.metadata_))

    def visible_ids(self, flt: AuthFilter) -> Any:
        """The ids of the threads `flt` lets through, as a subquery (to filter their runs)."""
        return db.ids_where(flt.to_sql(ThreadRecord.metadata_))

    # --- state -------------------------------------------------------------------------------

    @asynccontextmanager
    async def _graph_for(
        self, thread: ThreadRecord, access: AccessContext
    ) -> AsyncIterator[AnyPregel | None]:
        """The thread's graph (from `metadata.graph_id`) for one use, or None if it has none."""
        graph_id = thread.metadata_.get("graph_id")
        if not isinstance(graph_id, str) or graph_id not in self._graphs.graph_ids:
            yield None
            return
        configurable = {
            **(thread.config.get("configurable") or {}),
            "thread_id": str(thread.thread_id),
            "graph_id": graph_id,
        }
        if "assistant_id" in thread.metadata_:
            configurable["assistant_id"] = thread.metadata_["assistant_id"]
        config: RunnableConfig = {"configurable": configurable}
        async with self._graphs.open(
            graph_id, config, checkpointer=self._checkpointer, access_context=access
        ) as graph:
            yield graph

    def _config(
        self,
        thread: ThreadRecord,
        checkpoint_id: str | None = None,
        checkpoint_ns: str = "",
        checkpoint_map: dict[str, str] | None = None,
    ) -> RunnableConfig:
        conf: dict[str, Any] = {"thread_id": str(thread.thread_id), "checkpoint_ns": checkpoint_ns}
        if checkpoint_id is not None:
            conf["checkpoint_id"] = checkpoint_id
        if checkpoint_map:
            conf["checkpoint_map"] = checkpoint_map
        return {"configurable": conf}

    async def require_checkpoint(
        self,
        thread: ThreadRecord,
        checkpoint_id: str | None,
        checkpoint_ns: str = "",
        checkpoint_map: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """NotFound unless the thread has checkpoint `checkpoint_id` (None: any) in namespace
        `checkpoint_ns`, and each checkpoint `checkpoint_map` names in its namespace.
        Returns the checkpoint's (the latest's) metadata."""
        saved = await self._checkpointer.aget_tuple(
            self._config(thread, checkpoint_id, checkpoint_ns)
        )
        if saved is None:
            where = f" in namespace {checkpoint_ns!r}" if checkpoint_ns else ""
            what = f"Checkpoint {checkpoint_id}" if checkpoint_id else "No checkpoint"
            raise NotFound(
                f"{what}{where} not found on thread {thread.thread_id}",
                checkpoint_id=checkpoint_id,
                checkpoint_ns=checkpoint_ns,
            )
        for ns, cid in (checkpoint_map or {}).items():
            if (ns, cid) != (checkpoint_ns, checkpoint_id):
                await self.require_checkpoint(thread, cid, ns)
        return dict(saved.metadata or {})

    async def run_checkpoint_map(
        self,
        thread: ThreadRecord,
        checkpoint_id: str | None,
        checkpoint_ns: str = "",
        checkpoint_map: dict[str, str] | None = None,
    ) -> dict[str, str] | None:
        """Check the checkpoint a run starts from (NotFound if absent) and return the
        `checkpoint_map` the run needs. LangGraph starts the root graph from the map's `""`
        entry and each subgraph from its namespace's (the root ignores `checkpoint_id` when
        `checkpoint_ns` names a subgraph): a subgraph's checkpoint chosen without a map gets
        the one it was written under (its metadata's `parents`), plus its own entry."""
        if checkpoint_id is None:
            if checkpoint_ns:
                checkpoint_id = (checkpoint_map or {}).get(checkpoint_ns)
            if checkpoint_id is None:
                if checkpoint_ns or checkpoint_map:
                    raise BadUserInput(
                        "Choose a subgraph's checkpoint by its id: give `checkpoint_id` "
                        "(or its entry in `checkpoint_map`) with `checkpoint_ns`",
                        field="checkpoint_id",
                    )
                return None
        metadata = await self.require_checkpoint(
            thread, checkpoint_id, checkpoint_ns, checkpoint_map
        )
        if checkpoint_map is not None or not checkpoint_ns:
            return checkpoint_map
        parents = metadata.get("parents")
        chosen = {str(k): str(v) for k, v in (parents if isinstance(parents, dict) else {}).items()}
        return {**chosen, checkpoint_ns: checkpoint_id}

    async def state(
        self,
        thread: ThreadRecord,
        *,
        checkpoint_id: str | None = None,
        subgraphs: bool = False,
        checkpoint_ns: str = "",
        checkpoint_map: JsonValue = None,
    ) -> dict[str, Any]:
        """The thread's state at its latest checkpoint, or at `checkpoint_id` (NotFound if absent);
        a subgraph's with `checkpoint_ns`; `checkpoint_map` as in the checkpoint's config."""
        chosen_map = require_checkpoint_map(checkpoint_map)
        if checkpoint_id is not None:
            await self.require_checkpoint(thread, checkpoint_id, checkpoint_ns, chosen_map)
        async with self._graph_for(thread, "threads.read") as graph:
            if graph is None:
                return empty_state()
            try:
                snapshot = await graph.aget_state(
                    self._config(thread, checkpoint_id, checkpoint_ns, chosen_map),
                    subgraphs=subgraphs,
                )
            except ValueError as exc:  # a checkpoint_ns naming no subgraph of the graph
                raise BadUserInput(str(exc), field="checkpoint_ns") from exc
        if not snapshot.config:
            return empty_state()
        return snapshot_to_dict(snapshot)

    async def history(
        self,
        thread: ThreadRecord,
        *,
        limit: int = 10,
        before: str | None = None,
        metadata: JsonValue = None,
        checkpoint_ns: str = "",
        checkpoint_map: JsonValue = None,
    ) -> list[dict[str, Any]]:
        """Past states, newest first; `before` is a checkpoint id (exclusive); a subgraph's
        with `checkpoint_ns`; `checkpoint_map` as in the checkpoint's config."""
        if limit < 1:
            raise BadUserInput("`limit` must be at least 1", argument="limit")
        flt = require_object(metadata, "metadata")
        chosen_map = require_checkpoint_map(checkpoint_map)
        before_config = (
            self._config(thread, before, checkpoint_ns, chosen_map) if before is not None else None
        )
        async with self._graph_for(thread, "threads.read") as graph:
            if graph is None:
                return []
            try:
                return [
                    snapshot_to_dict(s)
                    async for s in graph.aget_state_history(
                        self._config(
                            thread, checkpoint_ns=checkpoint_ns, checkpoint_map=chosen_map
                        ),
                        filter=flt,
                        before=before_config,
                        limit=limit,
                    )
                ]
            except ValueError as exc:  # a checkpoint_ns naming no subgraph of the graph
                raise BadUserInput(str(exc), field="checkpoint_ns") from exc

    async def update_state(
        self,
        thread_id: str,
        *,
        values: Any,
        as_node: str | None = None,
        checkpoint_id: str | None = None,
        checkpoint_ns: str = "",
        checkpoint_map: JsonValue = None,
    ) -> dict[str, Any]:
        """Apply `values` as if `as_node` had run (reducers apply), making a new checkpoint; in
        the subgraph `checkpoint_ns` names, when given (`as_node` is then one of its nodes).

        Raises NotFound (thread, checkpoint), Conflict (thread has an active run), BadUserInput
        (no graph on the thread, unknown node or subgraph, invalid update).
        """
        tid = parse_uuid(thread_id, "thread")
        chosen = _ChosenCheckpoint(
            checkpoint_id, checkpoint_ns, require_checkpoint_map(checkpoint_map)
        )
        flt = await self.visible(tid, "update", values=values, as_node=as_node)

        async def apply(graph: AnyPregel, config: RunnableConfig) -> RunnableConfig:
            _check_node(await _graph_of_namespace(graph, checkpoint_ns), as_node)
            return await graph.aupdate_state(config, values, as_node=as_node)

        return await self._write_state(tid, flt, chosen, apply)

    async def bulk_update_state(
        self, thread_id: str, supersteps: Sequence[Sequence[StateWrite]]
    ) -> dict[str, Any]:
        """Apply `supersteps` in order, each one step of the graph's history whose writes
        (values or a command, as if their node had run) apply together: LangGraph's
        `supersteps`, which seed a thread with a past conversation. Raises as `update_state`."""
        tid = parse_uuid(thread_id, "thread")
        if not supersteps or not all(supersteps):
            raise BadUserInput("every superstep needs at least one update", field="supersteps")
        flt = await self.visible(tid, "update")

        async def apply(graph: AnyPregel, config: RunnableConfig) -> RunnableConfig:
            steps = []
            for step in supersteps:
                for write in step:
                    _check_node(graph, write.as_node)
                steps.append(
                    [
                        # A Command goes through the node's writers as a node's return would.
                        StateUpdate(
                            cast(Any, command_from_json(w.command)) if w.command else w.values,
                            w.as_node,
                        )
                        for w in step
                    ]
                )
            return await graph.abulk_update_state(config, steps)

        return await self._write_state(tid, flt, _ChosenCheckpoint(), apply)

    async def _write_state(
        self,
        tid: uuid.UUID,
        flt: AuthFilter | None,
        chosen: _ChosenCheckpoint,
        apply: Callable[[AnyPregel, RunnableConfig], Awaitable[RunnableConfig]],
    ) -> dict[str, Any]:
        """`apply` a state write to the thread's graph, under the thread's row lock while no
        run is active, and the thread's status, values and interrupts follow."""
        async with self._db.sessions.begin() as session:
            # The row lock keeps a run from starting between the busy check and the state write.
            thread = await db.get(session, tid, for_update=True)
            if thread is None:
                raise NotFound(f"Thread {tid} not found", thread_id=str(tid))
            require_visible(flt, thread.metadata_, _not_found(tid))
            if await db.has_active_runs(session, tid):
                raise Conflict(
                    "Thread is busy with a run; wait for it to finish before updating its state",
                    thread_id=str(tid),
                )
            # A subgraph's latest checkpoint must exist too: a namespace no run wrote would
            # otherwise start a state of its own.
            if chosen.checkpoint_id is not None or chosen.checkpoint_ns:
                await self.require_checkpoint(
                    thread, chosen.checkpoint_id, chosen.checkpoint_ns, chosen.checkpoint_map
                )
            async with self._graph_for(thread, "threads.update") as graph:
                if graph is None:
                    raise BadUserInput(
                        "Thread has no graph: create it with a graphId or run it once first",
                        thread_id=str(tid),
                    )
                try:
                    next_config = await apply(
                        graph,
                        self._config(
                            thread,
                            chosen.checkpoint_id,
                            chosen.checkpoint_ns,
                            chosen.checkpoint_map,
                        ),
                    )
                except (
                    InvalidUpdateError,
                    EmptyInputError,
                    ValueError,
                    KeyError,
                    TypeError,
                ) as exc:
                    raise BadUserInput(f"Invalid state update: {exc}", field="values") from exc
                # A subgraph's update leaves the thread's own (root) state as it was.
                snapshot = await graph.aget_state(
                    self._config(thread) if chosen.checkpoint_ns else next_config
                )
            # The thread's status by the run state machine's rule (no run is active here).
            await lifecycle.refresh_thread(
                await RunTx.of_session(session), tid, state=ThreadState.of_snapshot(snapshot)
            )
        state = snapshot_to_dict(snapshot)
        await self._tell_state_update(tid, state)
        if chosen.checkpoint_ns:
            return {"checkpoint": checkpoint_of(next_config)}
        return {"checkpoint": state["checkpoint"]}

    async def _tell_state_update(self, tid: uuid.UUID, state: dict[str, Any]) -> None:
        """A `state_update` event on the thread's stream, as LangGraph Server publishes one
        (`{"thread_id", "state"}`). The state is written either way: a stream Redis cannot
        take misses the event (logged), the update still succeeds."""
        if self._streams is None:
            return
        data = orjson.dumps({"thread_id": str(tid), "state": state}, default=str)
        try:
            await self._streams.publish_thread_event(str(tid), "state_update", data)
        except Exception as exc:  # Redis down or refusing: the update stands, the event is lost
            log.warning("state_update of thread %s not published: %r", tid, exc)

    async def prune(self, thread_ids: Sequence[str], *, strategy: str = "delete") -> int:
        """LangGraph's prune: `delete` removes each thread (runs, crons, checkpoints too),
        `keep_latest` keeps only its latest checkpoint. Threads absent or not the current
        user's to delete are left out of the count. Raises BadUserInput (strategy, ids, a
        thread whose state cannot be pruned)."""
        if strategy not in ("delete", "keep_latest"):
            raise BadUserInput(
                f"Unknown prune strategy {strategy!r}; expected delete or keep_latest",
                field="strategy",
            )
        ids = [parse_uuid(t, "thread") for t in thread_ids]
        pruned = 0
        for tid in dict.fromkeys(ids):
            flt = await self.visible(tid, "delete")
            async with self._db.sessions.begin() as session:
                current = await db.get(session, tid, for_update=True)
                if current is None or not is_visible(flt, current.metadata_):
                    continue
                conn = await driver_connection(session)
                if strategy == "delete":
                    await self.delete_in(conn, tid)
                else:
                    try:
                        await self._checkpointer.prune_in(conn, [str(tid)])
                    except NotImplementedError as exc:
                        raise BadUserInput(
                            f"Thread {tid} cannot be pruned: {exc}", thread_id=str(tid)
                        ) from exc
                pruned += 1
        return pruned

"""The checkpointer a run's attempt writes through: fenced on the attempt, and batched.

Fenced: every save names the run and the attempt that claimed it, and is made only while that
attempt still holds the run, checked in the saving statement itself (`checkpoint_sql.SAVE_FENCED`);
a worker that lost the run raises `LostOwnership` and has saved nothing more.

Batched (`write_behind`, for LangGraph's `async` durability): LangGraph hands a checkpoint and each
task's writes to the checkpointer in the background and goes on with the next step; it only waits
for them when the graph exits. So the saves need not be one statement (and one commit) each: they
queue up, and a background flush sends everything queued in a single statement, at most
`BATCH_SECONDS` after the first of them, or at once when someone waits for them. A step never
waits for the database, a checkpoint is in Postgres within `BATCH_SECONDS` of being taken (while
the next step executes, as LangGraph's `async` mode says), and a run of quick steps costs one
statement instead of a dozen. What a crash can lose is what was queued or in flight: what
LangGraph's `async` mode already gives up, over a window of `BATCH_SECONDS`. Reads through this
view flush the queue first, so the run reads its own writes. At the graph's end, what is still
queued is taken out (`hold_back`) and written by the run's end statement, in its transaction
(`lgql_finish_run`): the run ends with its progress saved or not at all, in one round trip.
Under `sync` durability every save is flushed before it returns; under `exit` LangGraph saves
once, at the end.

Faults: this view is lgql's own code inside the graph's run, so a lost or broken connection met by
one of its statements (a save or a read) leaves it as `app.faults.InfrastructureFault`, and the
pool's connections are replaced: the runner hands the attempt back (it resumes from the last
saved checkpoint on a fresh connection) instead of ending the run ERROR.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from typing import Any, TypeVar
from uuid import UUID

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import CheckpointTuple, DeltaChannelHistory, get_checkpoint_id

from app import faults
from app.observability import metrics, tracing
from app.persistence import checkpoint_sql as sql
from app.persistence.checkpoint_mirror import UNKNOWN, CheckpointMirror
from app.persistence.checkpointer import LostOwnership, PostgresCheckpointer

T = TypeVar("T")

_CHECKPOINT, _WRITES_KEPT, _WRITES_REPLACED = 0, 1, 2

#: Longest a queued save waits for others to join its batch (unless someone waits for it).
BATCH_SECONDS = 0.05


class FencedCheckpointer(PostgresCheckpointer):
    """`PostgresCheckpointer.fenced`: saves fenced on (`run_id`, `attempt`); with `write_behind`,
    queued and sent in batches by one background flush at a time. With `fresh_thread` (a thread
    that had no checkpoint when the attempt claimed the run), reads of that thread's latest
    checkpoints are answered from this attempt's own saves (`checkpoint_mirror`)."""

    def __init__(
        self,
        base: PostgresCheckpointer,
        run_id: str,
        attempt: int,
        *,
        write_behind: bool,
        fresh_thread: str | None = None,
    ) -> None:
        super().__init__(base.pool, serde=base.serde)
        self.run_id = str(run_id)
        self.attempt = int(attempt)
        self._run_uuid = UUID(self.run_id)  # a bad id fails here, not in the first write
        self._write_behind = write_behind
        self._queued: list[tuple[int, list[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None
        # Set while someone waits for the queued saves: the flush goes at once.
        self._wanted = asyncio.Event()
        self._sending = False  # the flusher is past gathering its batch
        self._failure: BaseException | None = None
        self._mirror = CheckpointMirror(fresh_thread) if fresh_thread is not None else None
        #: Statements sent, and reads answered from the mirror, for tests and benchmarks.
        self.statements = 0
        self.mirrored_reads = 0

    async def _save(self, query: str, args: list[Any]) -> None:
        self._raise_failure()
        kind = (
            _CHECKPOINT
            if query is sql.PUT_CHECKPOINT
            else _WRITES_REPLACED
            if query is sql.UPSERT_WRITES
            else _WRITES_KEPT
        )
        self._queued.append((kind, args))
        if self._mirror is not None:
            if kind == _CHECKPOINT:
                self._mirror.record_checkpoint(args)
            else:
                self._mirror.record_writes(args, replaces=kind == _WRITES_REPLACED)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_queued())
        if not self._write_behind:
            await self.flush()

    async def flush(self) -> None:
        """Wait until every save queued so far is made. Raises `LostOwnership` (the attempt no
        longer holds the run: nothing more was saved), or what a save raised."""
        await self._drained()
        self._raise_failure()

    async def hold_back(self) -> list[list[Any]] | None:
        """Take the saves still queued out of the queue, for the caller to write in the run's
        end statement (`SAVE_FENCED`'s arrays after run and attempt), instead of a statement of
        their own; None when none are left. A batch already on its way is waited for (if the
        caller is cancelled meanwhile, the queue stays with the flush). Raises what `flush`
        raises. Only for the graph's end: later saves would be sent on their own."""
        if self._sending:
            await self._drained()
        flusher = self._flusher
        if flusher is not None and not flusher.done():
            # Still gathering its batch: the end takes the batch instead. Not awaited, so that
            # nothing can interrupt us between stopping the flush and taking its queue.
            flusher.cancel()
        self._raise_failure()
        if not self._queued:
            return None
        batch, self._queued = self._queued, []
        return _batch_args(batch)

    async def _drained(self) -> None:
        while self._flusher is not None and not self._flusher.done():
            self._wanted.set()
            # Shielded: a caller cancelled while waiting must not cancel the flush itself.
            await asyncio.shield(self._flusher)

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    async def _flush_queued(self) -> None:
        if self._write_behind:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(BATCH_SECONDS):
                    await self._wanted.wait()
        self._sending = True
        try:
            await self._send_queued()
        finally:
            self._sending = False
            self._wanted.clear()

    async def _send_queued(self) -> None:
        while self._queued and self._failure is None:
            batch, self._queued = self._queued, []
            try:
                self.statements += 1
                with metrics.checkpoint_write(), tracing.span("lgql.checkpoint.write"):
                    held = await self.pool.fetchval(
                        sql.SAVE_FENCED, self._run_uuid, self.attempt, *_batch_args(batch)
                    )
            except BaseException as exc:
                self._failure = await self._marked(exc)
                self._queued.clear()
                if isinstance(exc, asyncio.CancelledError):
                    raise
                return
            if not held:
                self._failure = LostOwnership(self.run_id, self.attempt)
                self._queued.clear()

    async def _marked(self, exc: BaseException) -> BaseException:
        """`exc` as an `InfrastructureFault` when it is one (its connection is then dropped from
        the pool, with every other: after a lost server or a terminated backend the idle ones are
        as broken, and one reused mid-failure answers "another operation is in progress")."""
        marked = faults.mark(exc)
        if marked is not exc:
            marked.__cause__ = exc
            with contextlib.suppress(Exception):
                await self.pool.expire_connections()
        return marked

    async def _read(self, read: Awaitable[T]) -> T:
        try:
            return await read
        except Exception as exc:
            marked = await self._marked(exc)
            if marked is exc:
                raise
            raise marked from exc

    # -- reads see this attempt's own saves (reads are not fenced: they never raise a save's
    # failure) -------------------------------------------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        mirror = self._mirror
        if mirror is not None and self._failure is None:
            conf = config["configurable"]
            row = mirror.row(
                str(conf["thread_id"]), conf.get("checkpoint_ns") or "", get_checkpoint_id(config)
            )
            if row is not UNKNOWN:
                self.mirrored_reads += 1
                return None if row is None else self._load_tuple(row)
        await self._drained()
        return await self._read(super().aget_tuple(config))

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        await self._drained()
        items = super().alist(config, filter=filter, before=before, limit=limit)
        while True:
            try:
                item = await self._read(anext(items))
            except StopAsyncIteration:
                return
            yield item

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        await self._drained()
        return await self._read(
            super().aget_delta_channel_history(config=config, channels=channels)
        )


def _batch_args(batch: list[tuple[int, list[Any]]]) -> list[list[Any]]:
    """`SAVE_FENCED`'s 32 arrays (after run and attempt) for the queued saves, in order, with each
    key once: the effect of running the saves one by one (a blob or a kept write: the first; a
    checkpoint or a replacing write: the last)."""
    blobs: dict[tuple[str, str, str, str], tuple[str | None, bytes | None]] = {}
    checkpoints: dict[tuple[str, str, str], tuple[str | None, str, str]] = {}
    # key -> (replaces, task_path, run_id, channel, type, blob)
    writes: dict[tuple[str, str, str, str, int], tuple[bool, str, str | None, str, str, bytes]] = {}
    for kind, args in batch:
        if kind == _CHECKPOINT:
            thread, ns, cid, parent, skeleton, metadata, chans, versions, types, data = args
            for channel, version, type_, blob in zip(chans, versions, types, data, strict=True):
                blobs.setdefault((thread, ns, channel, version), (type_, blob))
            checkpoints[(thread, ns, cid)] = (parent, skeleton, metadata)
            continue
        thread, ns, cid, task_id, task_path, run_id, idxs, chans, types, data = args
        replaces = kind == _WRITES_REPLACED
        for idx, channel, type_, blob in zip(idxs, chans, types, data, strict=True):
            key = (thread, ns, cid, task_id, idx)
            earlier = writes.get(key)
            if replaces:
                writes[key] = (True, task_path, run_id, channel, type_, blob)
            elif earlier is None:
                writes[key] = (False, task_path, run_id, channel, type_, blob)
    kept = [(*key[:4], r[1], r[2], key[4], *r[3:]) for key, r in writes.items() if not r[0]]
    replaced = [(*key[:4], r[1], r[2], key[4], *r[3:]) for key, r in writes.items() if r[0]]
    return [
        *_columns([(*key, *row) for key, row in blobs.items()], 6),
        *_columns([(*key, *row) for key, row in checkpoints.items()], 6),
        *_columns(kept, 10),
        *_columns(replaced, 10),
    ]


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows of `width` values as `width` arrays (for unnest)."""
    return [list(col) for col in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]

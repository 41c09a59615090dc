"""LangGraph checkpointer on asyncpg (tables in `checkpoint_schema`, SQL in `checkpoint_sql`).

Every operation is one statement, so one round trip: a checkpoint is saved with its new channel
blobs in a single INSERT, and read back with its channel values and pending writes in a single
SELECT. Serialization happens on the event loop: a thread hop per call costs more than encoding
the values of a typical step.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import asyncpg
import orjson
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from app.observability import metrics, tracing
from app.persistence import checkpoint_sql as sql

if TYPE_CHECKING:
    from app.persistence.fenced_checkpointer import FencedCheckpointer

PRUNE_STRATEGIES = ("keep_latest", "delete")


def _strip_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_strip_nul(k): _strip_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strip_nul(v) for v in value]
    return value


def _jsonb(value: Any) -> str:
    """JSON text for a JSONB column, without NUL characters anywhere (JSONB rejects them).

    LangGraph itself strips NUL from top-level metadata strings only; nested values (user
    metadata, filters) can carry them too. The text check is cheap and rarely triggers.
    """
    text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    if b"\\u0000" in text:
        text = orjson.dumps(_strip_nul(value), option=orjson.OPT_NON_STR_KEYS)
    return text.decode()


def _config(thread_id: str, checkpoint_ns: str, checkpoint_id: str) -> RunnableConfig:
    return {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": checkpoint_ns,
            "checkpoint_id": checkpoint_id,
        }
    }


def _sync_unsupported(name: str) -> NoReturn:
    raise NotImplementedError(
        f"PostgresCheckpointer is async-only: call a{name}() instead of {name}() "
        "(use ainvoke/astream on the graph)."
    )


class LostOwnership(RuntimeError):
    """A fenced write found its run no longer 'running' at the writer's attempt (claimed again by
    another worker, or finished); nothing of that write was saved."""

    def __init__(self, run_id: str, attempt: int) -> None:
        super().__init__(run_id, attempt)  # args stay the constructor's, so it pickles
        self.run_id = run_id
        self.attempt = attempt

    def __str__(self) -> str:
        return f"run {self.run_id} is no longer running at attempt {self.attempt}: write refused"


class PostgresCheckpointer(BaseCheckpointSaver[str]):
    """Checkpointer storing LangGraph checkpoints in Postgres through an asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool, *, serde: SerializerProtocol | None = None) -> None:
        super().__init__(serde=serde)
        self.pool = pool

    # -- reads ---------------------------------------------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        conf = config["configurable"]
        checkpoint_id = get_checkpoint_id(config)
        query = sql.select_tuples(
            thread=True,
            ns=True,
            checkpoint_id=bool(checkpoint_id),
            metadata=False,
            before=False,
            limit=not checkpoint_id,
        )
        with metrics.checkpoint_get():
            row = await self.pool.fetchrow(
                query,
                str(conf["thread_id"]),
                conf.get("checkpoint_ns") or "",
                checkpoint_id or 1,  # without an id: the newest, LIMIT 1
            )
        return None if row is None else self._load_tuple(row)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        conf = config["configurable"] if config else {}
        thread_id = conf.get("thread_id")
        checkpoint_ns = conf.get("checkpoint_ns")
        checkpoint_id = conf.get("checkpoint_id")
        before_id = get_checkpoint_id(before) if before else None
        conditions: list[tuple[str, bool, Any]] = [
            ("thread", thread_id is not None, str(thread_id)),
            ("ns", checkpoint_ns is not None, checkpoint_ns),
            ("checkpoint_id", bool(checkpoint_id), checkpoint_id),
            ("metadata", bool(filter), _jsonb(filter) if filter else None),
            ("before", bool(before_id), before_id),
            ("limit", limit is not None, limit),
        ]
        query = sql.select_tuples(**{name: present for name, present, _ in conditions})
        args = [arg for _, present, arg in conditions if present]
        # Fetched whole rather than through a server-side cursor, which would pin a connection
        # (and a transaction) for as long as the caller takes between items.
        rows = await self.pool.fetch(query, *args)
        for row in rows:
            yield self._load_tuple(row)

    def _load_tuple(self, row: asyncpg.Record | Mapping[str, Any]) -> CheckpointTuple:
        loads = self.serde.loads_typed
        checkpoint = orjson.loads(row["checkpoint"])
        checkpoint["channel_values"] = {
            channel: loads((type_, blob)) for channel, type_, blob in row["blobs"] or ()
        }
        thread_id: str = row["thread_id"]
        checkpoint_ns: str = row["checkpoint_ns"]
        parent_id: str | None = row["parent_checkpoint_id"]
        return CheckpointTuple(
            config=_config(thread_id, checkpoint_ns, row["checkpoint_id"]),
            checkpoint=checkpoint,
            metadata=orjson.loads(row["metadata"]),
            parent_config=_config(thread_id, checkpoint_ns, parent_id) if parent_id else None,
            pending_writes=[
                (task_id, channel, loads((type_, blob)))
                for task_id, channel, type_, blob in row["writes"] or ()
            ],
        )

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """One query instead of the base class's one `aget_tuple` per ancestor."""
        if not channels:
            return {}
        conf = config["configurable"]
        checkpoint_id = get_checkpoint_id(config)
        rows = await self.pool.fetch(
            sql.DELTA_HISTORY_AT if checkpoint_id else sql.DELTA_HISTORY_LATEST,
            str(conf["thread_id"]),
            conf.get("checkpoint_ns") or "",
            checkpoint_id,
            list(channels),
        )
        loads = self.serde.loads_typed
        result: dict[str, DeltaChannelHistory] = {ch: {"writes": []} for ch in channels}
        for row in rows:
            entry = result[row["channel"]]
            value = loads((row["type"], row["blob"]))
            if row["kind"] == "w":
                entry["writes"].append((row["task_id"], row["channel"], value))
            else:
                entry["seed"] = value
        return result

    def fenced(
        self,
        run_id: str,
        attempt: int,
        *,
        write_behind: bool = False,
        fresh_thread: str | None = None,
    ) -> FencedCheckpointer:
        """A view on the same pool and serializer whose `aput` and `aput_writes` save only while
        run `run_id` is 'running' at `attempt`, checked in the saving statement itself, and raise
        `LostOwnership` (having saved nothing) otherwise. Reads and maintenance are not fenced.
        `write_behind`: saves are batched in the background; `fresh_thread`: the id of the run's
        thread when it had no checkpoint at the claim (`FencedCheckpointer`)."""
        from app.persistence.fenced_checkpointer import FencedCheckpointer

        return FencedCheckpointer(
            self, run_id, attempt, write_behind=write_behind, fresh_thread=fresh_thread
        )

    # -- writes --------------------------------------------------------------------------------

    async def _save(self, query: str, args: list[Any]) -> None:
        """The one door for statements that save a run's progress (checkpoints and writes):
        `PUT_CHECKPOINT` with `checkpoint_args`, or `INSERT_WRITES`/`UPSERT_WRITES` with
        `writes_args`."""
        with metrics.checkpoint_write(), tracing.span("lgql.checkpoint.write"):
            await self.pool.execute(query, *args)

    def checkpoint_args(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> list[Any]:
        """`PUT_CHECKPOINT`'s parameters: the row, then its new blobs as four arrays."""
        conf = config["configurable"]
        values = checkpoint["channel_values"]
        dumps = self.serde.dumps_typed
        # Only channels with a new version get a blob; the others keep pointing at theirs.
        channels: list[str] = []
        versions: list[str] = []
        types: list[str] = []
        blobs: list[bytes | None] = []
        for channel, version in new_versions.items():
            channels.append(channel)
            versions.append(str(version))
            if channel in values:
                type_, blob = dumps(values[channel])
                types.append(type_)
                blobs.append(blob)
            else:
                types.append("empty")
                blobs.append(None)
        skeleton = {k: v for k, v in checkpoint.items() if k != "channel_values"}
        return [
            str(conf["thread_id"]),
            conf.get("checkpoint_ns") or "",
            checkpoint["id"],
            conf.get("checkpoint_id"),
            orjson.dumps(skeleton, option=orjson.OPT_NON_STR_KEYS).decode(),
            _jsonb(get_serializable_checkpoint_metadata(config, metadata)),
            channels,
            versions,
            types,
            blobs,
        ]

    def writes_args(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str,
    ) -> tuple[bool, list[Any]]:
        """Whether the writes replace earlier ones (`UPSERT_WRITES`, else `INSERT_WRITES`), and
        the statement's parameters: the task, then one array per column."""
        conf = config["configurable"]
        upsert = all(channel in WRITES_IDX_MAP for channel, _ in writes)
        dumps = self.serde.dumps_typed
        # One row per index: ON CONFLICT DO UPDATE cannot touch a row twice in one statement, and
        # deduplicating here keeps what separate statements would (first insert, last upsert).
        rows: dict[int, tuple[str, str, bytes]] = {}
        for i, (channel, value) in enumerate(writes):
            idx = WRITES_IDX_MAP.get(channel, i)
            if upsert or idx not in rows:
                rows[idx] = (channel, *dumps(value))
        run_id = (config.get("metadata") or {}).get("run_id") or conf.get("run_id")
        return upsert, [
            str(conf["thread_id"]),
            conf.get("checkpoint_ns") or "",
            conf["checkpoint_id"],
            task_id,
            task_path,
            None if run_id is None else str(run_id),
            list(rows),
            [r[0] for r in rows.values()],
            [r[1] for r in rows.values()],
            [r[2] for r in rows.values()],
        ]

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        args = self.checkpoint_args(config, checkpoint, metadata, new_versions)
        await self._save(sql.PUT_CHECKPOINT, args)
        return _config(args[0], args[1], checkpoint["id"])

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        if not writes:
            return
        upsert, args = self.writes_args(config, writes, task_id, task_path)
        await self._save(sql.UPSERT_WRITES if upsert else sql.INSERT_WRITES, args)

    # -- maintenance ---------------------------------------------------------------------------

    async def adelete_thread(self, thread_id: str) -> None:
        await self.delete_thread_in(self.pool, thread_id)

    @staticmethod
    async def delete_thread_in(conn: asyncpg.Connection | asyncpg.Pool, thread_id: str) -> None:
        """Delete a thread's checkpoints on `conn`, inside the caller's transaction (so the
        thread row and its state go together or not at all)."""
        await conn.execute(sql.DELETE_THREADS, [str(thread_id)])

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        if isinstance(run_ids, str):
            raise TypeError("run_ids must be a sequence of run IDs, not a str")
        await self.delete_for_runs_in(self.pool, run_ids)

    @staticmethod
    async def delete_for_runs_in(
        conn: asyncpg.Connection | asyncpg.Pool, run_ids: Sequence[str]
    ) -> None:
        """Delete what the runs wrote, on `conn`, inside the caller's transaction (a rollback
        deletes the run row and its checkpoints together)."""
        if run_ids:
            await conn.execute(sql.DELETE_FOR_RUNS, [str(r) for r in run_ids])

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self.copy_thread_in(self.pool, source_thread_id, target_thread_id)

    @staticmethod
    async def copy_thread_in(
        conn: asyncpg.Connection | asyncpg.Pool, source_thread_id: str, target_thread_id: str
    ) -> None:
        """Copy a thread's checkpoints on `conn`, inside the caller's transaction."""
        await conn.execute(sql.COPY_THREAD, str(source_thread_id), str(target_thread_id))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Prune threads: "keep_latest" keeps the newest checkpoint of each namespace (and drops
        finished subgraph calls), "delete" removes everything.

        Raises NotImplementedError for keep_latest on a thread that uses a DeltaChannel, whose
        state is rebuilt from the writes of the checkpoints that would be deleted.
        """
        if isinstance(thread_ids, str):
            raise TypeError("thread_ids must be a sequence of thread IDs, not a str")
        await self.prune_in(self.pool, thread_ids, strategy=strategy)

    @staticmethod
    async def prune_in(
        conn: asyncpg.Connection | asyncpg.Pool,
        thread_ids: Sequence[str],
        *,
        strategy: str = "keep_latest",
    ) -> None:
        """`aprune` on `conn`, inside the caller's transaction (the thread TTL sweeper prunes
        a thread while it holds the thread's row)."""
        if strategy not in PRUNE_STRATEGIES:
            raise ValueError(f"Unknown prune strategy: {strategy!r}")
        ids = [str(t) for t in thread_ids]
        if not ids:
            return
        if strategy == "delete":
            await conn.execute(sql.DELETE_THREADS, ids)
            return
        if delta := [r["thread_id"] for r in await conn.fetch(sql.DELTA_THREADS, ids)]:
            raise NotImplementedError(
                f"keep_latest can't prune threads that use a DeltaChannel: {', '.join(delta)}"
            )
        await conn.execute(sql.PRUNE_KEEP_LATEST, ids)

    def get_next_version(self, current: str | None, channel: None) -> str:
        """Zero-padded counter (so versions compare as strings) plus a random suffix, so two
        forks of one checkpoint never give the same version, hence blob key, to different values.
        """
        if current is None:
            n = 0
        elif isinstance(current, int):
            n = current
        else:
            n = int(str(current).split(".", 1)[0])
        return f"{n + 1:032d}.{random.getrandbits(64):016x}"

    # -- the sync API is not offered: the server only ever runs graphs asynchronously ----------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        _sync_unsupported("get_tuple")

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        _sync_unsupported("list")

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        _sync_unsupported("put")

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        _sync_unsupported("put_writes")

    def delete_thread(self, thread_id: str) -> None:
        _sync_unsupported("delete_thread")

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        _sync_unsupported("delete_for_runs")

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        _sync_unsupported("copy_thread")

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        _sync_unsupported("prune")

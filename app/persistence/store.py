"""LangGraph's long-term memory (`BaseStore`) on asyncpg, with pgvector semantic search.

A batch costs few round trips: every get of it in one statement, every put and delete (with
their vectors) in one statement, one statement per search or namespace listing; the reads run
concurrently on the pool and before the writes, so a batch reads what was there before it, as
LangGraph's own stores do. SQL text lives in `store_sql`.

`store` in langgraph.json: `index {dims, embed, fields}` turns on semantic search (the vector
table is made at start-up, its type depends on `dims`); `ttl {refresh_on_read, default_ttl,
sweep_interval_minutes}` sets expiry defaults (minutes). Expired items are never returned, even
before `sweep_expired` deletes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from langchain_core.embeddings import Embeddings
from langgraph.store.base import (
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
    _validate_namespace,
    get_text_at_path,
    tokenize_path,
    validate_op_namespace,
)

from app.observability import metrics
from app.persistence import store_sql as sql
from app.persistence.embeddings import EmbeddingsConfigError, load_embeddings
from app.runtime.langgraph_config import ConfigError, LanggraphConfig

# Serialises start-up DDL of the vector table across processes (any constant unique to it).
_VECTOR_DDL_LOCK = 0x6C67716C_73746F72  # "lgqlstor"
DEFAULT_SWEEP_MINUTES = 60.0

__all__ = ["PostgresStore", "StoreConfigError", "StoreIndex", "open_store"]


class StoreConfigError(ConfigError):
    """langgraph.json's `store` cannot be served (bad value, pgvector missing, dims changed)."""


TokenizedPath = tuple[str, str | list[str]]


def _tokenize(path: str) -> TokenizedPath:
    # "$" is the whole value; get_text_at_path wants it as is, not tokenized.
    return (path, path if path == "$" else tokenize_path(path))


@dataclass(frozen=True)
class StoreIndex:
    """Semantic search settings: vector size, the embedder, and the default fields to embed."""

    dims: int
    embeddings: Embeddings
    fields: tuple[str, ...] = ("$",)

    def paths(self, fields: Sequence[str] | None) -> list[TokenizedPath]:
        return [_tokenize(f) for f in (self.fields if fields is None else fields)]


def _item(row: asyncpg.Record) -> Item:
    return Item(
        namespace=tuple(row["namespace"]),
        key=row["key"],
        value=orjson.loads(row["value"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _search_item(row: asyncpg.Record) -> SearchItem:
    return SearchItem(
        namespace=tuple(row["namespace"]),
        key=row["key"],
        value=orjson.loads(row["value"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        score=row["score"],
    )


class PostgresStore(BaseStore):
    """The server's store, injected into every graph run (`store` argument, `Runtime.store`)."""

    supports_ttl = True

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        index: StoreIndex | None = None,
        ttl: TTLConfig | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.pool = pool
        self.index = index
        self.ttl_config = ttl
        self._loop = loop

    @property
    def sweep_interval_seconds(self) -> float:
        """Seconds between two `sweep_expired` calls: `store.ttl.sweep_interval_minutes`, or an
        hour when not set (per-item `ttl` works without any configuration)."""
        minutes = (self.ttl_config or {}).get("sweep_interval_minutes")
        return float(minutes if minutes else DEFAULT_SWEEP_MINUTES) * 60

    # -- the batch ---------------------------------------------------------------------------

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        with metrics.store_batch(_operation(ops)):
            return await self._abatch(ops)

    async def _abatch(self, ops: list[Op]) -> list[Result]:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        results: list[Result] = [None] * len(ops)
        gets: list[tuple[int, GetOp]] = []
        searches: list[tuple[int, SearchOp]] = []
        listings: list[tuple[int, ListNamespacesOp]] = []
        puts: dict[tuple[tuple[str, ...], str], PutOp] = {}
        for n, op in enumerate(ops):
            validate_op_namespace(op)
            if isinstance(op, GetOp):
                gets.append((n, op))
            elif isinstance(op, SearchOp):
                searches.append((n, op))
            elif isinstance(op, ListNamespacesOp):
                listings.append((n, op))
            elif isinstance(op, PutOp):
                _validate_namespace(op.namespace)
                # The last write of an item in a batch wins, as in LangGraph's stores.
                puts[(tuple(op.namespace), str(op.key))] = op
            else:
                raise TypeError(f"unknown store operation: {type(op).__name__}")

        # Every query is built (and every filter checked) before anything runs.
        listing_queries = [(n, sql.list_namespaces_query(op)) for n, op in listings]
        search_queries = await self._search_queries(searches)
        reads = [self._fetch(n, q, a, results) for n, (q, a) in listing_queries]
        reads += [self._fetch(n, q, a, results, search=True) for n, (q, a) in search_queries]
        if gets:
            reads.append(self._get_many(gets, results))
        await _all(reads)
        if puts:
            await self._put_many(list(puts.values()))
        return results

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """For sync code a graph runs in worker threads (sync nodes and tools): the batch runs
        on the event loop the store serves, and this thread waits for it."""
        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or loop.is_closed():
            raise RuntimeError(
                "PostgresStore has no event loop to run on: use its async methods "
                "(aget/aput/asearch/adelete/alist_namespaces)"
            )
        if running is loop:
            raise RuntimeError(
                "PostgresStore's sync methods cannot be called from the event loop it runs on "
                "(it would wait for itself): use await store.aget/aput/asearch/adelete/"
                "alist_namespaces, or make the node a plain `def`, which LangGraph runs in a thread"
            )
        return asyncio.run_coroutine_threadsafe(self.abatch(ops), loop).result()

    # -- reads -------------------------------------------------------------------------------

    async def _get_many(self, gets: list[tuple[int, GetOp]], results: list[Result]) -> None:
        rows = await self.pool.fetch(
            sql.GET_MANY,
            [sql.ns_text(op.namespace) for _, op in gets],
            [str(op.key) for _, op in gets],
            [bool(op.refresh_ttl) for _, op in gets],
        )
        for row in rows:
            results[gets[row["ord"] - 1][0]] = _item(row)

    async def _search_queries(
        self, searches: list[tuple[int, SearchOp]]
    ) -> list[tuple[int, tuple[str, list[Any]]]]:
        vectors: dict[int, str] = {}
        if self.index is not None:
            asked = [(n, op.query) for n, op in searches if op.query]
            embedded = await _all([self.index.embeddings.aembed_query(text) for _, text in asked])
            for (n, _), vector in zip(asked, embedded, strict=True):
                vectors[n] = sql.vector_text(self._checked(vector))
        return [(n, sql.search_query(op, vectors.get(n))) for n, op in searches]

    async def _fetch(
        self, n: int, query: str, args: list[Any], results: list[Result], *, search: bool = False
    ) -> None:
        rows = await self.pool.fetch(query, *args)
        if search:
            results[n] = [_search_item(r) for r in rows]
        else:
            results[n] = [tuple(r["namespace"]) for r in rows]

    # -- writes ------------------------------------------------------------------------------

    async def _put_many(self, puts: list[PutOp]) -> None:
        # Rows are locked in one order by every batch, so two batches never deadlock.
        puts = sorted(puts, key=lambda op: (tuple(op.namespace), str(op.key)))
        values = [None if op.value is None else sql.jsonb(dict(op.value)) for op in puts]
        args: list[Any] = [
            [sql.ns_text(op.namespace) for op in puts],
            [str(op.key) for op in puts],
            values,
            [None if op.ttl is None else float(op.ttl) for op in puts],
        ]
        if len(puts) == 1 and values[0] is not None and self.index is None:
            op = puts[0]
            await self.pool.execute(
                sql.PUT_ONE, list(op.namespace), str(op.key), values[0], args[3][0]
            )
            return
        if self.index is None or all(v is None for v in values):
            await self.pool.execute(sql.PUT_ITEMS, *args)
            return
        await self.pool.execute(sql.PUT_ITEMS_AND_VECTORS, *args, *await self._vectors(puts))

    async def _vectors(self, puts: list[PutOp]) -> list[list[str]]:
        """The rows of the vector table for the items written: (namespace, key, field, vector),
        one per text found at the item's index fields (`field.N` for the Nth of several)."""
        assert self.index is not None
        owners: list[tuple[str, str, str]] = []
        texts: list[str] = []
        for op in puts:
            if op.value is None or op.index is False:
                continue
            for path, tokens in self.index.paths(op.index):
                found = get_text_at_path(op.value, tokens)
                for i, text in enumerate(found):
                    field = f"{path}.{i}" if len(found) > 1 else path
                    owners.append((sql.ns_text(op.namespace), str(op.key), field))
                    texts.append(text)
        unique = list(dict.fromkeys(texts))  # each distinct text embedded once
        embedded = await self.index.embeddings.aembed_documents(unique) if unique else []
        if len(embedded) != len(unique):
            raise ValueError(
                f"the embedder returned {len(embedded)} vectors for {len(unique)} texts"
            )
        by_text = {
            t: sql.vector_text(self._checked(v)) for t, v in zip(unique, embedded, strict=True)
        }
        return [
            [o[0] for o in owners],
            [o[1] for o in owners],
            [o[2] for o in owners],
            [by_text[t] for t in texts],
        ]

    def _checked(self, vector: Sequence[float]) -> Sequence[float]:
        assert self.index is not None
        if len(vector) != self.index.dims:
            raise ValueError(
                f"the embedder returned a {len(vector)}-dimension vector; "
                f"store.index.dims is {self.index.dims}"
            )
        return vector

    async def adelete_item(self, namespace: tuple[str, ...], key: str) -> bool:
        """Delete one item (its vectors go with it); whether a live item was there."""
        deleted = await self.pool.fetchval(sql.DELETE_ONE, sql.ns_text(namespace), str(key))
        return bool(deleted)

    # -- maintenance -------------------------------------------------------------------------

    async def sweep_expired(self) -> int:
        """Delete expired items (their vectors go with them); returns how many."""
        status = await self.pool.execute(sql.SWEEP)
        return int(status.rsplit(" ", 1)[-1])


_OPERATIONS = {GetOp: "get", SearchOp: "search", PutOp: "put", ListNamespacesOp: "list_namespaces"}


def _operation(ops: list[Op]) -> str:
    """The metric label of a batch: its operations' kind, or `batch` when it mixes them."""
    kinds = {_OPERATIONS.get(type(op), "batch") for op in ops}
    return kinds.pop() if len(kinds) == 1 else "batch"


async def _all(aws: Sequence[Any]) -> list[Any]:
    """Await them concurrently; the first failure is raised once all have finished (none is
    left running unobserved)."""
    if len(aws) == 1:
        return [await aws[0]]
    results = await asyncio.gather(*aws, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


# -- configuration and start-up ------------------------------------------------------------------


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise StoreConfigError(f"langgraph.json {where} must be a positive number, got {value!r}")
    return float(value)


def _ttl_settings(store: dict[str, Any]) -> TTLConfig | None:
    ttl = store.get("ttl")
    if ttl is None:
        return None
    if not isinstance(ttl, dict):
        raise StoreConfigError("langgraph.json store.ttl must be an object")
    refresh = ttl.get("refresh_on_read", True)
    if not isinstance(refresh, bool):
        raise StoreConfigError("langgraph.json store.ttl.refresh_on_read must be true or false")
    return TTLConfig(
        refresh_on_read=refresh,
        default_ttl=_number(ttl.get("default_ttl"), "store.ttl.default_ttl"),
        sweep_interval_minutes=_number(  # type: ignore[typeddict-item]
            ttl.get("sweep_interval_minutes"), "store.ttl.sweep_interval_minutes"
        ),
    )


def _index_settings(store: dict[str, Any]) -> tuple[int, Any, tuple[str, ...]] | None:
    index = store.get("index")
    if index is None:
        return None
    if not isinstance(index, dict):
        raise StoreConfigError("langgraph.json store.index must be an object")
    dims = index.get("dims")
    if isinstance(dims, bool) or not isinstance(dims, int) or dims <= 0:
        raise StoreConfigError(
            f"langgraph.json store.index.dims must be a positive integer, got {dims!r}"
        )
    fields = index.get("fields") or ["$"]
    if not isinstance(fields, list) or not all(isinstance(f, str) and f for f in fields):
        raise StoreConfigError("langgraph.json store.index.fields must be a list of field paths")
    return dims, index.get("embed"), tuple(fields)


async def ensure_vector_table(pool: asyncpg.Pool, dims: int) -> None:
    """pgvector and the vector table, made once whichever process starts first; a table made
    for another `dims` is an error (its vectors cannot be compared with the new ones)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _VECTOR_DDL_LOCK)
        if not await conn.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'vector'"):
            if not await conn.fetchval(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"
            ):
                raise StoreConfigError(
                    "store.index (semantic search) needs the pgvector extension, which this "
                    "Postgres server does not have: install pgvector on it "
                    "(https://github.com/pgvector/pgvector), use a Postgres that ships it "
                    "(e.g. the pgvector/pgvector image, or `lgql dev`'s embedded Postgres), or "
                    "remove store.index from langgraph.json"
                )
            try:
                await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except asyncpg.InsufficientPrivilegeError as exc:
                raise StoreConfigError(
                    "store.index needs the pgvector extension in this database, and this user "
                    "may not create it: run `CREATE EXTENSION vector` once as a superuser"
                ) from exc
        existing = await conn.fetchval(sql.VECTOR_DIMS, sql.VECTOR_TABLE)
        if existing is None:
            for statement in sql.vector_ddl(dims):
                await conn.execute(statement)
        elif existing != dims:
            raise StoreConfigError(
                f"store.index.dims is {dims}, but the {sql.VECTOR_TABLE} table of this database "
                f"holds {existing}-dimension vectors: set dims back to {existing}, or drop the "
                f"table (DROP TABLE {sql.VECTOR_TABLE}; every item must then be put again to be "
                "found by semantic search)"
            )


async def open_store(pool: asyncpg.Pool, config: LanggraphConfig) -> PostgresStore:
    """The process's store, as langgraph.json's `store` asks. Raises StoreConfigError."""
    store = config.store or {}
    if not isinstance(store, dict):
        raise StoreConfigError("langgraph.json store must be an object")
    if store.get("path"):
        raise StoreConfigError(
            "langgraph.json store.path (a custom BaseStore) is not supported by lgql: "
            "items live in lgql's Postgres; remove store.path"
        )
    ttl = _ttl_settings(store)
    index: StoreIndex | None = None
    if (settings := _index_settings(store)) is not None:
        dims, embed, fields = settings
        try:
            # Importing the user's embedding module may do blocking I/O.
            embeddings = await asyncio.to_thread(load_embeddings, embed, config)
        except EmbeddingsConfigError as exc:
            raise StoreConfigError(str(exc)) from exc
        await ensure_vector_table(pool, dims)
        index = StoreIndex(dims=dims, embeddings=embeddings, fields=fields)
    return PostgresStore(pool, index=index, ttl=ttl, loop=asyncio.get_running_loop())

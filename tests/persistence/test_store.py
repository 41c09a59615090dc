"""The asyncpg store (`PostgresStore`) and its service: batches, filters, namespaces, TTL, sync use
from threads, concurrency, configuration. Semantic search is in test_store_semantic.py."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from langgraph.store.base import (
    GetOp,
    InvalidNamespaceError,
    ListNamespacesOp,
    MatchCondition,
    PutOp,
    SearchOp,
)

from app.errors import BadUserInput
from app.persistence.embeddings import EmbeddingsConfigError, load_embeddings
from app.persistence.store import PostgresStore, StoreConfigError, open_store
from app.persistence.store_sql import FilterError
from app.runtime.langgraph_config import parse_langgraph_config
from app.services.store import StoreService
from tests.conftest import EngineUrls, migrated_pool

INDEX_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "store_index"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(engines: EngineUrls) -> AsyncIterator[asyncpg.Pool]:
    """A database of its own: namespace listings see the whole store."""
    async with migrated_pool(engines.database_uri, prefix="lgql_test_store") as pool:
        yield pool


def config(store: dict[str, Any] | None) -> Any:
    data: dict[str, Any] = {"graphs": {}}
    if store is not None:
        data["store"] = store
    return parse_langgraph_config(data, INDEX_DIR / "langgraph.json")


@pytest_asyncio.fixture(loop_scope="session")
async def store(pool: asyncpg.Pool) -> PostgresStore:
    return await open_store(pool, config(None))


async def expire(pool: asyncpg.Pool, namespace: tuple[str, ...], key: str) -> None:
    """Make an item expired now, as the passing of its TTL would."""
    await pool.execute(
        "UPDATE store_items SET expires_at = now() - interval '1 second' "
        "WHERE namespace = $1 AND key = $2",
        list(namespace),
        key,
    )


async def expiry(pool: asyncpg.Pool, namespace: tuple[str, ...], key: str) -> Any:
    return await pool.fetchrow(
        "SELECT ttl_minutes, expires_at, now() AS now FROM store_items "
        "WHERE namespace = $1 AND key = $2",
        list(namespace),
        key,
    )


# -- items -------------------------------------------------------------------------------------


async def test_put_get_update_delete(store: PostgresStore, unique: str) -> None:
    ns = ("users", unique)
    assert await store.aget(ns, "prefs") is None
    await store.aput(ns, "prefs", {"theme": "dark", "n": 1})
    first = await store.aget(ns, "prefs")
    assert first is not None
    assert (first.namespace, first.key, first.value) == (ns, "prefs", {"theme": "dark", "n": 1})
    await store.aput(ns, "prefs", {"theme": "light"})
    second = await store.aget(ns, "prefs")
    assert second is not None and second.value == {"theme": "light"}
    assert second.created_at == first.created_at
    assert second.updated_at > first.updated_at
    await store.adelete(ns, "prefs")
    assert await store.aget(ns, "prefs") is None


async def test_unicode_and_nested_values_round_trip(store: PostgresStore, unique: str) -> None:
    value = {"text": "café ☕ 日本", "deep": {"list": [1, 2.5, None, True, {"x": "y"}]}}
    await store.aput(("u", unique), "k", value)
    item = await store.aget(("u", unique), "k")
    assert item is not None and item.value == value


async def test_batch_results_follow_the_ops(store: PostgresStore, unique: str) -> None:
    ns = ("batch", unique)
    await store.aput(ns, "old", {"v": 0})
    results = await store.abatch(
        [
            PutOp(ns, "a", {"v": 1}),
            GetOp(ns, "old"),
            PutOp(ns, "a", {"v": 2}),  # the last write of an item in a batch wins
            GetOp(ns, "a"),  # reads see the store as it was before the batch
            SearchOp(ns),
            ListNamespacesOp(match_conditions=(MatchCondition("prefix", ns),)),
            PutOp(ns, "old", None),
            GetOp(ns, "missing"),
        ]
    )
    assert results[0] is None and results[2] is None and results[6] is None
    assert results[1] is not None and results[1].value == {"v": 0}  # type: ignore[union-attr]
    assert results[3] is None
    assert [i.key for i in results[4]] == ["old"]  # type: ignore[union-attr]
    assert results[5] == [ns]
    assert results[7] is None
    after = await store.abatch([GetOp(ns, "a"), GetOp(ns, "old"), GetOp(ns, "a")])
    assert after[0] is not None and after[0].value == {"v": 2}  # type: ignore[union-attr]
    assert after[1] is None
    assert after[2] == after[0]


async def test_batch_with_a_bad_filter_writes_nothing(store: PostgresStore, unique: str) -> None:
    ns = ("atomic", unique)
    with pytest.raises(FilterError, match=r"\$regex"):
        await store.abatch([PutOp(ns, "k", {"v": 1}), SearchOp(ns, filter={"v": {"$regex": "x"}})])
    assert await store.aget(ns, "k") is None


async def test_invalid_namespaces_are_refused(store: PostgresStore) -> None:
    for ns in [("a.b",), ("",), ("ok", "")]:
        with pytest.raises(InvalidNamespaceError):
            await store.abatch([GetOp(ns, "k")])
    with pytest.raises(InvalidNamespaceError, match="langgraph"):
        await store.abatch([PutOp(("langgraph", "x"), "k", {})])
    with pytest.raises(InvalidNamespaceError, match="empty"):
        await store.abatch([PutOp((), "k", {})])


# -- search --------------------------------------------------------------------------------------


async def test_search_lists_newest_first_with_limit_and_offset(
    store: PostgresStore, unique: str
) -> None:
    ns = ("docs", unique)
    for n in range(5):
        await store.aput(ns, f"d{n}", {"n": n})
    await store.aput(ns, "d1", {"n": 1, "touched": True})  # updated last: first
    keys = [i.key for i in await store.asearch(ns)]
    assert keys == ["d1", "d4", "d3", "d2", "d0"]
    assert [i.key for i in await store.asearch(ns, limit=2, offset=1)] == ["d4", "d3"]
    assert all(i.score is None for i in await store.asearch(ns))


async def test_namespace_prefix_is_label_wise(store: PostgresStore, unique: str) -> None:
    await store.aput(("p", unique, "b"), "k1", {})
    await store.aput(("p", unique, "b", "c"), "k2", {})
    await store.aput(("p", unique, "bx"), "k3", {})  # "bx" starts with "b", the label differs
    await store.aput(("p", unique, "b\x01"), "k4", {})  # the upper bound of the range itself
    await store.aput(("p", unique + "z", "b"), "k5", {})
    found = {i.key for i in await store.asearch(("p", unique, "b"))}
    assert found == {"k1", "k2"}
    assert {i.key for i in await store.asearch(("p", unique))} == {"k1", "k2", "k3", "k4"}


async def test_filters(store: PostgresStore, unique: str) -> None:
    ns = ("filters", unique)
    await store.aput(ns, "a", {"kind": "note", "n": 1, "tags": ["x"], "meta": {"lang": "en"}})
    await store.aput(ns, "b", {"kind": "note", "n": 5, "tags": ["x", "y"], "meta": {"lang": "fr"}})
    await store.aput(ns, "c", {"kind": "task", "n": 10, "due": "2026-03-01", "flag": None})
    await store.aput(ns, "d", {"kind": "task", "n": "7", "due": "2026-01-15", "done": True})

    async def keys(flt: dict[str, Any]) -> set[str]:
        return {i.key for i in await store.asearch(ns, filter=flt)}

    assert await keys({"kind": "note"}) == {"a", "b"}
    assert await keys({"kind": {"$eq": "task"}}) == {"c", "d"}
    assert await keys({"kind": {"$ne": "task"}}) == {"a", "b"}
    assert await keys({"n": {"$gt": 1}}) == {"b", "c"}  # "7" is a string: not a number
    assert await keys({"n": {"$gte": 1, "$lt": 10}}) == {"a", "b"}
    assert await keys({"n": {"$lte": 5}}) == {"a", "b"}
    assert await keys({"n": 5.0}) == {"b"}  # JSON numbers compare by value
    assert await keys({"due": {"$lt": "2026-02-01"}}) == {"d"}  # strings compare bytewise
    assert await keys({"tags": ["x"]}) == {"a"}  # a list is matched whole
    assert await keys({"meta": {"lang": "fr"}}) == {"b"}  # nested fields
    assert await keys({"meta": {"lang": {"$ne": "fr"}}}) == {"a", "c", "d"}
    assert await keys({"flag": None}) == {"a", "b", "c", "d"}  # missing counts as null
    assert await keys({"done": {"$ne": True}}) == {"a", "b", "c"}
    assert await keys({"done": True, "kind": "task"}) == {"d"}
    assert await keys({"missing": {"$gt": 0}}) == set()
    for bad in [{"n": {"$in": [1]}}, {"n": {"$gt": None}}, {"n": {"$gt": [1]}}]:
        with pytest.raises(FilterError):
            await store.asearch(ns, filter=bad)


# -- namespaces ----------------------------------------------------------------------------------


async def test_list_namespaces(store: PostgresStore, unique: str) -> None:
    spaces = [
        ("ns", unique, "users", "u1"),
        ("ns", unique, "users", "u2"),
        ("ns", unique, "docs", "v1"),
        ("ns", unique, "docs", "v1", "draft"),
        ("ns", unique, "cache", "v1"),
    ]
    for n, space in enumerate(spaces):
        await store.aput(space, f"k{n}", {})
        await store.aput(space, f"other{n}", {})  # two items, one namespace

    async def listed(**kwargs: Any) -> list[tuple[str, ...]]:
        return await store.alist_namespaces(**{"prefix": ("ns", unique), **kwargs})

    assert await listed() == sorted(spaces)
    assert await listed(max_depth=3) == [
        ("ns", unique, "cache"),
        ("ns", unique, "docs"),
        ("ns", unique, "users"),
    ]
    assert await listed(suffix=("v1",)) == [
        ("ns", unique, "cache", "v1"),
        ("ns", unique, "docs", "v1"),
    ]
    assert await listed(suffix=("*", "v1")) == await listed(suffix=("v1",))
    assert await listed(suffix=("docs", "*", "draft")) == [("ns", unique, "docs", "v1", "draft")]
    assert await listed(prefix=("ns", "*", "users")) != []
    wild = await store.alist_namespaces(prefix=("ns", "*", "docs"), max_depth=4)
    assert ("ns", unique, "docs", "v1") in wild
    assert await listed(limit=2, offset=1) == sorted(spaces)[1:3]
    assert await listed(prefix=("ns", unique, "nothing")) == []


# -- TTL -----------------------------------------------------------------------------------------


async def test_item_ttl_sets_and_refreshes_expiry(
    store: PostgresStore, pool: asyncpg.Pool, unique: str
) -> None:
    ns = ("ttl", unique)
    await store.aput(ns, "k", {"v": 1}, ttl=10)
    row = await expiry(pool, ns, "k")
    assert row["ttl_minutes"] == 10
    assert timedelta(minutes=9) < row["expires_at"] - row["now"] <= timedelta(minutes=10)
    await pool.execute(
        "UPDATE store_items SET expires_at = now() + interval '1 minute' WHERE key = 'k' "
        "AND namespace = $1",
        list(ns),
    )
    assert await store.aget(ns, "k", refresh_ttl=False) is not None
    row = await expiry(pool, ns, "k")
    assert row["expires_at"] - row["now"] <= timedelta(minutes=1)
    assert await store.aget(ns, "k") is not None  # refresh_on_read defaults to true
    row = await expiry(pool, ns, "k")
    assert row["expires_at"] - row["now"] > timedelta(minutes=9)
    await pool.execute(
        "UPDATE store_items SET expires_at = now() + interval '1 minute' WHERE namespace = $1",
        list(ns),
    )
    assert [i.key for i in await store.asearch(ns)] == ["k"]
    row = await expiry(pool, ns, "k")
    assert row["expires_at"] - row["now"] > timedelta(minutes=9)
    await store.aput(ns, "forever", {"v": 2})
    assert (await expiry(pool, ns, "forever"))["expires_at"] is None


async def test_expired_items_are_never_read_and_swept(
    store: PostgresStore, pool: asyncpg.Pool, unique: str
) -> None:
    ns = ("expired", unique)
    await store.aput(ns, "gone", {"v": 1}, ttl=5)
    await store.aput(ns, "kept", {"v": 2}, ttl=5)
    await expire(pool, ns, "gone")
    assert await store.aget(ns, "gone") is None
    assert [i.key for i in await store.asearch(ns)] == ["kept"]
    await expire(pool, ns, "kept")
    assert await store.alist_namespaces(prefix=ns) == []
    await store.aput(ns, "kept", {"v": 3})  # written again: a new item
    again = await store.aget(ns, "kept")
    assert again is not None and again.value == {"v": 3}
    assert again.created_at == again.updated_at
    assert await store.sweep_expired() >= 1
    assert (
        await pool.fetchval("SELECT count(*) FROM store_items WHERE namespace = $1", list(ns)) == 1
    )


async def test_ttl_configuration(pool: asyncpg.Pool, unique: str) -> None:
    store = await open_store(
        pool,
        config({"ttl": {"default_ttl": 30, "refresh_on_read": False, "sweep_interval_minutes": 2}}),
    )
    assert store.sweep_interval_seconds == 120
    ns = ("ttlcfg", unique)
    await store.aput(ns, "default", {})
    await store.aput(ns, "none", {}, ttl=None)
    assert (await expiry(pool, ns, "default"))["ttl_minutes"] == 30
    assert (await expiry(pool, ns, "none"))["ttl_minutes"] is None
    await pool.execute(
        "UPDATE store_items SET expires_at = now() + interval '1 minute' WHERE namespace = $1",
        list(ns),
    )
    await store.aget(ns, "default")  # refresh_on_read false: left as it is
    row = await expiry(pool, ns, "default")
    assert row["expires_at"] - row["now"] <= timedelta(minutes=1)
    await store.aget(ns, "default", refresh_ttl=True)
    row = await expiry(pool, ns, "default")
    assert row["expires_at"] - row["now"] > timedelta(minutes=29)
    plain = await open_store(pool, config(None))
    assert plain.sweep_interval_seconds == 3600


# -- sync use, concurrency -----------------------------------------------------------------------


async def test_sync_api_from_a_thread_runs_on_the_stores_loop(
    store: PostgresStore, unique: str
) -> None:
    ns = ("sync", unique)

    def in_thread() -> Any:
        store.put(ns, "k", {"v": 1})
        return store.get(ns, "k"), store.search(ns), store.list_namespaces(prefix=ns)

    item, found, spaces = await asyncio.to_thread(in_thread)
    assert item is not None and item.value == {"v": 1}
    assert [i.key for i in found] == ["k"]
    assert spaces == [ns]


async def test_sync_api_on_the_loop_is_a_clear_error(store: PostgresStore) -> None:
    with pytest.raises(RuntimeError, match=r"await store\.aget"):
        store.get(("x",), "k")


async def test_concurrent_writers(store: PostgresStore, unique: str) -> None:
    ns = ("race", unique)
    await asyncio.gather(
        *(store.aput(ns, "shared", {"writer": n}) for n in range(30)),
        *(store.aput(ns, f"own{n}", {"writer": n}) for n in range(30)),
        *(
            store.abatch([PutOp(ns, "shared", {"writer": 100 + n}), GetOp(ns, "shared")])
            for n in range(10)
        ),
    )
    shared = await store.aget(ns, "shared")
    assert shared is not None and isinstance(shared.value["writer"], int)
    assert len(await store.asearch(ns, limit=100)) == 31


# -- service -------------------------------------------------------------------------------------


async def test_service_checks_input(store: PostgresStore) -> None:
    service = StoreService(store, max_page_size=50)
    bad_calls: list[Any] = [
        service.get_item([], "k"),
        service.get_item(["a", ""], "k"),
        service.get_item(["a.b"], "k"),
        service.get_item(["a"], ""),
        service.put_item(["langgraph"], "k", {}),
        service.put_item(["a"], "k", [1]),
        service.put_item(["a"], "k", {}, ttl=0),
        service.put_item(["a"], "k", {}, ttl=float("inf")),
        service.put_item(["a"], "k", {}, index=True),
        service.search_items(["a"], limit=0),
        service.search_items(["a"], limit=51),
        service.search_items(["a"], offset=-1),
        service.search_items(["a"], filter={"n": {"$regex": 1}}),
        service.search_items(["a"], filter=[1]),
        service.search_items(["a"], query="no index"),
        service.list_namespaces(max_depth=0),
        service.list_namespaces(prefix=["a."]),
        service.delete_item([], "k"),
    ]
    for call in bad_calls:
        with pytest.raises(BadUserInput):
            await call


async def test_service_put_returns_the_item_and_delete_reports(
    store: PostgresStore, pool: asyncpg.Pool, unique: str
) -> None:
    service = StoreService(store)
    item = await service.put_item(["svc", unique], "k", {"v": 1}, ttl=3)
    assert item.value == {"v": 1} and item.namespace == ("svc", unique)
    assert (await expiry(pool, ("svc", unique), "k"))["ttl_minutes"] == 3
    assert await service.delete_item(["svc", unique], "k") is True
    assert await service.delete_item(["svc", unique], "k") is False
    await service.put_item(["svc", unique], "old", {"v": 1}, ttl=3)
    await expire(pool, ("svc", unique), "old")
    assert await service.delete_item(["svc", unique], "old") is False  # expired: already gone


# -- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("store_config", "message"),
    [
        ({"path": "./my_store.py:store"}, "store.path"),
        ({"index": {"dims": 0, "embed": "./embed.py:embed"}}, "dims"),
        ({"index": {"dims": "16", "embed": "./embed.py:embed"}}, "dims"),
        ({"index": {"dims": 16, "embed": "./embed.py:embed", "fields": "text"}}, "fields"),
        ({"index": {"dims": 16}}, "embed is required"),
        ({"index": {"dims": 16, "embed": "./nope.py:embed"}}, "nope.py"),
        ({"index": {"dims": 16, "embed": "./embed.py:DIMS"}}, "not a function"),
        ({"ttl": {"default_ttl": -1}}, "default_ttl"),
        ({"ttl": {"refresh_on_read": "yes"}}, "refresh_on_read"),
    ],
)
async def test_bad_store_configuration(
    pool: asyncpg.Pool, store_config: dict[str, Any], message: str
) -> None:
    with pytest.raises(StoreConfigError, match=message):
        await open_store(pool, config(store_config))


async def test_embed_specs() -> None:
    cfg = config(None)
    file_fn = load_embeddings("./embed.py:embed", cfg)
    assert await file_fn.aembed_query("apple") == file_fn.embed_query("apple")
    module_fn = load_embeddings("tests.fixtures.store_index.embed:aembed", cfg)
    assert await module_fn.aembed_documents(["apple"]) == file_fn.embed_documents(["apple"])
    assert load_embeddings(file_fn, cfg) is file_fn
    # A provider model needs LangChain (not a dependency of lgql): without it, the error says
    # what to install; with it, what init_embeddings says ("nope" is no provider).
    if importlib.util.find_spec("langchain") is None:
        with pytest.raises(EmbeddingsConfigError, match="pip install langchain langchain-openai"):
            load_embeddings("openai:text-embedding-3-small", cfg)
    else:
        with pytest.raises(EmbeddingsConfigError, match="nope:model"):
            load_embeddings("nope:model", cfg)
    with pytest.raises(EmbeddingsConfigError, match="expected"):
        load_embeddings("no-colon", cfg)

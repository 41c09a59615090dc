"""Semantic search (pgvector), always on an embedded Postgres 18 with pgvector started here, whatever
DATABASE_URI says: the machine's Postgres need not have pgvector. The start-up error without
pgvector is checked against the machine's Postgres when DATABASE_URI is set."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from app.db.engine import asyncpg_url
from app.embedded.postgres import PostgresEngine
from app.persistence.store import PostgresStore, StoreConfigError, open_store
from app.runtime.langgraph_config import load_langgraph_config, parse_langgraph_config
from app.services.store import StoreService
from tests.conftest import (
    EngineUrls,
    GraphQLClient,
    make_settings,
    migrated_pool,
    scratch_database,
    start_server,
)
from tests.fixtures.store_index.embed import embed

INDEX_CONFIG = Path(__file__).resolve().parents[1] / "fixtures" / "store_index" / "langgraph.json"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def vector_admin_url() -> AsyncIterator[str]:
    """An embedded Postgres with pgvector. Not pytest's tmp_path: the server runs as its own
    system user when we are root, and must reach its folder."""
    data_dir = Path(tempfile.mkdtemp(prefix="lgql-test-pgvector-"))
    engine = PostgresEngine(data_dir / "postgres", data_dir / "logs" / "postgres.log", True)
    await engine.start()
    try:
        yield engine.uri()
    finally:
        await engine.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(vector_admin_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with migrated_pool(vector_admin_url, prefix="lgql_test_vec") as pool:
        yield pool


@pytest_asyncio.fixture(loop_scope="session")
async def store(pool: asyncpg.Pool) -> PostgresStore:
    return await open_store(pool, load_langgraph_config(INDEX_CONFIG))


def config_with(index: dict[str, Any]) -> Any:
    data = {"graphs": {}, "store": {"index": index}}
    return parse_langgraph_config(data, INDEX_CONFIG)


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


async def vector_fields(pool: asyncpg.Pool, ns: tuple[str, ...], key: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT field FROM store_vectors WHERE namespace = $1 AND key = $2 ORDER BY field",
        list(ns),
        key,
    )
    return [r["field"] for r in rows]


DOCS = {
    "fruit": "apple banana cherry",
    "code": "python rust java code",
    "pets": "cat dog pets",
    "mixed": "python apple",
}


async def test_query_ranks_by_cosine_similarity(store: PostgresStore, unique: str) -> None:
    ns = ("docs", unique)
    for key, text in DOCS.items():
        await store.aput(ns, key, {"text": text, "other": "ignored by fields"})
    query = "python code"
    results = await store.asearch(ns, query=query, limit=10)
    q = embed([query])[0]
    expected = {k: cosine(q, embed([t])[0]) for k, t in DOCS.items()}
    assert [i.key for i in results][:2] == ["code", "mixed"]
    for item in results:
        assert item.score == pytest.approx(expected[item.key], abs=1e-5)
    scores = [i.score for i in results]
    assert scores == sorted(scores, reverse=True)  # type: ignore[type-var]
    top = await store.asearch(ns, query=query, limit=1, offset=1)
    assert [i.key for i in top] == ["mixed"]
    filtered = await store.asearch(ns, query="apple", filter={"text": {"$ne": DOCS["mixed"]}})
    assert next(i.key for i in filtered) == "fruit"
    assert "mixed" not in {i.key for i in filtered}


async def test_index_false_and_field_lists(
    store: PostgresStore, pool: asyncpg.Pool, unique: str
) -> None:
    ns = ("fields", unique)
    await store.aput(ns, "hidden", {"text": "python code"}, index=False)
    await store.aput(ns, "title", {"text": "cat dog", "title": "python code"}, index=["title"])
    await store.aput(ns, "notes", {"notes": [{"b": "apple"}, {"b": "java"}]}, index=["notes[*].b"])
    assert await vector_fields(pool, ns, "hidden") == []
    assert await vector_fields(pool, ns, "title") == ["title"]
    assert await vector_fields(pool, ns, "notes") == ["notes[*].b.0", "notes[*].b.1"]
    results = await store.asearch(ns, query="python code")
    assert [i.key for i in results] == ["title", "notes", "hidden"]
    assert results[0].score == pytest.approx(1.0, abs=1e-5)
    assert results[-1].score is None  # not embedded: listed after the scored ones
    by_java = await store.asearch(ns, query="java", limit=1)
    assert by_java[0].key == "notes"  # the best of an item's vectors counts

    # Written again with other fields: the old vectors go.
    await store.aput(ns, "title", {"text": "cat dog", "title": "python code"})
    assert await vector_fields(pool, ns, "title") == ["text"]
    await store.aput(ns, "title", {"text": "cat dog"}, index=False)
    assert await vector_fields(pool, ns, "title") == []


async def test_vectors_go_with_their_items(
    store: PostgresStore, pool: asyncpg.Pool, unique: str
) -> None:
    ns = ("gone", unique)
    await store.aput(ns, "deleted", {"text": "apple"})
    await store.aput(ns, "expired", {"text": "apple"}, ttl=5)
    assert await vector_fields(pool, ns, "deleted") == ["text"]
    await store.adelete(ns, "deleted")
    assert await vector_fields(pool, ns, "deleted") == []
    await pool.execute(
        "UPDATE store_items SET expires_at = now() - interval '1 second' WHERE namespace = $1",
        list(ns),
    )
    assert await store.asearch(ns, query="apple") == []
    assert await store.sweep_expired() >= 1
    assert await vector_fields(pool, ns, "expired") == []


async def test_async_embedder_and_service(pool: asyncpg.Pool, unique: str) -> None:
    store = await open_store(
        pool, config_with({"dims": 16, "embed": "tests.fixtures.store_index.embed:aembed"})
    )
    assert store.index is not None and store.index.fields == ("$",)
    service = StoreService(store)
    await service.put_item(["svc", unique], "a", {"text": "cat dog pets"})
    await service.put_item(["svc", unique], "b", {"text": "java rust"})
    found = await service.search_items(["svc", unique], query="rust")
    assert [i.key for i in found] == ["b", "a"]
    assert found[0].score is not None and found[0].score > (found[1].score or 0)


async def test_embedder_of_the_wrong_size_is_an_error(pool: asyncpg.Pool, unique: str) -> None:
    store = await open_store(
        pool, config_with({"dims": 16, "embed": "./embed.py:embed_wrong_dims"})
    )
    with pytest.raises(ValueError, match="2-dimension"):
        await store.aput(("wrong", unique), "k", {"text": "x"})
    assert await store.aget(("wrong", unique), "k") is None


async def test_other_dims_than_the_table_is_a_start_up_error(
    store: PostgresStore, pool: asyncpg.Pool
) -> None:
    with pytest.raises(StoreConfigError, match=r"dims is 8.*16-dimension"):
        await open_store(pool, config_with({"dims": 8, "embed": "./embed.py:embed"}))


async def test_semantic_search_through_graphql(
    vector_admin_url: str, engines: EngineUrls, redis_prefix: str, unique: str
) -> None:
    async with scratch_database(vector_admin_url, prefix="lgql_test_vec_api") as url:
        settings = make_settings(f"{redis_prefix}_vec", config=INDEX_CONFIG)
        server = await start_server(
            settings, database_uri=url, redis_uri=engines.redis_uri, migrate=True
        )
        client = GraphQLClient(server.graphql_url)
        try:
            put = "mutation($i: PutStoreItemInput!) { putStoreItem(input: $i) { key } }"
            for key, text in DOCS.items():
                await client.data(put, {"i": {"namespace": ["g", unique], "key": key,
                                              "value": {"text": text}}})  # fmt: skip
            await client.data(put, {"i": {"namespace": ["g", unique], "key": "off",
                                          "value": {"text": "python"}, "index": False}})  # fmt: skip
            data = await client.data(
                'query($p: [String!]!) { storeSearch(namespacePrefix: $p, query: "python code", '
                "limit: 3) { key score } }",
                {"p": ["g", unique]},
            )
            hits = data["storeSearch"]
            assert [h["key"] for h in hits[:2]] == ["code", "mixed"]
            assert hits[0]["score"] > hits[1]["score"] > 0
        finally:
            await client.close()
            await server.stop()


async def test_start_up_without_pgvector(engines: EngineUrls) -> None:
    """On the machine's Postgres (DATABASE_URI): a clear error naming pgvector when it lacks the
    extension, a working index when it has it. Without DATABASE_URI the tests' engines are
    embedded, which have pgvector: the success path is what can be checked there."""
    admin_url = os.environ.get("DATABASE_URI") or engines.database_uri
    admin = await asyncpg.connect(asyncpg_url(admin_url))
    try:
        available = await admin.fetchval(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"
        )
    finally:
        await admin.close()
    async with migrated_pool(admin_url, prefix="lgql_test_novec") as pool:
        cfg = load_langgraph_config(INDEX_CONFIG)
        if available:
            store = await open_store(pool, cfg)
            await store.aput(("v",), "k", {"text": "apple"})
            assert (await store.asearch(("v",), query="apple"))[0].score == pytest.approx(1.0)
        else:
            with pytest.raises(StoreConfigError, match="pgvector"):
                await open_store(pool, cfg)
            assert await pool.fetchval("SELECT to_regclass('store_vectors')") is None

"""Alembic migrations: idempotent upgrade, start-up refusal on a database that is behind."""

from __future__ import annotations

import asyncpg
import pytest

from app.db.engine import asyncpg_url
from app.db.migrate import (
    DatabaseBehindError,
    current_revision,
    ensure_up_to_date,
    head_revision,
    upgrade,
)
from app.runtime.langgraph_config import load_langgraph_config
from app.services.container import open_services
from tests.conftest import EngineUrls, make_settings, scratch_database

TABLES = {
    "assistants",
    "assistant_versions",
    "threads",
    "runs",
    "crons",
    "store_items",
    "webhook_deliveries",
    "idempotency_keys",
    "checkpoints",
    "checkpoint_blobs",
    "checkpoint_writes",
    "alembic_version",
}


async def test_upgrade_creates_every_table_and_is_idempotent(engines: EngineUrls) -> None:
    async with scratch_database(engines.database_uri) as url:
        assert await current_revision(url) is None
        before, after = await upgrade(url)
        assert (before, after) == (None, head_revision())
        assert await upgrade(url) == (head_revision(), head_revision())
        conn = await asyncpg.connect(asyncpg_url(url))
        try:
            rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        finally:
            await conn.close()
        assert {r["tablename"] for r in rows} == TABLES


async def test_concurrent_upgrades_do_not_collide(engines: EngineUrls) -> None:
    import asyncio

    async with scratch_database(engines.database_uri) as url:
        results = await asyncio.gather(*(upgrade(url) for _ in range(3)))
        assert all(after == head_revision() for _, after in results)


async def test_services_refuse_a_database_that_is_behind(
    engines: EngineUrls, redis_prefix: str
) -> None:
    settings = make_settings(redis_prefix)
    lg_config = load_langgraph_config(settings.config)
    async with scratch_database(engines.database_uri) as url:
        with pytest.raises(DatabaseBehindError, match="lgql migrate"):
            await ensure_up_to_date(url)
        with pytest.raises(DatabaseBehindError, match="lgql migrate"):
            async with open_services(
                settings, lg_config, database_uri=url, redis_uri=engines.redis_uri
            ):
                pass
        # `lgql dev` migrates by itself.
        async with open_services(
            settings, lg_config, database_uri=url, redis_uri=engines.redis_uri, migrate=True
        ) as services:
            assert services.graphs.graph_ids
        await ensure_up_to_date(url)


async def test_migrations_match_the_models(engines: EngineUrls) -> None:
    """No table change lives only in the models: autogenerate finds nothing to add."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlmodel import SQLModel

    import app.db.models  # noqa: F401  (registers the tables)
    from app.db.engine import sqlalchemy_url

    checkpoint_tables = {"checkpoints", "checkpoint_blobs", "checkpoint_writes"}

    # store_vectors is made at start-up by app.persistence.store (its type depends on store.index.dims).
    runtime_tables = {*checkpoint_tables, "store_vectors"}

    def include(
        obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
    ) -> bool:
        return not (type_ == "table" and name in runtime_tables)

    def diff(connection: object) -> list[object]:
        context = MigrationContext.configure(
            connection,  # type: ignore[arg-type]
            opts={"include_object": include, "compare_type": True},
        )
        return list(compare_metadata(context, SQLModel.metadata))

    async with scratch_database(engines.database_uri) as url:
        await upgrade(url)
        engine = create_async_engine(sqlalchemy_url(url))
        try:
            async with engine.connect() as conn:
                assert await conn.run_sync(diff) == []
        finally:
            await engine.dispose()


def test_the_head_serve_and_worker_check_is_alembics() -> None:
    """`lgql serve` and `lgql worker` check the revision without Alembic, against the head
    written in app.db.schema_version: it must be the newest migration's."""
    from app.db import schema_version

    assert schema_version.HEAD_REVISION == head_revision(), (
        "a migration was added: set HEAD_REVISION in app/db/schema_version.py to its revision"
    )


async def test_the_revision_read_without_alembic_is_alembics(engines: EngineUrls) -> None:
    from app.db import schema_version

    async with scratch_database(engines.database_uri) as url:
        assert await schema_version.current_revision(url) is None
        await upgrade(url)
        assert await schema_version.current_revision(url) == await current_revision(url)
        await schema_version.ensure_up_to_date(url)


def test_serve_and_worker_do_not_import_alembic() -> None:
    """Alembic (and Mako) are imported where migrations are applied, not by the API or worker."""
    import subprocess
    import sys

    probe = (
        "import sys, lgql.cli, app.server, app.services.container, workers.worker; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

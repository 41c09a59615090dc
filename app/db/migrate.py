"""Alembic, driven from code: `lgql migrate`, the start-up check, and dev's self-migration.

Migrations should connect to Postgres directly (`LGQL_MIGRATION_DATABASE_URI` when `DATABASE_URI`
names a PgBouncer), but they also work through PgBouncer in transaction mode: the whole upgrade is
one transaction under a transaction-scoped advisory lock, on connections that prepare no named
statement (the few statements here gain nothing from a statement cache).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from app.db.engine import engine_options, sqlalchemy_url
from app.db.schema_version import DatabaseBehindError, ensure_up_to_date

__all__ = ["DatabaseBehindError", "ensure_up_to_date", "head_revision", "upgrade"]

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
# Any constant works; it only has to be the same in every process that migrates.
_MIGRATION_LOCK_KEY = 0x6C67716C


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(url: str) -> str | None:
    engine = create_async_engine(sqlalchemy_url(url), **engine_options(pgbouncer=True))
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_current)
    finally:
        await engine.dispose()


async def upgrade(url: str) -> tuple[str | None, str]:
    """Upgrade to head; safe to run from several processes at once. Returns (before, after)."""
    engine = create_async_engine(sqlalchemy_url(url), **engine_options(pgbouncer=True))
    try:
        async with engine.connect() as conn:
            # Serialises concurrent `lgql migrate`/`lgql dev` start-ups on one database: the lock
            # is held until the upgrade's transaction commits (alembic runs in the transaction
            # this statement begins), so it never outlives it, even behind PgBouncer.
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
            before = await conn.run_sync(_current)

            def _upgrade(sync_conn: Connection) -> None:
                cfg = alembic_config()
                cfg.attributes["connection"] = sync_conn
                command.upgrade(cfg, "head")

            await conn.run_sync(_upgrade)
            after = await conn.run_sync(_current)
            await conn.commit()
        assert after is not None
        return before, after
    finally:
        await engine.dispose()

"""Whether the database is at the migration head this code expects, without Alembic.

`lgql serve` and `lgql worker` only check the revision (migrating is `lgql migrate`'s, or `lgql
dev`'s): reading `alembic_version` needs no Alembic, whose import (with Mako) costs every such
process about 7 MiB for the rest of its life. The head is written here; a test checks it is
Alembic's (`tests/persistence/test_migrations.py`), so a new migration cannot forget it.
"""

from __future__ import annotations

import asyncpg

from app.db.engine import asyncpg_url

#: The newest revision in `migrations/versions/`.
HEAD_REVISION = "0015_lean_run_queue_writes"


class DatabaseBehindError(RuntimeError):
    """The database is not at the migration head this code expects."""


async def current_revision(url: str) -> str | None:
    """The database's Alembic revision (None: never migrated)."""
    # No statement cache: behind PgBouncer a named prepared statement may not survive.
    conn = await asyncpg.connect(asyncpg_url(url), statement_cache_size=0)
    try:
        if await conn.fetchval("SELECT to_regclass('alembic_version')") is None:
            return None
        found: str | None = await conn.fetchval("SELECT version_num FROM alembic_version")
        return found
    finally:
        await conn.close()


async def ensure_up_to_date(url: str) -> None:
    """Raise DatabaseBehindError unless the database is at head."""
    current = await current_revision(url)
    if current != HEAD_REVISION:
        raise DatabaseBehindError(
            f"the database is at migration {current or '(empty)'} but this lgql needs "
            f"{HEAD_REVISION}: run `lgql migrate` first"
        )

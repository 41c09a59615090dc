"""The run queue's raw statements (`app.db.run_queue`) against the schema Alembic builds from the
SQLModel tables: each must prepare (names, columns and parameter types all resolve), so a model
or migration change that breaks one fails here, not on the first run in production."""

from __future__ import annotations

from app.db import run_queue
from tests.conftest import EngineUrls, migrated_pool


async def test_every_run_queue_statement_prepares_on_the_migrated_schema(
    engines: EngineUrls,
) -> None:
    failures: dict[str, str] = {}
    async with migrated_pool(engines.database_uri, prefix="lgql_rq") as pool:
        async with pool.acquire() as conn:
            for sql in run_queue.STATEMENTS:
                try:
                    await conn.prepare(sql)
                except Exception as exc:
                    failures[sql.strip().splitlines()[0]] = str(exc)
    assert failures == {}

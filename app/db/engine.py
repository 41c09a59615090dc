"""Connections to Postgres: a SQLAlchemy engine (domain tables), an asyncpg pool (checkpointer).

Both use asyncpg underneath; the checkpointer talks to asyncpg directly as its writes are the hot
path of every run and need batching that the ORM would only slow down.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def _with_scheme(url: str, scheme: str) -> str:
    parts = urlsplit(url)
    if not parts.scheme.startswith(("postgres", "postgresql")):
        raise ValueError(f"not a PostgreSQL URL: {parts.scheme}://…")
    return urlunsplit((scheme, *parts[1:]))


def sqlalchemy_url(url: str) -> str:
    """The URL with the asyncpg driver named, as SQLAlchemy wants it."""
    return _with_scheme(url, "postgresql+asyncpg")


def asyncpg_url(url: str) -> str:
    """The URL as asyncpg wants it (no driver suffix)."""
    return _with_scheme(url, "postgresql")


def _json_dumps(value: object) -> str:
    return orjson.dumps(value).decode()


async def skip_session_reset(conn: asyncpg.Connection) -> None:
    """`reset=` for `asyncpg.create_pool` when no pool user leaves session state behind.

    By default asyncpg runs `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`
    each time a connection goes back to the pool: one more round trip for every operation (about
    0.15 ms of the 0.5 ms a checkpoint read takes here). An open transaction is still rolled back
    on release either way.
    """


@dataclass
class Database:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    pool: asyncpg.Pool

    @classmethod
    async def connect(cls, url: str, *, pool_size: int = 10) -> Database:
        engine = create_async_engine(
            sqlalchemy_url(url),
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=False,
            json_serializer=_json_dumps,
            json_deserializer=orjson.loads,
        )
        # Only the checkpointer uses this pool, with its own encoding of JSON (no type codecs
        # here), and it leaves no session state behind: the reset round trip asyncpg makes on
        # every release would be pure cost.
        pool = await asyncpg.create_pool(
            asyncpg_url(url),
            min_size=1,
            max_size=pool_size,
            reset=skip_session_reset,
        )
        assert pool is not None
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        return cls(engine=engine, sessions=sessions, pool=pool)

    async def close(self) -> None:
        await self.pool.close()
        await self.engine.dispose()


async def driver_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under a SQLAlchemy session, inside the session's transaction, so
    raw-SQL writes (the checkpointer's, the run queue's) commit or roll back with it."""
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    adapter = raw.dbapi_connection
    # SQLAlchemy's asyncpg adapter sends BEGIN lazily, with the session's first statement: a
    # raw statement sent before that would run (and commit) on its own.
    if getattr(adapter, "_transaction", True) is None:
        await conn.exec_driver_sql("SELECT 1")
    driver: asyncpg.Connection = raw.driver_connection
    return driver

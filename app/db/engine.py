"""Connections to Postgres: a SQLAlchemy engine (domain tables), an asyncpg pool (checkpointer).

Both use asyncpg underneath; the checkpointer talks to asyncpg directly as its writes are the hot
path of every run and need batching that the ORM would only slow down.

Behind PgBouncer in transaction pooling mode (`LGQL_PGBOUNCER=1`, or detected: see
`behind_pooler`), consecutive transactions of one client connection may run on different server
connections, so nothing may outlive a transaction: no named prepared statement (asyncpg's
statement cache and SQLAlchemy's prepare under their own names; unnamed statements, parsed again
with each execution, are used instead) and no session state (lgql keeps none: advisory locks are
transaction-scoped, no LISTEN, no SET without LOCAL, no temporary table). Directly on Postgres the
named statements stay: each statement is parsed once per connection, not once per execution.
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


def engine_options(*, pgbouncer: bool) -> dict[str, object]:
    """`create_async_engine` keyword arguments for a direct connection or a PgBouncer's."""
    if not pgbouncer:
        return {}
    # asyncpg then prepares unnamed statements and parses them again with every Bind
    # (asyncpg's own PgBouncer provision); SQLAlchemy's adapter keeps none of its own.
    return {"connect_args": {"statement_cache_size": 0, "prepared_statement_cache_size": 0}}


def pool_options(*, pgbouncer: bool) -> dict[str, object]:
    """`asyncpg.create_pool`/`asyncpg.connect` keyword arguments, as `engine_options`."""
    return {"statement_cache_size": 0} if pgbouncer else {}


async def behind_pooler(url: str) -> bool:
    """Whether `url` reaches Postgres through a connection pooler (PgBouncer and the like).

    A pooler answers the start-up itself, with a process id and cancel key of its own: the
    backend process id the client was told then differs from the one that runs its queries.
    Directly on Postgres they are the same.
    """
    conn = await asyncpg.connect(asyncpg_url(url), statement_cache_size=0)
    try:
        told = conn.get_server_pid()
        actual = await conn.fetchval("SELECT pg_backend_pid()")
        return bool(told != actual)
    finally:
        await conn.close()


async def uses_pgbouncer(url: str, setting: bool | None) -> bool:
    """`LGQL_PGBOUNCER` when set, else whether `url` is found to go through a pooler."""
    return setting if setting is not None else await behind_pooler(url)


@dataclass
class Database:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    pool: asyncpg.Pool
    #: Connected through PgBouncer in transaction mode: no named prepared statements.
    pgbouncer: bool = False

    @classmethod
    async def connect(
        cls, url: str, *, pool_size: int = 10, pgbouncer: bool | None = None
    ) -> Database:
        """`pgbouncer`: `LGQL_PGBOUNCER` (None: find out, `behind_pooler`)."""
        pooled = await uses_pgbouncer(url, pgbouncer)
        engine = create_async_engine(
            sqlalchemy_url(url),
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=False,
            json_serializer=_json_dumps,
            json_deserializer=orjson.loads,
            **engine_options(pgbouncer=pooled),
        )
        # Only the checkpointer uses this pool, with its own encoding of JSON (no type codecs
        # here), and it leaves no session state behind: the reset round trip asyncpg makes on
        # every release would be pure cost.
        pool = await asyncpg.create_pool(
            asyncpg_url(url),
            min_size=1,
            max_size=pool_size,
            reset=skip_session_reset,
            **pool_options(pgbouncer=pooled),
        )
        assert pool is not None
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        return cls(engine=engine, sessions=sessions, pool=pool, pgbouncer=pooled)

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

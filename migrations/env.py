"""Alembic environment: runs migrations over asyncpg on the URL given by the caller or DATABASE_URI."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

import app.db.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from app.db.engine import sqlalchemy_url
from app.settings import get_settings

CHECKPOINT_TABLES = {"checkpoints", "checkpoint_blobs", "checkpoint_writes"}

target_metadata = SQLModel.metadata


def _url() -> str:
    url = context.config.attributes.get("database_uri") or get_settings().database_uri
    if not url:
        raise RuntimeError("DATABASE_URI is not set: cannot run migrations")
    return sqlalchemy_url(url)


def _include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    # The checkpointer's tables are raw SQL (revision 0002), not SQLModel tables: autogenerate
    # must not propose dropping them.
    return not (type_ == "table" and reflected and compare_to is None and name in CHECKPOINT_TABLES)


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        include_object=_include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
    else:
        asyncio.run(_run_async())


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()

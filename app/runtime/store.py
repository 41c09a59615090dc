"""Placeholder: lgql's asyncpg `BaseStore` (issue 5, store part) is being written here."""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg
from langgraph.store.base import BaseStore, Op, Result

from app.runtime.langgraph_config import LanggraphConfig


class PostgresStore(BaseStore):
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        raise NotImplementedError

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        raise NotImplementedError

    async def sweep_expired(self) -> int:
        return 0


async def open_store(pool: asyncpg.Pool, config: LanggraphConfig) -> PostgresStore:
    return PostgresStore(pool)

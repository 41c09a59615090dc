"""Time lgql's PostgresStore against langgraph-checkpoint-postgres's AsyncPostgresStore.

    python bench/bench_store.py [--n 300] [--items 5000] [--namespaces 50]

Both run on the Postgres at DATABASE_URI (default postgresql://postgres@127.0.0.1:5432/test), each
in a scratch database of its own that is dropped at the end (ours migrated by Alembic, theirs by
`setup()`). Each store is first filled with `--items` memories spread over `--namespaces` user
namespaces ("memories", "user-N"), then the timed operations run, the stores taking turns on every
operation in alternating order so drift on a noisy machine hits both alike:

- put: a new memory in a user's namespace;
- get: an existing memory by key;
- search: a user's memories filtered on two value fields (equality: LangGraph's store compares
  `$gt`-style operators as text, so a numeric range would not ask both the same question);
- list_namespaces: the user namespaces under ("memories",), up to 100.

Prints the median in ms per operation and the ratio theirs / ours. No semantic search: the
machine's Postgres usually lacks pgvector.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from langgraph.store.base import BaseStore
from langgraph.store.postgres.aio import AsyncPostgresStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.db.engine import skip_session_reset
from app.db.migrate import upgrade
from app.persistence.store import PostgresStore

DATABASE_URI = os.environ.get("DATABASE_URI", "postgresql://postgres@127.0.0.1:5432/test")
WARMUP = 20
OPS = ("put", "get", "search", "list_namespaces")
KINDS = ("preference", "fact", "episode", "note")
TEXT = "The user mentioned they prefer concise answers and work mostly in Python. "


def _uri(name: str) -> str:
    parts = urlsplit(DATABASE_URI.replace("postgresql+asyncpg://", "postgresql://"))
    return urlunsplit(parts._replace(path=f"/{name}"))


def memory(n: int) -> dict[str, Any]:
    return {
        "kind": KINDS[n % len(KINDS)],
        "topic": f"t{n % 7}",
        "n": n,
        "text": f"{n}: {TEXT}",
        "source": {"thread": f"thread-{n % 97}", "turn": n % 13},
    }


class Workload:
    """One store's side: what it has written, so reads ask for what exists."""

    def __init__(self, store: BaseStore, namespaces: int, rng: random.Random) -> None:
        self.store = store
        self.namespaces = namespaces
        self.rng = rng
        self.written: list[tuple[tuple[str, ...], str]] = []
        self.count = 0

    def _ns(self) -> tuple[str, ...]:
        return ("memories", f"user-{self.rng.randrange(self.namespaces)}")

    async def put(self) -> None:
        ns, key = self._ns(), f"m{self.count}"
        await self.store.aput(ns, key, memory(self.count))
        self.written.append((ns, key))
        self.count += 1

    async def get(self) -> None:
        ns, key = self.rng.choice(self.written)
        assert await self.store.aget(ns, key) is not None

    async def search(self) -> None:
        flt = {"kind": self.rng.choice(KINDS), "topic": f"t{self.rng.randrange(7)}"}
        await self.store.asearch(self._ns(), filter=flt, limit=10)

    async def list_namespaces(self) -> None:
        found = await self.store.alist_namespaces(prefix=("memories",), limit=100)
        assert found


async def _timed(fn: Callable[[], Awaitable[None]]) -> float:
    start = time.perf_counter()
    await fn()
    return (time.perf_counter() - start) * 1000


async def run(n: int, items: int, namespaces: int) -> dict[str, dict[str, list[float]]]:
    names = {side: f"lgql_bench_store_{secrets.token_hex(4)}_{side}" for side in ("ours", "theirs")}
    admin = await asyncpg.connect(_uri(urlsplit(DATABASE_URI).path.lstrip("/") or "postgres"))
    for name in names.values():
        await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        await upgrade(_uri(names["ours"]))
        pool = await asyncpg.create_pool(
            _uri(names["ours"]), min_size=1, max_size=4, reset=skip_session_reset
        )
        ours = PostgresStore(pool)
        async with AsyncPostgresStore.from_conn_string(_uri(names["theirs"])) as theirs:
            await theirs.setup()
            stores: dict[str, BaseStore] = {"ours": ours, "theirs": theirs}
            loads = {s: Workload(st, namespaces, random.Random(7)) for s, st in stores.items()}
            for load in loads.values():  # the same contents on both sides, untimed
                for _ in range(items):
                    await load.put()
            times: dict[str, dict[str, list[float]]] = {s: {op: [] for op in OPS} for s in stores}
            for it in range(WARMUP + n):
                order = ("ours", "theirs") if it % 2 == 0 else ("theirs", "ours")
                for op in OPS:
                    for side in order:
                        ms = await _timed(getattr(loads[side], op))
                        if it >= WARMUP:
                            times[side][op].append(ms)
        await pool.close()
        return times
    finally:
        for name in names.values():
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="timed iterations per operation")
    parser.add_argument("--items", type=int, default=5000, help="items written before timing")
    parser.add_argument("--namespaces", type=int, default=50, help="user namespaces")
    args = parser.parse_args()
    times = asyncio.run(run(args.n, args.items, args.namespaces))
    print(
        f"\nmedian ms over {args.n} iterations, {args.items} items in "
        f"{args.namespaces} namespaces beforehand\n"
    )
    print(f"{'operation':<17}{'lgql':>10}{'AsyncPostgresStore':>20}{'theirs/ours':>13}")
    for op in OPS:
        ours = statistics.median(times["ours"][op])
        theirs = statistics.median(times["theirs"][op])
        print(f"{op:<17}{ours:>10.3f}{theirs:>20.3f}{theirs / ours:>12.2f}x")


if __name__ == "__main__":
    main()

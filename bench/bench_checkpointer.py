"""Time lgql's PostgresCheckpointer against langgraph-checkpoint-postgres's AsyncPostgresSaver.

    python bench/bench_checkpointer.py [--n 300] [--steps 25] [--fenced]

Both run on the Postgres at DATABASE_URI (default postgresql://postgres@127.0.0.1:5432/test), each
in a scratch database of its own (their tables have the same names) that is dropped at the end. The
workload imitates a chat agent: a thread is a conversation of `--steps` supersteps; each step saves
a checkpoint whose message list has grown by one message (plus a counter, a static context dict and
a branch channel), saves the task's writes, reads the latest checkpoint back and lists the last ten,
as LangGraph Server's state and history views do. The savers take turns on every operation, in
alternating order, so drift on a noisy machine hits both alike. Prints the median per operation.

Ours runs on an asyncpg pool created with `reset=skip_session_reset` (see app.db.engine),
theirs on the single autocommit connection of `AsyncPostgresSaver.from_conn_string`, each library's
fastest setup; `--asyncpg-reset` shows ours on a pool with asyncpg's default reset query instead.

`--fenced` adds a third saver to the rotation: ours through `PostgresCheckpointer.fenced` (same
pool, threads of its own), writing as a run still 'running' at its attempt, and prints its medians
next to the unfenced ones. Reads are not fenced: their rows show the noise between the two.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import asyncpg
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, Checkpoint, CheckpointMetadata
from langgraph.checkpoint.base.id import uuid6
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.db.engine import skip_session_reset
from app.persistence.checkpoint_schema import CHECKPOINT_DDL
from app.persistence.checkpointer import PostgresCheckpointer

DATABASE_URI = os.environ.get("DATABASE_URI", "postgresql://postgres@127.0.0.1:5432/test")
WARMUP = 20
OPS = ("put", "put_writes", "get_tuple", "list")
# The fence reads only these columns of the app's `runs` table (migrations/versions/0001_initial.py).
RUNS_DDL = "CREATE TABLE runs (run_id uuid PRIMARY KEY, status text NOT NULL, attempt int NOT NULL)"
TEXT = "The quick brown fox jumps over the lazy dog. " * 6


def _uri(name: str) -> str:
    parts = urlsplit(DATABASE_URI.replace("postgresql+asyncpg://", "postgresql://"))
    return urlunsplit(parts._replace(path=f"/{name}"))


class Conversation:
    """One saver's thread: the state it saves step after step."""

    def __init__(self, saver: BaseCheckpointSaver[Any]) -> None:
        self.saver = saver
        self.thread_id = str(uuid4())
        self.parent: RunnableConfig | None = None
        self.messages: list[Any] = []
        self.versions: dict[str, Any] = {}
        self.step = 0

    def _bump(self, channels: list[str]) -> dict[str, Any]:
        for ch in channels:
            self.versions[ch] = self.saver.get_next_version(self.versions.get(ch), None)
        return {ch: self.versions[ch] for ch in channels}

    async def put(self) -> None:
        i = self.step
        cls = HumanMessage if i % 2 == 0 else AIMessage
        self.messages = [*self.messages, cls(content=f"{i}: {TEXT}", id=str(uuid4()))]
        changed = ["messages", "count", "branch:to:agent"]
        if i == 0:
            changed.append("context")
        new_versions = self._bump(changed)
        checkpoint: Checkpoint = {
            "v": 4,
            "id": str(uuid6(clock_seq=i)),
            "ts": datetime.now(UTC).isoformat(),
            "channel_values": {
                "messages": self.messages,
                "count": i,
                "context": {"user": "bench", "locale": "en", "tools": ["search", "calc"]},
                "branch:to:agent": None,
            },
            "channel_versions": dict(self.versions),
            "versions_seen": {"agent": dict(self.versions), "__input__": {}},
            "updated_channels": changed,
        }
        config: RunnableConfig = {
            "configurable": {"thread_id": self.thread_id, "checkpoint_ns": ""}
        }
        if self.parent is not None:
            config["configurable"]["checkpoint_id"] = self.parent["configurable"]["checkpoint_id"]
        metadata: CheckpointMetadata = {
            "source": "loop",
            "step": i,
            "parents": {},
            "run_id": "run-bench",
        }
        self.parent = await self.saver.aput(config, checkpoint, metadata, new_versions)
        self.step += 1

    async def put_writes(self) -> None:
        assert self.parent is not None
        writes = [
            ("messages", [AIMessage(content=TEXT, id=str(uuid4()))]),
            ("count", self.step),
            ("branch:to:agent", None),
        ]
        await self.saver.aput_writes(self.parent, writes, str(uuid4()), "~__pregel_pull, agent")

    async def get_tuple(self) -> None:
        config: RunnableConfig = {
            "configurable": {"thread_id": self.thread_id, "checkpoint_ns": ""}
        }
        assert await self.saver.aget_tuple(config) is not None

    async def list(self) -> None:
        config: RunnableConfig = {
            "configurable": {"thread_id": self.thread_id, "checkpoint_ns": ""}
        }
        items = [t async for t in self.saver.alist(config, limit=10)]
        assert items


async def _timed(fn: Callable[[], Awaitable[None]]) -> float:
    start = time.perf_counter()
    await fn()
    return (time.perf_counter() - start) * 1000


async def run(
    n: int, steps: int, asyncpg_reset: bool, fenced: bool
) -> dict[str, dict[str, list[float]]]:
    names = {side: f"lgql_bench_ckpt_{secrets.token_hex(4)}_{side}" for side in ("ours", "theirs")}
    admin = await asyncpg.connect(_uri(urlsplit(DATABASE_URI).path.lstrip("/") or "postgres"))
    for name in names.values():
        await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        reset = {} if asyncpg_reset else {"reset": skip_session_reset}
        pool = await asyncpg.create_pool(_uri(names["ours"]), min_size=1, max_size=4, **reset)
        for statement in CHECKPOINT_DDL:
            await pool.execute(statement)
        ours = PostgresCheckpointer(pool)
        async with AsyncPostgresSaver.from_conn_string(_uri(names["theirs"])) as theirs:
            await theirs.setup()
            savers: dict[str, BaseCheckpointSaver[Any]] = {"ours": ours, "theirs": theirs}
            if fenced:
                run_id = uuid4()
                await pool.execute(RUNS_DDL)
                await pool.execute("INSERT INTO runs VALUES ($1, 'running', 1)", run_id)
                savers["fenced"] = ours.fenced(str(run_id), 1)
            times: dict[str, dict[str, list[float]]] = {s: {op: [] for op in OPS} for s in savers}
            convs = {s: Conversation(saver) for s, saver in savers.items()}
            # Every order in turn, so each saver follows each other one equally often (after the
            # other library's connection, ours pays for the switch).
            orders = list(itertools.permutations(savers))
            for it in range(WARMUP + n):
                if it % steps == 0:
                    convs = {s: Conversation(saver) for s, saver in savers.items()}
                order = orders[it % len(orders)]
                for op in OPS:
                    for side in order:
                        ms = await _timed(getattr(convs[side], op))
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
    parser.add_argument("--steps", type=int, default=25, help="supersteps per conversation")
    parser.add_argument(
        "--asyncpg-reset",
        action="store_true",
        help="let our pool run asyncpg's default reset query on every release",
    )
    parser.add_argument(
        "--fenced",
        action="store_true",
        help="also time our checkpointer through a fenced view (PostgresCheckpointer.fenced)",
    )
    args = parser.parse_args()
    times = asyncio.run(run(args.n, args.steps, args.asyncpg_reset, args.fenced))
    pool = "asyncpg default reset" if args.asyncpg_reset else "reset=skip_session_reset"
    print(
        f"\nmedian ms over {args.n} iterations, {args.steps} steps per thread, our pool: {pool}\n"
    )
    print(f"{'operation':<12}{'lgql':>10}{'AsyncPostgresSaver':>20}{'theirs/ours':>13}")
    for op in OPS:
        ours = statistics.median(times["ours"][op])
        theirs = statistics.median(times["theirs"][op])
        print(f"{op:<12}{ours:>10.3f}{theirs:>20.3f}{theirs / ours:>12.2f}x")
    if args.fenced:
        print(f"\n{'operation':<12}{'lgql':>10}{'lgql fenced':>14}{'fence cost':>13}")
        for op in OPS:
            ours = statistics.median(times["ours"][op])
            fenced = statistics.median(times["fenced"][op])
            print(f"{op:<12}{ours:>10.3f}{fenced:>14.3f}{fenced - ours:>+10.3f} ms")


if __name__ == "__main__":
    main()

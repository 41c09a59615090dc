"""The run queue's calls on two schemas side by side: this tree's migrations (head) against an
earlier revision of the same functions (`--against`, default the revision before 0015).

    python bench/bench_run_queue.py [--n 400] [--gap 0] [--against 0014_create_claimed_run]

Two scratch databases of DATABASE_URI's server, one migrated to head and one to `--against`, each
with one assistant. The calls are `app.db.run_queue`'s own (`create_run`, `finish`), alternating
between the databases call by call, `--gap` seconds apart (0: back to back); per call: wall time
in ms from this client, round trip and commit included. Prints medians and the ratio against /
head. No assertions: it prints figures.

- create+claim, new thread: a stateless run (`runAndWait` without a thread), claimed as created;
- end, stateless: its end, which deletes it with its thread;
- create+claim, existing thread: a run on an idle thread;
- end, existing thread: its end (status, the thread's values);
- create, busy thread: a second run on that thread before the first ends, left pending.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from alembic import command
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import configure_mappers

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.db import run_queue
from app.db.engine import engine_options, sqlalchemy_url
from app.db.migrate import alembic_config, upgrade
from app.services.common import utcnow

DATABASE_URI = os.environ.get("DATABASE_URI", "postgresql://postgres@127.0.0.1:5432/test")
WARMUP = 50
OPS = (
    "create+claim, new thread",
    "end, stateless",
    "create+claim, existing thread",
    "end, existing thread",
    "create, busy thread",
)
VALUES = {"messages": [{"type": "human", "content": "hi"}, {"type": "ai", "content": "hi"}]}


def _uri(name: str) -> str:
    parts = urlsplit(DATABASE_URI.replace("postgresql+asyncpg://", "postgresql://"))
    return urlunsplit(parts._replace(path=f"/{name}"))


async def migrate_to(url: str, revision: str) -> None:
    await upgrade(url)
    if revision == "head":
        return
    engine = create_async_engine(sqlalchemy_url(url), **engine_options(pgbouncer=True))

    def down(sync_conn: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = sync_conn
        command.downgrade(cfg, revision)

    try:
        async with engine.begin() as conn:
            await conn.run_sync(down)
    finally:
        await engine.dispose()


class Side:
    def __init__(self, conn: asyncpg.Connection, assistant: uuid.UUID) -> None:
        self.conn = conn
        self.assistant = assistant

    async def create(self, thread: uuid.UUID, *, new: bool, claim: bool) -> run_queue.RunCreation:
        made = await run_queue.create_run(
            self.conn,
            run_id=uuid.uuid4(),
            thread_id=thread,
            assistant_id=self.assistant,
            graphs=["echo"],
            create_thread=new,
            thread_metadata={},
            now=utcnow(),
            ttl={},
            reject=False,
            metadata={},
            kwargs={"input": {"messages": [{"role": "user", "content": "hi"}]}},
            multitask_strategy="enqueue",
            webhook=None,
            after_seconds=0.0,
            claim_for="bench:1" if claim else None,
            lease_seconds=60.0,
        )
        assert made.outcome == "created" and made.claimed == claim, made.outcome
        return made

    async def end(self, made: run_queue.RunCreation, *, stateless: bool) -> None:
        assert made.run is not None
        ended = await run_queue.finish(
            self.conn,
            made.run.run_id,
            made.run.attempt,
            status="success",
            output=VALUES,
            error=None,
            values=VALUES,
            interrupts=None,
            waiting=False,
            has_state=True,
            delete_thread=stateless,
        )
        assert ended is not None

    async def thread(self) -> uuid.UUID:
        tid = uuid.uuid4()
        await self.conn.execute(
            "INSERT INTO threads (thread_id, metadata, status) VALUES ($1, '{}', 'idle')", tid
        )
        return tid


async def one_round(side: Side, timed: Callable[[str, Awaitable[Any]], Awaitable[Any]]) -> None:
    made = await timed(OPS[0], side.create(uuid.uuid4(), new=True, claim=True))
    await timed(OPS[1], side.end(made, stateless=True))
    tid = await side.thread()
    made = await timed(OPS[2], side.create(tid, new=False, claim=True))
    queued = await timed(OPS[4], side.create(tid, new=False, claim=False))
    await timed(OPS[3], side.end(made, stateless=False))
    # The queued run is left pending on its thread (a worker would take it): untimed cleanup.
    await side.conn.execute("DELETE FROM threads WHERE thread_id = $1", tid)
    assert queued.run is not None


async def run(n: int, gap: float, against: str) -> dict[str, dict[str, list[float]]]:
    names = {
        s: f"lgql_bench_rq_{secrets.token_hex(4)}_{i}" for i, s in enumerate(("head", against))
    }
    admin = await asyncpg.connect(_uri(urlsplit(DATABASE_URI).path.lstrip("/") or "postgres"))
    for name in names.values():
        await admin.execute(f'CREATE DATABASE "{name}"')
    conns: list[asyncpg.Connection] = []
    try:
        sides: dict[str, Side] = {}
        for revision, name in names.items():
            await migrate_to(_uri(name), revision)
            conn = await asyncpg.connect(_uri(name))
            conns.append(conn)
            assistant = uuid.uuid4()
            await conn.execute(
                "INSERT INTO assistants (assistant_id, graph_id, name) VALUES ($1, 'echo', 'e')",
                assistant,
            )
            sides[revision] = Side(conn, assistant)
        times: dict[str, dict[str, list[float]]] = {s: {op: [] for op in OPS} for s in sides}
        for it in range(WARMUP + n):
            order = list(sides) if it % 2 == 0 else list(reversed(sides))
            for label in order:

                async def timed(
                    op: str, call: Awaitable[Any], label: str = label, it: int = it
                ) -> Any:
                    if gap:
                        await asyncio.sleep(gap)
                    start = time.perf_counter()
                    result = await call
                    if it >= WARMUP:
                        times[label][op].append((time.perf_counter() - start) * 1000)
                    return result

                await one_round(sides[label], timed)
        return times
    finally:
        for conn in conns:
            await conn.close()
        for name in names.values():
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    configure_mappers()  # the calls answer `Run` models, outside any session here
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=400, help="timed rounds per schema")
    parser.add_argument("--gap", type=float, default=0.0, help="seconds before each call")
    parser.add_argument("--against", default="0014_create_claimed_run", help="revision to compare")
    args = parser.parse_args()
    times = asyncio.run(run(args.n, args.gap, args.against))
    head, other = times["head"], times[args.against]
    print(f"run queue calls, median ms over {args.n} rounds, gap {args.gap:g} s")
    print(f"{'call':32} {'head':>8} {args.against:>26} {'ratio':>7}")
    for op in OPS:
        h, o = statistics.median(head[op]), statistics.median(other[op])
        print(f"{op:32} {h:8.3f} {o:26.3f} {o / h:6.2f}x")


if __name__ == "__main__":
    main()

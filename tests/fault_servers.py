"""Private Postgres and Redis servers for fault tests: ours to stop, restart, wipe and terminate
connections on (the machine's servers are never touched).

- `PrivateRedis`: `redis-server` (Debian's binary) on a fixed port in a temp folder, with an
  append-only file, so a restart can keep its data (SIGTERM flushes it) or lose it (SIGKILL and
  wipe the folder), and clients find it again at the same address.
- `private_postgres()`: the embedded Postgres engine (`app.embedded.postgres`) in a temp folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from app.embedded.postgres import PostgresEngine
from tests.conftest import GraphQLClient, free_port

FAULTS_CONFIG = Path(__file__).resolve().parent / "fixtures" / "faults" / "langgraph.json"
FINAL = {"success", "error", "timeout", "interrupted"}


class PrivateRedis:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.data.mkdir(parents=True, exist_ok=True)
        command = [
            "redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
            "--dir", str(self.data), "--daemonize", "no", "--save", "",
            "--appendonly", "yes", "--appendfsync", "always",
        ]  # fmt: skip
        with (self.folder / "redis.log").open("ab") as log:
            return subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def start(self) -> None:
        self.proc = proc = self._spawn()
        deadline = time.monotonic() + 30
        client = aioredis.from_url(self.uri)
        try:
            while True:
                with contextlib.suppress(Exception):
                    if await client.ping():
                        return
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start: {self.tail()}")
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    async def stop(self, *, keep_data: bool) -> None:
        """Stop it: cleanly (its data kept for the next start), or killed and its data wiped
        (it comes back empty, as after losing an unpersisted server)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM if keep_data else signal.SIGKILL)
            await asyncio.to_thread(proc.wait, 30)
        if not keep_data:
            shutil.rmtree(self.data, ignore_errors=True)

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.folder / "redis.log").read_text().splitlines()[-20:])
        return ""


@contextlib.asynccontextmanager
async def private_redis() -> AsyncIterator[PrivateRedis]:
    folder = Path(tempfile.mkdtemp(prefix="lgql-fault-redis-"))
    server = PrivateRedis(folder)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(keep_data=False)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.asynccontextmanager
async def private_postgres_engine() -> AsyncIterator[PostgresEngine]:
    """A Postgres of our own (the embedded engine), stopped and removed afterwards. Restarted
    (`stop()`, `start()`), it comes back on the same port, so clients find it again."""
    # Not pytest's tmp_path: Postgres runs as its own user, which needs to reach the folder.
    folder = Path(tempfile.mkdtemp(prefix="lgql-fault-pg-"))
    engine = PostgresEngine(folder / "pg", folder / "pg.log", True)
    port = await engine.start()
    engine.pick_port = lambda: port  # type: ignore[method-assign]
    try:
        yield engine
    finally:
        await engine.stop()
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.asynccontextmanager
async def private_postgres() -> AsyncIterator[str]:
    """The URL of a Postgres of our own (the embedded engine), stopped and removed afterwards."""
    async with private_postgres_engine() as engine:
        yield engine.uri()


async def run_rows(database_uri: str) -> dict[str, dict[str, Any]]:
    """Every run: status, attempt, lapses, error, and its thread's values, read from Postgres
    directly (the API's own answers are not what these tests are about)."""
    conn = await asyncpg.connect(database_uri)
    try:
        rows = await conn.fetch(
            "SELECT r.run_id::text AS id, r.thread_id::text AS thread_id, r.status, r.attempt, r.lapses, r.error::text AS error,"
            " t.values::text AS values FROM runs r JOIN threads t USING (thread_id)"
        )
    finally:
        await conn.close()
    return {r["id"]: dict(r) for r in rows}


async def all_final(database_uri: str, expected: int) -> dict[str, dict[str, Any]] | None:
    rows = await run_rows(database_uri)
    if len(rows) < expected or any(r["status"] not in FINAL for r in rows.values()):
        return None
    return rows


async def create_pipeline_runs(
    client: GraphQLClient, threads: int, per_thread: int, seconds: float
) -> dict[str, list[str]]:
    """`per_thread` runs of the `pipeline` graph on each of `threads` new threads (enqueued
    behind each other, so the later ones wait for an end to wake them); thread id → run ids.
    Run `j` of thread `i` is tagged `i.j`: the thread's values end as every run's `first` and
    `after` once each, in order."""
    out: dict[str, list[str]] = {}
    for i in range(threads):
        data = await client.data('mutation { createThread(input: {graphId: "pipeline"}) { id } }')
        thread_id = data["createThread"]["id"]
        out[thread_id] = []
        for j in range(per_thread):
            data = await client.data(
                "mutation($input: RunInput!) { createRun(input: $input) { id } }",
                {
                    "input": {
                        "assistantId": "pipeline",
                        "threadId": thread_id,
                        "input": {"tag": f"{i}.{j}", "seconds": seconds},
                        "multitaskStrategy": "ENQUEUE",
                    }
                },
            )
            out[thread_id].append(data["createRun"]["id"])
    return out


def expected_log(runs: dict[str, list[str]], thread_id: str) -> list[str]:
    i = list(runs).index(thread_id)
    return [f"{node}:{i}.{j}" for j in range(len(runs[thread_id])) for node in ("first", "after")]


def check_all_succeeded(
    runs: dict[str, list[str]], rows: dict[str, dict[str, Any]], logs: str
) -> None:
    """Every run ended SUCCESS, once (one row, one final status), and each thread's values hold
    each of its runs' nodes exactly once: runs resumed, never restarted or run twice."""
    assert sorted(rows) == sorted(r for ids in runs.values() for r in ids)
    failed = {k: (r["status"], r["error"]) for k, r in rows.items() if r["status"] != "success"}
    assert not failed, f"runs that did not succeed: {failed}\n{logs}"
    for thread_id in runs:
        values = next(r["values"] for r in rows.values() if r["thread_id"] == thread_id)
        assert json.loads(values)["log"] == expected_log(runs, thread_id)


async def running_count(database_uri: str) -> int:
    conn = await asyncpg.connect(database_uri)
    try:
        count: int = await conn.fetchval("SELECT count(*) FROM runs WHERE status = 'running'")
    finally:
        await conn.close()
    return count

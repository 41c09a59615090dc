"""The embedded engines of `lgql dev`: real Postgres and Valkey children, data kept, crashes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest
import redis.asyncio as aioredis

from app.embedded import EmbeddedEngines, EngineError, EngineUrls

ROOT = Path(__file__).resolve().parents[2]
ENGINE_NAMES = {"postgres", "valkey-server"}

# Run in a child interpreter that we SIGKILL: starts the engines, writes a row and a key,
# reports the server pids, then waits to be killed.
HOLDER = """
import asyncio, json, sys
from pathlib import Path
import asyncpg, redis.asyncio as aioredis
from app.embedded import EmbeddedEngines

async def main():
    engines = EmbeddedEngines(Path(sys.argv[1]), die_with_parent=sys.argv[2] == "1")
    urls = await engines.start()
    conn = await asyncpg.connect(urls.database_uri)
    await conn.execute("CREATE TABLE notes (body text); INSERT INTO notes VALUES ('before kill')")
    await conn.close()
    r = aioredis.from_url(urls.redis_uri)
    await r.set("note", "before kill")
    await r.aclose()
    print(json.dumps({"postgres": engines.postgres.pid, "valkey": engines.valkey.pid}), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not under tmp_path: as root, Postgres runs as another user that needs o+x on every parent,
    # and each new pytest session resets /tmp/pytest-of-root to 0700 (concurrent runs do too).
    folder = Path(tempfile.mkdtemp(prefix="lgql-engines-"))
    yield folder / "lgql"
    shutil.rmtree(folder, ignore_errors=True)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def engine_children(data_dir: Path) -> list[psutil.Process]:
    """Our engine processes serving `data_dir` (both chdir into it); other engines, such as a
    test session's own, are not this test's business."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.name() in ENGINE_NAMES and proc.cwd().startswith(str(data_dir)):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


async def read_back(urls: EngineUrls) -> tuple[list[str], bytes | None]:
    conn = await asyncpg.connect(urls.database_uri)
    try:
        rows = [r["body"] for r in await conn.fetch("SELECT body FROM notes")]
    finally:
        await conn.close()
    r = aioredis.from_url(urls.redis_uri)
    try:
        value = await r.get("note")
    finally:
        await r.aclose()
    return rows, value


async def test_data_survives_a_restart_and_no_child_outlives_stop(data_dir: Path) -> None:
    engines = EmbeddedEngines(data_dir)
    urls = await engines.start()
    try:
        assert urls.database_uri.startswith("postgresql://postgres@127.0.0.1:")
        assert urls.database_uri.endswith("/lgql")
        assert urls.redis_uri.startswith("redis://127.0.0.1:") and urls.redis_uri.endswith("/0")
        assert await engines.start() == urls  # a second start is a no-op

        conn = await asyncpg.connect(urls.database_uri)
        await conn.execute("CREATE TABLE notes (body text); INSERT INTO notes VALUES ('hello')")
        # pgvector comes with the wheel; prove its extension dir is the one in use, leave no trace.
        tx = conn.transaction()
        await tx.start()
        await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        assert await conn.fetchval("SELECT '[1,2,3]'::vector <-> '[1,2,4]'::vector") == 1.0
        await tx.rollback()
        await conn.close()
        r = aioredis.from_url(urls.redis_uri)
        await r.set("note", "hello")
        await r.aclose()

        # The lock: a second `lgql dev` on the same folder fails (without waiting) and says why.
        with pytest.raises(EngineError, match="in use by another lgql dev"):
            await EmbeddedEngines(data_dir).start()
        assert engines.urls == urls
        pids = [engines.postgres.pid, engines.valkey.pid]
    finally:
        await engines.stop()
    await engines.stop()  # safe twice
    assert engine_children(data_dir) == []
    assert not any(alive(pid) for pid in pids if pid)

    async with EmbeddedEngines(data_dir) as urls2:
        assert await read_back(urls2) == (["hello"], b"hello")
    assert engine_children(data_dir) == []


async def kill_holder(data_dir: Path, die_with_parent: bool) -> dict[str, int]:
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, str(data_dir), "1" if die_with_parent else "0",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        line = await asyncio.wait_for(holder.stdout.readline(), 30)  # type: ignore[union-attr]
        pids: dict[str, int] = json.loads(line)
    finally:
        holder.send_signal(signal.SIGKILL)
        await holder.wait()
    return pids


async def test_leftovers_of_a_sigkilled_run_do_not_block_the_next_start(data_dir: Path) -> None:
    pids = await kill_holder(data_dir, die_with_parent=False)
    # Nothing told them to stop: both servers outlived their parent.
    assert alive(pids["postgres"]) and alive(pids["valkey"])

    async with EmbeddedEngines(data_dir) as urls:
        assert not alive(pids["postgres"]) and not alive(pids["valkey"])
        assert await read_back(urls) == (["before kill"], b"before kill")
    assert engine_children(data_dir) == []


async def test_children_die_with_a_sigkilled_parent(data_dir: Path) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux-only")
    pids = await kill_holder(data_dir, die_with_parent=True)
    for _ in range(200):  # up to 10 s
        if not (alive(pids["postgres"]) or alive(pids["valkey"])):
            break
        await asyncio.sleep(0.05)
    assert not alive(pids["postgres"]) and not alive(pids["valkey"])

    async with EmbeddedEngines(data_dir) as urls:
        assert await read_back(urls) == (["before kill"], b"before kill")


async def test_failure_is_a_clear_engine_error(data_dir: Path) -> None:
    (data_dir / "postgres").mkdir(parents=True)
    (data_dir / "postgres" / "stray.txt").write_text("not a cluster")
    with pytest.raises(EngineError, match="holds no PostgreSQL cluster"):
        await EmbeddedEngines(data_dir).start()
    assert engine_children(data_dir) == []  # valkey, started alongside, was stopped again
    # ... and the lock was released with it.
    os.remove(data_dir / "postgres" / "stray.txt")
    async with EmbeddedEngines(data_dir):
        pass


async def test_a_port_taken_meanwhile_is_retried(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.embedded._common import ChildEngine

    real_pick_port = ChildEngine.pick_port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        busy = squatter.getsockname()[1]
        offered: set[str] = set()

        def pick_port(engine: ChildEngine) -> int:
            if engine.name in offered:
                return real_pick_port(engine)
            offered.add(engine.name)  # each engine's first pick is taken by the time it binds
            return int(busy)

        monkeypatch.setattr(ChildEngine, "pick_port", pick_port)
        async with EmbeddedEngines(data_dir) as urls:
            assert offered == {"postgres", "valkey"}
            assert f":{busy}/" not in urls.database_uri and f":{busy}/" not in urls.redis_uri

"""The servers the benchmarks start, and the accounting of their processes.

- `lgql_server`: `lgql migrate` + `lgql serve` + N x `lgql worker` on a scratch database of
  DATABASE_URI's server and a Redis key prefix of its own (both removed at the end); or, when
  DATABASE_URI / REDIS_URI are not both set, `lgql dev` with embedded engines in a temporary
  folder. With `proxies=True` every process reaches Postgres and Redis through counting proxies
  of its own (`wire.WireProxy`).
- `langgraph_dev_server`: LangGraph's `langgraph dev` (in-memory runtime) from another venv.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import psutil
import redis.asyncio as aioredis
from wire import WireProxy, address_of, with_address

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "graphs"
CONFIG = FIXTURES / "langgraph.json"
LGQL = [sys.executable, "-m", "lgql"]
ENGINE_NAMES = ("postgres", "valkey-server", "redis-server")
SCRUB = ("DATABASE_URI", "DATABASE_URL", "POSTGRES_URI", "REDIS_URI", "REDIS_URL", "LGQL_CONFIG")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def plain_url(uri: str) -> str:
    """A Postgres URI without SQLAlchemy's driver suffix (`postgresql+asyncpg://` → `postgresql://`)."""
    scheme, sep, rest = uri.partition("://")
    base = scheme.split("+")[0]
    return f"{'postgresql' if base == 'postgres' else base}{sep}{rest}"


# ---- process accounting -----------------------------------------------------------------------


def tree(pids: list[int]) -> list[psutil.Process]:
    procs: dict[int, psutil.Process] = {}
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            p = psutil.Process(pid)
            procs[p.pid] = p
            for child in p.children(recursive=True):
                procs[child.pid] = child
    return list(procs.values())


def _is_engine(p: psutil.Process) -> bool:
    try:
        return bool(p.name().startswith(ENGINE_NAMES))
    except psutil.Error:
        return False


def named(prefix: str) -> list[psutil.Process]:
    """The machine's processes whose name starts with `prefix` (`postgres`, `redis-server`)."""
    out = []
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if p.name().startswith(prefix):
                out.append(p)
    return out


@dataclass
class ProcessSet:
    """The processes of one server: its own (`root_pids` and their non-engine descendants) and
    its engines (embedded engines among the descendants, or the machine's when `machine_engines`)."""

    root_pids: list[int]
    machine_engines: bool = False

    def server(self) -> list[psutil.Process]:
        return [p for p in tree(self.root_pids) if not _is_engine(p)]

    def engines(self) -> list[psutil.Process]:
        if self.machine_engines:
            return [p for p in psutil.process_iter() if _is_engine(p)]
        return [p for p in tree(self.root_pids) if _is_engine(p)]

    @staticmethod
    def cpu(procs: list[psutil.Process]) -> dict[int, float]:
        out = {}
        for p in procs:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                out[p.pid] = t.user + t.system
        return out

    @staticmethod
    def rss_mib(procs: list[psutil.Process]) -> float:
        total = 0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total / 2**20

    @staticmethod
    def pss_mib(procs: list[psutil.Process]) -> float:
        """Proportional set size: shared memory (Postgres' shared buffers, mapped in every
        backend) counted once overall instead of once per process; RSS where PSS is unreadable."""
        total = 0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                try:
                    total += p.memory_full_info().pss
                except (psutil.AccessDenied, AttributeError):
                    total += p.memory_info().rss
        return total / 2**20


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    # A process born during the batch counts from zero; one that died is lost (rare: pools).
    return sum(v - before.get(pid, 0.0) for pid, v in after.items())


async def postgres_processes(pg: tuple[str, str] | None) -> list[psutil.Process]:
    """With `pg` = (admin URL, database): the backends connected to that database plus the
    server's own processes (postmaster, WAL writer, checkpointer, …), leaving out the backends
    of other databases (other people's work on a shared server). Else every `postgres`."""
    if pg is None:
        return named("postgres")
    conn = await asyncpg.connect(pg[0])
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 OR datname IS NULL", pg[1]
        )
    finally:
        await conn.close()
    procs: dict[int, psutil.Process] = {}
    for row in rows:
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(row["pid"])
            procs[p.pid] = p
            parent = p.parent()
            if parent is not None and parent.name().startswith("postgres"):
                procs[parent.pid] = parent
    return list(procs.values())


async def engines_cpu(pg: tuple[str, str] | None) -> dict[str, dict[int, float]]:
    return {
        "pg": ProcessSet.cpu(await postgres_processes(pg)),
        "redis": ProcessSet.cpu(named("redis-server")),
    }


# ---- servers -------------------------------------------------------------------------------


def cancel_on_signals() -> None:
    """SIGTERM (and SIGINT, even where a shell started us with it ignored) cancel the running
    task, so that every `finally` stops the servers and drops the scratch databases."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)


def spawn(args: list[str], *, env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    f = log.open("ab")
    return subprocess.Popen(
        args, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(procs: list[subprocess.Popen[bytes]], timeout: float = 30) -> None:
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
    for p in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=10)


def log_tails(log_dir: Path) -> str:
    return "\n".join(f"--- {f}\n{f.read_text()[-3000:]}" for f in sorted(log_dir.glob("*.log")))


async def wait_ok(url: str, procs: list[subprocess.Popen[bytes]], log_dir: Path) -> None:
    deadline = time.monotonic() + 120
    async with httpx.AsyncClient(timeout=5) as http:
        while True:
            for p in procs:
                if p.poll() is not None:
                    raise SystemExit(
                        f"a server process exited early ({p.args!r}):\n{log_tails(log_dir)}"
                    )
            with contextlib.suppress(httpx.TransportError):
                if (await http.get(f"{url}/ok")).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise SystemExit(f"{url}/ok never answered")
            await asyncio.sleep(0.2)


@dataclass
class Server:
    name: str
    url: str
    processes: ProcessSet
    mode: str
    notes: list[str] = field(default_factory=list)
    # role ("api", "worker-0", …) → pid, for the CPU / RSS split
    roles: dict[str, int] = field(default_factory=dict)
    # role → (Postgres proxy, Redis proxy), when started with proxies
    proxies: dict[str, tuple[WireProxy, WireProxy]] = field(default_factory=dict)
    database: str | None = None  # the scratch database's name
    admin_url: str | None = None  # a URL of the same Postgres server, another database


@contextlib.asynccontextmanager
async def scratch_database(database_uri: str, prefix: str) -> AsyncIterator[tuple[str, str, str]]:
    """Create a database on `database_uri`'s server; yield (name, its URL, admin URL); drop it."""
    admin_url = plain_url(database_uri)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    scratch = f"{admin_url.rpartition('/')[0]}/{name}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield name, scratch, admin_url
    finally:
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def _drop_prefix(redis_uri: str, prefix: str) -> None:
    client = aioredis.from_url(redis_uri)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
        for i in range(0, len(keys), 1000):
            await client.delete(*keys[i : i + 1000])
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def lgql_server(
    workers: int,
    log_dir: Path,
    *,
    proxies: bool = False,
    label: str = "",
    root: Path = ROOT,
    env_overrides: dict[str, str] | None = None,
) -> AsyncIterator[Server]:
    """lgql's processes, run from the source tree `root` (default this checkout; another one,
    e.g. an exported commit, to measure a given version with this venv), with `env_overrides`
    (settings) on top of this process's environment."""
    env = {k: v for k, v in os.environ.items() if k not in SCRUB}
    env.update({"LGQL_CONFIG": str(CONFIG), "LOG_LEVEL": "WARNING", **(env_overrides or {})})
    if root != ROOT:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    database_uri, redis_uri = os.environ.get("DATABASE_URI"), os.environ.get("REDIS_URI")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    procs: list[subprocess.Popen[bytes]] = []
    if not (database_uri and redis_uri):
        data_dir = Path(tempfile.mkdtemp(prefix="lgql-bench-"))
        try:
            procs.append(
                spawn(
                    [*LGQL, "dev", "--port", str(port), "--data-dir", str(data_dir / ".lgql")],
                    env=env,
                    cwd=data_dir,
                    log=log_dir / "lgql-dev.log",
                )
            )
            await wait_ok(url, procs, log_dir)
            yield Server(
                "lgql",
                url,
                ProcessSet([p.pid for p in procs]),
                "lgql dev, embedded engines",
                roles={"api": procs[0].pid},
            )
        finally:
            await asyncio.to_thread(stop, procs)
            shutil.rmtree(data_dir, ignore_errors=True)
        return

    prefix = f"lgql_bench_{uuid.uuid4().hex[:10]}"
    wires: dict[str, tuple[WireProxy, WireProxy]] = {}
    async with scratch_database(database_uri, "lgql_bench") as (name, scratch, admin_url):
        env.update({"DATABASE_URI": scratch, "REDIS_URI": redis_uri, "REDIS_KEY_PREFIX": prefix})
        try:
            migrated = await asyncio.to_thread(
                subprocess.run,
                [*LGQL, "migrate"],
                env=env,
                cwd=root,
                capture_output=True,
                text=True,
            )
            if migrated.returncode != 0:
                raise SystemExit(f"lgql migrate failed:\n{migrated.stderr}")
            roles = ["api", *(f"worker-{i}" for i in range(workers))]
            for role in roles:
                role_env = dict(env)
                if proxies:
                    pg = await WireProxy("postgres", *address_of(scratch, 5432)).start()
                    rd = await WireProxy("redis", *address_of(redis_uri, 6379)).start()
                    wires[role] = (pg, rd)
                    role_env["DATABASE_URI"] = with_address(scratch, "127.0.0.1", pg.port)
                    role_env["REDIS_URI"] = with_address(redis_uri, "127.0.0.1", rd.port)
                args = [*LGQL, "serve", "--port", str(port)] if role == "api" else [*LGQL, "worker"]
                procs.append(
                    spawn(args, env=role_env, cwd=root, log=log_dir / f"{label}{role}.log")
                )
            await wait_ok(url, procs, log_dir)
            await asyncio.sleep(3)  # let the workers finish starting (they import the graphs)
            yield Server(
                "lgql",
                url,
                ProcessSet([p.pid for p in procs], machine_engines=True),
                f"lgql serve + {workers} worker(s), machine's Postgres and Redis"
                + (", through counting proxies" if proxies else ""),
                ["engine CPU is every postgres/redis process on the machine"],
                roles={role: p.pid for role, p in zip(roles, procs, strict=True)},
                proxies=wires,
                database=name,
                admin_url=admin_url,
            )
        finally:
            await asyncio.to_thread(stop, procs)
            for pg, rd in wires.values():
                await pg.close()
                await rd.close()
            await _drop_prefix(redis_uri, prefix)


@contextlib.asynccontextmanager
async def langgraph_dev_server(venv: Path, n_jobs: int, log_dir: Path) -> AsyncIterator[Server]:
    exe = venv / "bin" / "langgraph"
    if not exe.exists():
        raise SystemExit(
            f"no `langgraph` CLI in {venv}: python3 -m venv {venv} && "
            f'{venv}/bin/pip install "langgraph-cli[inmem]"'
        )
    work = Path(tempfile.mkdtemp(prefix="lgdev-bench-"))
    shutil.copytree(FIXTURES / "agents", work / "agents")
    shutil.copy(CONFIG, work / "langgraph.json")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in SCRUB}
    env.update(
        {
            "LANGSMITH_TRACING": "false",
            "LANGCHAIN_TRACING_V2": "false",
            "LANGGRAPH_CLI_NO_ANALYTICS": "1",
            "LOG_LEVEL": "WARNING",
        }
    )
    args = [str(exe), "dev", "--port", str(port), "--no-browser", "--no-reload"]
    args += ["--config", "langgraph.json", "--n-jobs-per-worker", str(n_jobs)]
    args += ["--server-log-level", "WARNING"]
    procs = [spawn(args, env=env, cwd=work, log=log_dir / "langgraph-dev.log")]
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_ok(url, procs, log_dir)
        yield Server(
            "langgraph dev",
            url,
            ProcessSet([procs[0].pid]),
            f"langgraph dev (in-memory runtime), --n-jobs-per-worker {n_jobs}",
            roles={"api": procs[0].pid},
        )
    finally:
        await asyncio.to_thread(stop, procs)
        shutil.rmtree(work, ignore_errors=True)

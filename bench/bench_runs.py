"""Run benchmark: lgql (GraphQL) against `langgraph dev` (LangGraph's SDK) on the same graphs.

    python bench/bench_runs.py [--n 50] [--graphs echo,steps] [--bg-runs 500 --clients 20]
    python bench/bench_runs.py --peer langgraph-dev --peer-venv /tmp/lgdev

Starts lgql itself: `lgql dev` with embedded Postgres and Valkey in a temporary folder, or, when
DATABASE_URI and REDIS_URI are set, `lgql migrate` + `lgql serve` + `lgql worker` (`--workers`) on a
scratch database it creates and drops (and a Redis key prefix of its own, deleted at the end). Uses
the fixture graphs (`tests/fixtures/graphs/langgraph.json`): `echo` (one node) and `steps` (five).

For each graph it prints:
- new-thread wait: create a thread, then wait for a run on it (`createThread` + `runAndWait`;
  `threads.create` + `runs.wait` on the peer), sequential, p50/p95 over `--n` runs;
- stateless wait: `runAndWait` without a thread (`runs.wait(None, …)`), p50/p95;
- background throughput: `--bg-runs` runs, each on a thread of its own created beforehand, created
  (`createRun` / `runs.create`) by `--clients` concurrent clients, from the first create to the
  end of the last run (lgql: `runs(status:)` counts polled; peer: `runs.join`), in runs/s;
- CPU per background run: user+sys of the server processes over that batch / runs, and of the
  engines (Postgres + Valkey/Redis) beside it;
- server memory: RSS summed over the server's processes after the runs; embedded engines apart,
  as PSS (their shared memory counted once, not once per Postgres backend).

With `--peer langgraph-dev` it also starts `langgraph dev --no-browser --no-reload` from the venv
given by `--peer-venv` (make it with `python3 -m venv /tmp/lgdev && /tmp/lgdev/bin/pip install
"langgraph-cli[inmem]"`; never inside the repository) on a copy of the fixture graphs in a temporary
folder (it writes `.langgraph_api/` into its working folder), with `--n-jobs-per-worker` equal to
lgql's N_JOBS_PER_WORKER, and prints both side by side with lgql's advantage (> 1 = lgql better).
No assertions: it prints medians and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FIXTURES = ROOT / "tests" / "fixtures" / "graphs"
CONFIG = FIXTURES / "langgraph.json"
LGQL = [sys.executable, "-m", "app"]
INPUTS: dict[str, dict[str, Any]] = {
    "echo": {"messages": [{"role": "user", "content": "hello"}]},
    "steps": {"count": 0},
}
ENGINE_NAMES = ("postgres", "valkey-server", "redis-server")
SCRUB = ("DATABASE_URI", "DATABASE_URL", "POSTGRES_URI", "REDIS_URI", "REDIS_URL", "LGQL_CONFIG")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# ---- process accounting -----------------------------------------------------------------------


def _tree(pids: list[int]) -> list[psutil.Process]:
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
        return p.name().startswith(ENGINE_NAMES)
    except psutil.Error:
        return False


@dataclass
class ProcessSet:
    """The processes of one server: its own (`root_pids` and their non-engine descendants) and
    its engines (embedded engines among the descendants, or the machine's when `machine_engines`)."""

    root_pids: list[int]
    machine_engines: bool = False

    def server(self) -> list[psutil.Process]:
        return [p for p in _tree(self.root_pids) if not _is_engine(p)]

    def engines(self) -> list[psutil.Process]:
        if self.machine_engines:
            return [p for p in psutil.process_iter() if _is_engine(p)]
        return [p for p in _tree(self.root_pids) if _is_engine(p)]

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


# ---- servers -------------------------------------------------------------------------------


def _spawn(
    args: list[str], *, env: dict[str, str], cwd: Path, log: Path
) -> subprocess.Popen[bytes]:
    f = log.open("ab")
    return subprocess.Popen(
        args, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True
    )


def _stop(procs: list[subprocess.Popen[bytes]], timeout: float = 30) -> None:
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


def _log_tails(log_dir: Path) -> str:
    return "\n".join(f"--- {f}\n{f.read_text()[-3000:]}" for f in sorted(log_dir.glob("*.log")))


async def wait_ok(url: str, procs: list[subprocess.Popen[bytes]], log_dir: Path) -> None:
    deadline = time.monotonic() + 120
    async with httpx.AsyncClient(timeout=5) as http:
        while True:
            for p in procs:
                if p.poll() is not None:
                    raise SystemExit(
                        f"a server process exited early ({p.args!r}):\n{_log_tails(log_dir)}"
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


@contextlib.asynccontextmanager
async def lgql_server(workers: int, log_dir: Path) -> AsyncIterator[Server]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUB}
    env.update({"LGQL_CONFIG": str(CONFIG), "LOG_LEVEL": "WARNING"})
    database_uri, redis_uri = os.environ.get("DATABASE_URI"), os.environ.get("REDIS_URI")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    procs: list[subprocess.Popen[bytes]] = []
    if not (database_uri and redis_uri):
        data_dir = Path(tempfile.mkdtemp(prefix="lgql-bench-"))
        try:
            procs.append(
                _spawn(
                    [*LGQL, "dev", "--port", str(port), "--data-dir", str(data_dir / ".lgql")],
                    env=env,
                    cwd=data_dir,
                    log=log_dir / "lgql-dev.log",
                )
            )
            await wait_ok(url, procs, log_dir)
            yield Server(
                "lgql", url, ProcessSet([p.pid for p in procs]), "lgql dev, embedded engines"
            )
        finally:
            await asyncio.to_thread(_stop, procs)
            shutil.rmtree(data_dir, ignore_errors=True)
        return

    from app.db.engine import asyncpg_url

    name = f"lgql_bench_{uuid.uuid4().hex[:10]}"
    admin_url = asyncpg_url(database_uri)
    scratch = f"{admin_url.rpartition('/')[0]}/{name}"
    prefix = f"lgql_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    env.update({"DATABASE_URI": scratch, "REDIS_URI": redis_uri, "REDIS_KEY_PREFIX": prefix})
    try:
        migrated = await asyncio.to_thread(
            subprocess.run, [*LGQL, "migrate"], env=env, cwd=ROOT, capture_output=True, text=True
        )
        if migrated.returncode != 0:
            raise SystemExit(f"lgql migrate failed:\n{migrated.stderr}")
        procs.append(
            _spawn(
                [*LGQL, "serve", "--port", str(port)], env=env, cwd=ROOT, log=log_dir / "api.log"
            )
        )
        for i in range(workers):
            procs.append(
                _spawn([*LGQL, "worker"], env=env, cwd=ROOT, log=log_dir / f"worker-{i}.log")
            )
        await wait_ok(url, procs, log_dir)
        await asyncio.sleep(3)  # let the workers finish starting (they import the graphs)
        yield Server(
            "lgql",
            url,
            ProcessSet([p.pid for p in procs], machine_engines=True),
            f"lgql serve + {workers} worker(s), machine's Postgres and Redis",
            ["engine CPU is every postgres/redis process on the machine"],
        )
    finally:
        await asyncio.to_thread(_stop, procs)
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
        client = aioredis.from_url(redis_uri)
        try:
            keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()


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
    procs = [_spawn(args, env=env, cwd=work, log=log_dir / "langgraph-dev.log")]
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_ok(url, procs, log_dir)
        yield Server(
            "langgraph dev",
            url,
            ProcessSet([procs[0].pid]),
            f"langgraph dev (in-memory runtime), --n-jobs-per-worker {n_jobs}",
        )
    finally:
        await asyncio.to_thread(_stop, procs)
        shutil.rmtree(work, ignore_errors=True)


# ---- clients -------------------------------------------------------------------------------


class Driver:
    """What a benchmark needs from a server, whatever its API."""

    async def new_thread_wait(self, graph: str) -> None:
        raise NotImplementedError

    async def stateless_wait(self, graph: str) -> None:
        raise NotImplementedError

    async def create_threads(self, graph: str, n: int) -> list[str]:
        raise NotImplementedError

    async def background(self, graph: str, threads: list[list[str]]) -> None:
        """Create one run on each thread, one client per list, and return when all ended."""
        raise NotImplementedError

    async def close(self) -> None:
        pass


RUN_AND_WAIT = """mutation($input: RunInput!) {
  runAndWait(input: $input) { run { id status } error { type message } }
}"""
CREATE_RUN = "mutation($input: RunInput!) { createRun(input: $input) { id } }"
CREATE_THREAD = "mutation($graph: String!) { createThread(input: {graphId: $graph}) { id } }"
ACTIVE = "{ p: runs(status: PENDING) { totalCount } r: runs(status: RUNNING) { totalCount } }"


class LgqlDriver(Driver):
    def __init__(self, url: str) -> None:
        self.url = f"{url}/graphql"
        self.http = httpx.AsyncClient(timeout=600)

    async def _data(self, http: httpx.AsyncClient, query: str, variables: dict[str, Any]) -> Any:
        response = await http.post(self.url, json={"query": query, "variables": variables})
        body = response.json()
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    async def _wait(self, graph: str, thread_id: str | None) -> None:
        run_input: dict[str, Any] = {"assistantId": graph, "input": INPUTS[graph]}
        if thread_id is not None:
            run_input["threadId"] = thread_id
        data = await self._data(self.http, RUN_AND_WAIT, {"input": run_input})
        result = data["runAndWait"]
        if result["run"]["status"] != "SUCCESS":
            raise RuntimeError(f"run did not succeed: {result}")

    async def new_thread_wait(self, graph: str) -> None:
        thread = await self._data(self.http, CREATE_THREAD, {"graph": graph})
        await self._wait(graph, thread["createThread"]["id"])

    async def stateless_wait(self, graph: str) -> None:
        await self._wait(graph, None)

    async def create_threads(self, graph: str, n: int) -> list[str]:
        sem = asyncio.Semaphore(20)

        async def one() -> str:
            async with sem:
                data = await self._data(self.http, CREATE_THREAD, {"graph": graph})
                thread_id: str = data["createThread"]["id"]
                return thread_id

        return list(await asyncio.gather(*(one() for _ in range(n))))

    async def background(self, graph: str, threads: list[list[str]]) -> None:
        async def client(thread_ids: list[str]) -> None:
            async with httpx.AsyncClient(timeout=60) as http:
                for thread_id in thread_ids:
                    run_input = {
                        "assistantId": graph,
                        "threadId": thread_id,
                        "input": INPUTS[graph],
                    }
                    await self._data(http, CREATE_RUN, {"input": run_input})

        await asyncio.gather(*(client(ids) for ids in threads))
        while True:
            data = await self._data(self.http, ACTIVE, {})
            if data["p"]["totalCount"] + data["r"]["totalCount"] == 0:
                return
            # Each poll costs the server CPU that the batch is charged with: not too often.
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        await self.http.aclose()


class LangGraphSdkDriver(Driver):
    def __init__(self, url: str) -> None:
        from langgraph_sdk import get_client

        self.url = url
        self.client = get_client(url=url, api_key=None, timeout=600)

    async def new_thread_wait(self, graph: str) -> None:
        thread = await self.client.threads.create()
        await self.client.runs.wait(thread["thread_id"], graph, input=INPUTS[graph])

    async def stateless_wait(self, graph: str) -> None:
        await self.client.runs.wait(None, graph, input=INPUTS[graph])

    async def create_threads(self, graph: str, n: int) -> list[str]:
        sem = asyncio.Semaphore(20)

        async def one() -> str:
            async with sem:
                thread = await self.client.threads.create()
                thread_id: str = thread["thread_id"]
                return thread_id

        return list(await asyncio.gather(*(one() for _ in range(n))))

    async def background(self, graph: str, threads: list[list[str]]) -> None:
        from langgraph_sdk import get_client

        async def client(thread_ids: list[str]) -> None:
            sdk = get_client(url=self.url, api_key=None, timeout=600)
            runs = []
            for thread_id in thread_ids:
                run = await sdk.runs.create(thread_id, graph, input=INPUTS[graph])
                runs.append((thread_id, run["run_id"]))
            for thread_id, run_id in runs:
                await sdk.runs.join(thread_id, run_id)

        await asyncio.gather(*(client(ids) for ids in threads))


# ---- the benchmark -----------------------------------------------------------------------------


@dataclass
class Figures:
    values: dict[str, float] = field(default_factory=dict)


FIGURES: list[tuple[str, str, bool]] = [
    # key, label, higher is better
    ("thread_p50", "new-thread wait p50 (ms)", False),
    ("thread_p95", "new-thread wait p95 (ms)", False),
    ("stateless_p50", "stateless wait p50 (ms)", False),
    ("stateless_p95", "stateless wait p95 (ms)", False),
    ("throughput", "background throughput (runs/s)", True),
    ("cpu_server", "CPU per bg run, server (ms)", False),
    ("cpu_engines", "CPU per bg run, engines (ms)", False),
    ("rss", "server RSS after runs (MiB)", False),
    ("pss_engines", "engines PSS after runs (MiB)", False),
]


async def timed(n: int, op: Callable[[], Awaitable[None]]) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await op()
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def measure(server: Server, driver: Driver, graph: str, args: argparse.Namespace) -> Figures:
    fig = Figures()
    for _ in range(args.warmup):
        await driver.new_thread_wait(graph)
        await driver.stateless_wait(graph)
    thread_ms = await timed(args.n, lambda: driver.new_thread_wait(graph))
    stateless_ms = await timed(args.n, lambda: driver.stateless_wait(graph))
    fig.values.update(
        thread_p50=statistics.median(thread_ms),
        thread_p95=pct(thread_ms, 0.95),
        stateless_p50=statistics.median(stateless_ms),
        stateless_p95=pct(stateless_ms, 0.95),
    )

    thread_ids = await driver.create_threads(graph, args.bg_runs)
    per_client = [thread_ids[i :: args.clients] for i in range(args.clients)]
    server_procs, engine_procs = server.processes.server(), server.processes.engines()
    cpu0 = ProcessSet.cpu(server_procs), ProcessSet.cpu(engine_procs)
    t0 = time.perf_counter()
    await driver.background(graph, per_client)
    elapsed = time.perf_counter() - t0
    server_procs, engine_procs = server.processes.server(), server.processes.engines()
    cpu1 = ProcessSet.cpu(server_procs), ProcessSet.cpu(engine_procs)
    fig.values["throughput"] = args.bg_runs / elapsed
    fig.values["cpu_server"] = cpu_delta(cpu0[0], cpu1[0]) / args.bg_runs * 1000
    if engine_procs:
        fig.values["cpu_engines"] = cpu_delta(cpu0[1], cpu1[1]) / args.bg_runs * 1000
        if not server.processes.machine_engines:
            fig.values["pss_engines"] = ProcessSet.pss_mib(engine_procs)
    fig.values["rss"] = ProcessSet.rss_mib(server_procs)
    return fig


def _fmt(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


def report(graph: str, results: dict[str, Figures], names: list[str]) -> None:
    print(f"\n== graph `{graph}` ==")
    header = f"{'figure':<34}" + "".join(f"{n:>16}" for n in names)
    if len(names) == 2:
        header += f"{'lgql advantage':>16}"
    print(header)
    for key, label, higher_better in FIGURES:
        row = [results[n].values.get(key) for n in names]
        if all(v is None for v in row):
            continue
        line = f"{label:<34}" + "".join(f"{_fmt(v):>16}" for v in row)
        ours, theirs = [*row, None][:2]
        if len(names) == 2 and ours and theirs:
            ratio = ours / theirs if higher_better else theirs / ours
            line += f"{ratio:>15.1f}x"
        print(line)


async def run(args: argparse.Namespace) -> None:
    graphs = [g.strip() for g in args.graphs.split(",") if g.strip()]
    log_dir = Path(tempfile.mkdtemp(prefix="lgql-bench-logs-"))
    results: dict[str, dict[str, Figures]] = {g: {} for g in graphs}
    names: list[str] = []
    servers: list[tuple[str, Callable[[], contextlib.AbstractAsyncContextManager[Server]]]] = []
    if not args.peer_only:
        names.append("lgql")
        servers.append(("lgql", lambda: lgql_server(args.workers, log_dir)))
    if args.peer == "langgraph-dev":
        names.append("langgraph dev")
        servers.append(
            ("langgraph dev", lambda: langgraph_dev_server(args.peer_venv, args.n_jobs, log_dir))
        )
    print(
        f"bench_runs: {psutil.cpu_count()} CPUs, n={args.n} sequential runs (+{args.warmup} warm-up),"
        f" {args.bg_runs} background runs from {args.clients} clients"
    )
    for name, start in servers:
        async with start() as server:
            print(f"- {name}: {server.mode}" + "".join(f"; {n}" for n in server.notes))
            driver: Driver = (
                LgqlDriver(server.url) if name == "lgql" else LangGraphSdkDriver(server.url)
            )
            try:
                for graph in graphs:
                    results[graph][name] = await measure(server, driver, graph, args)
                    print(f"  {graph}: done", flush=True)
            finally:
                await driver.close()
    for graph in graphs:
        report(graph, results[graph], names)
    print(f"\nserver logs: {log_dir}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50, help="sequential runs per latency figure")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--graphs", default="echo,steps")
    parser.add_argument("--bg-runs", type=int, default=500)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="`lgql worker` processes (with DATABASE_URI/REDIS_URI)",
    )
    parser.add_argument("--peer", choices=["none", "langgraph-dev"], default="none")
    parser.add_argument("--peer-venv", type=Path, default=Path("/tmp/lgdev"))
    parser.add_argument("--peer-only", action="store_true", help="measure only the peer")
    parser.add_argument(
        "--n-jobs",
        type=int,
        default=int(os.environ.get("N_JOBS_PER_WORKER", "10")),
        help="the peer's --n-jobs-per-worker (default: lgql's N_JOBS_PER_WORKER, 10)",
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()

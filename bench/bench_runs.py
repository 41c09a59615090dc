"""Run benchmark: the floor, `langgraph dev` and lgql side by side, with lgql's ratios to both.

    python bench/bench_runs.py [--n 50] [--bg-runs 500 --clients 20] [--workers 1]
    python bench/bench_runs.py --peer langgraph-dev --peer-venv /tmp/lgdev

Columns (each started by the script, one after the other, on the same machine):
- floor: the fixture graphs in-process with LangGraph's `AsyncPostgresSaver` on a scratch
  database of the same Postgres, no server (`floor.py`, in a child process of its own);
- langgraph dev: `langgraph dev` (in-memory runtime) from `--peer-venv`, through LangGraph's SDK
  (only with `--peer langgraph-dev`);
- lgql: `lgql serve` + `--workers` x `lgql worker` on the machine's Postgres and Redis
  (DATABASE_URI / REDIS_URI, default the local ones), a scratch database and key prefix of its own.

Figures (graphs from `tests/fixtures/graphs`): wait for a run on a new thread (`echo`) and a
stateless wait (`steps`), p50/p95 over `--n` sequential runs; `stream100` streamed (custom
events), first and last event p50; background throughput of `--bg-runs` `steps` runs from
`--clients` concurrent clients, one thread each; CPU per background run split by process (API,
workers, Postgres, Redis); RSS of each server process after the runs. Then a separate, smaller
pass (`--count-runs`) with counting proxies between each process and Postgres / Redis
(`wire.py`) gives round trips per background run: Postgres statements and transactions per
process, commits (`pg_stat_database.xact_commit` of the scratch database), Redis commands. The
proxies are never in the timed pass. No assertions: medians and ratios, then a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from drivers import Driver, LangGraphSdkDriver, LgqlDriver, floor_process
from servers import (
    ROOT,
    ProcessSet,
    Server,
    cancel_on_signals,
    cpu_delta,
    langgraph_dev_server,
    lgql_server,
    named,
    pct,
    scratch_database,
    tree,
)
from wire import WireProxy, address_of, with_address

__all__ = ["Server", "lgql_server", "pct"]  # bench_stream.py imports these from here

COLUMNS = ("floor", "langgraph dev", "lgql")
Figs = dict[str, float]

# key, label, higher is better (None: no direction)
ROWS: list[tuple[str, str, bool | None]] = [
    ("thread_p50", "wait, new thread, echo, p50 (ms)", False),
    ("thread_p95", "wait, new thread, echo, p95 (ms)", False),
    ("stateless_p50", "stateless wait, steps, p50 (ms)", False),
    ("stateless_p95", "stateless wait, steps, p95 (ms)", False),
    ("stream_first", "stream100: first event, p50 (ms)", False),
    ("stream_last", "stream100: last event, p50 (ms)", False),
    ("throughput", "background throughput (runs/s)", True),
    ("cpu_api", "CPU/run: API process (floor: its process) (ms)", False),
    ("cpu_worker", "CPU/run: worker process(es) (ms)", False),
    ("cpu_pg", "CPU/run: Postgres (ms)", False),
    ("cpu_redis", "CPU/run: Redis (ms)", False),
    ("cpu_total", "CPU/run: total (ms)", False),
    ("rss_api", "RSS after runs: API (floor: its process) (MiB)", False),
    ("rss_worker", "RSS after runs: worker (largest) (MiB)", False),
    ("pg_statements", "Postgres statements/run", False),
    ("pg_statements_api", "  Postgres statements/run: API", False),
    ("pg_statements_worker", "  Postgres statements/run: worker(s)", False),
    ("pg_commits", "Postgres commits/run (pg_stat_database)", False),
    ("pg_tx_api", "  Postgres transactions/run (proxy): API", False),
    ("pg_tx_worker", "  Postgres transactions/run (proxy): worker(s)", False),
    ("redis_commands", "Redis commands/run", False),
    ("redis_commands_api", "  Redis commands/run: API", False),
    ("redis_commands_worker", "  Redis commands/run: worker(s)", False),
    ("idle_pg", "idle background: Postgres statements/s", None),
    ("idle_redis", "idle background: Redis commands/s", None),
]


# ---- timed pass --------------------------------------------------------------------------------


def role_cpu(roles: dict[str, int]) -> dict[str, dict[int, float]]:
    return {role: ProcessSet.cpu(tree([pid])) for role, pid in roles.items()}


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


async def timed_pass(
    driver: Driver,
    roles: dict[str, int],
    engines: tuple[str, ...],
    args: argparse.Namespace,
    pg: tuple[str, str] | None = None,
) -> Figs:
    """Every timed figure of one column; `engines` are those it uses ("pg", "redis"), `pg` the
    (admin URL, database) whose backends are its Postgres CPU."""
    fig: Figs = {}
    for _ in range(args.warmup):
        await driver.new_thread_wait("echo")
        await driver.stateless_wait("steps")
        await driver.stream("stream100")
    thread_ms = [await driver.new_thread_wait("echo") for _ in range(args.n)]
    stateless_ms = [await driver.stateless_wait("steps") for _ in range(args.n)]
    streams = [await driver.stream("stream100") for _ in range(args.n)]
    fig.update(
        thread_p50=statistics.median(thread_ms),
        thread_p95=pct(thread_ms, 0.95),
        stateless_p50=statistics.median(stateless_ms),
        stateless_p95=pct(stateless_ms, 0.95),
        stream_first=statistics.median(s[0] for s in streams),
        stream_last=statistics.median(s[1] for s in streams),
    )

    thread_ids = await driver.create_threads("steps", args.bg_runs)
    per_client = [thread_ids[i :: args.clients] for i in range(args.clients)]
    cpu0, eng0 = role_cpu(roles), await engines_cpu(pg)
    t0 = time.perf_counter()
    await driver.background("steps", per_client)
    elapsed = time.perf_counter() - t0
    cpu1, eng1 = role_cpu(roles), await engines_cpu(pg)
    per_run = 1000 / args.bg_runs
    fig["throughput"] = args.bg_runs / elapsed
    fig["cpu_api"] = cpu_delta(cpu0["api"], cpu1["api"]) * per_run
    workers = [r for r in roles if r.startswith("worker")]
    if workers:
        fig["cpu_worker"] = sum(cpu_delta(cpu0[r], cpu1[r]) for r in workers) * per_run
    for engine in engines:
        fig[f"cpu_{engine}"] = cpu_delta(eng0[engine], eng1[engine]) * per_run
    fig["cpu_total"] = sum(
        fig.get(k, 0.0) for k in ("cpu_api", "cpu_worker", "cpu_pg", "cpu_redis")
    )
    fig["rss_api"] = ProcessSet.rss_mib(tree([roles["api"]]))
    if workers:
        fig["rss_worker"] = max(ProcessSet.rss_mib(tree([roles[r]])) for r in workers)
    return fig


# ---- round-trip pass (through the proxies) ---------------------------------------------------------


async def xact_commits(admin_url: str, database: str, settle: float) -> int:
    """The database's committed transactions once the backends' lazily flushed statistics have
    caught up: wait `settle` seconds (an idle backend flushes within 10 s), then read until two
    reads half a second apart agree (or five tries)."""
    await asyncio.sleep(settle)
    conn = await asyncpg.connect(admin_url)
    try:
        last = None
        for _ in range(5):
            await conn.execute("SELECT pg_stat_clear_snapshot()")
            value = await conn.fetchval(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = $1", database
            )
            if value == last:
                break
            last = value
            await asyncio.sleep(0.5)
        return int(value or 0)
    finally:
        await conn.close()


async def count_pass(
    driver: Driver,
    proxies: dict[str, tuple[WireProxy, WireProxy | None]],
    admin_url: str,
    database: str,
    args: argparse.Namespace,
) -> Figs:
    """Round trips per background `steps` run, per role: the batch's deltas on the proxies
    minus the cost of the client's completion polls (measured right after the batch)."""
    runs = args.count_runs
    for _ in range(3):
        await driver.new_thread_wait("steps")
    thread_ids = await driver.create_threads("steps", runs)
    per_client = [thread_ids[i :: args.clients] for i in range(args.clients)]

    def snap() -> dict[str, tuple[int, int, int]]:
        out = {}
        for role, (pg, rd) in proxies.items():
            p, r = pg.snapshot(), (rd.snapshot().commands if rd else 0)
            out[role] = (p.statements, p.transactions, r)
        return out

    commits0 = await xact_commits(admin_url, database, args.settle)
    s0 = snap()
    polls = await driver.background("steps", per_client, poll=0.25)
    s1 = snap()
    # A poll is one GraphQL query to the API: its cost, measured on the idle server, is taken
    # off the API's figures (the workers are not asked anything).
    poll_cost = {role: [0.0, 0.0, 0.0] for role in proxies}
    if polls and isinstance(driver, LgqlDriver):
        k = 10
        for _ in range(k):
            await driver.active()
        s2 = snap()
        poll_cost["api"] = [(s2["api"][i] - s1["api"][i]) / k for i in range(3)]
    s_after = snap()
    t_after = time.perf_counter()
    commits1 = await xact_commits(admin_url, database, args.settle)
    s3 = snap()
    idle_seconds = time.perf_counter() - t_after

    fig: Figs = {}
    per_role: dict[str, list[float]] = {}
    for role in proxies:
        per_role[role] = [
            (s1[role][i] - s0[role][i] - polls * poll_cost[role][i]) / runs for i in range(3)
        ]
    workers = [r for r in proxies if r != "api"]
    fig["pg_statements_api"], fig["pg_tx_api"], api_redis = per_role["api"]
    fig["pg_statements"] = sum(v[0] for v in per_role.values())
    if workers:
        fig["pg_statements_worker"] = sum(per_role[r][0] for r in workers)
        fig["pg_tx_worker"] = sum(per_role[r][1] for r in workers)
    if any(rd for _, rd in proxies.values()):
        fig["redis_commands_api"] = api_redis
        fig["redis_commands_worker"] = sum(per_role[r][2] for r in workers)
        fig["redis_commands"] = sum(v[2] for v in per_role.values())
    # Commits: everything the proxies saw after the batch (the poll probes, the idle background
    # while statistics settle) is taken off, and so are the batch's own polls.
    after_tx = sum(s3[r][1] - s1[r][1] for r in proxies)
    batch_polls_tx = polls * sum(c[1] for c in poll_cost.values())
    fig["pg_commits"] = (commits1 - commits0 - after_tx - batch_polls_tx) / runs
    fig["idle_pg"] = sum(s3[r][0] - s_after[r][0] for r in proxies) / idle_seconds
    if any(rd for _, rd in proxies.values()):
        fig["idle_redis"] = sum(s3[r][2] - s_after[r][2] for r in proxies) / idle_seconds
    return fig


# ---- columns -----------------------------------------------------------------------------------


async def floor_column(args: argparse.Namespace, log_dir: Path) -> Figs:
    database_uri = os.environ["DATABASE_URI"]
    async with scratch_database(database_uri, "lgql_bench_floor") as (name, scratch, admin_url):
        async with floor_process(scratch, log_dir / "floor.log") as (driver, pid):
            print(f"- floor: pid {pid}, AsyncPostgresSaver on database {name}", flush=True)
            fig = await timed_pass(driver, {"api": pid}, ("pg",), args, (admin_url, name))
        if args.count_runs:
            pg = await WireProxy("postgres", *address_of(scratch, 5432)).start()
            try:
                proxied = with_address(scratch, "127.0.0.1", pg.port)
                async with floor_process(proxied, log_dir / "floor-count.log") as (driver, _):
                    fig |= await count_pass(driver, {"api": (pg, None)}, admin_url, name, args)
            finally:
                await pg.close()
    return fig


async def peer_column(args: argparse.Namespace, log_dir: Path) -> Figs:
    async with langgraph_dev_server(args.peer_venv, args.n_jobs, log_dir) as server:
        print(f"- langgraph dev: {server.mode}", flush=True)
        driver = LangGraphSdkDriver(server.url)
        try:
            return await timed_pass(driver, server.roles, (), args)
        finally:
            await driver.close()


async def lgql_column(args: argparse.Namespace, log_dir: Path) -> Figs:
    async with lgql_server(args.workers, log_dir, root=args.lgql_root) as server:
        print(f"- lgql: {server.mode}", flush=True)
        driver = LgqlDriver(server.url)
        try:
            pg = (
                (server.admin_url, server.database)
                if server.database and server.admin_url
                else None
            )
            fig = await timed_pass(driver, server.roles, ("pg", "redis"), args, pg)
        finally:
            await driver.close()
    if args.count_runs:
        async with lgql_server(
            args.workers, log_dir, proxies=True, label="count-", root=args.lgql_root
        ) as server:
            print(f"- lgql (round trips): {server.mode}", flush=True)
            driver = LgqlDriver(server.url)
            assert server.admin_url and server.database
            proxies: dict[str, tuple[WireProxy, WireProxy | None]] = dict(server.proxies)
            try:
                fig |= await count_pass(driver, proxies, server.admin_url, server.database, args)
            finally:
                await driver.close()
    return fig


# ---- report --------------------------------------------------------------------------------------


def _fmt(v: float | None) -> str:
    if v is None:
        return "—"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.2f}x"


def table(results: dict[str, Figs]) -> list[tuple[str, list[str]]]:
    rows = []
    for key, label, _ in ROWS:
        values = [results.get(c, {}).get(key) for c in COLUMNS]
        if all(v is None for v in values):
            continue
        floor, peer, ours = values
        rows.append((label, [*map(_fmt, values), _ratio(ours, floor), _ratio(ours, peer)]))
    return rows


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()} CPUs ({model})"


def report(results: dict[str, Figs], args: argparse.Namespace) -> None:
    heads = [*COLUMNS, "lgql/floor", "lgql/lg-dev"]
    rows = table(results)
    print()
    print(f"{'figure':<48}" + "".join(f"{h:>15}" for h in heads))
    for label, cells in rows:
        print(f"{label:<48}" + "".join(f"{c:>15}" for c in cells))
    print(
        "\nratios are lgql's figure over the other's: below 1 is better for lgql, except "
        "throughput (above 1 is better).\ntimed figures without proxies; round trips from a "
        f"separate pass of {args.count_runs} runs through the counting proxies, the client's "
        "completion polls subtracted."
    )
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    print("\nFor the README:\n")
    print(
        f"Measured {date} on {machine()}; `bench/bench_runs.py --n {args.n} --bg-runs "
        f"{args.bg_runs} --clients {args.clients} --workers {args.workers}`.\n"
    )
    print("| figure | floor | langgraph dev | lgql | lgql / floor | lgql / langgraph dev |")
    print("|---|---|---|---|---|---|")
    for label, cells in rows:
        print(f"| {label.strip()} | " + " | ".join(cells) + " |")


async def run(args: argparse.Namespace) -> None:
    cancel_on_signals()
    log_dir = Path(tempfile.mkdtemp(prefix="lgql-bench-logs-"))
    print(
        f"bench_runs: {machine()}; n={args.n} sequential runs (+{args.warmup} warm-up) per "
        f"latency figure, {args.bg_runs} background runs from {args.clients} clients; "
        f"round trips over {args.count_runs} runs"
    )
    print(f"Postgres {os.environ['DATABASE_URI']}, Redis {os.environ['REDIS_URI']}")
    columns: dict[str, Callable[[], Awaitable[Figs]]] = {}
    if not args.no_floor:
        columns["floor"] = lambda: floor_column(args, log_dir)
    if args.peer == "langgraph-dev":
        columns["langgraph dev"] = lambda: peer_column(args, log_dir)
    else:
        print("- langgraph dev: skipped (give --peer langgraph-dev --peer-venv VENV)")
    columns["lgql"] = lambda: lgql_column(args, log_dir)
    results: dict[str, Figs] = {}
    for name, measure in columns.items():
        results[name] = await measure()
        print(f"  {name}: done", flush=True)
    report(results, args)
    print(f"\nlogs: {log_dir}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50, help="sequential runs per latency figure")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--bg-runs", type=int, default=500)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--workers", type=int, default=1, help="`lgql worker` processes")
    parser.add_argument(
        "--count-runs",
        type=int,
        default=None,
        help="background runs of the round-trip pass (default: --bg-runs, at most 200; 0: skip)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=11.0,
        help="seconds to let Postgres flush its statistics before reading xact_commit",
    )
    parser.add_argument("--peer", choices=["none", "langgraph-dev"], default="none")
    parser.add_argument("--peer-venv", type=Path, default=Path("/tmp/lgdev"))
    parser.add_argument(
        "--lgql-root",
        type=Path,
        default=ROOT,
        help="the lgql source tree to run (default: this checkout)",
    )
    parser.add_argument("--no-floor", action="store_true", help="skip the floor column")
    parser.add_argument(
        "--n-jobs",
        type=int,
        default=int(os.environ.get("N_JOBS_PER_WORKER", "10")),
        help="the peer's --n-jobs-per-worker (default: lgql's N_JOBS_PER_WORKER, 10)",
    )
    args = parser.parse_args()
    if args.count_runs is None:
        args.count_runs = min(args.bg_runs, 200)
    os.environ.setdefault("DATABASE_URI", "postgresql://postgres@127.0.0.1:5432/test")
    os.environ.setdefault("REDIS_URI", "redis://127.0.0.1:6379/0")
    try:
        asyncio.run(run(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: servers stopped, scratch databases dropped", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()

"""Run benchmark: the floor, `langgraph dev` and lgql side by side, with lgql's ratios to both.

    python bench/bench_runs.py [--n 50] [--bg-runs 500 --clients 20] [--workers 1]
    python bench/bench_runs.py --peer langgraph-dev --peer-venv /tmp/lgdev
    python bench/bench_runs.py --before-root /tmp/lgql-before   # a change, before and after

Columns (all started by the script, on the same machine; the sequential figures interleave the
columns run by run, the background batches run one column after the other):
- floor: the fixture graphs in-process with LangGraph's `AsyncPostgresSaver` on a scratch
  database of the same Postgres, no server (`floor.py`, in a child process of its own);
- langgraph dev: `langgraph dev` (in-memory runtime) from `--peer-venv`, through LangGraph's SDK
  (only with `--peer langgraph-dev`);
- lgql: `lgql serve` + `--workers` x `lgql worker` on the machine's Postgres and Redis
  (DATABASE_URI / REDIS_URI, default the local ones), a scratch database and key prefix of its own;
- lgql before (only with `--before-root`): the same from another source tree (say, a `git worktree`
  of the commit before a change), interleaved with the others like any column, and its background
  batch run twice around lgql's (before, lgql, lgql, before; each figure the mean of two), so that
  a change is measured against its baseline in one run on one machine.

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
import random
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from drivers import Driver, LangGraphSdkDriver, LgqlDriver, StreamError, floor_process
from round_trips import floor_round_trips, lgql_round_trips, lgql_settings
from servers import (
    ROOT,
    ProcessSet,
    Server,
    cancel_on_signals,
    cpu_delta,
    engines_cpu,
    langgraph_dev_server,
    lgql_server,
    pct,
    scratch_database,
    tree,
)

__all__ = ["Server", "lgql_server", "pct"]  # bench_stream.py imports these from here

COLUMNS = ("floor", "langgraph dev", "lgql")
BEFORE = "lgql before"
Figs = dict[str, float]

# key, label, higher is better (None: no direction)
ROWS: list[tuple[str, str, bool | None]] = [
    ("thread_p50", "wait, new thread, echo, p50 (ms)", False),
    ("thread_p95", "wait, new thread, echo, p95 (ms)", False),
    ("stateless_p50", "stateless wait, steps, p50 (ms)", False),
    ("stateless_p95", "stateless wait, steps, p95 (ms)", False),
    ("stream_first", "stream100: first event, p50 (ms)", False),
    ("stream_last", "stream100: last event, p50 (ms)", False),
    ("stream_failed", "stream100 runs that failed (of n)", None),
    ("throughput", "background throughput (runs/s)", True),
    ("cpu_api", "CPU/run: API process (floor: its process) (ms)", False),
    ("cpu_worker", "CPU/run: worker process(es) (ms)", False),
    ("cpu_pg", "CPU/run: Postgres (ms)", False),
    ("cpu_redis", "CPU/run: Redis (ms)", False),
    ("cpu_total", "CPU/run: total (ms)", False),
    ("rss_api", "RSS after runs: API (floor: its process) (MiB)", False),
    ("rss_worker", "RSS after runs: worker (largest) (MiB)", False),
    ("noise", "other load on the machine during the batch (cores)", None),
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


@dataclass
class Column:
    name: str
    driver: Driver
    roles: dict[str, int]  # "api", "worker-0", … → pid (the floor's process is its "api")
    engines: tuple[str, ...]  # the engines it uses: "pg", "redis"
    pg: tuple[str, str] | None = None  # (admin URL, scratch database) for its Postgres CPU


@contextlib.asynccontextmanager
async def floor_column(args: argparse.Namespace, log_dir: Path) -> AsyncIterator[Column]:
    database_uri = os.environ["DATABASE_URI"]
    async with scratch_database(database_uri, "lgql_bench_floor") as (name, scratch, admin_url):
        async with floor_process(scratch, log_dir / "floor.log") as (driver, pid):
            print(f"- floor: pid {pid}, AsyncPostgresSaver on database {name}", flush=True)
            yield Column("floor", driver, {"api": pid}, ("pg",), (admin_url, name))


@contextlib.asynccontextmanager
async def peer_column(args: argparse.Namespace, log_dir: Path) -> AsyncIterator[Column]:
    async with langgraph_dev_server(args.peer_venv, args.n_jobs, log_dir) as server:
        print(f"- langgraph dev: {server.mode}", flush=True)
        driver = LangGraphSdkDriver(server.url)
        try:
            yield Column("langgraph dev", driver, server.roles, ())
        finally:
            await driver.close()


@contextlib.asynccontextmanager
async def lgql_column(
    args: argparse.Namespace, log_dir: Path, *, name: str = "lgql", root: Path | None = None
) -> AsyncIterator[Column]:
    label = "" if name == "lgql" else "before-"
    settings = lgql_settings(args, before=name != "lgql")
    async with lgql_server(
        args.workers,
        log_dir,
        label=label,
        root=root or args.lgql_root,
        env_overrides=settings,
    ) as server:
        print(
            f"- {name}: {server.mode}, from {root or args.lgql_root}, settings {settings}",
            flush=True,
        )
        driver = LgqlDriver(server.url)
        pg = (server.admin_url, server.database) if server.admin_url and server.database else None
        try:
            yield Column(name, driver, server.roles, ("pg", "redis"), pg)
        finally:
            await driver.close()


async def latencies(columns: list[Column], args: argparse.Namespace) -> dict[str, Figs]:
    """The sequential figures, interleaved: run i of every column before run i + 1 of any, so
    that the machine's noise falls on all columns alike. The order of a round is shuffled (seeded
    by the round): a rotation kept each column always right after the same other one, and a
    column that runs just after another lgql column finds Postgres, Redis and the shared
    libraries warm (it made `lgql` look ~10 % faster than an identical `lgql before`)."""
    for col in columns:
        for _ in range(args.warmup):
            await col.driver.new_thread_wait("echo")
            await col.driver.stateless_wait("steps")
            await col.driver.stream("stream100")
    thread: dict[str, list[float]] = {c.name: [] for c in columns}
    stateless: dict[str, list[float]] = {c.name: [] for c in columns}
    streams: dict[str, list[tuple[float, float]]] = {c.name: [] for c in columns}
    failures = {c.name: 0 for c in columns}
    for i in range(args.n):
        order = random.Random(i).sample(columns, k=len(columns))
        for col in order:
            thread[col.name].append(await col.driver.new_thread_wait("echo"))
        for col in order:
            stateless[col.name].append(await col.driver.stateless_wait("steps"))
        for col in order:
            try:
                streams[col.name].append(await col.driver.stream("stream100"))
            except StreamError as e:
                failures[col.name] += 1
                print(f"  {col.name}: a stream100 run failed: {e}", flush=True)
    return {
        c.name: {
            "thread_p50": statistics.median(thread[c.name]),
            "thread_p95": pct(thread[c.name], 0.95),
            "stateless_p50": statistics.median(stateless[c.name]),
            "stateless_p95": pct(stateless[c.name], 0.95),
            **(
                {
                    "stream_first": statistics.median(s[0] for s in streams[c.name]),
                    "stream_last": statistics.median(s[1] for s in streams[c.name]),
                }
                if streams[c.name]
                else {}
            ),
            "stream_failed": float(failures[c.name]),
        }
        for c in columns
    }


def role_cpu(roles: dict[str, int]) -> dict[str, dict[int, float]]:
    return {role: ProcessSet.cpu(tree([pid])) for role, pid in roles.items()}


def busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (every core) since boot."""
    t = psutil.cpu_times()
    parts = ("user", "nice", "system", "irq", "softirq", "steal")  # guest time is inside user
    return float(sum(getattr(t, k, 0.0) for k in parts))


async def background(col: Column, args: argparse.Namespace) -> Figs:
    """Throughput, CPU per run split by process, RSS after, and the machine's other load."""
    thread_ids = await col.driver.create_threads("steps", args.bg_runs)
    per_client = [thread_ids[i :: args.clients] for i in range(args.clients)]
    me = psutil.Process()
    cpu0, eng0 = role_cpu(col.roles), await engines_cpu(col.pg)
    busy0, mine0 = busy_seconds(), sum(me.cpu_times()[:2])
    t0 = time.perf_counter()
    await col.driver.background("steps", per_client)
    elapsed = time.perf_counter() - t0
    busy1, mine1 = busy_seconds(), sum(me.cpu_times()[:2])
    cpu1, eng1 = role_cpu(col.roles), await engines_cpu(col.pg)
    per_run = 1000 / args.bg_runs
    fig: Figs = {"throughput": args.bg_runs / elapsed}
    fig["cpu_api"] = cpu_delta(cpu0["api"], cpu1["api"]) * per_run
    workers = [r for r in col.roles if r.startswith("worker")]
    if workers:
        fig["cpu_worker"] = sum(cpu_delta(cpu0[r], cpu1[r]) for r in workers) * per_run
    for engine in col.engines:
        fig[f"cpu_{engine}"] = cpu_delta(eng0[engine], eng1[engine]) * per_run
    parts = ("cpu_api", "cpu_worker", "cpu_pg", "cpu_redis")
    fig["cpu_total"] = sum(fig.get(k, 0.0) for k in parts)
    measured = fig["cpu_total"] / per_run + (mine1 - mine0)
    fig["noise"] = max(0.0, (busy1 - busy0) - measured) / elapsed
    fig["rss_api"] = ProcessSet.rss_mib(tree([col.roles["api"]]))
    if workers:
        fig["rss_worker"] = max(ProcessSet.rss_mib(tree([col.roles[r]])) for r in workers)
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


def columns_of(results: dict[str, Figs]) -> list[str]:
    """The table's columns: floor, langgraph dev, lgql before (if measured), lgql."""
    return [*COLUMNS[:2], *([BEFORE] if BEFORE in results else []), COLUMNS[2]]


def table(results: dict[str, Figs]) -> list[tuple[str, list[str]]]:
    columns = columns_of(results)
    others = [c for c in columns if c != "lgql"]
    rows = []
    for key, label, direction in ROWS:
        values = [results.get(c, {}).get(key) for c in columns]
        if all(v is None for v in values):
            continue
        ours = results.get("lgql", {}).get(key)
        ratios = [
            _ratio(ours, results.get(c, {}).get(key)) if direction is not None else "—"
            for c in others
        ]
        cells = [
            str(int(v)) if key == "stream_failed" and v is not None else _fmt(v) for v in values
        ]
        rows.append((label, [*cells, *ratios]))
    return rows


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()} CPUs ({model})"


def report(results: dict[str, Figs], args: argparse.Namespace) -> None:
    columns = columns_of(results)
    short = {"floor": "lgql/floor", "langgraph dev": "lgql/lg-dev", BEFORE: "lgql/before"}
    heads = [*columns, *(short[c] for c in columns if c != "lgql")]
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
    flags = (
        f"--n {args.n} --bg-runs {args.bg_runs} --clients {args.clients} --workers {args.workers}"
    )
    if args.peer != "none":
        flags += f" --peer {args.peer}"
    if args.before_root is not None:
        flags += f" --before-root {args.before_root}"
        if args.before_api_run_slots:
            flags += f" --before-api-run-slots {args.before_api_run_slots}"
    if args.api_run_slots:
        flags += f" --api-run-slots {args.api_run_slots}"
    print(f"Measured {date} on {machine()}; `bench/bench_runs.py {flags}`.\n")
    ratio_heads = [f"lgql / {c}" for c in columns if c != "lgql"]
    print("| figure | " + " | ".join([*columns, *ratio_heads]) + " |")
    print("|---" * (1 + len(columns) + len(ratio_heads)) + "|")
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
    starts: list[Callable[[], contextlib.AbstractAsyncContextManager[Column]]] = []
    if not args.no_floor:
        starts.append(lambda: floor_column(args, log_dir))
    if args.peer == "langgraph-dev":
        starts.append(lambda: peer_column(args, log_dir))
    else:
        print("- langgraph dev: skipped (give --peer langgraph-dev --peer-venv VENV)")
    if args.before_root is not None:
        starts.append(lambda: lgql_column(args, log_dir, name=BEFORE, root=args.before_root))
    starts.append(lambda: lgql_column(args, log_dir))
    results: dict[str, Figs] = {}
    async with contextlib.AsyncExitStack() as stack:
        columns = [await stack.enter_async_context(start()) for start in starts]
        print("sequential figures, interleaved across the columns …", flush=True)
        results = await latencies(columns, args)
        by_name = {col.name: col for col in columns}
        for col in columns:
            if col.name in (BEFORE, "lgql") and BEFORE in by_name:
                continue
            print(f"background batch: {col.name} …", flush=True)
            results[col.name] |= await background(col, args)
        if BEFORE in by_name:
            batches: dict[str, list[Figs]] = {BEFORE: [], "lgql": []}
            for name in (BEFORE, "lgql", "lgql", BEFORE):
                print(f"background batch: {name} …", flush=True)
                batches[name].append(await background(by_name[name], args))
            for name, figs in batches.items():
                results[name] |= {k: statistics.mean(f[k] for f in figs) for k in figs[0]}
    if args.count_runs:
        if not args.no_floor:
            results["floor"] |= await floor_round_trips(args, log_dir)
        if args.before_root is not None:
            results[BEFORE] |= await lgql_round_trips(args, log_dir, root=args.before_root)
        results["lgql"] |= await lgql_round_trips(args, log_dir)
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
    parser.add_argument(
        "--before-root",
        type=Path,
        default=None,
        help="another lgql source tree, measured as the column `lgql before` (a baseline)",
    )
    parser.add_argument(
        "--api-run-slots",
        type=int,
        default=int(os.environ.get("LGQL_API_RUN_SLOTS", "0")),
        help="the lgql column's LGQL_API_RUN_SLOTS (runs a client waits for, executed by the API)",
    )
    parser.add_argument(
        "--before-api-run-slots",
        type=int,
        default=0,
        help="the `lgql before` column's LGQL_API_RUN_SLOTS",
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

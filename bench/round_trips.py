"""The round-trip pass of `bench_runs.py`: Postgres statements, transactions and commits and Redis
commands per background `steps` run, on a fresh lgql (or floor process) whose every process talks
to Postgres and Redis through counting proxies of its own (`wire.WireProxy`). Never timed.

- statements / transactions / commands: the proxies' deltas over the batch, per process, minus
  the client's completion polls (lgql: `runs(status:)` queries to the API; their cost measured
  right after the batch, 10 polls on the idle server);
- commits: the delta of `pg_stat_database.xact_commit` of the scratch database, read once the
  lazily flushed statistics settled, minus what the proxies saw after the batch (the poll probes,
  the idle background while settling) and the batch's polls;
- idle background: what the proxies see per second while nothing runs (sweeper, heartbeats, …).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

import asyncpg
from drivers import Driver, LgqlDriver, floor_process
from servers import lgql_server, scratch_database
from wire import WireProxy, address_of, with_address

Figs = dict[str, float]
Proxies = dict[str, tuple[WireProxy, WireProxy | None]]  # role → (Postgres, Redis or None)


async def xact_commits(admin_url: str, database: str, settle: float) -> int:
    """The database's committed transactions once the backends' lazily flushed statistics have
    caught up: wait `settle` seconds (an idle backend flushes within 10 s), then read until two
    reads half a second apart agree (or five tries)."""
    await asyncio.sleep(settle)
    conn = await asyncpg.connect(admin_url)
    try:
        last = value = None
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


def _snap(proxies: Proxies) -> dict[str, tuple[int, int, int]]:
    out = {}
    for role, (pg, rd) in proxies.items():
        p = pg.snapshot()
        out[role] = (p.statements, p.transactions, rd.snapshot().commands if rd else 0)
    return out


async def count_pass(
    driver: Driver, proxies: Proxies, admin_url: str, database: str, args: argparse.Namespace
) -> Figs:
    runs = args.count_runs
    for _ in range(3):
        await driver.new_thread_wait("steps")
    thread_ids = await driver.create_threads("steps", runs)
    per_client = [thread_ids[i :: args.clients] for i in range(args.clients)]

    commits0 = await xact_commits(admin_url, database, args.settle)
    s0 = _snap(proxies)
    polls = await driver.background("steps", per_client, poll=0.25)
    s1 = _snap(proxies)
    # A poll is one GraphQL query to the API: its cost, measured on the idle server, is taken
    # off the API's figures (the workers are not asked anything).
    poll_cost = {role: [0.0, 0.0, 0.0] for role in proxies}
    if polls and isinstance(driver, LgqlDriver):
        k = 10
        for _ in range(k):
            await driver.active()
        s2 = _snap(proxies)
        poll_cost["api"] = [(s2["api"][i] - s1["api"][i]) / k for i in range(3)]
    s_idle = _snap(proxies)
    t_idle = time.perf_counter()
    commits1 = await xact_commits(admin_url, database, args.settle)
    s3 = _snap(proxies)
    idle_seconds = time.perf_counter() - t_idle

    per_role = {
        role: [(s1[role][i] - s0[role][i] - polls * poll_cost[role][i]) / runs for i in range(3)]
        for role in proxies
    }
    workers = [r for r in proxies if r != "api"]
    has_redis = any(rd for _, rd in proxies.values())
    fig: Figs = {}
    fig["pg_statements_api"], fig["pg_tx_api"], api_redis = per_role["api"]
    fig["pg_statements"] = sum(v[0] for v in per_role.values())
    if workers:
        fig["pg_statements_worker"] = sum(per_role[r][0] for r in workers)
        fig["pg_tx_worker"] = sum(per_role[r][1] for r in workers)
    if has_redis:
        fig["redis_commands_api"] = api_redis
        fig["redis_commands_worker"] = sum(per_role[r][2] for r in workers)
        fig["redis_commands"] = sum(v[2] for v in per_role.values())
    after_tx = sum(s3[r][1] - s1[r][1] for r in proxies)
    batch_polls_tx = polls * sum(c[1] for c in poll_cost.values())
    fig["pg_commits"] = (commits1 - commits0 - after_tx - batch_polls_tx) / runs
    fig["idle_pg"] = sum(s3[r][0] - s_idle[r][0] for r in proxies) / idle_seconds
    if has_redis:
        fig["idle_redis"] = sum(s3[r][2] - s_idle[r][2] for r in proxies) / idle_seconds
    return fig


async def floor_round_trips(args: argparse.Namespace, log_dir: Path) -> Figs:
    database_uri = os.environ["DATABASE_URI"]
    async with scratch_database(database_uri, "lgql_bench_floor") as (name, scratch, admin_url):
        pg = await WireProxy("postgres", *address_of(scratch, 5432)).start()
        try:
            proxied = with_address(scratch, "127.0.0.1", pg.port)
            async with floor_process(proxied, log_dir / "floor-count.log") as (driver, _):
                print("- floor (round trips): through a counting proxy", flush=True)
                return await count_pass(driver, {"api": (pg, None)}, admin_url, name, args)
        finally:
            await pg.close()


def lgql_settings(args: argparse.Namespace, *, before: bool) -> dict[str, str]:
    """The settings of the lgql column (`before`: of the `lgql before` column) from the flags."""
    slots = args.before_api_run_slots if before else args.api_run_slots
    return {"LGQL_API_RUN_SLOTS": str(slots)}


async def lgql_round_trips(
    args: argparse.Namespace, log_dir: Path, *, root: Path | None = None
) -> Figs:
    """The round-trip pass of the lgql tree `root` (default `--lgql-root`)."""
    label = "count-" if root is None else "count-before-"
    async with lgql_server(
        args.workers,
        log_dir,
        proxies=True,
        label=label,
        root=root or args.lgql_root,
        env_overrides=lgql_settings(args, before=root is not None),
    ) as server:
        print(f"- lgql (round trips): {server.mode}", flush=True)
        assert server.admin_url and server.database
        driver = LgqlDriver(server.url)
        try:
            proxies: Proxies = dict(server.proxies)
            return await count_pass(driver, proxies, server.admin_url, server.database, args)
        finally:
            await driver.close()

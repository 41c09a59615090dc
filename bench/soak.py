"""Soak: lgql under load for a set time while its infrastructure is broken on a schedule.

A private Postgres (the embedded engine) and a private Redis (Debian's `redis-server`, append-only
file) in temporary folders, `lgql serve` and two `lgql worker` processes on them
(`tests.processes.LgqlCluster`). `--clients` clients loop until `--seconds` have passed, each
taking turns at `runAndWait` (HTTP), `runStream` (graphql-transport-ws, rejoined with
`joinRunStream` from its last event id when the socket or the server drops it) and `createRun`
(HTTP), each on a new thread of the `counter` fixture graph (`--steps` checkpointed steps). Every
`--fault-every` seconds one fault, in turn: SIGKILL a worker and start another, restart Redis
with its data, restart Redis empty, `pg_terminate_backend` every lgql connection, restart
Postgres. Then the load stops, the runs get `--drain` seconds to end, and the script prints:

- runs created (rows in the database) and ended, by status; runs lost (created, never ended);
- requests by outcome (ok, or the error's code / the transport's exception);
- per stream: events lost silently (a `values` count missing with no `gap` event before it),
  lost but announced (missing after a `gap`), duplicated (an event id seen twice, or a count
  repeated within one attempt), streams whose `end` status differs from the database's, and
  whose last `values` differs from the run's final state;
- the RSS of each lgql process over time.

It asserts nothing, every loop is bounded by the clock, and everything it started is stopped and
removed at the end (Ctrl-C included).

    .venv/bin/python bench/soak.py --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import json
import logging
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gql import Client, gql  # noqa: E402
from gql.transport.websockets import WebsocketsTransport  # noqa: E402

from tests.fault_servers import (  # noqa: E402
    FAULTS_CONFIG,
    private_postgres_engine,
    private_redis,
)
from tests.processes import LgqlCluster  # noqa: E402

FINAL = {"success", "error", "timeout", "interrupted"}
TERMINATE = """
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
 WHERE datname = current_database() AND pid <> pg_backend_pid()
   AND backend_type = 'client backend'
"""
CREATE_THREAD = 'mutation { createThread(input: {graphId: "counter"}) { id } }'
CREATE_RUN = "mutation($input: RunInput!) { createRun(input: $input) { id } }"
RUN_AND_WAIT = (
    "mutation($input: RunInput!) { runAndWait(input: $input) { run { id status } values } }"
)
RUN_STREAM = gql(
    "subscription($input: RunInput!) {"
    " runStream(input: $input, streamMode: [VALUES]) { id runId event data } }"
)
JOIN = gql(
    "subscription($id: ID!, $after: String) {"
    " joinRunStream(runId: $id, lastEventId: $after, streamMode: [VALUES]) { id runId event data } }"
)


@dataclass
class Stream:
    run_id: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    rejoins: int = 0
    finished: bool = False


@dataclass
class Tally:
    requests: collections.Counter[str] = field(default_factory=collections.Counter)
    waited: dict[str, int] = field(default_factory=dict)  # runAndWait: run id -> final count
    streams: list[Stream] = field(default_factory=list)
    faults: list[tuple[float, str]] = field(default_factory=list)
    rss: list[tuple[float, dict[str, float]]] = field(default_factory=list)


def error_kind(exc: BaseException) -> str:
    text = str(exc)
    for code in ("SERVICE_UNAVAILABLE", "INTERNAL_SERVER_ERROR", "CONFLICT", "NOT_FOUND"):
        if code in text:
            return code
    return type(exc).__name__


async def graphql(http: httpx.AsyncClient, url: str, query: str, variables: dict[str, Any]) -> Any:
    response = await http.post(url, json={"query": query, "variables": variables})
    body = response.json()
    if body.get("errors"):
        codes = {e.get("extensions", {}).get("code", "?") for e in body["errors"]}
        raise RuntimeError(",".join(sorted(codes)))
    return body["data"]


async def one_op(
    kind: str, http: httpx.AsyncClient, url: str, ws_url: str, steps: int, tally: Tally
) -> None:
    thread = (await graphql(http, url, CREATE_THREAD, {}))["createThread"]["id"]
    run_input = {
        "assistantId": "counter",
        "threadId": thread,
        "input": {"tag": kind, "steps": steps},
        "idempotencyKey": str(uuid.uuid4()),
    }
    if kind == "createRun":
        await graphql(http, url, CREATE_RUN, {"input": run_input})
    elif kind == "runAndWait":
        data = (await graphql(http, url, RUN_AND_WAIT, {"input": run_input}))["runAndWait"]
        tally.waited[data["run"]["id"]] = (data["values"] or {}).get("count", -1)
    else:
        await stream_op(ws_url, run_input, tally)


async def stream_op(ws_url: str, run_input: dict[str, Any], tally: Tally) -> None:
    """runStream; when it breaks, joinRunStream from the last event id (5 tries at most)."""
    stream = Stream()
    tally.streams.append(stream)
    for attempt in range(6):
        try:
            transport = WebsocketsTransport(url=ws_url, ping_interval=None, close_timeout=1)
            async with Client(transport=transport, execute_timeout=None) as session:
                if stream.run_id is None:
                    source = session.subscribe(RUN_STREAM, variable_values={"input": run_input})
                    key = "runStream"
                else:
                    last = next(
                        (e["id"] for e in reversed(stream.events) if e["id"] != "0-0"), None
                    )
                    source = session.subscribe(
                        JOIN, variable_values={"id": stream.run_id, "after": last}
                    )
                    key = "joinRunStream"
                async for item in source:
                    event = item[key]
                    stream.run_id = stream.run_id or event["runId"]
                    stream.events.append(event)
                    if event["event"] in ("end", "error"):
                        stream.finished = True
                        return
            if stream.finished:
                return
        except Exception as exc:
            if stream.run_id is None:
                tally.streams.remove(stream)
                raise  # never started: counted as a failed request
            tally.requests[f"stream broke: {error_kind(exc)}"] += 1
        stream.rejoins += 1
        await asyncio.sleep(min(0.2 * 2**attempt, 3))


async def client(
    index: int, url: str, ws_url: str, deadline: float, steps: int, tally: Tally
) -> None:
    kinds = itertools.cycle(["runStream", "runAndWait", "createRun"])
    for _ in range(index):
        next(kinds)
    async with httpx.AsyncClient(timeout=60) as http:
        while time.monotonic() < deadline:
            kind = next(kinds)
            try:
                await asyncio.wait_for(one_op(kind, http, url, ws_url, steps, tally), 90)
                tally.requests[f"{kind}: ok"] += 1
            except Exception as exc:
                tally.requests[f"{kind}: {error_kind(exc)}"] += 1
                await asyncio.sleep(0.5)  # an outage: do not spin


async def inject_faults(
    cluster: LgqlCluster, engine: Any, redis: Any, every: float, deadline: float, tally: Tally
) -> None:
    started = time.monotonic()
    schedule = itertools.cycle(
        ["kill worker", "restart redis (data kept)", "terminate backends",
         "restart redis (empty)", "restart postgres"]
    )  # fmt: skip
    while time.monotonic() + every < deadline:
        await asyncio.sleep(every)
        fault = next(schedule)
        at = time.monotonic() - started
        try:
            if fault == "kill worker":
                live = [i for i, w in enumerate(cluster.worker_procs) if w.proc.poll() is None]
                cluster.kill_worker(live[0])
                await cluster.start_worker()
            elif fault.startswith("restart redis"):
                await redis.stop(keep_data="kept" in fault)
                await asyncio.sleep(1.0)  # the outage
                await redis.start()
            elif fault == "terminate backends":
                conn = await asyncpg.connect(cluster.database_uri)
                try:
                    n = await conn.fetchval(TERMINATE)
                finally:
                    await conn.close()
                fault += f" ({n})"
            else:
                await engine.stop()
                await asyncio.sleep(1.0)
                await engine.start()
        except Exception as exc:
            fault += f" FAILED: {exc!r}"
        tally.faults.append((at, fault))
        print(f"[{at:6.1f} s] {fault}", flush=True)


async def sample_rss(cluster: LgqlCluster, deadline: float, tally: Tally) -> None:
    started = time.monotonic()
    while time.monotonic() < deadline:
        row: dict[str, float] = {}
        for p in [*cluster.api_procs, *cluster.worker_procs]:
            if p.proc.poll() is None:
                with contextlib.suppress(psutil.Error):
                    row[f"{p.role}-{p.index}"] = (
                        psutil.Process(p.proc.pid).memory_info().rss / 2**20
                    )
        tally.rss.append((time.monotonic() - started, row))
        await asyncio.sleep(5)


async def final_rows(database_uri: str) -> dict[str, dict[str, Any]]:
    for _ in range(20):  # Postgres may be restarting
        try:
            conn = await asyncpg.connect(database_uri)
            try:
                rows = await conn.fetch(
                    "SELECT r.run_id::text AS id, r.status, r.attempt, t.values::text AS values"
                    " FROM runs r LEFT JOIN threads t USING (thread_id)"
                )
            finally:
                await conn.close()
            return {r["id"]: dict(r) for r in rows}
        except Exception:
            await asyncio.sleep(1)
    return {}


def check_stream(stream: Stream, steps: int, row: dict[str, Any] | None) -> dict[str, int]:
    out: collections.Counter[str] = collections.Counter()
    ids_seen: set[str] = set()
    counts: set[int] = set()  # every values count seen
    this_attempt: set[int] = set()  # those of the current attempt (a new one may repeat some)
    announced = False
    last_values: int | None = None
    for event in stream.events:
        eid, name = event["id"], event["event"]
        if name == "gap":
            out["gap events"] += 1
            announced = True
            continue
        if eid != "0-0":
            if eid in ids_seen:
                out["events duplicated"] += 1
                continue
            ids_seen.add(eid)
        if name == "metadata":
            if event["data"].get("attempt", 1) > 1:
                out["new attempts seen"] += 1
            this_attempt = set()
        if name == "values":
            count = int(event["data"].get("count", 0))
            if count in this_attempt:
                out["events duplicated"] += 1
            this_attempt.add(count)
            counts.add(count)
            last_values = count
    if not stream.finished:
        out["streams unfinished"] += 1
        return dict(out)
    missing = (steps + 1) - len(counts & set(range(steps + 1)))
    if missing:
        out["events lost, announced" if announced else "events lost silently"] += missing
    end = stream.events[-1]
    status = row["status"] if row else None
    if end["event"] == "end" and end["data"].get("status") != status:
        out["end status != database"] += 1
    final = json.loads(row["values"]).get("count") if row and row["values"] else None
    if status == "success" and last_values is not None and last_values != final:
        out["last values != final state"] += 1
    return dict(out)


def report(tally: Tally, rows: dict[str, dict[str, Any]], steps: int, seconds: float) -> None:
    print(f"\n== soak: {seconds:.0f} s of load ==")
    print("faults:", ", ".join(f"{at:.0f}s {name}" for at, name in tally.faults) or "none")
    statuses = collections.Counter(r["status"] for r in rows.values())
    ended = sum(n for s, n in statuses.items() if s in FINAL)
    print(
        f"runs created: {len(rows)}   ended: {ended}   by status: {dict(sorted(statuses.items()))}"
    )
    lost = [k for k, r in rows.items() if r["status"] not in FINAL]
    print(f"runs lost (created, never ended): {len(lost)} {lost[:5]}")
    print(f"runs failed (error/timeout): {statuses['error'] + statuses['timeout']}")
    print(f"runs retried (attempt > 1): {sum(1 for r in rows.values() if r['attempt'] > 1)}")
    wrong = sum(1 for run_id, count in tally.waited.items() if count != steps)
    print(f"runAndWait answers: {len(tally.waited)}, with a final count != {steps}: {wrong}")
    print("requests:")
    for key, n in sorted(tally.requests.items()):
        print(f"  {key:40s} {n}")
    totals: collections.Counter[str] = collections.Counter()
    flawed: list[tuple[str, dict[str, int]]] = []
    benign = {"gap events", "new attempts seen"}
    for stream in tally.streams:
        found = check_stream(stream, steps, rows.get(stream.run_id or ""))
        totals.update(found)
        if set(found) - benign:
            flawed.append((stream.run_id or "?", found))
    rejoined = sum(1 for s in tally.streams if s.rejoins)
    print(f"streams: {len(tally.streams)} (rejoined after a break: {rejoined})")
    for key in ("events lost silently", "events lost, announced", "gap events",
                "events duplicated", "new attempts seen", "end status != database",
                "last values != final state", "streams unfinished"):  # fmt: skip
        print(f"  {key:40s} {totals.get(key, 0)}")
    for run_id, found in flawed[:10]:
        print(f"  stream of run {run_id}: {found}")
    names = sorted({name for _, row in tally.rss for name in row})
    print("RSS (MB) over time:")
    print("  " + "t (s)".rjust(6) + "".join(n.rjust(11) for n in names))
    for at, row in tally.rss:
        cells = "".join((f"{row[n]:.0f}" if n in row else "-").rjust(11) for n in names)
        print(f"  {at:6.0f}{cells}")


async def main(args: argparse.Namespace) -> None:
    tally = Tally()
    env = {
        # Faults are what this measures: a run may be hit several times.
        "BG_JOB_MAX_RETRIES": "50",
        "LGQL_DB_POOL_SIZE": "6",
        "LOG_LEVEL": "WARNING",
    }
    async with (
        private_postgres_engine() as engine,
        private_redis() as redis,
        LgqlCluster(
            engine.uri(), redis.uri, apis=1, workers=2, config=FAULTS_CONFIG,
            env_overrides=env, keep_logs=args.keep_logs,
        ) as cluster,
    ):  # fmt: skip
        url = cluster.graphql_urls[0]
        ws_url = url.replace("http://", "ws://")
        print(f"cluster up; logs in {cluster.log_dir}", flush=True)
        started = time.monotonic()
        deadline = started + args.seconds
        load = [
            asyncio.create_task(client(i, url, ws_url, deadline, args.steps, tally))
            for i in range(args.clients)
        ]
        side = [
            asyncio.create_task(
                inject_faults(cluster, engine, redis, args.fault_every, deadline, tally)
            ),
            asyncio.create_task(sample_rss(cluster, deadline + args.drain, tally)),
        ]
        await asyncio.wait(load, timeout=args.seconds + 120)
        for task in load:
            task.cancel()
        print("load stopped; draining", flush=True)
        drain_until = time.monotonic() + args.drain
        rows: dict[str, dict[str, Any]] = {}
        while time.monotonic() < drain_until:
            rows = await final_rows(cluster.database_uri)
            if rows and all(r["status"] in FINAL for r in rows.values()):
                break
            await asyncio.sleep(1)
        for task in side:
            task.cancel()
        await asyncio.gather(*side, *load, return_exceptions=True)
        rows = await final_rows(cluster.database_uri)
        report(tally, rows, args.steps, time.monotonic() - started)


def quiet_clients() -> None:
    # gql warns on every socket whose close handshake it stops waiting for: noise here.
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("gql").setLevel(logging.ERROR)
    logging.getLogger("websockets").setLevel(logging.ERROR)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=120, help="how long the load lasts")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--steps", type=int, default=60, help="steps of each run")
    parser.add_argument("--fault-every", type=float, default=10, help="seconds between faults")
    parser.add_argument("--drain", type=float, default=60, help="seconds runs get to end after")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse()
    quiet_clients()
    loop_main = main(arguments)
    with contextlib.suppress(KeyboardInterrupt):
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        asyncio.run(loop_main)

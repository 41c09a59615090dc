"""Streaming benchmark: event latency of a 1,000-event run, and 1,000 idle subscriptions.

    python bench/bench_stream.py [--runs 20] [--transports ws,sse] [--idle 1000]

Starts lgql as `bench_runs.py` does (its `lgql_server`: `lgql serve` + `--workers` x `lgql
worker` on a scratch database when DATABASE_URI and REDIS_URI are set, else `lgql dev` with
embedded engines, whose worker then runs inside the API process) and prints:

- latency: `--runs` x `runStream` of the fixture graph `stream1000` (one node writing 1,000
  custom events `{"i": n, "t": time.time()}`), streamMode CUSTOM, one at a time, over WebSocket
  (graphql-transport-ws, the `websockets` package speaking the protocol directly) and over SSE
  (httpx, POST with `Accept: text/event-stream`). Per run, from sending the subscription: the
  first event (`metadata`), the first custom event, the last custom event and `end`; per event:
  receive time - `t` (worker wrote it → client parsed it; same machine, same clock), p50/p99
  over all events of all runs.
- idle subscriptions: `--idle` threads, then one WebSocket connection per subscription (no
  multiplexing), each `threadStream(threadId)` on its own idle thread, all against the one API
  process. RSS of that process before, with all open, and after closing them; per-subscription
  RSS; its CPU while they sit idle (`--idle-seconds`); Redis connected clients before/with; and a
  liveness check (a run on a few of the threads reaches its subscriber).

The soft RLIMIT_NOFILE is raised towards the hard limit (server processes inherit it); `--idle`
is lowered if the hard limit is too small. No assertions: it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis.asyncio as aioredis
import websockets
from websockets.typing import Subprotocol

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_runs import Server, lgql_server, pct

RUN_STREAM = """subscription($input: RunInput!) {
  runStream(input: $input, streamMode: [CUSTOM]) { id event data } }"""
THREAD_STREAM = "subscription($id: ID!) { threadStream(threadId: $id) { id runId event } }"
CREATE_THREAD = 'mutation { createThread(input: {graphId: "steps"}) { id } }'
CREATE_RUN = "mutation($input: RunInput!) { createRun(input: $input) { id } }"
GRAPH = "stream1000"
GRAPHQL_TRANSPORT_WS = Subprotocol("graphql-transport-ws")
N_EVENTS = 1000


def raise_nofile(needed: int) -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f}"


# ---- one streamed run, per transport -------------------------------------------------------------


class RunTiming:
    def __init__(self) -> None:
        self.sent = 0.0
        self.metadata = 0.0
        self.first_custom = 0.0
        self.last_custom = 0.0
        self.end = 0.0
        self.latencies: list[float] = []
        self.customs = 0

    def on_event(self, event: dict[str, Any], now: float) -> bool:
        """Record one event received at `now` (time.time()); True at the terminal event."""
        name = event["event"]
        if name == "metadata":
            self.metadata = now
        elif name == "custom":
            if not self.customs:
                self.first_custom = now
            self.last_custom = now
            self.customs += 1
            self.latencies.append(now - event["data"]["t"])
        elif name in ("end", "error"):
            self.end = now
            if name == "error":
                raise RuntimeError(f"the run failed: {event}")
            return True
        return False


def ws_url(url: str) -> str:
    return url.replace("http://", "ws://", 1) + "/graphql"


async def ws_run(url: str) -> RunTiming:
    timing = RunTiming()
    async with websockets.connect(
        ws_url(url), subprotocols=[GRAPHQL_TRANSPORT_WS], max_size=None, ping_interval=None
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        ack = json.loads(await ws.recv())
        assert ack["type"] == "connection_ack", ack
        variables = {"input": {"assistantId": GRAPH, "input": {}}}
        timing.sent = time.time()
        await ws.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": RUN_STREAM, "variables": variables},
                }
            )
        )
        async for raw in ws:
            now = time.time()
            message = json.loads(raw)
            if message["type"] == "next":
                if message["payload"].get("errors"):
                    raise RuntimeError(message["payload"]["errors"])
                if timing.on_event(message["payload"]["data"]["runStream"], now):
                    break
            elif message["type"] in ("error", "complete"):
                raise RuntimeError(f"stream stopped early: {message}")
    return timing


async def sse_run(http: httpx.AsyncClient, url: str) -> RunTiming:
    timing = RunTiming()
    body = {"query": RUN_STREAM, "variables": {"input": {"assistantId": GRAPH, "input": {}}}}
    timing.sent = time.time()
    async with http.stream(
        "POST", f"{url}/graphql", json=body, headers={"Accept": "text/event-stream"}
    ) as response:
        event = None
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "next":
                now = time.time()
                payload = json.loads(line[5:])
                if payload.get("errors"):
                    raise RuntimeError(payload["errors"])
                if timing.on_event(payload["data"]["runStream"], now):
                    break
    return timing


async def latency(server: Server, transport: str, runs: int, warmup: int) -> None:
    timings: list[RunTiming] = []
    async with httpx.AsyncClient(timeout=120) as http:
        for i in range(warmup + runs):
            t = await (ws_run(server.url) if transport == "ws" else sse_run(http, server.url))
            if t.customs != N_EVENTS:
                raise RuntimeError(f"{t.customs} custom events, expected {N_EVENTS}")
            if i >= warmup:
                timings.append(t)
    lat = [x for t in timings for x in t.latencies]
    label = {"ws": "WebSocket (graphql-transport-ws)", "sse": "SSE"}[transport]
    print(f"\n== {GRAPH} over {label}: {runs} runs (+{warmup} warm-up), ms ==")
    print(f"{'figure':<44}{'p50':>10}{'p99':>10}{'max':>10}")

    def row(name: str, values: list[float]) -> None:
        print(
            f"{name:<44}{ms(statistics.median(values)):>10}{ms(pct(values, 0.99)):>10}"
            f"{ms(max(values)):>10}"
        )

    row("subscribe → first event (metadata)", [t.metadata - t.sent for t in timings])
    row("subscribe → first custom event", [t.first_custom - t.sent for t in timings])
    row("subscribe → last custom event", [t.last_custom - t.sent for t in timings])
    row("subscribe → end", [t.end - t.sent for t in timings])
    row("first → last custom event", [t.last_custom - t.first_custom for t in timings])
    row("latency of the first custom event", [t.latencies[0] for t in timings])
    row(f"event latency, worker → client ({len(lat):,} ev)", lat)


# ---- idle subscriptions ----------------------------------------------------------------------------


def api_process(server: Server) -> psutil.Process:
    return psutil.Process(server.processes.root_pids[0])


def rss_mib(proc: psutil.Process) -> float:
    return proc.memory_info().rss / 2**20


async def settle_rss(proc: psutil.Process, *, rounds: int = 3, every: float = 1.0) -> float:
    """RSS once it stops moving by more than 1 MiB between samples (or after 30 samples)."""
    last = rss_mib(proc)
    for _ in range(30):
        await asyncio.sleep(every)
        now = rss_mib(proc)
        if abs(now - last) < 1:
            rounds -= 1
            if rounds == 0:
                return now
        last = now
    return last


async def redis_clients(redis_uri: str | None) -> int | None:
    if not redis_uri:
        return None
    client = aioredis.from_url(redis_uri)
    try:
        info = await client.info("clients")
        return int(info["connected_clients"])
    finally:
        await client.aclose()


def api_redis_connections(proc: psutil.Process, redis_uri: str | None) -> int | None:
    """The API process's own TCP connections to Redis (the server-wide client count also
    counts every other user of a shared Redis)."""
    if not redis_uri:
        return None
    from urllib.parse import urlparse

    port = urlparse(redis_uri).port or 6379
    return len(
        [
            c
            for c in proc.net_connections(kind="tcp")
            if c.status == "ESTABLISHED" and c.raddr and c.raddr.port == port
        ]
    )


class IdleSubscriber:
    def __init__(self, url: str, thread_id: str) -> None:
        self.url = url
        self.thread_id = thread_id
        self.ws: Any = None
        self.events: list[dict[str, Any]] = []
        self.reader: asyncio.Task[None] | None = None
        self.ended = asyncio.Event()  # a run's `end` (or `error`) reached this subscriber

    async def open(self) -> None:
        self.ws = await websockets.connect(
            ws_url(self.url),
            subprotocols=[GRAPHQL_TRANSPORT_WS],
            ping_interval=None,
            open_timeout=60,
        )
        await self.ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        ack = json.loads(await self.ws.recv())
        assert ack["type"] == "connection_ack", ack
        await self.ws.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": THREAD_STREAM, "variables": {"id": self.thread_id}},
                }
            )
        )
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                message = json.loads(raw)
                if message["type"] == "next":
                    event = message["payload"]["data"]["threadStream"]
                    self.events.append(event)
                    if event["event"] in ("end", "error"):
                        self.ended.set()
                else:
                    self.events.append({"event": f"<{message['type']}>", "message": message})

    async def close(self) -> None:
        if self.reader:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader
        if self.ws is not None:
            await self.ws.close()


async def idle_subscriptions(
    server: Server, n: int, idle_seconds: float, redis_uri: str | None
) -> None:
    proc = api_process(server)
    async with httpx.AsyncClient(timeout=60) as http:

        async def gql(query: str, variables: dict[str, Any] | None = None) -> Any:
            r = await http.post(
                f"{server.url}/graphql", json={"query": query, "variables": variables or {}}
            )
            body = r.json()
            if body.get("errors"):
                raise RuntimeError(body["errors"])
            return body["data"]

        sem = asyncio.Semaphore(20)

        async def thread() -> str:
            async with sem:
                return str((await gql(CREATE_THREAD))["createThread"]["id"])

        thread_ids = list(await asyncio.gather(*(thread() for _ in range(n))))
        rss_before = await settle_rss(proc)
        redis_before = await redis_clients(redis_uri)
        own_before = api_redis_connections(proc, redis_uri)
        subs = [IdleSubscriber(server.url, tid) for tid in thread_ids]
        t0 = time.perf_counter()
        open_sem = asyncio.Semaphore(50)

        async def open_one(s: IdleSubscriber) -> None:
            async with open_sem:
                await s.open()

        try:
            await asyncio.gather(*(open_one(s) for s in subs))
            opened = time.perf_counter() - t0
            conns = len([c for c in proc.net_connections(kind="tcp") if c.status == "ESTABLISHED"])
            rss_open = await settle_rss(proc)
            redis_open = await redis_clients(redis_uri)
            own_open = api_redis_connections(proc, redis_uri)
            cpu0 = proc.cpu_times()
            await asyncio.sleep(idle_seconds)
            cpu1 = proc.cpu_times()
            idle_cpu = (
                max(0.0, cpu1.user + cpu1.system - cpu0.user - cpu0.system) / idle_seconds * 100
            )
            rss_idle = rss_mib(proc)
            # Liveness: a run on a few threads reaches their subscribers over the idle sockets.
            sample = subs[:: max(1, n // 10)][:10]
            for s in sample:
                await gql(
                    CREATE_RUN,
                    {
                        "input": {
                            "assistantId": "steps",
                            "threadId": s.thread_id,
                            "input": {"count": 0},
                        }
                    },
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(s.ended.wait() for s in sample)), 60)
            live = sum(s.ended.is_set() for s in sample)
            unexpected = sum(1 for s in subs if s not in sample and s.events)
        finally:
            await asyncio.gather(*(s.close() for s in subs), return_exceptions=True)
        rss_closed = await settle_rss(proc)
        redis_closed = await redis_clients(redis_uri)
        own_closed = api_redis_connections(proc, redis_uri)

    print(
        f"\n== {n:,} idle threadStream subscriptions, one WebSocket connection each, one API process =="
    )
    print(
        f"opened (connect + init + subscribe, 50 at a time) in {opened:.1f} s; "
        f"API process ESTABLISHED TCP connections with them open: {conns:,}"
    )
    print(f"API process RSS before          {rss_before:8.1f} MiB")
    print(
        f"API process RSS, all open       {rss_open:8.1f} MiB  (+{rss_open - rss_before:.1f} MiB, "
        f"{(rss_open - rss_before) * 1024 / n:.1f} KiB per subscription)"
    )
    print(f"API process RSS after {idle_seconds:.0f} s idle  {rss_idle:8.1f} MiB")
    print(f"API process RSS, all closed     {rss_closed:8.1f} MiB")
    print(f"API process CPU while idle      {idle_cpu:8.1f} % of one core")
    if redis_before is not None:
        print(
            f"Redis connected clients         {redis_before:,} before, {redis_open:,} with them open, "
            f"{redis_closed:,} after closing"
        )
        print(
            f"API process's own Redis connections {own_before} before, {own_open} with them "
            f"open, {own_closed} after closing"
        )
    print(
        f"liveness: {live}/{len(sample)} sampled subscriptions received their run's end; "
        f"{unexpected} others received something unexpected"
    )


# ---- main ------------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> None:
    import os

    soft, hard = raise_nofile(args.idle * 2 + 512)
    if args.idle * 2 + 256 > soft:
        new = max(0, (soft - 256) // 2)
        print(f"RLIMIT_NOFILE is {soft}: lowering --idle from {args.idle} to {new}")
        args.idle = new
    log_dir = Path(tempfile.mkdtemp(prefix="lgql-bench-stream-logs-"))
    print(f"bench_stream: {psutil.cpu_count()} CPUs, RLIMIT_NOFILE soft {soft} / hard {hard}")
    async with lgql_server(args.workers, log_dir) as server:
        print(f"- lgql: {server.mode}" + "".join(f"; {n}" for n in server.notes))
        print(
            f"  API process: pid {server.processes.root_pids[0]}"
            + ("" if server.processes.machine_engines else " (its worker runs inside it)")
        )
        for transport in [t.strip() for t in args.transports.split(",") if t.strip()]:
            await latency(server, transport, args.runs, args.warmup)
        if args.idle:
            await idle_subscriptions(
                server,
                args.idle,
                args.idle_seconds,
                os.environ.get("REDIS_URI") if server.processes.machine_engines else None,
            )
    print(f"\nserver logs: {log_dir}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed stream1000 runs per transport")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--transports", default="ws,sse", help="ws, sse or both")
    parser.add_argument("--idle", type=int, default=1000, help="idle subscriptions (0: skip)")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="`lgql worker` processes (with DATABASE_URI/REDIS_URI)",
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()

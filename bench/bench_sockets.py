"""Memory of the API process under WebSocket storms and large frames: is it given back?

    python bench/bench_sockets.py [--sockets 500] [--rounds 2] [--frame-mb 20]

Starts lgql as `bench_runs.py` does (`lgql serve` on a scratch database of DATABASE_URI's server
when DATABASE_URI and REDIS_URI are set, else `lgql dev` with embedded engines; no workers) and
prints the API process's RSS:

- at rest, after one warm-up socket;
- for each of `--rounds` storms: `--sockets` WebSockets opened at once (graphql-transport-ws,
  `connection_init`, then a `threadStream` subscription on a thread of their own, so every socket
  holds a live subscription), RSS with all open, then all closed and RSS after;
- a frame of `--frame-mb` MB (over the body limit, `LGQL_MAX_BODY_BYTES`, 10 MB by default: the
  server must refuse it with close code 1009 without keeping it), and a frame just under the
  limit (a subscription whose query carries padding), RSS after each.

No assertions: it prints figures. RSS after a storm is not expected to fall back to the rest
figure exactly (CPython keeps freed small-object arenas it can reuse), but must not grow storm
after storm.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import psutil
import websockets
from websockets.typing import Subprotocol

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import lgql_server

PROTOCOL = [Subprotocol("graphql-transport-ws")]
THREAD_STREAM = "subscription($t: ID!) { threadStream(threadId: $t) { id } }"
# Longer than the server's give-back delay (app.memory: 0.5 s quiet, at most every 2 s).
SETTLE_SECONDS = 4.0


def rss_mib(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 2**20


async def settled_rss(pid: int) -> float:
    """RSS once the server has had a moment to finish closing (its tasks end after our close)."""
    await asyncio.sleep(SETTLE_SECONDS)
    return rss_mib(pid)


async def new_threads(url: str, n: int) -> list[str]:
    async with httpx.AsyncClient(timeout=60) as http:
        sem = asyncio.Semaphore(20)

        async def one() -> str:
            async with sem:
                response = await http.post(
                    f"{url}/graphql", json={"query": "mutation { createThread { id } }"}
                )
                return str(response.json()["data"]["createThread"]["id"])

        return list(await asyncio.gather(*(one() for _ in range(n))))


async def open_socket(ws_url: str, thread_id: str) -> websockets.ClientConnection:
    ws = await websockets.connect(ws_url, subprotocols=PROTOCOL, open_timeout=60, max_size=None)
    await ws.send(json.dumps({"type": "connection_init"}))
    ack = json.loads(await ws.recv())
    assert ack["type"] == "connection_ack", ack
    payload = {"query": THREAD_STREAM, "variables": {"t": thread_id}}
    await ws.send(json.dumps({"type": "subscribe", "id": "1", "payload": payload}))
    return ws


async def storm(ws_url: str, threads: list[str], pid: int) -> tuple[float, float]:
    """Open one socket per thread at once, then close them all: (RSS open, RSS after)."""
    sockets = await asyncio.gather(*(open_socket(ws_url, t) for t in threads))
    # The subscriptions are set up by the server after our `subscribe`; a ping round trip on
    # each socket says the server has read everything we sent before it.
    for ws in sockets:
        await ws.send(json.dumps({"type": "ping"}))
    for ws in sockets:
        while json.loads(await ws.recv())["type"] != "pong":
            pass
    with_open = rss_mib(pid)
    await asyncio.gather(*(ws.close() for ws in sockets))
    return with_open, await settled_rss(pid)


async def big_frame(ws_url: str, size: int) -> str:
    """Send one subscribe frame of about `size` bytes; how the server answered."""
    async with websockets.connect(ws_url, subprotocols=PROTOCOL, max_size=None) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        await ws.recv()
        query = "subscription { __typename }"
        padding = " " * max(0, size - len(query) - 100)
        frame = json.dumps(
            {"type": "subscribe", "id": "big", "payload": {"query": query + padding}}
        )
        try:
            await ws.send(frame)
            while True:
                message = json.loads(await ws.recv())
                if message.get("type") in ("complete", "error"):
                    return f"answered {message['type']}"
        except websockets.ConnectionClosed as closed:
            frame_in = closed.rcvd
            return f"closed {frame_in.code} {frame_in.reason!r}" if frame_in else "dropped"


async def main(args: argparse.Namespace) -> None:
    log_dir = Path(tempfile.mkdtemp(prefix="lgql-bench-sockets-"))
    async with lgql_server(0, log_dir, label="sockets-") as server:
        pid = server.roles["api"]
        ws_url = server.url.replace("http://", "ws://") + "/graphql"
        threads = await new_threads(server.url, args.sockets)
        warm = await open_socket(ws_url, threads[0])
        await warm.close()
        figures: list[tuple[str, float, str]] = [("at rest", await settled_rss(pid), "")]
        for n in range(1, args.rounds + 1):
            with_open, after = await storm(ws_url, threads, pid)
            figures.append((f"storm {n}: {args.sockets} sockets open", with_open, ""))
            figures.append((f"storm {n}: after closing them", after, ""))
        limit = 10 * 2**20
        outcome = await big_frame(ws_url, args.frame_mb * 10**6)
        figures.append((f"after a {args.frame_mb} MB frame", await settled_rss(pid), outcome))
        outcome = await big_frame(ws_url, limit - 64 * 1024)
        figures.append(
            ("after a frame just under the 10 MiB limit", await settled_rss(pid), outcome)
        )
        print(f"API process RSS ({server.mode}; pid {pid}):")
        for label, rss, note in figures:
            print(f"  {label:<44} {rss:8.1f} MiB  {note}")
        rest = figures[0][1]
        last_after = [f for f in figures if "after closing" in f[0]][-1][1]
        print(f"  growth over rest after the last storm: {last_after - rest:+.1f} MiB")
    shutil.rmtree(log_dir, ignore_errors=True)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--frame-mb", type=int, default=20)
    return parser.parse_args(argv)


if __name__ == "__main__":
    _: Any = asyncio.run(main(parse()))

"""`lgql worker`: an arq worker process that reports itself alive and stops cleanly."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys

import httpx
import redis.asyncio as aioredis

from app.messaging.heartbeats import heartbeat_key, live_workers
from tests.conftest import FIXTURE_GRAPHS, ROOT, EngineUrls, LiveServer


async def test_worker_process_heartbeats_and_stops_on_sigterm(
    engines: EngineUrls, database_uri: str, redis_prefix: str, live_server: LiveServer
) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URI": database_uri,
        "REDIS_URI": engines.redis_uri,
        "REDIS_KEY_PREFIX": redis_prefix,
        "LGQL_CONFIG": str(FIXTURE_GRAPHS),
    }
    proc = subprocess.Popen(  # noqa: ASYNC220 (a long-lived child, not awaited)
        [sys.executable, "-m", "lgql", "worker"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    redis = aioredis.from_url(engines.redis_uri)
    own_key = heartbeat_key(redis_prefix, f"{socket.gethostname()}:{proc.pid}")
    try:
        for _ in range(600):  # a generous deadline: start-up imports every graph
            if await redis.exists(own_key):
                break
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the worker never reported a heartbeat")
        async with httpx.AsyncClient() as http:
            info = (await http.get(f"{live_server.url}/info")).json()
        # The live server's own in-process worker counts too.
        assert info["workers"] == await live_workers(redis, redis_prefix) >= 2
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0
        assert not await redis.exists(own_key)
    finally:
        if proc.poll() is None:
            proc.kill()
        await redis.aclose()

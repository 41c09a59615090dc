"""Health for load balancers and Kubernetes (docs/operations.md): `/ok` with and without
`check_db`, `/ready` (Postgres, Redis, a worker with a fresh heartbeat), and what `/info` and
`serverInfo` report (version, graphs, workers, queue depth)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest_asyncio
import redis.asyncio as aioredis

from app.db.migrate import upgrade
from app.messaging.heartbeats import HEARTBEAT_FRESH_SECONDS, HEARTBEAT_TTL_SECONDS, heartbeat_key
from tests.conftest import (
    EngineUrls,
    GraphQLClient,
    LiveServer,
    make_settings,
    scratch_database,
    start_server,
)

SERVER_INFO = """{ serverInfo { version langgraphVersion graphs { graphId }
  workers { live ready } queue { pending running oldestPendingSeconds } } }"""


@pytest_asyncio.fixture(loop_scope="session")
async def idle_server(engines: EngineUrls, redis_prefix: str) -> AsyncIterator[LiveServer]:
    """An API on a database and queue of its own that no worker serves: runs stay pending."""
    prefix = f"{redis_prefix}_health"
    async with scratch_database(engines.database_uri, prefix="lgql_health") as url:
        await upgrade(url)
        server = await start_server(
            make_settings(prefix),
            database_uri=url,
            redis_uri=engines.redis_uri,
            embedded_worker=False,
        )
        redis = aioredis.from_url(engines.redis_uri)
        try:
            yield server
        finally:
            await server.stop()
            keys = [k async for k in redis.scan_iter(match=f"{prefix}:*", count=500)]
            if keys:
                await redis.delete(*keys)
            await redis.aclose()


async def test_ok_answers_liveness_and_checks_dependencies(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        plain = await http.get(f"{live_server.url}/ok")
        assert plain.status_code == 200
        assert plain.json() == {"ok": True, "services": {"postgres": "ok", "redis": "ok"}}
        # Liveness asks nothing of Postgres or Redis: an outage must not get a pod restarted.
        alive = await http.get(f"{live_server.url}/ok", params={"check_db": "0"})
        assert alive.status_code == 200 and alive.json() == {"ok": True}
        checked = await http.get(f"{live_server.url}/ok", params={"check_db": "1"})
        assert checked.status_code == 200
        assert checked.json() == {"ok": True, "services": {"postgres": "ok", "redis": "ok"}}
        bad = await http.get(f"{live_server.url}/ok", params={"check_db": "maybe"})
        assert bad.status_code == 422
        assert "check_db" in bad.json()["error"]


async def test_ready_with_a_worker(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.get(f"{live_server.url}/ready")
    body = answer.json()
    assert answer.status_code == 200, body
    assert body["ready"] is True and body["problems"] == []
    assert body["services"] == {"postgres": "ok", "redis": "ok"}
    assert body["workers"]["ready"] >= 1


async def test_ready_needs_a_worker_with_a_fresh_heartbeat(
    idle_server: LiveServer, engines: EngineUrls, redis_prefix: str
) -> None:
    prefix = f"{redis_prefix}_health"
    redis = aioredis.from_url(engines.redis_uri)
    url = f"{idle_server.url}/ready"
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            none = await http.get(url)
            assert none.status_code == 503
            assert none.headers["retry-after"]
            assert none.json()["problems"] == ["no worker is reachable"]
            assert none.json()["workers"] == {"live": 0, "ready": 0}

            # A heartbeat whose key was written longer ago than the freshness window (its TTL
            # shows it): the worker is alive but stuck, so not ready.
            stale = heartbeat_key(prefix, "stuck:1")
            beat = json.dumps({"at": time.time(), "ready": True, "unreachable": {}})
            await redis.set(stale, beat, ex=HEARTBEAT_TTL_SECONDS - HEARTBEAT_FRESH_SECONDS - 1)
            answer = await http.get(url)
            assert answer.status_code == 503
            assert answer.json()["workers"] == {"live": 1, "ready": 0}
            assert answer.json()["problems"] == ["no worker has a fresh heartbeat (stuck workers?)"]

            # A fresh one that cannot reach Postgres: alive, not ready.
            cut_off = heartbeat_key(prefix, "cut-off:2")
            beat = json.dumps({"at": time.time(), "ready": False, "unreachable": {"postgres": 12}})
            await redis.set(cut_off, beat, ex=HEARTBEAT_TTL_SECONDS)
            answer = await http.get(url)
            assert answer.status_code == 503
            assert answer.json()["workers"] == {"live": 2, "ready": 0}
            assert answer.json()["problems"] == ["no worker reaches Postgres"]

            fresh = heartbeat_key(prefix, "fine:3")
            beat = json.dumps({"at": time.time(), "ready": True, "unreachable": {}})
            await redis.set(fresh, beat, ex=HEARTBEAT_TTL_SECONDS)
            answer = await http.get(url)
            assert answer.status_code == 200, answer.json()
            assert answer.json()["workers"] == {"live": 3, "ready": 1}
            await redis.delete(stale, cut_off, fresh)
    finally:
        await redis.aclose()


async def test_info_and_server_info_report_workers_and_queue(idle_server: LiveServer) -> None:
    client = GraphQLClient(idle_server.graphql_url)
    try:
        thread = (await client.data("mutation { createThread { id } }"))["createThread"]["id"]
        run = """mutation($t: ID!) { createRun(input: {assistantId: "echo", threadId: $t,
                   input: {messages: [{role: "user", content: "hi"}]}}) { id status } }"""
        created = (await client.data(run, {"t": thread}))["createRun"]
        assert created["status"] == "PENDING"
        delayed = """mutation($t: ID!) { createRun(input: {assistantId: "echo", threadId: $t,
                       afterSeconds: 3600}) { id } }"""
        other = (await client.data("mutation { createThread { id } }"))["createThread"]["id"]
        await client.data(delayed, {"t": other})

        info = (await client.http.get(f"{idle_server.url}/info")).json()
        # LangGraph Server's fields, then lgql's.
        assert info["version"] and info["langgraph_py_version"]
        assert info["flags"]["assistants"] is True and "host" in info
        assert "echo" in info["graphs"]
        assert info["workers"] == 0 and info["workers_ready"] == 0
        # The delayed run is not due: it does not count as waiting.
        assert info["queue"]["pending"] == 1 and info["queue"]["running"] == 0
        assert info["queue"]["oldest_pending_seconds"] >= 0

        data = (await client.data(SERVER_INFO))["serverInfo"]
        assert data["version"] == info["version"]
        assert {g["graphId"] for g in data["graphs"]} == set(info["graphs"])
        assert data["workers"] == {"live": 0, "ready": 0}
        assert data["queue"]["pending"] == 1 and data["queue"]["running"] == 0
        assert data["queue"]["oldestPendingSeconds"] >= 0
    finally:
        await client.close()

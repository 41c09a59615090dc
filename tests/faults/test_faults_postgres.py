"""Dropped database connections under load (issue 10, item 2): on a private Postgres and Redis,
an API and two worker processes run a batch of runs while every lgql connection to Postgres is
terminated (`pg_terminate_backend`) again and again. No run may end ERROR because of it: an
attempt that loses its connection is handed back and resumed from its last checkpoint on a fresh
connection, so every run ends SUCCESS exactly once with its full state. A graph's own exceptions
still end its run ERROR, a connection error raised by a node's own database code included (it is
the graph's, not lgql's).

Deadlines only guard against hangs; rounds of termination are paced by progress (new
checkpoints saved on fresh connections), not by the clock.
"""

from __future__ import annotations

import json
import socket

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from tests.conftest import free_port
from tests.fault_servers import (
    FAULTS_CONFIG,
    all_final,
    private_postgres,
    private_postgres_engine,
    private_redis,
    running_count,
)
from tests.processes import LgqlCluster, poll_until
from workers.heartbeat import heartbeat_key

pytestmark = pytest.mark.timeout(120)

RUNS, STEPS = 20, 60
ROUNDS = 40
# The budget is not what this test is about: a run may be hit in several rounds.
ENV = {"BG_JOB_MAX_RETRIES": "20"}

_TERMINATE = """
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
 WHERE datname = current_database() AND pid <> pg_backend_pid()
   AND backend_type = 'client backend'
"""


async def create_run(cluster: LgqlCluster, graph: str, run_input: dict[str, object]) -> str:
    client = cluster.client()
    data = await client.data(
        "mutation($g: String!) { createThread(input: {graphId: $g}) { id } }", {"g": graph}
    )
    data = await client.data(
        "mutation($input: RunInput!) { createRun(input: $input) { id } }",
        {
            "input": {
                "assistantId": graph,
                "threadId": data["createThread"]["id"],
                "input": run_input,
            }
        },
    )
    run_id: str = data["createRun"]["id"]
    return run_id


async def test_terminated_connections_never_fail_a_run() -> None:
    async with (
        private_postgres() as database_uri,
        private_redis() as redis,
        LgqlCluster(
            database_uri, redis.uri, apis=1, workers=2, config=FAULTS_CONFIG, env_overrides=ENV
        ) as cluster,
    ):
        runs = [
            await create_run(cluster, "counter", {"tag": str(i), "steps": STEPS})
            for i in range(RUNS)
        ]
        # A graph's own errors: its exception, and a connection refused to its own database.
        failing = await create_run(cluster, "fail", {"message": "on purpose"})
        own_db = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
        own_db_run = await create_run(cluster, "own_db", {"dsn": own_db})

        admin = await asyncpg.connect(database_uri)
        try:
            terminated = 0
            for _ in range(ROUNDS):
                saved = await admin.fetchval("SELECT count(*) FROM checkpoints")

                async def progressed(before: int = saved) -> bool | None:
                    now = await admin.fetchval("SELECT count(*) FROM checkpoints")
                    done = await all_final(database_uri, RUNS + 2)
                    return True if done is not None or now >= before + 5 else None

                await poll_until(progressed, deadline=40, what="checkpoints", cluster=cluster)
                terminated += await admin.fetchval(_TERMINATE)
            assert terminated > 0

            rows = await poll_until(
                lambda: all_final(database_uri, RUNS + 2),
                deadline=60,
                what="every run to end",
                cluster=cluster,
            )
        finally:
            await admin.close()

        assert rows[failing]["status"] == "error"
        assert json.loads(rows[failing]["error"])["error"] == "ValueError"
        assert rows[own_db_run]["status"] == "error"
        assert json.loads(rows[own_db_run]["error"])["error"] in (
            "ConnectionRefusedError",
            "OSError",
        )
        assert rows[own_db_run]["lapses"] == 0  # ended by its own error, never retried
        failed = {
            r: (rows[r]["status"], rows[r]["error"]) for r in runs if rows[r]["status"] != "success"
        }
        assert not failed, f"runs that did not succeed: {failed}\n{cluster.logs(40)}"
        for i, run_id in enumerate(runs):
            # Every step once, in order: resumed from its checkpoint, never restarted.
            assert json.loads(rows[run_id]["values"])["log"] == [f"{i}:{k}" for k in range(STEPS)]
        assert len(cluster.live_workers()) == 2, cluster.logs(40)


async def test_workers_outlive_a_postgres_restart() -> None:
    """Postgres down for longer than a worker's patience: the worker stays up, logs that it is
    not ready and says so in its heartbeat (`/ready` is 503), and once Postgres is back the runs
    cut off mid-way resume from their checkpoints and end SUCCESS."""
    async with (
        private_postgres_engine() as engine,
        private_redis() as redis,
        LgqlCluster(
            engine.uri(), redis.uri, apis=1, workers=1, config=FAULTS_CONFIG, env_overrides=ENV
        ) as cluster,
    ):
        database_uri = engine.uri()
        runs = [
            await create_run(cluster, "counter", {"tag": str(i), "steps": 300}) for i in range(4)
        ]

        async def running() -> int | None:
            return await running_count(database_uri) or None

        await poll_until(running, deadline=30, what="runs to start", cluster=cluster)
        await engine.stop()

        worker = cluster.worker_procs[0]
        key = heartbeat_key(cluster.redis_prefix, f"{socket.gethostname()}:{worker.proc.pid}")
        client = aioredis.from_url(redis.uri)
        try:

            async def not_ready() -> bool | None:
                beat = await client.get(key)
                return True if beat is not None and not json.loads(beat)["ready"] else None

            await poll_until(not_ready, deadline=40, what="the worker to say it is not ready")
        finally:
            await client.aclose()
        assert "not ready: postgres unreachable" in worker.tail(100000)
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.get(f"{cluster.api_urls[0]}/ready")
            assert answer.status_code == 503
            assert "no worker reaches Postgres" in answer.json()["problems"]

        # A worker started during the outage waits for Postgres instead of exiting.
        late = cluster.worker_procs[await cluster.start_worker()]
        assert late.proc.poll() is None
        assert "cannot start" in late.tail(100000), late.tail()

        await engine.start()
        late_key = heartbeat_key(cluster.redis_prefix, f"{socket.gethostname()}:{late.proc.pid}")
        client = aioredis.from_url(redis.uri)
        try:

            async def beating() -> bool | None:
                return True if await client.exists(late_key) else None

            await poll_until(
                beating,
                deadline=40,
                what="the late worker's heartbeat",
                cluster=cluster,
            )
        finally:
            await client.aclose()
        rows = await poll_until(
            lambda: all_final(database_uri, len(runs)),
            deadline=60,
            what="every run to end",
            cluster=cluster,
        )
        failed = {
            r: (rows[r]["status"], rows[r]["error"]) for r in runs if rows[r]["status"] != "success"
        }
        assert not failed, f"runs that did not succeed: {failed}\n{cluster.logs(40)}"
        for i, run_id in enumerate(runs):
            assert json.loads(rows[run_id]["values"])["log"] == [f"{i}:{k}" for k in range(300)]
        assert worker.proc.poll() is None and late.proc.poll() is None, cluster.logs(40)

        async def ready_again() -> bool | None:
            return True if "ready again: postgres reachable" in worker.tail(100000) else None

        await poll_until(ready_again, deadline=20, what="the worker to say it is ready again")

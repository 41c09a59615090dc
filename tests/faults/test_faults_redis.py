"""Redis restarts under load (issue 10, item 1): on a private Postgres and a private Redis, an
API and two worker processes run a batch of runs (two enqueued per thread, so half of them wait
for a wake-up sent when the first ends); Redis stops for a few seconds mid-load and comes back
with its data, or empty. Workers must stay alive (before: they exited with code 1 out of arq's
poll), every run must end SUCCESS exactly once with its full state (wake-ups lost with Redis are
made again by the sweeper), and `/ready` must say Redis is gone while it is.

Deadlines only guard against hangs; the outage's length is the fault injected, not a measure.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.fault_servers import (
    FAULTS_CONFIG,
    all_final,
    check_all_succeeded,
    create_pipeline_runs,
    private_postgres,
    private_redis,
    running_count,
)
from tests.processes import LgqlCluster, poll_until

pytestmark = pytest.mark.timeout(120)

THREADS, PER_THREAD = 8, 2
OUTAGE_SECONDS = 3.0


@pytest.mark.parametrize("keep_data", [True, False], ids=["with-data", "empty"])
async def test_workers_outlive_a_redis_restart(keep_data: bool) -> None:
    async with (
        private_postgres() as database_uri,
        private_redis() as redis,
        LgqlCluster(database_uri, redis.uri, apis=1, workers=2, config=FAULTS_CONFIG) as cluster,
    ):
        runs = await create_pipeline_runs(cluster.client(), THREADS, PER_THREAD, seconds=1.5)

        async def some_running() -> int | None:
            n = await running_count(database_uri)
            return n if n >= 4 else None

        await poll_until(some_running, deadline=30, what="runs to start", cluster=cluster)

        await redis.stop(keep_data=keep_data)
        async with httpx.AsyncClient(timeout=10) as http:
            ready = await http.get(f"{cluster.api_urls[0]}/ready")
            assert ready.status_code == 503, ready.text
            assert "redis unreachable" in ready.json()["problems"]
            await asyncio.sleep(OUTAGE_SECONDS)  # the outage itself
            await redis.start()

            rows = await poll_until(
                lambda: all_final(database_uri, THREADS * PER_THREAD),
                deadline=60,
                what="every run to end",
                cluster=cluster,
            )
            check_all_succeeded(runs, rows, cluster.logs(30))
            assert len(cluster.live_workers()) == 2, cluster.logs(40)

            async def ready_again() -> bool | None:
                answer = await http.get(f"{cluster.api_urls[0]}/ready")
                return True if answer.status_code == 200 else None

            await poll_until(ready_again, deadline=40, what="/ready to be 200", cluster=cluster)
        # Each worker noticed, said so, and said when Redis was back.
        for worker in cluster.worker_procs:
            log = worker.tail(100000)
            assert "cannot reach redis" in log and "ready again: redis reachable" in log, log

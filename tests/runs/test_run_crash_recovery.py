"""Crash recovery with real worker processes: SIGKILL, SIGTERM, and a run that kills every worker.

The `crashy` fixture graph (`first` → `slow` → `last`) appends `<event> <node> <pid>` to a marker
file for every node it executes, in whichever process runs it, so the tests can count executions
across processes. Deadlines below only guard against hangs; nothing here is timed.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EngineUrls, GraphQLClient, scratch_database
from tests.processes import LgqlCluster, count_events, poll_until, read_marker

pytestmark = pytest.mark.timeout(400)

MAX_RETRIES = 3
CRASH_ENV = {
    "LGQL_RUN_LEASE_SECONDS": "1.5",
    "LGQL_SWEEP_INTERVAL_SECONDS": "0.5",
    "BG_JOB_MAX_RETRIES": str(MAX_RETRIES),
}
FINAL = {"SUCCESS", "ERROR", "TIMEOUT", "INTERRUPTED"}
RUN_FIELDS = "id threadId status attempt error { type message }"


async def create_thread(client: GraphQLClient) -> str:
    data = await client.data('mutation { createThread(input: {graphId: "crashy"}) { id } }')
    thread_id: str = data["createThread"]["id"]
    return thread_id


async def create_crashy_run(
    client: GraphQLClient, thread_id: str, marker: Path, slow_seconds: float
) -> dict[str, Any]:
    data = await client.data(
        f"mutation($input: RunInput!) {{ createRun(input: $input) {{ {RUN_FIELDS} }} }}",
        {
            "input": {
                "assistantId": "crashy",
                "threadId": thread_id,
                "input": {},
                "config": {
                    "configurable": {"marker_path": str(marker), "slow_seconds": slow_seconds}
                },
            }
        },
    )
    run: dict[str, Any] = data["createRun"]
    assert run["threadId"] == thread_id
    return run


async def get_run(client: GraphQLClient, run_id: str) -> dict[str, Any]:
    data = await client.data(
        f"query($id: ID!) {{ run(id: $id) {{ {RUN_FIELDS} }} }}", {"id": run_id}
    )
    run: dict[str, Any] = data["run"]
    return run


async def wait_final(
    client: GraphQLClient, run_id: str, cluster: LgqlCluster, deadline: float = 120
) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        run = await get_run(client, run_id)
        return run if run["status"] in FINAL else None

    return await poll_until(probe, deadline=deadline, what=f"run {run_id} to end", cluster=cluster)


async def wait_slow_started(
    client: GraphQLClient, thread_id: str, marker: Path, cluster: LgqlCluster, *, nth: int = 1
) -> int:
    """Wait until `slow` has started `nth` times and the checkpoint after `first` is saved (so
    `first` must never run again); returns the pid of the process running `slow`."""

    async def probe() -> int | None:
        starts = [pid for e, n, pid in read_marker(marker) if (e, n) == ("start", "slow")]
        if len(starts) < nth:
            return None
        data = await client.data(
            "query($id: ID!) { thread(id: $id) { state { next values } } }", {"id": thread_id}
        )
        state = data["thread"]["state"]
        if state is None or state["next"] != ["slow"]:
            return None
        return starts[nth - 1]

    return await poll_until(probe, deadline=90, what=f"`slow` to start (#{nth})", cluster=cluster)


async def thread_values(client: GraphQLClient, thread_id: str) -> dict[str, Any]:
    data = await client.data(
        "query($id: ID!) { thread(id: $id) { status values } }", {"id": thread_id}
    )
    thread: dict[str, Any] = data["thread"]
    return thread


async def test_sigkill_mid_run_resumes_from_checkpoint_on_another_worker(
    engines: EngineUrls, tmp_path: Path
) -> None:
    marker = tmp_path / "marker.log"
    async with (
        scratch_database(engines.database_uri) as url,
        LgqlCluster(url, engines.redis_uri, apis=1, workers=1, env_overrides=CRASH_ENV) as cluster,
    ):
        client = cluster.client()
        thread_id = await create_thread(client)
        run = await create_crashy_run(client, thread_id, marker, slow_seconds=5)
        victim_pid = await wait_slow_started(client, thread_id, marker, cluster)
        assert victim_pid == cluster.workers[0].pid

        cluster.kill_worker(0, signal.SIGKILL)
        rescuer_index = await cluster.start_worker()
        rescuer = cluster.workers[rescuer_index]
        final = await wait_final(client, run["id"], cluster)

        assert final["status"] == "SUCCESS", final
        assert final["error"] is None
        assert final["attempt"] == 2, final
        marks = read_marker(marker)
        assert count_events(marks, "start", "first") == 1, marks  # not executed again
        assert count_events(marks, "end", "last") == 1, marks
        assert count_events(marks, "start", "last") == 1, marks
        slow_runs = [pid for e, n, pid in marks if (e, n) == ("start", "slow")]
        assert slow_runs == [victim_pid, rescuer.pid], marks
        assert [pid for e, n, pid in marks if (e, n) == ("end", "slow")] == [rescuer.pid]
        thread = await thread_values(client, thread_id)
        assert thread["values"] == {"visited": ["first", "slow", "last"]}
        assert thread["status"] == "IDLE"


@pytest.mark.parametrize(
    ("grace", "slow_seconds", "handed_back"),
    [
        pytest.param(0.5, 8, True, id="grace-expires-run-handed-back"),
        pytest.param(60, 2, False, id="run-finishes-within-grace"),
    ],
)
async def test_sigterm_mid_run_hands_back_or_finishes(
    engines: EngineUrls, tmp_path: Path, grace: float, slow_seconds: float, handed_back: bool
) -> None:
    marker = tmp_path / "marker.log"
    env = {**CRASH_ENV, "BG_JOB_SHUTDOWN_GRACE_PERIOD_SECS": str(grace)}
    async with (
        scratch_database(engines.database_uri) as url,
        LgqlCluster(url, engines.redis_uri, apis=1, workers=2, env_overrides=env) as cluster,
    ):
        client = cluster.client()
        thread_id = await create_thread(client)
        run = await create_crashy_run(client, thread_id, marker, slow_seconds=slow_seconds)
        holder_pid = await wait_slow_started(client, thread_id, marker, cluster)
        holder = cluster.worker_index(holder_pid)
        assert holder is not None, f"`slow` ran in pid {holder_pid}, not in one of our workers"
        other = cluster.workers[1 - holder]

        stopped = cluster.kill_worker(holder, signal.SIGTERM)
        code = await cluster.wait_exit(stopped, grace + 60)
        assert code is not None, "the worker did not exit after SIGTERM"
        assert code == 0, cluster.logs()
        final = await wait_final(client, run["id"], cluster)

        assert final["status"] == "SUCCESS", final
        marks = read_marker(marker)
        assert count_events(marks, "start", "first") == 1, marks
        assert count_events(marks, "start", "last") == 1, marks
        assert count_events(marks, "end", "last") == 1, marks
        slow_starts = [pid for e, n, pid in marks if (e, n) == ("start", "slow")]
        slow_ends = [pid for e, n, pid in marks if (e, n) == ("end", "slow")]
        if handed_back:
            # Stopped before `slow` could finish, the run resumed on the other worker.
            assert slow_starts == [holder_pid, other.pid], marks
            assert slow_ends == [other.pid], marks
        else:
            # The worker finished its run before it exited; nobody else touched it.
            assert slow_starts == slow_ends == [holder_pid], marks
            assert final["attempt"] == 1, final
        thread = await thread_values(client, thread_id)
        assert thread["values"] == {"visited": ["first", "slow", "last"]}


async def test_run_that_kills_every_worker_ends_error_after_max_attempts(
    engines: EngineUrls, tmp_path: Path
) -> None:
    marker = tmp_path / "marker.log"
    async with (
        scratch_database(engines.database_uri) as url,
        LgqlCluster(url, engines.redis_uri, apis=1, workers=1, env_overrides=CRASH_ENV) as cluster,
    ):
        client = cluster.client()
        thread_id = await create_thread(client)
        run = await create_crashy_run(client, thread_id, marker, slow_seconds=600)
        killed: list[int] = []
        final: dict[str, Any] | None = None
        loop = asyncio.get_running_loop()
        give_up = loop.time() + 240
        while final is None:
            assert loop.time() < give_up, f"run still not over; killed {killed}\n{cluster.logs()}"
            starts = [pid for e, n, pid in read_marker(marker) if (e, n) == ("start", "slow")]
            for pid in starts[len(killed) :]:
                index = cluster.worker_index(pid)
                assert index is not None, f"`slow` ran in pid {pid}, not in one of our workers"
                if len(killed) == 0:
                    # The first kill waits for the checkpoint after `first`, as above.
                    await wait_slow_started(client, thread_id, marker, cluster)
                cluster.kill_worker(index, signal.SIGKILL)
                killed.append(pid)
                await cluster.start_worker()
            run_now = await get_run(client, run["id"])
            if run_now["status"] in FINAL:
                final = run_now
            else:
                await asyncio.sleep(0.2)

        assert final["status"] == "ERROR", final
        assert final["attempt"] == MAX_RETRIES, final
        assert final["error"] is not None and "attempt" in final["error"]["message"].lower(), final
        assert len(killed) == MAX_RETRIES, killed
        assert len(set(killed)) == MAX_RETRIES  # a different worker each time
        marks = read_marker(marker)
        assert count_events(marks, "start", "first") == 1, marks
        assert count_events(marks, "end", "slow") == 0, marks
        assert count_events(marks, "start", "last") == 0, marks
        thread = await thread_values(client, thread_id)
        assert thread["status"] == "ERROR", thread

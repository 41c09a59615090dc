"""Scale-out: two API processes and two worker processes on one Postgres and Redis.

A few hundred background runs on a few dozen threads, created concurrently through both APIs in
turn (ENQUEUE): every run ends SUCCESS exactly once, and each thread's runs ran in creation order.
The `echo` graph appends the user's message and its echo to the thread's message list, so the final
list of a thread shows both: every input once, in order. Deadlines only guard against hangs.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import EngineUrls, GraphQLClient, scratch_database
from tests.processes import LgqlCluster, poll_until

pytestmark = pytest.mark.timeout(600)

THREADS = 30
RUNS_PER_THREAD = 10
TOTAL = THREADS * RUNS_PER_THREAD

CREATE_RUN = """
mutation($input: RunInput!) {
  createRun(input: $input) { id threadId status multitaskStrategy }
}"""
COUNTS = """
query {
  pending: runs(status: PENDING) { totalCount }
  running: runs(status: RUNNING) { totalCount }
  all: runs { totalCount }
}"""
THREAD_RUNS = """
query($id: ID!) {
  thread(id: $id) { status values }
  runs(threadId: $id, first: 100) {
    totalCount
    edges { node { id threadId status attempt metadata error { type message } } }
  }
}"""


def text(thread_index: int, seq: int) -> str:
    return f"thread {thread_index} run {seq}"


async def feed_thread(clients: list[GraphQLClient], thread_index: int, thread_id: str) -> list[str]:
    """Create this thread's runs one after another (their order is the creation order), each
    through the next API in turn; returns the run ids in order."""
    ids = []
    for seq in range(RUNS_PER_THREAD):
        client = clients[(thread_index + seq) % len(clients)]
        data = await client.data(
            CREATE_RUN,
            {
                "input": {
                    "assistantId": "echo",
                    "threadId": thread_id,
                    "input": {"messages": [{"role": "user", "content": text(thread_index, seq)}]},
                    "metadata": {"thread_index": thread_index, "seq": seq},
                    "multitaskStrategy": "ENQUEUE",
                }
            },
        )
        run = data["createRun"]
        assert run["threadId"] == thread_id
        assert run["multitaskStrategy"] == "ENQUEUE"
        ids.append(run["id"])
    return ids


async def test_two_apis_two_workers_run_every_run_once_in_order(engines: EngineUrls) -> None:
    async with (
        scratch_database(engines.database_uri) as url,
        LgqlCluster(url, engines.redis_uri, apis=2, workers=2) as cluster,
    ):
        clients = [cluster.client(0), cluster.client(1)]
        threads: list[str] = []
        for i in range(THREADS):
            data = await clients[i % 2].data(
                'mutation { createThread(input: {graphId: "echo"}) { id } }'
            )
            threads.append(data["createThread"]["id"])

        created = await asyncio.gather(
            *(feed_thread(clients, i, thread_id) for i, thread_id in enumerate(threads))
        )
        all_ids = [run_id for ids in created for run_id in ids]
        assert len(set(all_ids)) == TOTAL

        async def all_over() -> dict[str, Any] | None:
            counts = await clients[0].data(COUNTS)
            active = counts["pending"]["totalCount"] + counts["running"]["totalCount"]
            return counts if active == 0 else None

        counts = await poll_until(
            all_over, deadline=300, interval=0.5, what="all runs to end", cluster=cluster
        )
        assert counts["all"]["totalCount"] == TOTAL, counts

        problems: list[str] = []
        for i, thread_id in enumerate(threads):
            got = await clients[i % 2].data(THREAD_RUNS, {"id": thread_id})
            runs = [edge["node"] for edge in got["runs"]["edges"]]
            assert got["runs"]["totalCount"] == RUNS_PER_THREAD, got["runs"]
            # Newest first; ids are exactly the ones created for this thread.
            assert [r["id"] for r in reversed(runs)] == created[i], (i, runs)
            for run in runs:
                if run["status"] != "SUCCESS" or run["attempt"] != 1:
                    problems.append(f"thread {i} run {run['metadata']}: {run}")
            messages = got["thread"]["values"]["messages"]
            expected = [text(i, seq) for seq in range(RUNS_PER_THREAD)]
            assert [m["type"] for m in messages] == ["human", "ai"] * RUNS_PER_THREAD, (i, messages)
            # Every input exactly once, in creation order, each followed by its own echo.
            assert [m["content"] for m in messages[0::2]] == expected, (i, messages)
            assert [m["content"] for m in messages[1::2]] == expected, (i, messages)
            assert got["thread"]["status"] == "IDLE", got["thread"]
        assert not problems, "\n".join(problems)

"""A burst of a thousand createRun calls: every run is a row before the call returns, every run
ends exactly once, and never two runs of a thread at once."""

from __future__ import annotations

import asyncio
import time
import uuid

from tests.conftest import GraphQLClient, LiveServer
from tests.helpers import new_thread

BURST = 1000
THREADS = 50
CLIENTS = 25


async def test_burst_of_create_runs_loses_none(
    live_server: LiveServer, gql_client: GraphQLClient
) -> None:
    tag = uuid.uuid4().hex
    threads = [await new_thread(gql_client, metadata={"burst": tag}) for _ in range(THREADS)]
    clients = [GraphQLClient(live_server.graphql_url) for _ in range(CLIENTS)]
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(BURST):
        queue.put_nowait(i)
    created: dict[str, str] = {}

    async def client_loop(client: GraphQLClient) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            tid = threads[i % THREADS]
            data = await client.data(
                "mutation($input: RunInput!) { createRun(input: $input) { id status } }",
                {
                    "input": {
                        "assistantId": "echo",
                        "threadId": tid,
                        "input": {"messages": [{"role": "user", "content": str(i)}]},
                    }
                },
            )
            created[data["createRun"]["id"]] = tid

    try:
        await asyncio.gather(*(client_loop(c) for c in clients))
    finally:
        for c in clients:
            await c.close()
    assert len(created) == BURST

    deadline = time.monotonic() + 240
    while True:
        # Only this test's threads: other tests may leave runs of their own in the database.
        data = await gql_client.data(
            "query($tag: JSON) { threads(filter: {metadata: $tag, status: BUSY}) { totalCount } }",
            {"tag": {"burst": tag}},
        )
        if data["threads"]["totalCount"] == 0:
            break
        assert time.monotonic() < deadline, data
        await asyncio.sleep(0.5)

    for tid in threads:
        thread = await gql_client.data(
            "query($id: ID!) { thread(id: $id) { status values runs(first: 100) { totalCount nodes { status attempt } } } }",
            {"id": tid},
        )
        t = thread["thread"]
        assert t["status"] == "IDLE"
        assert t["runs"]["totalCount"] == BURST // THREADS
        assert all(r["status"] == "SUCCESS" and r["attempt"] == 1 for r in t["runs"]["nodes"])
        said = [m["content"] for m in t["values"]["messages"] if m["type"] == "human"]
        # Each run's input is in the state exactly once: no run lost, none run twice.
        expected = sorted(i for i in range(BURST) if i % THREADS == threads.index(tid))
        assert sorted(int(s) for s in said) == expected
        assert len(said) == len(set(said))

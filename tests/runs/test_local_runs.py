"""Runs executed by the API process their client waits on (`LGQL_API_RUN_SLOTS`).

In this process: an API with slots and no worker anywhere executes `runAndWait`, `runStream`,
the SDK's `runs.wait` / `runs.stream`, an MCP tool call and A2A messages itself; the run service
creates and claims such a run in one call for a held slot, and gives the slot back when the run
may not start yet; a background run, a delayed one, and one beyond the slots are left to the
workers (and a waiting client is told there are none); a cancel reaches a run executing here.
With real `lgql serve` and `lgql worker` processes: an API killed under a run leaves it to a
worker, which resumes it from its checkpoint; an API stopped with SIGTERM hands its run back.
Deadlines only guard against hangs; nothing here is timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from langgraph_sdk import get_client

from app.db.engine import asyncpg_url
from app.db.migrate import upgrade
from app.errors import NotFound
from app.services.run_lifecycle import Claimed
from app.services.run_request import MultitaskStrategy, RunRequest
from tests.conftest import (
    EngineUrls,
    GraphQLClient,
    LiveServer,
    make_settings,
    private_services,
    scratch_database,
    start_server,
)
from tests.helpers import (
    JOIN,
    RUN_AND_WAIT,
    RUN_STREAM,
    collect,
    eventually,
    new_thread,
    run_and_wait,
    wait_status,
)
from tests.processes import LgqlCluster, count_events, poll_until, read_marker

pytestmark = pytest.mark.timeout(300)

HERE = f"{socket.gethostname()}:{os.getpid()}"
CANCEL = "mutation($id: ID!) { cancelRun(id: $id, wait: false) { id } }"
PENDING = "{ runs(status: PENDING, first: 10) { edges { node { id assistantId } } } }"


@contextlib.asynccontextmanager
async def api_without_workers(
    engines: EngineUrls, slots: int
) -> AsyncIterator[tuple[LiveServer, GraphQLClient, str]]:
    """An API with `slots` run slots, on a database and a Redis prefix of its own where no
    worker runs; with a GraphQL client and the database's URL (a running run's `worker_id`
    says which process holds it)."""
    prefix = f"lgql_test_local_{uuid.uuid4().hex[:8]}"
    async with scratch_database(engines.database_uri, prefix="lgql_local") as url:
        await upgrade(url)
        server = await start_server(
            make_settings(prefix, api_run_slots=slots),
            database_uri=url,
            redis_uri=engines.redis_uri,
            embedded_worker=False,
        )
        client = GraphQLClient(server.graphql_url)
        try:
            yield server, client, url
        finally:
            await client.close()
            await server.stop()


async def executed_by(database_uri: str, run_id: str) -> str | None:
    conn = await asyncpg.connect(asyncpg_url(database_uri))
    try:
        worker: str | None = await conn.fetchval(
            "SELECT worker_id FROM runs WHERE run_id = $1", uuid.UUID(run_id)
        )
        return worker
    finally:
        await conn.close()


async def test_runs_a_client_waits_for_execute_in_the_api_with_no_worker(
    engines: EngineUrls,
) -> None:
    # No worker serves this database and Redis prefix: what ends was executed by the API.
    async with api_without_workers(engines, slots=2) as (server, client, _):
        # GraphQL runAndWait: done here, and no word about missing workers.
        body = await client.execute(
            RUN_AND_WAIT, {"input": {"assistantId": "echo", "input": {"messages": ["hi"]}}}
        )
        assert "errors" not in body, body
        result = body["data"]["runAndWait"]
        assert result["run"]["status"] == "SUCCESS", result
        assert "warnings" not in body.get("extensions", {}), body

        # Answered once its end is committed, before its last events and end reach Redis:
        # those follow all the same, and a join right after the answer has every one.
        tid = await new_thread(client)
        body = await client.execute(
            RUN_AND_WAIT,
            {
                "input": {
                    "assistantId": "stream100",
                    "threadId": tid,
                    "input": {},
                    "streamMode": ["CUSTOM"],
                }
            },
        )
        assert body["data"]["runAndWait"]["run"]["status"] == "SUCCESS", body
        joined = await collect(
            server, JOIN, {"id": body["data"]["runAndWait"]["run"]["id"]}, "joinRunStream"
        )
        assert sum(e["event"] == "custom" for e in joined) == 100, joined[:3]
        assert joined[-1]["event"] == "end" and joined[-1]["data"]["status"] == "success"

        # A GraphQL subscription's run: every event, then its end.
        events = await collect(
            server,
            RUN_STREAM,
            {"input": {"assistantId": "stream100", "input": {}}, "modes": ["CUSTOM"]},
            "runStream",
        )
        assert sum(e["event"] == "custom" for e in events) == 100, events[:3]
        assert events[-1]["event"] == "end" and events[-1]["data"]["status"] == "success"

        # LangGraph's SDK over REST: runs.wait and runs.stream on a thread.
        sdk = get_client(url=server.url)
        thread = await sdk.threads.create()
        values = await sdk.runs.wait(thread["thread_id"], "echo", input={"messages": ["a"]})
        assert isinstance(values, dict) and values["messages"][-1] is not None, values
        parts = [
            part
            async for part in sdk.runs.stream(
                thread["thread_id"], "echo", input={"messages": ["b"]}, stream_mode="values"
            )
        ]
        assert parts[0].event == "metadata" and parts[-1].event == "values", parts
        runs = await sdk.runs.list(thread["thread_id"])
        assert [r["status"] for r in runs] == ["success", "success"]


async def _mget_calls(redis_uri: str) -> int:
    redis = aioredis.from_url(redis_uri)
    try:
        stats = await redis.info("commandstats")
    finally:
        await redis.aclose()
    return int(stats.get("cmdstat_mget", {}).get("calls", 0))


async def test_a_waited_run_executed_here_is_answered_without_a_redis_lookup(
    engines: EngineUrls,
) -> None:
    """The API that executes a waited run knows its end when it commits it: the wait looks for
    no outcome recorded in Redis before it listened (an MGET per wait, before)."""
    async with api_without_workers(engines, slots=2) as (_, client, _):
        before = await _mget_calls(engines.redis_uri)
        for n in range(3):
            tid = await new_thread(client)
            done = await run_and_wait(
                client, assistantId="echo", threadId=tid, input={"messages": [f"m{n}"]}
            )
            assert done["run"]["status"] == "SUCCESS", done
        assert await _mget_calls(engines.redis_uri) == before


async def test_mcp_and_a2a_calls_execute_in_the_api_with_no_worker(engines: EngineUrls) -> None:
    """The other doors whose clients wait: an MCP tool call, an A2A message sent and one
    streamed, each created and claimed for the API and executed there (no worker anywhere)."""
    from a2a.types.a2a_pb2 import SendMessageRequest, TaskState

    from tests.doors.test_a2a import _assistant_id, a2a_client, artifact_text, send, user_message
    from tests.doors.test_mcp import mcp_client

    async with api_without_workers(engines, slots=2) as (server, client, url):
        async with mcp_client(server) as mcp:
            result = await mcp.call_tool("steps", {"count": 1})
        assert result.is_error is False and result.structured_content is not None
        assert result.structured_content["count"] == 6

        aid = await _assistant_id(client, "echo")
        async with a2a_client(server, aid) as a2a:
            task = await send(a2a, user_message(text="sent"))
        assert task.status.state == TaskState.TASK_STATE_COMPLETED
        assert artifact_text(task) == "sent"
        async with a2a_client(server, aid, streaming=True) as a2a:
            request = SendMessageRequest(message=user_message(text="streamed"))
            events = [e async for e in a2a.send_message(request)]
        states = [e.status_update.status.state for e in events if e.HasField("status_update")]
        assert states[-1] == TaskState.TASK_STATE_COMPLETED, events

        # No worker serves this database: the API executed them, each in its first attempt
        # (the A2A tasks' runs; the MCP call's stateless run went with its thread).
        conn = await asyncpg.connect(asyncpg_url(url))
        try:
            rows = await conn.fetch("SELECT status, attempt FROM runs")
        finally:
            await conn.close()
        assert sorted((r["status"], r["attempt"]) for r in rows) == [("success", 1)] * 2


class _Slots:
    """An executor of runs here that records what the run service asks of it."""

    worker_id = "here:1"

    def __init__(self, free: int) -> None:
        self.free = free
        self.started: list[Claimed] = []
        self.released = 0

    def hold_slot(self) -> _Held | None:
        if self.free == 0:
            return None
        self.free -= 1
        return _Held(self)


class _Held:
    def __init__(self, owner: _Slots) -> None:
        self.owner = owner

    @property
    def worker_id(self) -> str:
        return self.owner.worker_id

    def start(self, claimed: Claimed) -> None:
        self.owner.started.append(claimed)

    def release(self) -> None:
        self.owner.released += 1
        self.owner.free += 1


async def test_a_waited_run_is_created_and_claimed_in_one_call(
    engines: EngineUrls, redis_prefix: str
) -> None:
    """With a slot free here, the call that creates a run its client waits for claims it too
    (for this process, under the claim's own rule): no wake-up for a worker. A run that may not
    start yet, one that fails to be created, a delayed or a superseding one: no claim, and a
    held slot is given back."""
    async with private_services(engines, redis_prefix, name="claimhere") as services:
        slots = _Slots(free=2)
        services.execution.execute_here(slots)
        tid = str((await services.threads.create(graph_id="echo")).thread_id)
        body = {"messages": ["hi"]}

        run = await services.runs.create(
            RunRequest(assistant_id="echo", thread_id=tid, input=body), attached=True
        )
        assert (run.status, run.attempt, run.worker_id) == ("running", 1, "here:1")
        assert run.started_at is not None and run.lease_until is not None
        assert run.created_at <= run.started_at < run.lease_until
        [claimed] = slots.started
        assert claimed.run.run_id == run.run_id and claimed.thread_fresh
        assert claimed.assistant is not None and claimed.assistant["graph_id"] == "echo"
        assert (await services.runs.get(str(run.run_id))).status == "running"
        assert await services.redis.zrange(services.wakeups.key, 0, -1) == []

        # The thread is busy: created pending, for a worker once the first ends.
        queued = await services.runs.create(
            RunRequest(assistant_id="echo", thread_id=tid, input=body), attached=True
        )
        assert queued.status == "pending" and len(slots.started) == 1
        assert (slots.free, slots.released) == (1, 1)

        with pytest.raises(NotFound):
            await services.runs.create(
                RunRequest(assistant_id="echo", thread_id=str(uuid.uuid4())), attached=True
            )
        assert (slots.free, slots.released) == (1, 2)

        # Not asked: delayed, superseding, or not waited for.
        other = str((await services.threads.create(graph_id="echo")).thread_id)
        for request in (
            RunRequest(assistant_id="echo", thread_id=other, after_seconds=3600),
            RunRequest(
                assistant_id="echo",
                thread_id=other,
                multitask_strategy=MultitaskStrategy.INTERRUPT,
            ),
        ):
            assert (await services.runs.create(request, attached=True)).status == "pending"
        assert (
            await services.runs.create(RunRequest(assistant_id="echo", input=body))
        ).status == "pending"
        assert (slots.free, slots.released, len(slots.started)) == (1, 2, 1)


async def test_background_delayed_and_extra_runs_are_left_to_the_workers(
    engines: EngineUrls,
) -> None:
    async with api_without_workers(engines, slots=1) as (_, client, url):

        async def new_pending(known: set[str]) -> str:
            async def probe() -> str | None:
                edges = (await client.data(PENDING))["runs"]["edges"]
                ids = [e["node"]["id"] for e in edges if e["node"]["id"] not in known]
                return ids[0] if ids else None

            run_id: str = await eventually(probe, what="a new pending run")
            known.add(run_id)
            return run_id

        def wait_for(fields: dict[str, Any]) -> asyncio.Task[dict[str, Any]]:
            return asyncio.create_task(client.execute(RUN_AND_WAIT, {"input": fields}))

        # A background run is the workers' (there are none: it stays pending); so is a delayed
        # run its client waits for, although the slot is free.
        created = await client.data(
            'mutation { createRun(input: {assistantId: "echo", input: {}}) { id status } }'
        )
        background = created["createRun"]
        assert background["status"] == "PENDING"
        known = {background["id"]}
        delayed = wait_for({"assistantId": "echo", "input": {}, "afterSeconds": 60})
        delayed_id = await new_pending(known)

        # The one slot taken by a long run a client waits for...
        holder = wait_for({"assistantId": "slow", "input": {"seconds": 60}})

        async def running() -> str | None:
            data = await client.data(
                "{ runs(status: RUNNING, first: 5) { edges { node { id } } } }"
            )
            edges = data["runs"]["edges"]
            return str(edges[0]["node"]["id"]) if edges else None

        held_id = await eventually(running, what="the slow run to start here")
        assert await executed_by(url, held_id) == HERE

        # ...the next one waits for a worker, and its client is told there is none.
        second = wait_for({"assistantId": "echo", "input": {}})
        second_id = await new_pending(known)

        # A cancel reaches the run executing here; the pending ones are cancelled in place.
        for run_id in (held_id, second_id, delayed_id, background["id"]):
            assert "errors" not in await client.execute(CANCEL, {"id": run_id})
        bodies = await asyncio.wait_for(asyncio.gather(holder, second, delayed), 60)
        for body in bodies:
            assert body["data"]["runAndWait"]["run"]["status"] == "INTERRUPTED", body
        held_body, second_body, delayed_body = bodies
        assert "warnings" not in held_body.get("extensions", {}), held_body
        for body, run_id in ((second_body, second_id), (delayed_body, delayed_id)):
            [warning] = body["extensions"]["warnings"]
            assert warning["code"] == "NO_LIVE_WORKER" and warning["runId"] == run_id
        await wait_status(client, background["id"], {"INTERRUPTED"})


# --- real processes: the API dies or stops under its run ---------------------------------------

CLUSTER_ENV = {
    "LGQL_API_RUN_SLOTS": "2",
    "LGQL_RUN_LEASE_SECONDS": "1.5",
    "LGQL_SWEEP_INTERVAL_SECONDS": "0.5",
}


def crashy_input(thread_id: str, marker: Path, slow_seconds: float) -> dict[str, Any]:
    return {
        "input": {
            "assistantId": "crashy",
            "threadId": thread_id,
            "input": {},
            "config": {"configurable": {"marker_path": str(marker), "slow_seconds": slow_seconds}},
        }
    }


async def slow_started_in(client: GraphQLClient, marker: Path, cluster: LgqlCluster) -> int:
    """The pid running `slow`, once it started (the checkpoint after `first` is saved then)."""

    async def probe() -> int | None:
        starts = [pid for e, n, pid in read_marker(marker) if (e, n) == ("start", "slow")]
        return starts[0] if starts else None

    return await poll_until(probe, deadline=90, what="`slow` to start", cluster=cluster)


async def final_run(client: GraphQLClient, thread_id: str, cluster: LgqlCluster) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        data = await client.data(
            "query($id: ID!) { runs(threadId: $id, first: 5) { edges { node { id status attempt } } } }",
            {"id": thread_id},
        )
        [edge] = data["runs"]["edges"]
        node: dict[str, Any] = edge["node"]
        return node if node["status"] not in ("PENDING", "RUNNING") else None

    return await poll_until(probe, deadline=120, what="the run to end", cluster=cluster)


async def start_attached(
    cluster: LgqlCluster, client: GraphQLClient, thread_id: str, run: dict[str, Any], how: str
) -> asyncio.Task[Any] | None:
    """Start a run its client follows: `runAndWait` (a task, its request in flight), or a
    thread stream's `run.start` (Protocol v2: answered at once, nothing in flight)."""
    if how == "runAndWait":
        return asyncio.create_task(client.execute(RUN_AND_WAIT, run))
    params = {
        "assistant_id": run["input"]["assistantId"],
        "input": run["input"]["input"],
        "config": run["input"]["config"],
    }
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.post(
            f"{cluster.api_urls[0]}/threads/{thread_id}/commands",
            json={"id": 1, "method": "run.start", "params": params},
        )
    assert answer.json()["type"] == "success", answer.text
    return None


@pytest.mark.parametrize(
    ("sig", "how"),
    [(signal.SIGKILL, "runAndWait"), (signal.SIGTERM, "run.start")],
    ids=["sigkill", "sigterm"],
)
async def test_a_run_executing_in_an_api_that_dies_or_stops_is_resumed_by_a_worker(
    engines: EngineUrls, tmp_path: Path, sig: signal.Signals, how: str
) -> None:
    """SIGKILL: the run's lease lapses. SIGTERM (once no request is in flight, uvicorn's drain
    being over): its grace period, then the run is handed back."""
    marker = tmp_path / "marker.log"
    env = {**CLUSTER_ENV, "BG_JOB_SHUTDOWN_GRACE_PERIOD_SECS": "0.5"}
    async with (
        scratch_database(engines.database_uri) as url,
        LgqlCluster(url, engines.redis_uri, apis=1, workers=1, env_overrides=env) as cluster,
    ):
        client = cluster.client()
        created = await client.data('mutation { createThread(input: {graphId: "crashy"}) { id } }')
        thread_id = created["createThread"]["id"]
        waiting = await start_attached(
            cluster, client, thread_id, crashy_input(thread_id, marker, slow_seconds=6), how
        )
        api_pid = cluster.apis[0].pid
        assert await slow_started_in(client, marker, cluster) == api_pid
        stopped = cluster.kill_api(0, sig)
        if sig == signal.SIGTERM:
            assert await cluster.wait_exit(stopped, 60) == 0, cluster.logs()
        if waiting is not None:  # its client was cut off with the API
            with contextlib.suppress(Exception):
                await waiting
        survivor = GraphQLClient(f"{await cluster.start_api()}/graphql")
        try:
            final = await final_run(survivor, thread_id, cluster)
        finally:
            await survivor.close()

        assert final["status"] == "SUCCESS", (final, cluster.logs())
        assert final["attempt"] == 2, final
        if sig == signal.SIGTERM:  # given back at once, not left to lapse
            assert f"handed run {final['id']} back" in cluster.api_procs[0].tail(200)
        marks = read_marker(marker)
        worker_pid = cluster.workers[0].pid
        assert count_events(marks, "start", "first") == 1, marks  # resumed, not redone
        assert [pid for e, n, pid in marks if (e, n) == ("start", "slow")] == [api_pid, worker_pid]
        assert [pid for e, n, pid in marks if (e, n) == ("end", "last")] == [worker_pid], marks

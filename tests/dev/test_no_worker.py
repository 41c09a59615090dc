"""No silent waits (issue 13.3): against a deployment with no live worker, `runAndWait` answers
with `extensions.warnings` (`NO_LIVE_WORKER`) and a run subscription starts with a `warning` event,
and the server logs a warning; once a worker is alive, neither is said. Real `lgql serve` and
`lgql worker` processes on the test run's Postgres and Redis, with a Redis key prefix of their
own (so no other test's worker counts)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
import websockets
from websockets.typing import Subprotocol

from app.db.migrate import upgrade
from tests.conftest import EngineUrls, free_port, scratch_database
from tests.dev_project import DevProject, LgqlCommand, child_env

RUN_AND_WAIT = """
mutation { runAndWait(input: {assistantId: "agent", input: {}}) { run { id status } } }"""
PENDING_RUNS = "{ runs(status: PENDING, first: 10) { edges { node { id } } } }"
CANCEL = "mutation($id: ID!) { cancelRun(id: $id, wait: false) { status } }"
RUN_STREAM = """
subscription { runStream(input: {assistantId: "agent", input: {}}) { id runId event data } }"""


class Deployment:
    def __init__(self, root: Path, env: dict[str, str], port: int) -> None:
        self.root = root
        self.env = env
        self.port = port
        self.url = f"http://127.0.0.1:{port}/graphql"
        self.http = httpx.AsyncClient(timeout=60)
        self.processes: list[LgqlCommand] = []

    async def post(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self.http.post(self.url, json={"query": query, "variables": variables})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def cancel_pending_run(self) -> str:
        """Cancel the one run waiting for a worker (found by polling, with a deadline)."""
        until = time.monotonic() + 60
        while True:
            edges = (await self.post(PENDING_RUNS))["data"]["runs"]["edges"]
            if edges:
                run_id: str = edges[0]["node"]["id"]
                cancelled = await self.post(CANCEL, {"id": run_id})
                assert "errors" not in cancelled, cancelled
                return run_id
            assert time.monotonic() < until, "the run never showed up as pending"
            await asyncio.sleep(0.1)


@pytest_asyncio.fixture(loop_scope="session")
async def deployment(tmp_path: Path, engines: EngineUrls) -> AsyncIterator[Deployment]:
    # A database of its own: the pending run a test looks for is its own.
    async with scratch_database(engines.database_uri, prefix="lgql_noworker") as database_uri:
        await upgrade(database_uri)
        async with _deployment(tmp_path, engines, database_uri) as deployed:
            yield deployed


@contextlib.asynccontextmanager
async def _deployment(
    tmp_path: Path, engines: EngineUrls, database_uri: str
) -> AsyncIterator[Deployment]:
    project = DevProject.create(tmp_path / "project")
    env = child_env(
        DATABASE_URI=database_uri,
        REDIS_URI=engines.redis_uri,
        REDIS_KEY_PREFIX=f"lgql_test_{uuid.uuid4().hex[:12]}",
    )
    port = free_port()
    deployed = Deployment(project.root, env, port)
    api = LgqlCommand.start(
        ["serve", "--port", str(port)], cwd=project.root, env=env, log=tmp_path / "api.log"
    )
    deployed.processes.append(api)
    try:
        await api.wait_for_log("listening on")
        yield deployed
    finally:
        await deployed.http.aclose()
        for process in deployed.processes:
            await process.stop()


async def test_run_and_wait_says_no_worker_is_alive(deployment: Deployment) -> None:
    waiting = asyncio.create_task(deployment.post(RUN_AND_WAIT))
    run_id = await deployment.cancel_pending_run()
    body = await waiting

    assert body["data"]["runAndWait"]["run"] == {"id": run_id, "status": "INTERRUPTED"}
    [warning] = body["extensions"]["warnings"]
    assert warning["code"] == "NO_LIVE_WORKER"
    assert warning["runId"] == run_id
    assert "no worker is alive" in warning["message"]
    api = deployment.processes[0]
    await api.wait_for_log(f"no worker is alive: run {run_id}")


async def test_run_stream_starts_with_a_warning_event(deployment: Deployment) -> None:
    ws_url = deployment.url.replace("http://", "ws://")
    async with websockets.connect(ws_url, subprotocols=["graphql-transport-ws"]) as socket:
        await socket.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await socket.recv())["type"] == "connection_ack"
        await socket.send(
            json.dumps({"id": "1", "type": "subscribe", "payload": {"query": RUN_STREAM}})
        )
        first = json.loads(await asyncio.wait_for(socket.recv(), 60))
        assert first["type"] == "next", first
        event = first["payload"]["data"]["runStream"]
        assert event["event"] == "warning"
        assert event["data"]["code"] == "NO_LIVE_WORKER"
        assert event["data"]["runId"] == event["runId"]

        await deployment.cancel_pending_run()
        events = []
        while True:
            message = json.loads(await asyncio.wait_for(socket.recv(), 60))
            if message["type"] == "complete":
                break
            assert message["type"] == "next", message
            events.append(message["payload"]["data"]["runStream"]["event"])
        assert events[-1] == "end"
        assert "warning" not in events


async def first_event(url: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    """The first event of a subscription over WebSocket."""
    async with websockets.connect(
        url.replace("http://", "ws://"), subprotocols=[Subprotocol("graphql-transport-ws")]
    ) as socket:
        await socket.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await socket.recv())["type"] == "connection_ack"
        payload = {"query": query, "variables": variables}
        await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        message = json.loads(await asyncio.wait_for(socket.recv(), 60))
        assert message["type"] == "next", message
        data: dict[str, Any] = message["payload"]["data"]
        return next(iter(data.values()))  # type: ignore[no-any-return]


async def test_join_and_thread_streams_say_it_too(deployment: Deployment) -> None:
    thread = (await deployment.post("mutation { createThread { id } }"))["data"]["createThread"]
    created = await deployment.post(
        'mutation($t: ID!) { createRun(input: {assistantId: "agent", threadId: $t}) { id } }',
        {"t": thread["id"]},
    )
    run_id = created["data"]["createRun"]["id"]

    joined = await first_event(
        deployment.url,
        "subscription($r: ID!) { joinRunStream(runId: $r) { event runId data } }",
        {"r": run_id},
    )
    followed = await first_event(
        deployment.url,
        "subscription($t: ID!) { threadStream(threadId: $t) { event data } }",
        {"t": thread["id"]},
    )

    assert joined["event"] == "warning" and joined["runId"] == run_id
    assert joined["data"]["code"] == "NO_LIVE_WORKER"
    assert followed["event"] == "warning" and followed["data"]["code"] == "NO_LIVE_WORKER"
    await deployment.cancel_pending_run()


async def test_no_warning_once_a_worker_is_alive(deployment: Deployment, tmp_path: Path) -> None:
    worker = LgqlCommand.start(
        ["worker"], cwd=deployment.root, env=deployment.env, log=tmp_path / "worker.log"
    )
    deployment.processes.append(worker)
    await worker.wait_for_log(r"worker \S+ ready")

    # The API checks for workers at most every couple of seconds: poll until it has seen one.
    until = time.monotonic() + 60
    while True:
        body = await deployment.post(RUN_AND_WAIT)
        assert body["data"]["runAndWait"]["run"]["status"] == "SUCCESS", body
        if "warnings" not in body.get("extensions", {}):
            break
        assert time.monotonic() < until, body

"""`lgql dev` reloads its graphs when their files change (issue 13.1), as a user runs it: a real
`lgql dev` process on a project in a temporary folder, with its embedded engines in a temporary
data folder, driven over GraphQL. Every wait is on the server's log or on a GraphQL answer, with
a deadline; none is a fixed sleep."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.conftest import EngineUrls, GraphQLClient, free_port
from tests.dev_project import DevProject, LgqlCommand, child_env

T = TypeVar("T")

RUN_AND_WAIT = """
mutation($graph: String!, $input: JSON) {
  runAndWait(input: {assistantId: $graph, input: $input}) { values run { status } }
}"""
CREATE_THREAD = "mutation { createThread { id } }"
CREATE_RUN = """
mutation($thread: ID!, $input: JSON) {
  createRun(input: {assistantId: "agent", threadId: $thread, input: $input}) { id }
}"""
RUN_STATUS = "query($id: ID!) { run(id: $id) { status } }"
THREAD_VALUES = "query($id: ID!) { thread(id: $id) { id values } }"
ASSISTANT_GRAPHS = "{ assistants(first: 50) { edges { node { graphId } } } }"


async def poll(check: Callable[[], Awaitable[T | None]], *, what: str, deadline: float = 90) -> T:
    until = time.monotonic() + deadline
    while True:
        found = await check()
        if found is not None:
            return found
        if time.monotonic() > until:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def answer(client: GraphQLClient, graph: str = "agent", **input: Any) -> dict[str, Any]:
    data = await client.data(RUN_AND_WAIT, {"graph": graph, "input": input})
    result: dict[str, Any] = data["runAndWait"]
    assert result["run"]["status"] == "SUCCESS", result
    return result["values"]  # type: ignore[no-any-return]


@pytest.fixture
def folder() -> Iterator[Path]:
    # Not pytest's tmp_path: the embedded Postgres runs as its own user and must reach its data.
    path = Path(tempfile.mkdtemp(prefix="lgql-reload-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def test_reload_new_runs_use_new_code_while_a_started_run_finishes_on_the_old(
    folder: Path,
) -> None:
    project = DevProject.create(folder / "project")
    port = free_port()
    data_dir = folder / "data"
    env = child_env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as users run it: with bytecode caching
    lgql = LgqlCommand.start(
        ["dev", "--port", str(port), "--data-dir", str(data_dir)],
        cwd=project.root,
        env=env,
        log=folder / "lgql.log",
    )
    client = GraphQLClient(f"http://127.0.0.1:{port}/graphql")
    async with lgql:
        try:
            at = await lgql.wait_for_log(r"GraphiQL: http://127\.0\.0\.1:\d+/graphql")
            # Printed once the server listens, not before.
            log = lgql.text()
            assert log.index("Application startup complete") < log.index("GraphiQL:")
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                pass
            assert "hot reload on" in log

            # The in-process worker counts from the start: no NO_LIVE_WORKER warning while
            # its first heartbeat is on its way.
            first = await client.execute(RUN_AND_WAIT, {"graph": "agent", "input": {}})
            assert first["data"]["runAndWait"]["values"] == {"version": "v1", "env": "one"}
            assert "warnings" not in first.get("extensions", {}), first
            thread = (await client.data(CREATE_THREAD))["createThread"]["id"]
            hold = folder / "release-old-run"
            old_run = (
                await client.data(CREATE_RUN, {"thread": thread, "input": {"hold": str(hold)}})
            )["createRun"]["id"]

            async def running() -> bool | None:
                status = (await client.data(RUN_STATUS, {"id": old_run}))["run"]["status"]
                return True if status == "RUNNING" else None

            await poll(running, what="the first run to start")

            # A local import changes: new runs take it, the running one keeps its code.
            project.set_version("v2")
            at = await lgql.wait_for_log(r"reloaded graphs agent \(helper\.py changed\)", after=at)
            assert await answer(client) == {"version": "v2", "env": "one"}
            hold.touch()

            async def ended() -> bool | None:
                status = (await client.data(RUN_STATUS, {"id": old_run}))["run"]["status"]
                return True if status == "SUCCESS" else None

            await poll(ended, what="the first run to end")
            state = (await client.data(THREAD_VALUES, {"id": thread}))["thread"]
            assert state["values"]["version"] == "v1"

            # A reload that fails keeps the last good graphs and says where it failed.
            project.set_version("v3", extra="def broken(:\n")
            at = await lgql.wait_for_log(
                r"reload failed, still serving the previous graphs", after=at
            )
            failure = lgql.text()[at - 200 : at + 400]
            assert "helper.py, line 2" in failure, failure
            assert await answer(client) == {"version": "v2", "env": "one"}
            project.set_version("v3")
            at = await lgql.wait_for_log(r"reloaded graphs agent", after=at)
            assert await answer(client) == {"version": "v3", "env": "one"}
            # Saved again within the same second, at the same size: Python's bytecode cache
            # (which trusts a source of the same size and mtime second) must not hide it.
            helper = project.root / "helper.py"
            before = helper.stat()
            project.set_version("v4")
            os.utime(helper, ns=(before.st_atime_ns, before.st_mtime_ns))
            at = await lgql.wait_for_log(r"reloaded graphs agent", after=at)
            assert await answer(client) == {"version": "v4", "env": "one"}

            # The env file is watched too.
            project.write(".env", "FOO=two\n")
            at = await lgql.wait_for_log(r"reloaded graphs agent \(\.env changed\)", after=at)
            assert await answer(client) == {"version": "v4", "env": "two"}

            # A new graph in langgraph.json gets its assistant, as at start-up.
            project.write("second.py", "from agent import graph\n")
            project.write_config({"agent": "./agent.py:graph", "second": "./second.py:graph"})
            at = await lgql.wait_for_log(r"reloaded graphs agent, second", after=at)
            edges = (await client.data(ASSISTANT_GRAPHS))["assistants"]["edges"]
            assert {e["node"]["graphId"] for e in edges} == {"agent", "second"}
            assert await answer(client, "second") == {"version": "v4", "env": "two"}

            # A new local import in a folder not watched yet is watched from then on.
            (project.root / "words").mkdir()
            project.write("words/__init__.py", "")
            project.write("words/word.py", "WORD = 'a'\n")
            project.set_version("v5", extra="from words.word import WORD\nVERSION += WORD\n")
            at = await lgql.wait_for_log(r"reloaded graphs agent, second \(helper\.py", after=at)
            assert await answer(client) == {"version": "v5a", "env": "two"}
            project.write("words/word.py", "WORD = 'b'\n")
            at = await lgql.wait_for_log(r"reloaded graphs .*words/word\.py changed", after=at)
            assert await answer(client) == {"version": "v5b", "env": "two"}

            # Nothing was restarted or lost: one start of the engines, the thread still there.
            assert lgql.text().count("embedded engines ready") == 1
            still = (await client.data(THREAD_VALUES, {"id": thread}))["thread"]
            assert still["id"] == thread and still["values"]["version"] == "v1"
        finally:
            await client.close()


async def test_no_reload_turns_it_off(
    tmp_path: Path, engines: EngineUrls, database_uri: str
) -> None:
    project = DevProject.create(tmp_path / "project")
    port = free_port()
    env = child_env(
        DATABASE_URI=database_uri,
        REDIS_URI=engines.redis_uri,
        REDIS_KEY_PREFIX=f"lgql_test_{uuid.uuid4().hex[:12]}",
    )
    lgql = LgqlCommand.start(
        ["dev", "--no-reload", "--port", str(port)],
        cwd=project.root,
        env=env,
        log=tmp_path / "lgql.log",
    )
    client = GraphQLClient(f"http://127.0.0.1:{port}/graphql")
    async with lgql:
        try:
            await lgql.wait_for_log("GraphiQL:")
            assert "hot reload off" in lgql.text()
            assert "hot reload on" not in lgql.text()
            project.set_version("v2")
            assert await answer(client) == {"version": "v1", "env": "one"}
        finally:
            await client.close()

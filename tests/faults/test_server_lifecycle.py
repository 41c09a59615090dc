"""The server as a process: health, info, restarts, start-up refusals, and the `lgql` commands."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import psutil
import pytest

from app.runtime.graphs import default_assistant_id
from tests.conftest import (
    FIXTURE_GRAPHS,
    ROOT,
    EngineUrls,
    GraphQLClient,
    LiveServer,
    free_port,
    make_settings,
    scratch_database,
    start_server,
)

LGQL = [sys.executable, "-m", "lgql"]


async def test_ok_and_info(live_server: LiveServer) -> None:
    async with httpx.AsyncClient() as http:
        ok = (await http.get(f"{live_server.url}/ok")).json()
        assert ok == {"ok": True, "services": {"postgres": "ok", "redis": "ok"}}
        info = (await http.get(f"{live_server.url}/info")).json()
    assert info["version"]
    assert set(info["graphs"]) >= {"echo", "steps"}
    assert info["graphs"]["echo"]["default_assistant_id"] == str(default_assistant_id("echo"))


async def test_server_info_query(gql_client: GraphQLClient) -> None:
    data = await gql_client.data(
        "{ serverInfo { version langgraphVersion graphs { graphId defaultAssistantId } } }"
    )
    graphs = {g["graphId"]: g["defaultAssistantId"] for g in data["serverInfo"]["graphs"]}
    assert graphs["steps"] == str(default_assistant_id("steps"))


async def test_restart_keeps_all_data(engines: EngineUrls, redis_prefix: str) -> None:
    settings = make_settings(f"{redis_prefix}_restart")  # its own queue: another database
    async with scratch_database(engines.database_uri) as url:
        server = await start_server(
            settings, database_uri=url, redis_uri=engines.redis_uri, migrate=True
        )
        client = GraphQLClient(server.graphql_url)
        try:
            assistant = (
                await client.data(
                    'mutation { createAssistant(input: {graphId: "steps", name: "kept"}) { id } }'
                )
            )["createAssistant"]
            thread = (
                await client.data(
                    'mutation { createThread(input: {graphId: "steps", metadata: {k: 1}}) { id } }'
                )
            )["createThread"]
            await client.data(
                'mutation($id: ID!) { updateThreadState(threadId: $id, values: {count: 4}, asNode: "step_1") { thread { id } } }',
                {"id": thread["id"]},
            )
        finally:
            await client.close()
            await server.stop()

        for _ in range(2):  # two restarts: default assistants must not multiply
            server = await start_server(settings, database_uri=url, redis_uri=engines.redis_uri)
            client = GraphQLClient(server.graphql_url)
            try:
                got = await client.data(
                    """query($a: ID!, $t: ID!) {
                         assistant(id: $a) { name }
                         thread(id: $t) { metadata values state { next values } history { values } }
                         system: assistants(filter: {metadata: {created_by: "system"}}) { totalCount }
                       }""",
                    {"a": assistant["id"], "t": thread["id"]},
                )
            finally:
                await client.close()
                await server.stop()
            assert got["assistant"]["name"] == "kept"
            assert got["thread"]["values"] == {"count": 4}
            assert got["thread"]["state"] == {"next": ["step_2"], "values": {"count": 4}}
            assert len(got["thread"]["history"]) == 1
            n_graphs = len(__import__("json").loads(FIXTURE_GRAPHS.read_text())["graphs"])
            assert got["system"]["totalCount"] == n_graphs


def _run(
    args: list[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        LGQL + args, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URI", "REDIS_URI", "LGQL_CONFIG")
    }
    env.update(extra)
    return env


async def test_cli_serve_refuses_database_that_is_behind(engines: EngineUrls) -> None:
    async with scratch_database(engines.database_uri) as url:
        env = _env(DATABASE_URI=url, REDIS_URI=engines.redis_uri, LGQL_CONFIG=str(FIXTURE_GRAPHS))
        result = await asyncio.to_thread(_run, ["serve", "--port", str(free_port())], env)
        assert result.returncode != 0
        assert "lgql migrate" in result.stderr
        migrated = await asyncio.to_thread(_run, ["migrate"], env)
        assert migrated.returncode == 0, migrated.stderr
        assert "migrated from (empty)" in migrated.stdout
        again = await asyncio.to_thread(_run, ["migrate"], env)
        assert again.returncode == 0 and "already at" in again.stdout


async def test_cli_serve_names_a_graph_that_fails_to_import(
    engines: EngineUrls, database_uri: str, tmp_path: Path
) -> None:
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom at import')\n")
    (tmp_path / "langgraph.json").write_text('{"graphs": {"bad": "./broken.py:graph"}}')
    env = _env(DATABASE_URI=database_uri, REDIS_URI=engines.redis_uri)
    result = await asyncio.to_thread(
        _run,
        ["serve", "--port", str(free_port()), "--config", str(tmp_path / "langgraph.json")],
        env,
    )
    assert result.returncode != 0
    assert "broken.py" in result.stderr
    assert "boom at import" in result.stderr


async def test_cli_export_schema(tmp_path: Path) -> None:
    out = tmp_path / "schema.graphql"
    result = await asyncio.to_thread(_run, ["export-schema", "-o", str(out)], _env())
    assert result.returncode == 0, result.stderr
    assert out.read_text() == (ROOT / "schema" / "schema.graphql").read_text()


async def _wait_ok(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = asyncio.get_running_loop().time() + 60
    async with httpx.AsyncClient() as http:
        while True:
            if proc.poll() is not None:
                raise AssertionError(
                    f"lgql dev exited early: {proc.stderr.read() if proc.stderr else ''}"
                )
            try:
                if (await http.get(f"{url}/ok")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("lgql dev did not become healthy")
            await asyncio.sleep(0.2)


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
async def test_dev_embedded_engines_survive_restart_and_stop_cleanly(
    stop_signal: signal.Signals,
) -> None:
    """`lgql dev` with no URLs starts embedded Postgres + Valkey under .lgql/ and stops them."""
    # Not tmp_path: the embedded Postgres runs as its own user and pytest's base folder is 0700.
    tmp_path = Path(tempfile.mkdtemp(prefix="lgql-test-dev-"))
    try:
        await _dev_restart_round_trip(tmp_path, stop_signal)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


async def _dev_restart_round_trip(tmp_path: Path, stop_signal: signal.Signals) -> None:
    env = _env(LGQL_CONFIG=str(FIXTURE_GRAPHS))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    thread_id = None
    for attempt in range(2):
        proc = subprocess.Popen(  # noqa: ASYNC220 (a long-lived child, not awaited)
            [*LGQL, "dev", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            await _wait_ok(url, proc)
            children = _descendants(proc.pid)
            assert children, "embedded engines run as child processes"
            client = GraphQLClient(f"{url}/graphql")
            try:
                if attempt == 0:
                    created = await client.data(
                        'mutation { createThread(input: {metadata: {survives: "restart"}}) { id } }'
                    )
                    thread_id = created["createThread"]["id"]
                else:
                    got = await client.data(
                        "query($id: ID!) { thread(id: $id) { metadata } }", {"id": thread_id}
                    )
                    assert got["thread"]["metadata"] == {"survives": "restart"}
            finally:
                await client.close()
            proc.send_signal(stop_signal)
            code = await asyncio.to_thread(proc.wait, 60)
            assert code == 0, proc.stderr.read() if proc.stderr else ""
            _, alive = psutil.wait_procs(children, timeout=10)
            assert not alive, f"left running: {[p.name() for p in alive]}"
        finally:
            if proc.poll() is None:
                proc.kill()
    assert (tmp_path / ".lgql").is_dir()

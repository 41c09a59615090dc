"""Logs in one format, captured from real `lgql` processes: `LGQL_LOG_FORMAT=json` gives one JSON
object a line, with the run's ids on every line logged while it executes; the text format is
one `time LEVEL logger: message` line each; Alembic's plugin lines and arq's `SIGUSR1` are gone;
a worker says when it is ready and what it serves."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from app.observability import logs
from tests.conftest import FIXTURE_GRAPHS, ROOT, EngineUrls, free_port, scratch_database
from tests.processes import LgqlCluster, poll_until

RUN_AND_WAIT = (
    "mutation($input: RunInput!) { runAndWait(input: $input) { run { id threadId status } } }"
)
TEXT_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: "
)


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line, each of which must be one JSON object."""
    lines = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parsed = json.loads(line)
        assert isinstance(parsed, dict), line
        assert {"time", "level", "logger", "message"} <= parsed.keys(), line
        lines.append(parsed)
    return lines


def test_json_lines_carry_the_run_while_it_executes() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("lgql.test_logs")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("before")
        with logs.run_context("r1", "t1", "steps"):
            logger.warning("during %s", "the run")
            try:
                raise ValueError("boom")
            except ValueError:
                logger.exception("failed")
        logger.warning("after")
    finally:
        logger.removeHandler(handler)
    before, during, failed, after = json_lines(stream.getvalue())
    assert "run_id" not in before and "run_id" not in after
    assert during["message"] == "during the run"
    assert (during["run_id"], during["thread_id"], during["graph_id"]) == ("r1", "t1", "steps")
    assert failed["run_id"] == "r1" and "ValueError: boom" in failed["exception"]
    assert during["level"] == "WARNING" and during["logger"] == "lgql.test_logs"


async def test_processes_log_json_with_the_run_ids(
    engines: EngineUrls, database_uri: str, tmp_path: Path
) -> None:
    async with LgqlCluster(
        database_uri,
        engines.redis_uri,
        apis=1,
        workers=1,
        env_overrides={"LGQL_LOG_FORMAT": "json"},
        log_dir=tmp_path,
    ) as cluster:
        client = cluster.client(0)
        failed = await client.data(
            RUN_AND_WAIT, {"input": {"assistantId": "fail", "input": {"message": "kaput"}}}
        )
        run = failed["runAndWait"]["run"]
        assert run["status"] == "ERROR"
        worker_log = cluster.worker_procs[0].log

        async def logged_failure() -> list[dict[str, Any]] | None:
            text = await asyncio.to_thread(worker_log.read_text)
            lines = json_lines(text)
            return lines if any(line.get("run_id") == run["id"] for line in lines) else None

        await poll_until(logged_failure, deadline=60, what="the run's failure logged")
    # The cluster stopped its processes (SIGTERM): their logs are complete.
    api = json_lines(await asyncio.to_thread(cluster.api_procs[0].log.read_text))
    worker = json_lines(await asyncio.to_thread(worker_log.read_text))
    assert any(line["logger"] == "uvicorn" and "Started server" in line["message"] for line in api)
    ready = [line for line in worker if " ready: " in line["message"]]
    assert len(ready) == 1
    assert "graphs echo, steps" in ready[0]["message"] and "10 slots" in ready[0]["message"]
    of_run = [line for line in worker if line.get("run_id") == run["id"]]
    assert of_run and all(
        (line["thread_id"], line["graph_id"]) == (run["threadId"], "fail") for line in of_run
    )
    assert any("kaput" in line.get("exception", "") for line in of_run)
    everything = json.dumps([*api, *worker])
    assert "SIGUSR1" not in everything and "plugin" not in everything


async def test_migrate_is_quiet(engines: EngineUrls) -> None:
    async with scratch_database(engines.database_uri, prefix="lgql_logs") as url:
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "lgql", "migrate"],
            cwd=ROOT,
            env=_env({"DATABASE_URI": url, "LGQL_LOG_FORMAT": "json"}),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    assert "database migrated from (empty)" in done.stdout
    # Alembic's context and plugin lines are below WARNING: nothing is logged at all.
    assert json_lines(done.stderr) == []


async def test_dev_logs_one_text_format_and_stops_quietly(
    engines: EngineUrls, redis_prefix: str, redis_cleanup: None
) -> None:
    """`lgql dev` on a fresh database (it migrates), then Ctrl-C: every line in the one format,
    no Alembic plugin lines, no arq `shutdown on SIGUSR1`, and a worker that said what it serves."""
    port = free_port()
    async with scratch_database(engines.database_uri, prefix="lgql_logs") as url:
        proc = subprocess.Popen(  # noqa: ASYNC220 (a long-lived child, signalled below)
            [
                sys.executable,
                "-m",
                "lgql",
                "dev",
                "--config",
                str(FIXTURE_GRAPHS),
                "--port",
                str(port),
            ],
            cwd=ROOT,
            env=_env(
                {
                    "DATABASE_URI": url,
                    "REDIS_URI": engines.redis_uri,
                    "REDIS_KEY_PREFIX": f"{redis_prefix}_devlogs",
                }
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:

            async def answering() -> bool | None:
                assert proc.poll() is None, "lgql dev exited"
                with contextlib.suppress(httpx.TransportError):
                    async with httpx.AsyncClient(timeout=5) as http:
                        if (await http.get(f"http://127.0.0.1:{port}/ok")).status_code == 200:
                            return True
                return None

            await poll_until(answering, deadline=90, what="lgql dev to answer")
            proc.send_signal(signal.SIGINT)
            output, _ = await asyncio.to_thread(proc.communicate, timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines and all(TEXT_LINE.match(line) for line in lines), output
    assert "SIGUSR1" not in output and "plugin" not in output and "alembic" not in output
    assert "database migrated from (empty)" in output
    assert re.search(r"INFO lgql\.worker: worker \S+ ready: graphs echo, steps", output), output
    assert "INFO uvicorn: Application shutdown complete." in output


def _env(extra: dict[str, str]) -> dict[str, str]:
    import os

    scrub = ("DATABASE_URI", "REDIS_URI", "REDIS_KEY_PREFIX", "LGQL_CONFIG", "LGQL_LOG_FORMAT")
    env = {k: v for k, v in os.environ.items() if k not in scrub and not k.startswith("OTEL_")}
    return {**env, "LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1", **extra}


def test_langgraph_servers_log_json_switch_is_read() -> None:
    from app.settings import Settings

    assert Settings.model_validate({"LOG_JSON": "true"}).log_format == "json"
    assert Settings.model_validate({"LGQL_LOG_FORMAT": "json"}).log_format == "json"
    assert Settings.model_validate({}).log_format == "text"

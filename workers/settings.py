"""The arq worker: its settings class, start-up and shutdown.

Tasks are plain async functions taking `ctx`; shared resources (services: database, Redis, graphs)
are opened in `on_startup` and put on `ctx`, never created at import time.
"""

from __future__ import annotations

import os
import socket
from contextlib import AsyncExitStack
from typing import Any

from arq import cron
from arq.connections import RedisSettings
from arq.worker import Worker

from app.runtime.langgraph_config import load_langgraph_config
from app.services.container import Services, open_services
from app.settings import Settings, get_settings
from workers.heartbeat import heartbeat_key, report_heartbeat


def redis_settings(url: str) -> RedisSettings:
    # Retries keep a worker alive through a Redis restart (arq#386, #435).
    settings = RedisSettings.from_dsn(url)
    settings.retry_on_timeout = True
    settings.conn_retries = 10
    return settings


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def build_worker(
    settings: Settings,
    *,
    redis_uri: str,
    services: Services | None = None,
    database_uri: str | None = None,
    handle_signals: bool = True,
) -> Worker:
    """An arq worker on `redis_uri`. Given `services`, it shares them (the embedded worker of
    `lgql dev`); otherwise it opens its own from `database_uri` on start-up."""
    stack = AsyncExitStack()

    async def on_startup(ctx: dict[str, Any]) -> None:
        ctx["worker_id"] = worker_id()
        ctx["prefix"] = settings.redis_key_prefix
        if services is not None:
            ctx["services"] = services
            return
        if not database_uri:
            raise RuntimeError("DATABASE_URI is not set: a worker needs Postgres")
        config = load_langgraph_config(settings.config)
        ctx["services"] = await stack.enter_async_context(
            open_services(settings, config, database_uri=database_uri, redis_uri=redis_uri)
        )

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        # A stopped worker leaves the count at once instead of when its heartbeat expires.
        await ctx["redis"].delete(heartbeat_key(ctx["prefix"], ctx["worker_id"]))
        await stack.aclose()

    return Worker(
        functions=[],
        cron_jobs=[cron(report_heartbeat, second=set(range(0, 60, 10)), run_at_startup=True)],
        queue_name=f"{settings.redis_key_prefix}:queue",
        redis_settings=redis_settings(redis_uri),
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        max_jobs=settings.n_jobs_per_worker,
        keep_result=0,
        poll_delay=0.1,
        handle_signals=handle_signals,
        health_check_interval=10,
    )


def worker_from_env() -> Worker:
    settings = get_settings()
    if not settings.redis_uri:
        raise RuntimeError("REDIS_URI is not set: `lgql worker` needs Redis (and DATABASE_URI)")
    return build_worker(settings, redis_uri=settings.redis_uri, database_uri=settings.database_uri)

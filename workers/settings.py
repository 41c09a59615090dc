"""The arq worker: its settings, start-up and shutdown.

Tasks are plain async functions taking `ctx`; shared resources (services: database, Redis,
graphs) are opened in `on_startup` and put on `ctx`, never created at import time. arq only
wakes workers: which run may start, who owns it and how it ended live in Postgres.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from contextlib import AsyncExitStack
from typing import Any

from arq import func
from arq.connections import create_pool
from arq.worker import Worker

from app.broker import EXECUTE_RUN, SEND_WEBHOOK, redis_settings
from app.runtime.langgraph_config import load_langgraph_config
from app.services.container import Services, open_services
from app.settings import Settings, get_settings
from workers.cron_scheduler import schedule_crons_forever
from workers.heartbeat import report_heartbeats
from workers.runner import RunRunner
from workers.sweeper import sweep_forever
from workers.tasks import execute_run
from workers.ttl_sweeper import sweep_store_forever, sweep_threads_forever
from workers.webhooks import send_webhook


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class DoorbellWorker(Worker):
    """An arq worker that looks at the queue as soon as a run is enqueued (a Redis doorbell)
    instead of only every `poll_delay`: a run starts in about a millisecond, not a poll period."""

    async def main(self) -> None:
        # arq's own main() with its fixed-period `poll()` replaced by the doorbell wait.
        if self._pool is None:
            self._pool = await create_pool(
                self.redis_settings,
                job_deserializer=self.job_deserializer,
                job_serializer=self.job_serializer,
                default_queue_name=self.queue_name,
                expires_extra_ms=self.expires_extra_ms,
            )
        self.ctx["redis"] = self.pool
        if self.on_startup:
            await self.on_startup(self.ctx)
        services: Services = self.ctx["services"]
        while True:
            await self._poll_iteration()
            if self.burst and self.pool is not None:
                queued = await self.pool.zcard(self.queue_name)
                if queued == 0:
                    await asyncio.gather(*self.tasks.values())
                    return
            await services.broker.wait_for_ring(self.poll_delay_s)


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
    wid = worker_id()

    async def on_startup(ctx: dict[str, Any]) -> None:
        ctx["worker_id"] = wid
        ctx["prefix"] = settings.redis_key_prefix
        opened = services
        if opened is None:
            if not database_uri:
                raise RuntimeError("DATABASE_URI is not set: a worker needs Postgres")
            config = load_langgraph_config(settings.config)
            opened = await stack.enter_async_context(
                open_services(settings, config, database_uri=database_uri, redis_uri=redis_uri)
            )
        ctx["services"] = opened
        ctx["runner"] = RunRunner(opened, wid)
        ctx["background"] = [
            asyncio.create_task(sweep_forever(opened), name="lgql-sweeper"),
            asyncio.create_task(schedule_crons_forever(opened), name="lgql-crons"),
            asyncio.create_task(sweep_threads_forever(opened), name="lgql-thread-ttl"),
            asyncio.create_task(sweep_store_forever(opened), name="lgql-store-ttl"),
            asyncio.create_task(
                report_heartbeats(opened.redis, settings.redis_key_prefix, wid),
                name="lgql-heartbeat",
            ),
        ]

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        for task in ctx.get("background", []):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await stack.aclose()

    return DoorbellWorker(
        functions=[
            func(
                execute_run,
                name=EXECUTE_RUN,
                # Our own timeout (BG_JOB_TIMEOUT_SECS) ends runs TIMEOUT; arq's is a backstop.
                timeout=settings.bg_job_timeout_secs + 60,
                max_tries=1_000_000,
            ),
            # One delivery attempt per job; retries are scheduled from the outbox row.
            func(send_webhook, name=SEND_WEBHOOK, timeout=settings.webhook_timeout_seconds + 30),
        ],
        queue_name=f"{settings.redis_key_prefix}:queue",
        redis_settings=redis_settings(redis_uri),
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        max_jobs=settings.n_jobs_per_worker,
        keep_result=0,
        poll_delay=0.5,
        handle_signals=handle_signals,
        health_check_interval=10,
        # SIGTERM: stop taking jobs, let running ones finish this long, then hand them back.
        job_completion_wait=int(settings.bg_job_shutdown_grace_period_secs),
        retry_jobs=False,
        allow_abort_jobs=False,
    )


def worker_from_env() -> Worker:
    settings = get_settings()
    if not settings.redis_uri:
        raise RuntimeError("REDIS_URI is not set: `lgql worker` needs Redis (and DATABASE_URI)")
    return build_worker(settings, redis_uri=settings.redis_uri, database_uri=settings.database_uri)

"""The arq worker: its settings, start-up and shutdown.

Tasks are plain async functions taking `ctx`; shared resources (services: database, Redis,
graphs) are opened in `on_startup` and put on `ctx`, never created at import time. arq only
wakes workers: which run may start, who owns it and how it ended live in Postgres. The
cluster's periodic duties (firing crons, sweeping the queue, TTL sweeps) are arq cron jobs
(`workers.schedules`), one worker per tick; a worker's own duty (its heartbeat) is a task of
its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from typing import Any

from arq import func
from arq.connections import create_pool
from arq.cron import CronJob
from arq.worker import Worker
from redis.exceptions import RedisError

from app import faults, process_tuning
from app.messaging.queue import EXECUTE_RUN, SEND_WEBHOOK, redis_settings
from app.observability import metrics
from app.observability.exposition import serve_worker_metrics
from app.runtime.langgraph_config import ConfigError, load_langgraph_config
from app.services.container import Services, open_services
from app.settings import Settings, get_settings
from workers import schedules
from workers.heartbeat import Reachability, report_heartbeats
from workers.runner import RunRunner, run_quietly
from workers.tasks import wake_run
from workers.webhooks import send_webhook

log = logging.getLogger("lgql.worker")


#: Slots beyond the runs' for arq's own jobs: a worker whose runs fill their slots still does
#: the cluster's schedule ticks and delivers webhooks.
ARQ_JOB_SLOTS = 4


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class DoorbellWorker(Worker):
    """An arq worker that also takes run wake-ups (`app.messaging.wakeups`), and looks at arq's
    own queue (webhooks, delayed wake-ups) as soon as something is enqueued there (the doorbell)
    instead of only every `poll_delay`.

    One blocking `BZPOPMIN` on both sets serves both: a run starts about a millisecond after its
    wake-up, with two Redis commands per run instead of arq's job protocol. Runs count against
    the same `max_jobs` slots as arq's jobs and live in arq's `tasks`, so a SIGTERM waits for
    them (`job_completion_wait`) and then cancels them like any job: the runner hands the run
    back. Runs take at most `run_slots` of them: the rest (`ARQ_JOB_SLOTS`) keep arq's own jobs
    going (schedule ticks, webhooks, delayed wake-ups) on a worker whose runs fill its slots.
    """

    def __init__(self, *args: Any, run_slots: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.run_slots = run_slots
        self._runs = 0
        self._run_ended = asyncio.Event()

    async def main(self) -> None:
        await self._start_up()
        services: Services = self.ctx["services"]
        runner: RunRunner = self.ctx["runner"]
        reach: Reachability = self.ctx["reachability"]
        log.info(
            "worker %s ready: graphs %s; %d slots; queue %s (Postgres and Redis reachable)",
            self.ctx["worker_id"],
            ", ".join(services.graphs.graph_ids) or "(none)",
            self.run_slots,
            self.queue_name,
        )
        keys = [services.wakeups.key, services.broker.doorbell_key]
        loop = asyncio.get_running_loop()
        polled_at = -self.poll_delay_s
        failures = 0
        while True:
            # Redis going away (a restart, a failover) must never end the worker: every command
            # of this loop is retried with backoff, and runs woken meanwhile are woken again by
            # the sweeper once Redis is back (even if it came back empty).
            try:
                if loop.time() - polled_at >= self.poll_delay_s:
                    polled_at = loop.time()
                    await self._poll_iteration()
                    if self.burst and not await self._work_left(services):
                        await asyncio.gather(*self.tasks.values())
                        return
                if not self.allow_pick_jobs:  # shutting down: arq cancels us once jobs are done
                    await asyncio.sleep(self.poll_delay_s)
                    continue
                if self._runs >= self.run_slots:
                    # Every run slot is taken: wait for a run to end, looking at arq's queue
                    # (schedule ticks, webhooks) at each poll meanwhile.
                    self._run_ended.clear()
                    wait = max(0.0, polled_at + self.poll_delay_s - loop.time())
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._run_ended.wait(), wait)
                    continue
                await self.sem.acquire()
                try:
                    found = await self.pool.bzpopmin(keys, timeout=self.poll_delay_s)
                except BaseException:
                    self.sem.release()
                    raise
                key = found[0].decode() if found else None
                if key != services.wakeups.key or not self.allow_pick_jobs:
                    self.sem.release()
                    if key == services.wakeups.key:  # taken while stopping: give it back
                        await services.wakeups.wake([found[1].decode()])
                    elif key is not None:  # the doorbell: arq's queue has a job due
                        polled_at = -self.poll_delay_s
                    continue
                self._start_run(runner, found[1].decode())
            except (RedisError, OSError) as exc:
                failures += 1
                reach.failed("redis", exc)
                await asyncio.sleep(min(5.0, 0.05 * 2**failures))
                continue
            if failures:
                failures = 0
                reach.ok("redis")

    async def _start_up(self) -> None:
        """Connect and open the services; while Postgres or Redis is unreachable, say so and
        try again (a worker started during an outage, or with its dependencies, waits for them
        instead of exiting). Anything else (no DATABASE_URI, a database behind) still fails."""
        failures = 0
        while True:
            try:
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
                return
            except Exception as exc:
                if not faults.is_infrastructure_fault(exc):
                    raise
                failures += 1
                log.error(
                    "worker %s not ready: cannot start (%s: %s); retrying (not exiting)",
                    worker_id(),
                    type(exc).__name__,
                    exc,
                )
                await asyncio.sleep(min(5.0, 0.25 * 2**failures))

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        # arq takes a slot (semaphore and counter) before its first command for a job; if Redis
        # fails right there, the slot would be lost for good: give it back.
        for job_id in job_ids:
            counter, tasks = self.job_counter, len(self.tasks)
            try:
                await super().start_jobs([job_id])
            except BaseException:
                if self.job_counter == counter + 1 and len(self.tasks) == tasks:
                    self.job_counter -= 1
                    self.sem.release()
                raise

    def schedule(self, jobs: list[CronJob]) -> None:
        """Add cron jobs once their intervals are known (some come from langgraph.json, read
        with the services at start-up); arq looks at them at every poll."""
        self.cron_jobs.extend(jobs)
        self.functions.update({job.name: job for job in jobs})

    async def run_cron(self, n: datetime, delay: float, num_windows: int = 2) -> None:
        # A worker that fell behind (its loop busy, or stopped in a debugger) skips the ticks
        # it missed instead of enqueuing each of them late: other workers took them, and a
        # tick's job id would be free again once its result expired.
        stale = n - timedelta(seconds=delay * num_windows)
        for job in self.cron_jobs:
            if job.next_run is not None and job.next_run < stale:
                job.calculate_next(n)
        await super().run_cron(n, delay, num_windows)

    def _start_run(self, runner: RunRunner, run_id: str) -> None:
        self.job_counter += 1
        self._runs += 1
        task = asyncio.create_task(run_quietly(runner, run_id))
        task.add_done_callback(lambda _: self._run_done())
        # A key of its own per task: two wake-ups of one run may run at once (one of them finds
        # the run claimed and returns at once).
        self.tasks[f"run:{run_id}:{id(task)}"] = task

    def _run_done(self) -> None:
        self._runs -= 1
        self._run_ended.set()
        self._release_sem_dec_counter_on_complete()

    async def _work_left(self, services: Services) -> bool:
        queued = await self.pool.zcard(self.queue_name)
        return bool(queued or await services.wakeups.waiting() or self.tasks)


async def _ping(services: Services) -> None:
    async with services.db.pool.acquire() as conn:
        await conn.fetchval("SELECT 1")


async def _expose_metrics(ctx: dict[str, Any], settings: Settings, services: Services) -> None:
    """A worker process's own metrics: its pools sampled, and its `/metrics` listener when
    `--metrics-port` (LGQL_WORKER_METRICS_PORT) asks for one. (`lgql dev`'s in-process worker
    shares the API's `/metrics`.)"""
    ctx["metrics"] = [metrics.watch(services.db.pool, services.redis, services.system.queue)]
    port = settings.worker_metrics_port
    if port is None:
        return
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    host = settings.worker_metrics_host
    try:
        server = await serve_worker_metrics(host, port, token)
    except OSError as exc:  # a port taken or refused is a setting to fix, not an outage to wait out
        raise ConfigError(
            f"cannot serve worker metrics on {host}:{port} (LGQL_WORKER_METRICS_PORT, "
            f"--metrics-port): {exc.strerror or exc}"
        ) from None
    ctx["metrics"].append(server.close)


def embedded_worker(settings: Settings, services: Services) -> Worker:
    """The worker `lgql dev` runs inside the API process, on the API's services (the
    `WorkerFactory` `app.server.create_app` takes)."""
    return build_worker(
        settings, redis_uri=services.redis_uri, services=services, handle_signals=False
    )


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
        reach = ctx["reachability"] = Reachability(wid)
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
        metrics.worker_slots(settings.n_jobs_per_worker)
        if services is None:  # a worker process of its own: its start-up is done
            await _expose_metrics(ctx, settings, opened)
            process_tuning.freeze_startup_objects()
        worker.schedule(
            schedules.cron_jobs(
                settings,
                thread_sweep_seconds=opened.threads.ttl_config.sweep_interval_seconds,
                store_sweep_seconds=opened.store.backend.sweep_interval_seconds,
            )
        )
        ctx["background"] = [
            asyncio.create_task(
                report_heartbeats(
                    opened.redis,
                    settings.redis_key_prefix,
                    wid,
                    reachability=reach,
                    ping_postgres=lambda: _ping(opened),
                ),
                name="lgql-heartbeat",
            ),
        ]

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        for task in ctx.get("background", []):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for stop in ctx.get("metrics", []):
            stop()
        if "runner" in ctx:
            metrics.worker_stopped(settings.n_jobs_per_worker)
        await stack.aclose()

    worker = DoorbellWorker(
        functions=[
            # Delayed runs' wake-ups (the name is the one such jobs were always queued under).
            func(wake_run, name=EXECUTE_RUN, timeout=60),
            # One delivery attempt per job; retries are scheduled from the outbox row.
            func(send_webhook, name=SEND_WEBHOOK, timeout=settings.webhook_timeout_seconds + 30),
        ],
        queue_name=f"{settings.redis_key_prefix}:queue",
        redis_settings=redis_settings(redis_uri),
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        max_jobs=settings.n_jobs_per_worker + ARQ_JOB_SLOTS,
        run_slots=settings.n_jobs_per_worker,
        keep_result=0,
        poll_delay=0.5,
        handle_signals=handle_signals,
        health_check_interval=10,
        # SIGTERM: stop taking jobs, let running ones finish this long, then hand them back.
        job_completion_wait=int(settings.bg_job_shutdown_grace_period_secs),
        retry_jobs=False,
        allow_abort_jobs=False,
    )
    return worker


def worker_from_env() -> Worker:
    settings = get_settings()
    if not settings.redis_uri:
        raise RuntimeError("REDIS_URI is not set: `lgql worker` needs Redis (and DATABASE_URI)")
    return build_worker(settings, redis_uri=settings.redis_uri, database_uri=settings.database_uri)

"""Schedules: the duties of the cluster, done once per tick by whichever worker takes the tick.

Each is an arq cron job. Every worker enqueues each tick under the same job id (arq names a cron
job's tick `<name>:<time>`), so one enqueue wins and one worker runs it; the tick's result is kept
a while, so a worker that comes late to a tick finds it taken, not due (`keep_result`).

- `fire_crons`: starts the runs of the crons due now (`LGQL_CRON_INTERVAL_SECONDS`, LangGraph's
  `CRON_SCHEDULER_SLEEP_TIME`). Each firing is also claimed in Postgres (SKIP LOCKED, the cron
  advanced in the transaction that creates its run): a cron fires once per due time even if two
  ticks overlapped.
- `sweep_runs`: returns runs whose lease lapsed to the queue (or ends them ERROR when out of
  attempts), wakes pending runs that could start but have not (delayed runs now due, lost
  wake-ups), and re-enqueues due webhooks (`LGQL_SWEEP_INTERVAL_SECONDS`).
- `sweep_threads`, `sweep_store`: remove what outlived its TTL (langgraph.json
  `checkpointer.ttl.sweep_interval_minutes`, `store.ttl.sweep_interval_minutes`).

What each worker does for itself (its heartbeat) is not here. Ticks fall on the wall clock, every
interval rounded to whole seconds (arq's cron resolution; at least one second): a 2 s sweep runs
at :00, :02, :04…; intervals that do not divide a minute (or an hour, a day) restart at its top.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from arq.cron import CronJob, cron

from app import faults
from app.services import run_lifecycle as lifecycle
from app.services.container import Services
from app.services.run_lifecycle import RunTx
from app.settings import Settings

log = logging.getLogger("lgql.schedules")

#: How long a tick's result is kept (at least), so that no worker runs that tick again.
KEEP_TICK_SECONDS = 120.0


def every(seconds: float) -> dict[str, Any]:
    """arq cron fields for a tick every `seconds` (whole seconds, at least one)."""
    step = max(1, round(seconds))
    if step < 60:
        return {"second": set(range(0, 60, step))}
    if step < 3600:
        return {"minute": set(range(0, 60, max(1, step // 60))), "second": 0}
    if step < 86400:
        return {"hour": set(range(0, 24, max(1, step // 3600))), "minute": 0, "second": 0}
    return {"hour": 0, "minute": 0, "second": 0}


async def sweep_once(services: Services) -> tuple[int, int]:
    """One sweep of the run queue. Returns (leases lapsed, runs woken)."""
    settings = services.settings
    lapsed = await services.execution.lapse_leases(max_attempts=settings.bg_job_max_retries)
    requeued: list[str] = []
    for run in lapsed:
        if run.status == "error":
            log.error("run %s failed: %s", run.run_id, (run.error or {}).get("message"))
        else:
            log.warning("run %s lost its worker; requeued (attempt %s)", run.run_id, run.attempt)
            requeued.append(str(run.run_id))
    async with services.db.pool.acquire() as conn:
        startable = await lifecycle.startable(
            RunTx(conn), grace_seconds=settings.sweep_interval_seconds
        )
    # One wake-up per run however often it is swept: a run still queued (a backlog during a
    # burst) is not queued again, so workers never try to claim it twice for one wait.
    await services.wakeups.wake([*requeued, *(str(r) for r in startable)])
    # Webhooks whose wake-up job was lost (Redis restart, crashed worker) or whose retry is due.
    await services.webhooks.requeue_due()
    return len(lapsed), len(startable)


async def _tick(ctx: dict[str, Any], what: str, duty: Callable[[], Awaitable[object]]) -> None:
    """Run one tick of a duty. A failure is logged and waits for the next tick (an outage is
    logged without a traceback: the heartbeat reports it as readiness; anything else is a bug
    worth its traceback)."""
    try:
        done = await duty()
    except Exception as exc:
        log.warning(
            "%s failed; next tick retries: %s: %s",
            what,
            type(exc).__name__,
            exc,
            exc_info=not faults.is_infrastructure_fault(exc),
        )
        return
    # The tick is named by its deployment (the Redis prefix) and its time (arq's score: when it
    # was due), whichever job ran it.
    prefix = ctx["services"].settings.redis_key_prefix
    log.debug("%s (tick %s@%s): %s", what, prefix, ctx.get("score"), done)


async def fire_crons(ctx: dict[str, Any]) -> None:
    services: Services = ctx["services"]

    async def fire() -> int:
        fired = await services.crons.fire_due()
        if fired:
            log.info("started %s cron run(s)", fired)
        return fired

    await _tick(ctx, "firing crons", fire)


async def sweep_runs(ctx: dict[str, Any]) -> None:
    services: Services = ctx["services"]
    await _tick(ctx, "run sweep", lambda: sweep_once(services))


async def sweep_threads(ctx: dict[str, Any]) -> None:
    services: Services = ctx["services"]
    await _tick(ctx, "thread TTL sweep", services.threads.sweep_expired)


async def sweep_store(ctx: dict[str, Any]) -> None:
    services: Services = ctx["services"]
    await _tick(ctx, "store TTL sweep", services.store.backend.sweep_expired)


def cron_jobs(
    settings: Settings, *, thread_sweep_seconds: float, store_sweep_seconds: float
) -> list[CronJob]:
    """The schedules, named after the deployment's Redis prefix: arq's job ids are not scoped
    by queue, and two deployments sharing a Redis must not take each other's ticks."""

    def job(duty: Any, seconds: float) -> CronJob:
        return cron(
            duty,
            name=f"{settings.redis_key_prefix}:{duty.__name__}",
            keep_result=max(KEEP_TICK_SECONDS, 3 * seconds),
            max_tries=1,
            **every(seconds),
        )

    return [
        job(fire_crons, settings.cron_interval_seconds),
        job(sweep_runs, settings.sweep_interval_seconds),
        job(sweep_threads, thread_sweep_seconds),
        job(sweep_store, store_sweep_seconds),
    ]

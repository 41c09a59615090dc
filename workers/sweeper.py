"""The sweeper: a small loop in every worker that keeps the queue honest.

Every `LGQL_SWEEP_INTERVAL_SECONDS` it (1) returns runs whose lease lapsed to the queue (or ends
them ERROR when out of attempts), and (2) wakes pending runs that could start but have not, such
as delayed runs now due, or runs whose wake-up message was lost. Several workers sweeping at once
is harmless: leases are taken with SKIP LOCKED and starting a run is a conditional claim.
"""

from __future__ import annotations

import asyncio
import logging

from app import faults
from app.services import run_lifecycle as lifecycle
from app.services.container import Services
from app.services.run_lifecycle import RunTx

log = logging.getLogger("lgql.sweeper")


async def sweep_once(services: Services) -> tuple[int, int]:
    """One pass. Returns (leases lapsed, runs woken)."""
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


async def sweep_forever(services: Services) -> None:
    while True:
        try:
            await sweep_once(services)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a blip of Postgres or Redis must not end the loop
            # An outage is logged once per sweep without a traceback (the heartbeat reports
            # it as readiness); anything else is a bug worth its traceback.
            log.warning(
                "sweep failed; retrying: %s: %s",
                type(exc).__name__,
                exc,
                exc_info=not faults.is_infrastructure_fault(exc),
            )
        await asyncio.sleep(services.settings.sweep_interval_seconds)

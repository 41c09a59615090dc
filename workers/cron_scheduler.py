"""The cron scheduler: a small loop in every worker that fires due crons.

Every `LGQL_CRON_INTERVAL_SECONDS` (LangGraph's `CRON_SCHEDULER_SLEEP_TIME`, 5 s) it asks
`CronService.fire_due` to start the runs of the crons due now. Any number of workers may do so at
once: crons are claimed with SKIP LOCKED and advanced in the transaction that creates their runs.
"""

from __future__ import annotations

import asyncio
import logging

from app.services.container import Services

log = logging.getLogger("lgql.crons")


async def schedule_crons_forever(services: Services) -> None:
    while True:
        try:
            fired = await services.crons.fire_due()
            if fired:
                log.info("started %s cron run(s)", fired)
        except asyncio.CancelledError:
            raise
        except Exception:  # a blip of Postgres or Redis must not end the loop
            log.warning("firing crons failed; retrying", exc_info=True)
        await asyncio.sleep(services.settings.cron_interval_seconds)

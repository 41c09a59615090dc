"""Placeholder: the cron scheduler loop (issue 5, cron part) is being written here."""

from __future__ import annotations

import asyncio

from app.services.container import Services


async def schedule_crons_forever(services: Services) -> None:
    while True:
        await services.crons.fire_due()
        await asyncio.sleep(services.settings.cron_interval_seconds)

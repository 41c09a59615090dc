"""TTL sweepers: small loops in every worker that remove what has outlived its time-to-live.

Threads (langgraph.json `checkpointer.ttl`) and store items (`store.ttl`) each have their own
cadence. Several workers sweeping at once is harmless: each takes rows with SKIP LOCKED.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from app.services.container import Services

log = logging.getLogger("lgql.ttl")


async def _every(interval: float, name: str, sweep: Callable[[], Awaitable[object]]) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            swept = await sweep()
            log.debug("%s sweep: %s", name, swept)
        except asyncio.CancelledError:
            raise
        except Exception:  # a blip of Postgres must not end the loop
            log.warning("%s TTL sweep failed; retrying", name, exc_info=True)


async def sweep_threads_forever(services: Services) -> None:
    threads = services.threads
    await _every(threads.ttl_config.sweep_interval_seconds, "thread", threads.sweep_expired)


async def sweep_store_forever(services: Services) -> None:
    store = services.store.backend
    await _every(store.sweep_interval_seconds, "store", store.sweep_expired)

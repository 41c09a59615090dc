"""arq tasks: plain async functions taking `ctx`."""

from __future__ import annotations

from typing import Any

from app.services.container import Services


async def wake_run(ctx: dict[str, Any], run_id: str) -> None:
    """A delayed run (`afterSeconds`) is due: wake it like any run, so that every run starts
    through the same wake-up queue and counts against the same slots."""
    services: Services = ctx["services"]
    await services.wakeups.wake([run_id])

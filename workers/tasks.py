"""arq tasks: plain async functions taking `ctx`."""

from __future__ import annotations

import uuid
from typing import Any

from workers.runner import RunRunner


async def execute_run(ctx: dict[str, Any], run_id: str) -> None:
    """Start `run_id` if it may start now (else return: whoever ends the run ahead of it, or the
    sweeper, wakes it again) and execute it."""
    runner: RunRunner = ctx["runner"]
    await runner.run(uuid.UUID(run_id))

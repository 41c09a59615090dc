"""A run's `createdAt` is stamped under its thread's lock: of runs racing to interrupt each other,
the one left standing is the newest (issue 10, item 6)."""

from __future__ import annotations

import asyncio

from app.services.run_request import MultitaskStrategy, RunRequest
from tests.conftest import EngineUrls, private_services


async def test_the_run_that_wins_an_interrupt_race_has_the_newest_created_at(
    engines: EngineUrls, redis_prefix: str
) -> None:
    async with private_services(engines, redis_prefix, name="order") as services:
        thread = await services.threads.create(graph_id="echo")
        body = {"messages": [{"role": "user", "content": "hi"}]}

        async def create() -> None:
            await services.runs.create(
                RunRequest(
                    assistant_id="echo",
                    thread_id=str(thread.thread_id),
                    input=body,
                    multitask_strategy=MultitaskStrategy.INTERRUPT,
                )
            )

        await asyncio.gather(*(create() for _ in range(40)))
        async with services.db.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT status, created_at FROM runs WHERE thread_id = $1", thread.thread_id
            )
    assert len(rows) == 40
    (winner,) = [r for r in rows if r["status"] == "pending"]
    assert all(r["status"] == "interrupted" for r in rows if r is not winner)
    assert winner["created_at"] == max(r["created_at"] for r in rows)

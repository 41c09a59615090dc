"""The cluster's schedules (`workers/schedules.py`) are arq cron jobs: with two workers, each
tick is done by one of them. Two real arq workers run in this process, each on services of its
own (as two worker processes would), on a database and Redis prefix no other worker serves.

A due cron fires once (read from the runs table); each tick of each schedule runs once (read
from the schedules' own log lines, which name the tick by its deployment and the time it was due).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import text

from app.db.migrate import upgrade
from app.runtime.langgraph_config import load_langgraph_config
from app.services.container import Services, open_services
from tests.conftest import EngineUrls, make_settings, scratch_database
from tests.helpers import eventually
from workers.schedules import every
from workers.worker import build_worker

YEARLY = "0 0 1 1 *"


def test_intervals_become_arq_cron_sets() -> None:
    assert every(0.2) == {"second": set(range(60))}  # arq's resolution: a second
    assert every(2) == {"second": set(range(0, 60, 2))}
    assert every(300) == {"minute": set(range(0, 60, 5)), "second": 0}
    assert every(3600) == {"hour": set(range(24)), "minute": 0, "second": 0}


@contextlib.asynccontextmanager
async def running_workers(
    engines: EngineUrls, count: int, **overrides: Any
) -> AsyncIterator[list[Services]]:
    """`count` arq workers in this process, on services of their own each, over a database and
    Redis prefix of their own; yields their services."""
    prefix = f"lgql_test_sched_{uuid.uuid4().hex[:8]}"
    settings = make_settings(prefix, cron_interval_seconds=1, sweep_interval_seconds=1, **overrides)
    config = load_langgraph_config(settings.config)
    async with (
        scratch_database(engines.database_uri, prefix="lgql_schedules") as url,
        contextlib.AsyncExitStack() as stack,
    ):
        await upgrade(url)
        opened: list[Services] = []
        runs: list[tuple[Any, asyncio.Task[None]]] = []
        for _ in range(count):
            services = await stack.enter_async_context(
                open_services(settings, config, database_uri=url, redis_uri=engines.redis_uri)
            )
            worker = build_worker(
                settings, redis_uri=engines.redis_uri, services=services, handle_signals=False
            )
            runs.append((worker, asyncio.create_task(worker.async_run())))
            opened.append(services)
        try:
            yield opened
        finally:
            for worker, task in runs:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await worker.close()


@pytest_asyncio.fixture(loop_scope="session")
async def two_workers(engines: EngineUrls) -> AsyncIterator[list[Services]]:
    async with running_workers(engines, 2) as opened:
        yield opened


async def due_cron(services: Services, **payload: Any) -> uuid.UUID:
    """A stateless cron, due now."""
    cron = await services.crons.create(
        assistant_id=payload.pop("assistant_id", "echo"),
        schedule=YEARLY,
        on_run_completed="keep",
        payload=payload or {"input": {"messages": [{"role": "user", "content": "tick"}]}},
    )
    async with services.db.sessions.begin() as session:
        await session.execute(
            text("UPDATE crons SET next_run_at = now() - interval '1 minute' WHERE cron_id = :id"),
            {"id": cron.cron_id},
        )
    return cron.cron_id


async def runs_of_cron(services: Services, cron_id: uuid.UUID) -> list[Any]:
    async with services.db.sessions() as session:
        result = await session.execute(
            text("SELECT run_id, status FROM runs WHERE metadata->>'cron_id' = :id"),
            {"id": str(cron_id)},
        )
        return list(result)


def _ticks(caplog: pytest.LogCaptureFixture, what: str, prefix: str) -> Counter[object]:
    """How many times each tick of `what` ran in the deployment of `prefix` (by the time it
    was due), in either of its workers."""
    return Counter(
        r.args[2]
        for r in caplog.records
        if r.name == "lgql.schedules" and isinstance(r.args, tuple) and r.args[:2] == (what, prefix)
    )


@pytest.mark.timeout(180)
async def test_two_workers_fire_a_due_cron_once_and_sweep_once_per_tick(
    two_workers: list[Services], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="lgql.schedules")
    services = two_workers[0]
    prefix = services.settings.redis_key_prefix
    cron_id = await due_cron(services)
    await eventually(lambda: runs_of_cron(services, cron_id), within=60, what="the cron's run")
    # Several ticks of both schedules after the firing: time for a second firing, if one were
    # to happen, and ticks enough to see whether any of them ran twice.
    firing_ticks = len(_ticks(caplog, "firing crons", prefix))
    await eventually(
        lambda: (
            len(_ticks(caplog, "firing crons", prefix)) >= firing_ticks + 3
            and len(_ticks(caplog, "run sweep", prefix)) >= 3
        ),
        within=60,
        what="three more ticks of each schedule",
    )
    assert len(await runs_of_cron(services, cron_id)) == 1
    for what in ("firing crons", "run sweep"):
        ticks = _ticks(caplog, what, prefix)
        assert ticks and set(ticks.values()) == {1}, (what, ticks)
    async with services.db.sessions() as session:
        due = await session.scalar(
            text("SELECT next_run_at <= now() FROM crons WHERE cron_id = :id"),
            {"id": cron_id},
        )
    assert due is False


@pytest.mark.timeout(180)
async def test_a_worker_whose_runs_fill_its_slots_still_fires_crons(engines: EngineUrls) -> None:
    async with running_workers(engines, 1, n_jobs_per_worker=1) as (services,):
        busy = await due_cron(services, assistant_id="slow", input={"seconds": 120})

        async def running() -> bool:
            return any(r.status == "running" for r in await runs_of_cron(services, busy))

        await eventually(running, within=60, what="a run holding the worker's only run slot")
        # The cron fires (its run waits for the slot) while the slow run holds it.
        cron_id = await due_cron(services)
        fired = await eventually(
            lambda: runs_of_cron(services, cron_id), within=60, what="the second cron's run"
        )
        assert [r.status for r in fired] == ["pending"]
        assert await running()

"""Firing crons: at the service level (`CronService.fire_due`, several callers at once, on a
database of this module's own where no worker runs) and with two real worker processes.

A test makes a cron due by moving its `next_run_at` into the past in SQL; "exactly once" is read
from the runs table (each run carries `metadata.cron_id`). Deadlines only guard against hangs.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from sqlalchemy import text

from app.db.engine import asyncpg_url
from app.db.migrate import upgrade
from app.errors import Conflict
from app.runtime.langgraph_config import load_langgraph_config
from app.services.container import Services, open_services
from app.services.cron_request import next_run_after
from app.services.run_request import MultitaskStrategy, RunRequest
from tests.conftest import EngineUrls, make_settings, scratch_database
from tests.processes import LgqlCluster, poll_until

HOURLY = "0 * * * *"
YEARLY = "0 0 1 1 *"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def own_database(engines: EngineUrls) -> AsyncIterator[str]:
    async with scratch_database(engines.database_uri, prefix="lgql_crons") as url:
        await upgrade(url)
        yield url


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def prefix(engines: EngineUrls) -> AsyncIterator[str]:
    name = f"lgql_test_{uuid.uuid4().hex[:12]}"
    yield name
    client = aioredis.from_url(engines.redis_uri)
    try:
        keys = [k async for k in client.scan_iter(match=f"{name}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def _open(engines: EngineUrls, database_uri: str, prefix: str) -> Any:
    settings = make_settings(prefix)
    return open_services(
        settings,
        load_langgraph_config(settings.config),
        database_uri=database_uri,
        redis_uri=engines.redis_uri,
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def services(engines: EngineUrls, own_database: str, prefix: str) -> AsyncIterator[Services]:
    async with _open(engines, own_database, prefix) as opened:
        yield opened


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def other_process(
    engines: EngineUrls, own_database: str, prefix: str
) -> AsyncIterator[Services]:
    """A second set of services (own pools) on the same database: stands for another worker."""
    async with _open(engines, own_database, prefix) as opened:
        yield opened


@pytest_asyncio.fixture(autouse=True, loop_scope="session")
async def no_crons(services: Services) -> None:
    """Each test counts firings of its own crons only."""
    async with services.db.sessions.begin() as session:
        await session.execute(text("DELETE FROM crons"))


async def make_due(services: Services, cron_id: uuid.UUID, *, ago: timedelta) -> None:
    async with services.db.sessions.begin() as session:
        await session.execute(
            text(
                "UPDATE crons SET next_run_at = now() - CAST(:ago AS interval) WHERE cron_id = :id"
            ),
            {"ago": ago, "id": cron_id},
        )


async def runs_of(services: Services, cron_id: uuid.UUID) -> list[Any]:
    async with services.db.sessions() as session:
        result = await session.execute(
            text(
                "SELECT run_id, thread_id, metadata, kwargs, multitask_strategy FROM runs "
                "WHERE metadata->>'cron_id' = :id ORDER BY created_at"
            ),
            {"id": str(cron_id)},
        )
        return list(result)


async def stateless(services: Services, **fields: Any) -> Any:
    return await services.crons.create(
        assistant_id=fields.pop("assistant_id", "echo"),
        schedule=fields.pop("schedule", HOURLY),
        on_run_completed=fields.pop("on_run_completed", "keep"),
        **fields,
    )


async def on_thread(services: Services, **fields: Any) -> Any:
    thread = await services.threads.create()
    return await services.crons.create(
        assistant_id=fields.pop("assistant_id", "echo"),
        schedule=fields.pop("schedule", HOURLY),
        thread_id=str(thread.thread_id),
        **fields,
    )


# --- the schedule ------------------------------------------------------------------------------


def test_next_run_is_read_in_the_crons_timezone() -> None:
    winter = datetime(2024, 1, 15, 15, 0, tzinfo=UTC)  # 10:00 in New York (EST)
    assert next_run_after("0 9 * * *", "America/New_York", winter) == datetime(
        2024, 1, 16, 14, 0, tzinfo=UTC
    )
    summer = datetime(2024, 7, 1, 12, 0, tzinfo=UTC)  # 08:00 in New York (EDT)
    assert next_run_after("0 9 * * *", "America/New_York", summer) == datetime(
        2024, 7, 1, 13, 0, tzinfo=UTC
    )
    assert next_run_after("0 9 * * *", "UTC", summer) == datetime(2024, 7, 2, 9, 0, tzinfo=UTC)
    # Strictly after: a cron due exactly now next fires at its following time.
    assert next_run_after("* * * * *", "UTC", summer) == summer + timedelta(minutes=1)


# --- exactly once -------------------------------------------------------------------------------


async def test_concurrent_schedulers_fire_each_due_cron_once(
    services: Services, other_process: Services
) -> None:
    crons = [await on_thread(services) for _ in range(8)]
    crons += [await stateless(services) for _ in range(8)]
    for round_ in (1, 2):
        for cron in crons:
            await make_due(services, cron.cron_id, ago=timedelta(minutes=5))
        fired = await asyncio.gather(
            *(svc.crons.fire_due() for svc in (services, other_process) for _ in range(4))
        )
        assert sum(fired) == len(crons)
        for cron in crons:
            assert len(await runs_of(services, cron.cron_id)) == round_
            after = await services.crons.get(cron.cron_id)
            assert after.next_run_at is not None and after.next_run_at > datetime.now(UTC)
        assert await services.crons.fire_due() == 0


async def test_a_batch_larger_than_the_batch_size_fires_whole(services: Services) -> None:
    crons = [await stateless(services) for _ in range(7)]
    for cron in crons:
        await make_due(services, cron.cron_id, ago=timedelta(minutes=1))
    small = services.crons.batch_size
    services.crons.batch_size = 3
    try:
        assert await services.crons.fire_due() == 7
    finally:
        services.crons.batch_size = small
    for cron in crons:
        assert len(await runs_of(services, cron.cron_id)) == 1


async def test_missed_firings_after_downtime_collapse_into_one(services: Services) -> None:
    cron = await stateless(services, schedule=HOURLY)
    await make_due(services, cron.cron_id, ago=timedelta(days=3))  # 72 missed hours
    assert await services.crons.fire_due() == 1
    assert await services.crons.fire_due() == 0
    assert len(await runs_of(services, cron.cron_id)) == 1
    after = await services.crons.get(cron.cron_id)
    now = datetime.now(UTC)
    assert after.next_run_at is not None
    assert now < after.next_run_at <= now + timedelta(hours=1)
    assert (after.next_run_at.minute, after.next_run_at.second) == (0, 0)


# --- what does not fire --------------------------------------------------------------------------


async def test_a_cron_past_its_end_time_stops_firing_but_stays(services: Services) -> None:
    ended = await stateless(services, end_time=datetime.now(UTC) - timedelta(minutes=1))
    ending = await stateless(services, end_time=datetime.now(UTC) + timedelta(days=1))
    for cron in (ended, ending):
        await make_due(services, cron.cron_id, ago=timedelta(minutes=5))
    assert await services.crons.fire_due() == 1
    assert await runs_of(services, ended.cron_id) == []
    assert len(await runs_of(services, ending.cron_id)) == 1
    kept = await services.crons.get(ended.cron_id)
    assert kept.enabled and kept.next_run_at is not None
    assert kept.next_run_at < datetime.now(UTC)  # still "due", yet past its end
    # Lifting the end time lets it fire again (once, however long it waited).
    await services.crons.update(str(ended.cron_id), end_time=None)
    assert await services.crons.fire_due() == 1
    assert len(await runs_of(services, ended.cron_id)) == 1


async def test_a_disabled_cron_does_not_fire(services: Services) -> None:
    cron = await stateless(services, enabled=False)
    await make_due(services, cron.cron_id, ago=timedelta(minutes=5))
    assert await services.crons.fire_due() == 0
    assert await runs_of(services, cron.cron_id) == []
    # Enabling it counts its next time from now: no firing for the time it was off.
    enabled = await services.crons.update(str(cron.cron_id), enabled=True)
    assert enabled.next_run_at is not None and enabled.next_run_at > datetime.now(UTC)
    assert await services.crons.fire_due() == 0
    await make_due(services, cron.cron_id, ago=timedelta(seconds=1))
    assert await services.crons.fire_due() == 1


async def test_one_cron_that_cannot_fire_does_not_block_the_others(services: Services) -> None:
    assistant = await services.assistants.create(graph_id="echo")
    orphan = await stateless(services, assistant_id=str(assistant.assistant_id))
    await services.assistants.delete(str(assistant.assistant_id))
    busy_thread = await services.threads.create()
    await services.runs.create(
        RunRequest(assistant_id="echo", thread_id=str(busy_thread.thread_id))
    )
    rejected = await services.crons.create(
        assistant_id="echo",
        schedule=HOURLY,
        thread_id=str(busy_thread.thread_id),
        payload={"multitask_strategy": MultitaskStrategy.REJECT.value},
    )
    good = [await stateless(services), await on_thread(services)]
    for cron in (orphan, rejected, *good):
        await make_due(services, cron.cron_id, ago=timedelta(minutes=1))
    assert await services.crons.fire_due() == 2
    for cron in good:
        assert len(await runs_of(services, cron.cron_id)) == 1
    for cron in (orphan, rejected):
        assert await runs_of(services, cron.cron_id) == []
        after = await services.crons.get(cron.cron_id)
        assert after.next_run_at is not None and after.next_run_at > datetime.now(UTC)
    with pytest.raises(Conflict):  # the thread is still busy: REJECT refuses as for any run
        await services.runs.create(
            RunRequest(
                assistant_id="echo",
                thread_id=str(busy_thread.thread_id),
                multitask_strategy=MultitaskStrategy.REJECT,
            )
        )


async def test_deleting_a_thread_deletes_its_crons(services: Services) -> None:
    cron = await on_thread(services)
    assert cron.thread_id is not None
    await services.threads.delete(str(cron.thread_id))
    async with services.db.sessions() as session:
        left = await session.execute(
            text("SELECT count(*) FROM crons WHERE cron_id = :id"), {"id": cron.cron_id}
        )
        assert left.scalar_one() == 0


# --- what a firing creates ----------------------------------------------------------------------


async def test_a_firing_is_a_normal_run_carrying_the_cron(services: Services) -> None:
    cron = await on_thread(
        services,
        metadata={"team": "a", "shared": "cron"},
        payload={
            "metadata": {"shared": "run", "kind": "nightly"},
            "config": {"configurable": {"model": "m"}},
            "input": {"messages": [{"role": "user", "content": "hi"}]},
            "multitask_strategy": "interrupt",
        },
    )
    await make_due(services, cron.cron_id, ago=timedelta(minutes=1))
    assert await services.crons.fire_due() == 1
    [run] = await runs_of(services, cron.cron_id)
    assert run.thread_id == cron.thread_id
    assert run.multitask_strategy == "interrupt"
    cid = str(cron.cron_id)
    assert run.metadata == {"team": "a", "shared": "run", "kind": "nightly", "cron_id": cid}
    assert run.kwargs["config"]["configurable"] == {"model": "m", "cron_id": cid}
    assert run.kwargs["input"] == {"messages": [{"role": "user", "content": "hi"}]}
    assert run.kwargs["temporary"] is False
    record = await services.runs.get(run.run_id)
    assert record.status == "pending"


async def test_stateless_firings_each_get_a_new_thread(services: Services) -> None:
    deleting = await stateless(services, on_run_completed="delete", payload={"context": {"u": 1}})
    keeping = await stateless(services, on_run_completed="keep")
    for _ in range(2):
        for cron in (deleting, keeping):
            await make_due(services, cron.cron_id, ago=timedelta(minutes=1))
        assert await services.crons.fire_due() == 2
    for cron, temporary in ((deleting, True), (keeping, False)):
        runs = await runs_of(services, cron.cron_id)
        assert len(runs) == 2
        assert len({r.thread_id for r in runs}) == 2
        assert all(r.kwargs["temporary"] is temporary for r in runs)
    # A payload with `context` still gets `configurable.cron_id`, beside its context.
    first = (await runs_of(services, deleting.cron_id))[0]
    assert first.kwargs["context"] == {"u": 1}
    assert first.kwargs["config"]["configurable"] == {"cron_id": str(deleting.cron_id)}
    thread = await services.threads.get(first.thread_id)
    assert thread.metadata_["cron_id"] == str(deleting.cron_id)


# --- two real worker processes -------------------------------------------------------------------

CREATE = """
mutation($input: CreateCronInput!) { createCron(input: $input) { id threadId } }
"""


@pytest.mark.timeout(300)
async def test_two_worker_processes_fire_each_due_time_once(engines: EngineUrls) -> None:
    async with (
        scratch_database(engines.database_uri, prefix="lgql_crons_cluster") as url,
        LgqlCluster(
            url,
            engines.redis_uri,
            apis=1,
            workers=2,
            env_overrides={"LGQL_CRON_INTERVAL_SECONDS": "0.2"},
        ) as cluster,
    ):
        client = cluster.client(0)
        crons: list[dict[str, Any]] = []
        for n in range(12):
            fields: dict[str, Any] = {
                "assistantId": "echo",
                "schedule": YEARLY,
                "input": {"messages": [{"role": "user", "content": f"cron {n}"}]},
            }
            if n % 2:
                fields["onRunCompleted"] = "KEEP"
            else:
                thread = await client.data("mutation { createThread { id } }")
                fields["threadId"] = thread["createThread"]["id"]
            crons.append((await client.data(CREATE, {"input": fields}))["createCron"])
        ids = [uuid.UUID(c["id"]) for c in crons]
        conn = await asyncpg.connect(asyncpg_url(url))
        try:
            for round_ in (1, 2):
                await conn.execute(
                    "UPDATE crons SET next_run_at = now() - interval '10 minutes' "
                    "WHERE cron_id = ANY($1)",
                    ids,
                )

                async def all_ended(expected: int = round_) -> bool | None:
                    rows = await conn.fetch(
                        "SELECT metadata->>'cron_id' AS cron_id, status FROM runs "
                        "WHERE metadata ? 'cron_id'"
                    )
                    done = [r for r in rows if r["status"] not in ("pending", "running")]
                    return True if len(done) >= expected * len(ids) else None

                await poll_until(all_ended, deadline=120, what="the crons' runs", cluster=cluster)
                # Let any second firing that would wrongly happen show up before counting.
                await asyncio.sleep(1.0)
                rows = await conn.fetch(
                    "SELECT metadata->>'cron_id' AS cron_id, status FROM runs "
                    "WHERE metadata ? 'cron_id'"
                )
                per_cron = {str(i): 0 for i in ids}
                for row in rows:
                    per_cron[row["cron_id"]] += 1
                    assert row["status"] == "success", dict(row)
                assert per_cron == {str(i): round_ for i in ids}
                due_left = await conn.fetchval(
                    "SELECT count(*) FROM crons WHERE next_run_at <= now() AND cron_id = ANY($1)",
                    ids,
                )
                assert due_left == 0
            assert len(cluster.live_workers()) == 2
        finally:
            await conn.close()

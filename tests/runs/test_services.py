"""The service layer on its own: what GraphQL clients rely on, without the transport."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from app.db.models import Run
from app.errors import BadUserInput, Conflict, NotFound
from app.pagination import PageRequest
from app.runtime.graphs import default_assistant_id
from app.runtime.langgraph_config import load_langgraph_config
from app.services.assistants import AssistantFilter
from app.services.common import IfExists
from app.services.container import Services, open_services
from app.services.threads import ThreadFilter
from tests.conftest import EngineUrls, make_settings, private_services


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def services(
    engines: EngineUrls, database_uri: str, redis_prefix: str
) -> AsyncIterator[Services]:
    settings = make_settings(redis_prefix)
    async with open_services(
        settings,
        load_langgraph_config(settings.config),
        database_uri=database_uri,
        redis_uri=engines.redis_uri,
    ) as opened:
        yield opened


async def test_default_assistants_are_created_once_even_concurrently(services: Services) -> None:
    await asyncio.gather(*(services.assistants.ensure_default_assistants() for _ in range(4)))
    page = await services.assistants.search(
        AssistantFilter(metadata={"created_by": "system"}), PageRequest(first=100)
    )
    ids = [a.assistant_id for a in page.items]
    assert len(ids) == len(set(ids)) == len(services.graphs.graph_ids)
    assert set(ids) == {default_assistant_id(g) for g in services.graphs.graph_ids}


async def test_concurrent_updates_get_distinct_versions(services: Services) -> None:
    created = await services.assistants.create(graph_id="echo")
    results = await asyncio.gather(
        *(services.assistants.update(str(created.assistant_id), name=f"n{i}") for i in range(8))
    )
    assert sorted(r.version for r in results) == list(range(2, 10))
    assert await services.assistants.count_versions(created.assistant_id) == 9


async def test_concurrent_creates_with_one_id_give_one_assistant(services: Services) -> None:
    import uuid

    aid = str(uuid.uuid4())
    outcomes = await asyncio.gather(
        *(
            services.assistants.create(graph_id="echo", assistant_id=aid, name=str(i))
            for i in range(5)
        ),
        return_exceptions=True,
    )
    created = [o for o in outcomes if not isinstance(o, BaseException)]
    conflicts = [o for o in outcomes if isinstance(o, Conflict)]
    assert len(created) == 1 and len(conflicts) == 4
    same = await asyncio.gather(
        *(
            services.assistants.create(
                graph_id="echo", assistant_id=aid, if_exists=IfExists.DO_NOTHING
            )
            for _ in range(3)
        )
    )
    assert {s.name for s in same} == {created[0].name}


async def test_assistant_errors(services: Services) -> None:
    with pytest.raises(NotFound):
        await services.assistants.create(graph_id="missing")
    with pytest.raises(BadUserInput):
        await services.assistants.create(graph_id="echo", metadata=[1])  # type: ignore[arg-type]
    with pytest.raises(NotFound, match="neither an assistant id nor a graph id"):
        await services.assistants.get("not-a-uuid")
    with pytest.raises(NotFound):
        await services.assistants.delete("00000000-0000-0000-0000-000000000001")


async def test_thread_update_state_conflicts_while_a_run_is_active(services: Services) -> None:
    thread = await services.threads.create(graph_id="steps")
    async with services.db.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO runs (run_id, thread_id, assistant_id, status) VALUES (gen_random_uuid(), $1, $2, 'running')",
            thread.thread_id,
            default_assistant_id("steps"),
        )
    with pytest.raises(Conflict):
        await services.threads.update_state(
            str(thread.thread_id), values={"count": 1}, as_node="step_1"
        )
    assert await services.threads.history(thread) == []


async def test_delete_thread_cascades_runs_and_checkpoints(services: Services) -> None:
    thread = await services.threads.create(graph_id="steps")
    await services.threads.update_state(
        str(thread.thread_id), values={"count": 1}, as_node="step_1"
    )
    async with services.db.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO runs (run_id, thread_id, assistant_id, status) VALUES (gen_random_uuid(), $1, $2, 'success')",
            thread.thread_id,
            default_assistant_id("steps"),
        )
    await services.threads.delete(str(thread.thread_id))
    async with services.db.pool.acquire() as conn:
        runs = await conn.fetchval(
            "SELECT count(*) FROM runs WHERE thread_id = $1", thread.thread_id
        )
        checkpoints = await conn.fetchval(
            "SELECT count(*) FROM checkpoints WHERE thread_id = $1", str(thread.thread_id)
        )
    assert (runs, checkpoints) == (0, 0)
    with pytest.raises(NotFound):
        await services.threads.get(thread.thread_id)


async def test_thread_search_counts_match_pages(services: Services) -> None:
    import uuid

    tag = uuid.uuid4().hex
    for _ in range(7):
        await services.threads.create(metadata={"tag": tag})
    flt = ThreadFilter(metadata={"tag": tag})
    assert await services.threads.count(flt) == 7
    first = await services.threads.search(flt, PageRequest(first=5))
    assert len(first.items) == 5 and first.has_next_page
    rest = await services.threads.search(flt, PageRequest(first=5, after=first.cursors[-1]))
    assert len(rest.items) == 2 and not rest.has_next_page
    assert not {t.thread_id for t in first.items} & {t.thread_id for t in rest.items}


async def test_handing_runs_back_does_not_use_up_their_retry_budget(
    engines: EngineUrls, redis_prefix: str
) -> None:
    """Deploys hand runs back on SIGTERM; only workers dying under a run count towards
    BG_JOB_MAX_RETRIES (the attempt number still grows: it is the fencing token)."""
    # Its own database: the shared server's sweeper would lapse the lease (or start the run)
    # between this test's steps.
    async with private_services(engines, redis_prefix, name="budget") as services:
        await _hand_back_then_lapse(services)


async def _hand_back_then_lapse(services: Services) -> None:
    from app.services import run_lifecycle as lifecycle

    thread = await services.threads.create(graph_id="steps")
    async with services.db.pool.acquire() as conn:
        run_id = await conn.fetchval(
            "INSERT INTO runs (run_id, thread_id, assistant_id, status) "
            "VALUES (gen_random_uuid(), $1, $2, 'pending') RETURNING run_id",
            thread.thread_id,
            default_assistant_id("steps"),
        )

    async def start() -> Run:
        async with services.db.pool.acquire() as conn, conn.transaction():
            claimed = await lifecycle.start(
                lifecycle.RunTx(conn), run_id, worker_id="w", lease_seconds=60
            )
        assert claimed is not None
        return claimed.run

    async def lapse() -> list[Run]:
        async with services.db.pool.acquire() as conn, conn.transaction():
            return await lifecycle.lapse_leases(lifecycle.RunTx(conn), max_attempts=3)

    for _ in range(4):
        run = await start()
        async with services.db.pool.acquire() as conn, conn.transaction():
            assert await lifecycle.hand_back(lifecycle.RunTx(conn), run)
    run = await start()
    assert run.attempt == 5
    async with services.db.pool.acquire() as conn:
        await conn.execute(
            "UPDATE runs SET lease_until = now() - interval '1 second' WHERE run_id = $1", run_id
        )
    lapsed = await lapse()
    assert [(r.run_id, r.status) for r in lapsed if r.run_id == run_id] == [(run_id, "pending")]
    for _ in range(2):  # two more deaths: the third ends it
        run = await start()
        async with services.db.pool.acquire() as conn:
            await conn.execute(
                "UPDATE runs SET lease_until = now() - interval '1 second' WHERE run_id = $1",
                run_id,
            )
        lapsed = await lapse()
    final = next(r for r in lapsed if r.run_id == run_id)
    assert final.status == "error" and "3 attempts" in final.error["message"]


async def test_sweeping_a_backlog_does_not_grow_the_queue(
    engines: EngineUrls, redis_prefix: str
) -> None:
    """Pending runs no worker has taken yet have one wake-up each, however many sweeps pass: no
    worker ever tries to claim a run twice for one wait."""
    import asyncio

    from app.services.run_request import RunRequest
    from tests.conftest import scratch_database
    from workers.schedules import sweep_once

    settings = make_settings(f"{redis_prefix}_sweep")
    async with scratch_database(engines.database_uri) as url:
        async with open_services(
            settings,
            load_langgraph_config(settings.config),
            database_uri=url,
            redis_uri=engines.redis_uri,
            migrate=True,
        ) as svc:
            for _ in range(5):
                await svc.runs.create(RunRequest(assistant_id="steps", input={"count": 0}))
            assert await svc.wakeups.waiting() == 5  # one wake-up each, from createRun
            for _ in range(3):
                await asyncio.sleep(settings.sweep_interval_seconds + 0.1)
                _, woken = await sweep_once(svc)
                assert woken == 5
            assert await svc.wakeups.waiting() == 5  # still one each, not one per sweep


async def test_cancelling_a_pending_run_announces_its_end_and_wakes_the_next(
    engines: EngineUrls, redis_prefix: str
) -> None:
    """A pending run cancelled with `interrupt` ends at once: waiters get its end through Redis
    (not a minute later through the database) and the thread's next run is woken."""
    from app.services.run_request import RunRequest

    async with private_services(engines, redis_prefix, name="cancelpending") as services:
        thread = await services.threads.create(graph_id="echo")
        body = {"messages": [{"role": "user", "content": "hi"}]}
        first = await services.runs.create(
            RunRequest(assistant_id="echo", thread_id=str(thread.thread_id), input=body)
        )
        second = await services.runs.create(
            RunRequest(assistant_id="echo", thread_id=str(thread.thread_id), input=body)
        )
        # No worker serves this prefix: start from no wake-ups.
        await services.redis.delete(services.wakeups.key)
        cancelled = await services.runs.cancel(str(first.run_id), "interrupt")
        assert cancelled is not None and cancelled.status == "interrupted"
        outcome = await services.broker.run_outcome(str(first.run_id))
        assert outcome is not None and outcome["run"]["status"] == "interrupted"
        queued = [m.decode() for m in await services.redis.zrange(services.wakeups.key, 0, -1)]
        assert queued == [str(second.run_id)]


async def test_a_refused_run_creation_writes_nothing(services: Services) -> None:
    """lgql_create_run reports instead of raising: a missing thread, an unknown assistant and a
    thread busy under REJECT leave no thread, run or stamp behind; two creations of one new
    thread (if_not_exists=create) make one thread and two runs."""
    import uuid

    from app.db import run_queue
    from app.services.run_request import IfNotExists, MultitaskStrategy, RunRequest

    async def counts(thread_id: str) -> tuple[int, int]:
        async with services.db.pool.acquire() as conn:
            threads = await conn.fetchval(
                "SELECT count(*) FROM threads WHERE thread_id = $1", uuid.UUID(thread_id)
            )
            runs = await conn.fetchval(
                "SELECT count(*) FROM runs WHERE thread_id = $1", uuid.UUID(thread_id)
            )
        return threads, runs

    missing = str(uuid.uuid4())
    with pytest.raises(NotFound):
        await services.runs.create(RunRequest(assistant_id="echo", thread_id=missing))
    assert await counts(missing) == (0, 0)
    with pytest.raises(NotFound):
        await services.runs.create(
            RunRequest(
                assistant_id=str(uuid.uuid4()),
                thread_id=missing,
                if_not_exists=IfNotExists.CREATE,
            )
        )
    assert await counts(missing) == (0, 0)

    fresh = str(uuid.uuid4())
    made = await asyncio.gather(
        *(
            services.runs.create(
                # Due in an hour: no worker of another test (same Redis prefix) takes them, so
                # the thread stays busy for the REJECT below.
                RunRequest(
                    assistant_id="echo",
                    thread_id=fresh,
                    if_not_exists=IfNotExists.CREATE,
                    after_seconds=3600,
                )
            )
            for _ in range(2)
        )
    )
    assert len({r.run_id for r in made}) == 2
    assert await counts(fresh) == (1, 2)
    thread = await services.threads.get(fresh)
    assert thread.metadata_["graph_id"] == "echo"  # stamped by the creation
    async with services.db.pool.acquire() as conn:
        active = await run_queue.active_runs(conn, uuid.UUID(fresh))
    with pytest.raises(Conflict) as refused:
        await services.runs.create(
            RunRequest(
                assistant_id="echo", thread_id=fresh, multitask_strategy=MultitaskStrategy.REJECT
            )
        )
    assert refused.value.details["active_run_id"] == str(active[0].run_id)
    assert await counts(fresh) == (1, 2)

"""The saves a run's checkpointer still holds when the graph ends go with the run's end, in the
same call (`FencedCheckpointer.hold_back` + `lgql_finish_run(..., saves)`): the thread ends up
with exactly the checkpoints a flush of their own writes, a lost attempt writes neither the end
nor the saves, a stateless run's thread goes with everything it saved, and saves Postgres
refuses end the run ERROR instead of losing it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import asyncpg
import orjson
import pytest
import pytest_asyncio
from langchain_core.runnables import RunnableConfig

from app.db import run_queue
from app.persistence.checkpointer import LostOwnership, PostgresCheckpointer
from app.services.container import Services
from app.services.run_request import Durability, RunRequest
from tests.conftest import EngineUrls, migrated_pool, private_services
from tests.persistence.test_checkpoint_mirror import GRAPHS
from tests.persistence.test_checkpointer_fencing import _new_run
from tests.processes import poll_until
from workers.runner import RunRunner


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(engines: EngineUrls) -> AsyncIterator[asyncpg.Pool]:
    async with migrated_pool(engines.database_uri, prefix="lgql_test_final_saves") as pool:
        yield pool


@pytest.fixture
def saver(pool: asyncpg.Pool) -> PostgresCheckpointer:
    return PostgresCheckpointer(pool)


async def _run_graph(saver: PostgresCheckpointer, name: str, thread_id: str, run_id: str) -> Any:
    """Run graph `name` on a fresh thread through the attempt's write-behind saver; the saver."""
    build, graph_input = GRAPHS[name]
    fenced = saver.fenced(run_id, 1, write_behind=True, fresh_thread=thread_id)
    graph = build().compile(checkpointer=fenced)
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
    try:
        await graph.ainvoke(graph_input, config, durability="async")
    except RuntimeError:  # the graph that fails
        pass
    return fenced


async def _history(saver: PostgresCheckpointer, thread_id: str) -> list[Any]:
    """The thread's checkpoints as stored, less what differs from run to run (ids: of
    checkpoints, tasks, messages, interrupts): namespace, step, channels, the counter's value,
    pending writes' channels."""
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
    return sorted(
        (
            c.config["configurable"]["checkpoint_ns"].split(":")[0],
            c.metadata.get("step"),
            sorted(c.checkpoint["channel_values"]),
            repr(c.checkpoint["channel_values"].get("total")),
            sorted(w[1] for w in c.pending_writes or []),
        )
        for c in [t async for t in saver.alist(config)]
    )


async def _held_back(saver: PostgresCheckpointer, pool: asyncpg.Pool) -> tuple[str, str, Any]:
    """A `steps` run on a fresh thread whose last saves were held back: thread, run, saves."""
    thread_id, run_id = await _new_run(pool)
    fenced = await _run_graph(saver, "steps", thread_id, run_id)
    return thread_id, run_id, await fenced.hold_back()


async def _finish(pool: asyncpg.Pool, run_id: str, saves: Any, **kwargs: Any) -> Any:
    async with pool.acquire() as conn:
        return await run_queue.finish(
            conn,
            UUID(run_id),
            1,
            status="success",
            output=None,
            error=None,
            values=None,
            interrupts=None,
            waiting=None,
            has_state=False,
            saves=saves,
            **kwargs,
        )


async def _count(pool: asyncpg.Pool, thread_id: str) -> int:
    return int(
        await pool.fetchval(
            "SELECT (SELECT count(*) FROM checkpoints WHERE thread_id = $1)"
            " + (SELECT count(*) FROM checkpoint_writes WHERE thread_id = $1)"
            " + (SELECT count(*) FROM checkpoint_blobs WHERE thread_id = $1)",
            thread_id,
        )
    )


@pytest.mark.parametrize("name", list(GRAPHS))
async def test_the_end_writes_what_a_flush_would_have(
    saver: PostgresCheckpointer, pool: asyncpg.Pool, name: str
) -> None:
    flushed_thread, flushed_run = await _new_run(pool)
    flushed = await _run_graph(saver, name, flushed_thread, flushed_run)
    await flushed.flush()

    thread_id, run_id = await _new_run(pool)
    fenced = await _run_graph(saver, name, thread_id, run_id)
    saves = await fenced.hold_back()
    assert saves is not None
    # Held back: none of the attempt's saves went out on their own.
    assert fenced.statements == 0
    assert await _count(pool, thread_id) == 0
    assert await fenced.hold_back() is None  # taken once

    assert await _finish(pool, run_id, saves) is not None
    assert await pool.fetchval("SELECT status FROM runs WHERE run_id = $1", UUID(run_id)) == (
        "success"
    )
    assert await _history(saver, thread_id) == await _history(saver, flushed_thread)
    assert await _count(pool, thread_id) == await _count(pool, flushed_thread)


async def test_a_lost_attempt_writes_neither_its_end_nor_its_saves(
    saver: PostgresCheckpointer, pool: asyncpg.Pool
) -> None:
    thread_id, run_id, saves = await _held_back(saver, pool)
    await pool.execute("UPDATE runs SET attempt = 2 WHERE run_id = $1", UUID(run_id))  # taken over

    assert await _finish(pool, run_id, saves) is None
    assert await _count(pool, thread_id) == 0
    assert await pool.fetchval("SELECT status FROM runs WHERE run_id = $1", UUID(run_id)) == (
        "running"
    )


async def test_a_stateless_runs_thread_goes_with_everything_it_saved(
    saver: PostgresCheckpointer, pool: asyncpg.Pool
) -> None:
    thread_id, run_id, saves = await _held_back(saver, pool)

    assert await _finish(pool, run_id, saves, delete_thread=True) is not None
    assert await _count(pool, thread_id) == 0
    assert (
        await pool.fetchval("SELECT count(*) FROM threads WHERE thread_id = $1::uuid", thread_id)
        == 0
    )


async def test_hold_back_raises_what_an_earlier_batch_met(
    saver: PostgresCheckpointer, pool: asyncpg.Pool
) -> None:
    """A batch that went out on its own and found the run taken over: the end hears of it."""
    thread_id, run_id = await _new_run(pool)
    await pool.execute("UPDATE runs SET attempt = 2 WHERE run_id = $1", UUID(run_id))
    fenced = saver.fenced(run_id, 1, write_behind=True, fresh_thread=thread_id)
    build, graph_input = GRAPHS["steps"]
    graph = build().compile(checkpointer=fenced)
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
    await graph.ainvoke(graph_input, config, durability="async")
    with pytest.raises(LostOwnership):
        await fenced.flush()
    with pytest.raises(LostOwnership):
        await fenced.hold_back()


@pytest_asyncio.fixture(loop_scope="session")
async def services(engines: EngineUrls, redis_prefix: str) -> AsyncIterator[Services]:
    async with private_services(engines, redis_prefix, name="final_saves") as opened:
        yield opened


async def _execute(
    services: Services, graph: str, thread_id: str, graph_input: Any, **request: Any
) -> Any:
    run = await services.runs.create(
        RunRequest(assistant_id=graph, thread_id=thread_id, input=graph_input, **request)
    )
    await RunRunner(services, "final-saves-worker").run(run.run_id)
    return await services.runs.get(str(run.run_id))


async def test_a_run_on_a_fresh_thread_saves_its_steps_with_its_end(services: Services) -> None:
    """Through the worker's runner: every step's checkpoint is in, under each durability."""
    assert isinstance(services.checkpointer, PostgresCheckpointer)
    for durability in Durability:
        thread = await services.threads.create()
        thread_id = str(thread.thread_id)
        run = await _execute(services, "steps", thread_id, {"count": 0}, durability=durability)
        assert run.status == "success"
        history = await _history(services.checkpointer, thread_id)
        steps = [step for _, step, *_ in history]
        assert steps == ([-1, 0, 1, 2, 3, 4, 5] if durability != Durability.EXIT else [5])


_NUL_GRAPH = """
from typing import TypedDict
from langgraph.graph import START, StateGraph


class State(TypedDict, total=False):
    text: str


def write(state: State) -> State:
    # Postgres's JSONB cannot hold a NUL character: the state's values cannot be stored.
    return {"text": "nul\\x00" if state.get("text") == "nul" else "ok"}


builder = StateGraph(State)
builder.add_node("write", write)
builder.add_edge(START, "write")
graph = builder.compile()
"""


@pytest_asyncio.fixture(loop_scope="session")
async def nul_services(
    engines: EngineUrls, redis_prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Services]:
    folder = tmp_path_factory.mktemp("nul_graph")
    (folder / "nul_graph.py").write_text(_NUL_GRAPH)
    config = folder / "langgraph.json"
    config.write_text(orjson.dumps({"graphs": {"nul": "./nul_graph.py:graph"}}).decode())
    async with private_services(engines, redis_prefix, name="nul_state", config=config) as opened:
        yield opened


@pytest.mark.parametrize("fresh", [True, False], ids=["fresh-thread", "thread-with-history"])
async def test_a_state_postgres_cannot_store_ends_the_run_error(
    nul_services: Services, fresh: bool
) -> None:
    """A NUL character in the graph's state (JSONB cannot hold one): the run ends ERROR saying
    so, instead of staying RUNNING and failing the same way at every attempt."""
    services = nul_services
    thread = await services.threads.create()
    thread_id = str(thread.thread_id)
    if not fresh:
        first = await _execute(services, "nul", thread_id, {"text": "hi"})
        assert first.status == "success"
    run = await _execute(services, "nul", thread_id, {"text": "nul"})
    assert run.status == "error"
    assert "\\u0000" in orjson.dumps(run.error).decode()
    later = await _execute(services, "nul", thread_id, {"text": "again"})
    assert later.status == "success"


async def test_a_worker_stopping_during_the_end_call_still_ends_the_run_with_its_saves(
    services: Services,
) -> None:
    """The end call carries the run's last checkpoint: a shutdown's cancel landing while it is
    in flight must not drop it (before it went with the end, it was flushed inside the shielded
    graph task). Once the run is claimed, the test holds its thread's row locked, so that the
    end call waits on it; the runner's task is cancelled there, and the lock let go."""
    assert isinstance(services.checkpointer, PostgresCheckpointer)
    thread = await services.threads.create()
    thread_id = str(thread.thread_id)
    run = await services.runs.create(
        RunRequest(assistant_id="slow", thread_id=thread_id, input={"seconds": 0.5})
    )
    run_id = str(run.run_id)
    pool = services.db.pool

    async def status_is(wanted: str) -> bool | None:
        return True if (await services.runs.get(run_id)).status == wanted else None

    async def end_call_waits() -> bool | None:
        waiting = await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND query LIKE '%lgql_finish_run%'"
        )
        return True if waiting else None

    runner = asyncio.create_task(RunRunner(services, "stopping-worker").run(run.run_id))
    await poll_until(lambda: status_is("running"), deadline=30, what="the claim", interval=0.01)
    async with pool.acquire() as holder, holder.transaction():
        await holder.execute(
            "SELECT 1 FROM threads WHERE thread_id = $1 FOR UPDATE", thread.thread_id
        )
        await poll_until(end_call_waits, deadline=30, what="the end call waiting on the thread")
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
    # The lock let go, the end goes through, with the last step's checkpoint.
    await poll_until(lambda: status_is("success"), deadline=30, what="the run's end")
    history = await _history(services.checkpointer, thread_id)
    assert [step for _, step, *_ in history] == [-1, 0, 1]

"""The fenced checkpointer's write-behind (LangGraph's `async` durability): saves queue up while a
flush is in flight and go in one statement, read back as if made one by one, and a lost run still
saves nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, TypedDict
from uuid import UUID

import asyncpg
import pytest
import pytest_asyncio
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.conformance.test_utils import (
    generate_checkpoint,
    generate_config,
    generate_metadata,
)
from langgraph.checkpoint.serde.types import ERROR, INTERRUPT
from langgraph.graph import START, StateGraph

from app.persistence.checkpointer import LostOwnership, PostgresCheckpointer
from tests.conftest import EngineUrls, migrated_pool
from tests.persistence.test_checkpointer_fencing import TABLES, _counts, _new_run, _put, _set_run


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(engines: EngineUrls) -> AsyncIterator[asyncpg.Pool]:
    async with migrated_pool(engines.database_uri, prefix="lgql_test_wb") as pool:
        yield pool


@pytest.fixture
def saver(pool: asyncpg.Pool) -> PostgresCheckpointer:
    return PostgresCheckpointer(pool)


async def _locked_run(pool: asyncpg.Pool, run_id: str) -> tuple[asyncpg.Connection, Any]:
    """Hold the run's row lock (as a claim in progress would): fenced saves wait on it."""
    conn = await pool.acquire()
    tx = conn.transaction()
    await tx.start()
    await conn.execute("SELECT 1 FROM runs WHERE run_id = $1 FOR UPDATE", UUID(run_id))
    return conn, tx


async def _flush_started(fenced: Any) -> None:
    """Until the background flush has sent its statement (which then waits on the lock)."""
    async with asyncio.timeout(5):
        while fenced.statements == 0:  # noqa: ASYNC110 - yields to the flush task, no timed wait
            await asyncio.sleep(0)


async def test_saves_queued_behind_a_flush_in_flight_go_in_one_statement(
    saver: PostgresCheckpointer, pool: asyncpg.Pool
) -> None:
    thread_id, run_id = await _new_run(pool)
    fenced = saver.fenced(run_id, 1, write_behind=True)
    conn, tx = await _locked_run(pool, run_id)
    try:
        parent = await _put(fenced, thread_id, None, 1)  # returns at once: queued
        await _flush_started(fenced)
        for step in range(2, 6):  # queued behind the first flush, held on the lock
            parent = await _put(fenced, thread_id, parent, step)
        await fenced.aput_writes(parent, [("a", 1), ("b", 2)], "task-1")
        assert await _counts(pool, thread_id) == dict.fromkeys(TABLES, 0)
    finally:
        await tx.rollback()
        await pool.release(conn)
    await fenced.flush()
    assert fenced.statements == 2  # the first save alone, then the six queued behind it
    assert await _counts(pool, thread_id) == {
        "checkpoints": 5,
        "checkpoint_blobs": 5,
        "checkpoint_writes": 2,
    }
    latest = await saver.aget_tuple(generate_config(thread_id))
    assert latest is not None and latest.checkpoint["channel_values"] == {"a": 5}
    assert sorted(latest.pending_writes) == [("task-1", "a", 1), ("task-1", "b", 2)]


async def test_reads_through_the_view_see_its_queued_saves(
    saver: PostgresCheckpointer, pool: asyncpg.Pool
) -> None:
    thread_id, run_id = await _new_run(pool)
    fenced = saver.fenced(run_id, 1, write_behind=True)
    config = await _put(fenced, thread_id, None, 7)
    found = await fenced.aget_tuple(generate_config(thread_id))
    assert found is not None and found.config == config
    assert [t.config async for t in fenced.alist(generate_config(thread_id))] == [config]


async def _save_twice_and_write(view: PostgresCheckpointer, thread_id: str) -> RunnableConfig:
    """One checkpoint saved twice (LangGraph may re-save one), then writes against it that
    collide: regular ones on one index, special ones (error, interrupt) on theirs."""
    checkpoint = generate_checkpoint(channel_values={"a": 1}, channel_versions={"a": 1})
    first: Any = generate_metadata(step=1, source="first")
    second: Any = generate_metadata(step=1, source="second")
    config = await view.aput(generate_config(thread_id), checkpoint, first, {"a": 1})
    await view.aput(generate_config(thread_id), checkpoint, second, {"a": 1})
    await view.aput_writes(config, [("x", "first")], "t")
    await view.aput_writes(config, [("x", "second")], "t")
    await view.aput_writes(config, [(ERROR, "boom 1")], "t")
    await view.aput_writes(config, [(ERROR, "boom 2"), (INTERRUPT, "stop")], "t")
    return config


async def test_a_batch_keeps_what_saves_one_by_one_would(
    saver: PostgresCheckpointer, pool: asyncpg.Pool
) -> None:
    """A checkpoint saved twice keeps its last metadata, a regular write its first value, a
    special write its last: in one batch as in separate statements."""
    thread_id, run_id = await _new_run(pool)
    one_by_one = saver.fenced(run_id, 1)
    expected = await saver.aget_tuple(await _save_twice_and_write(one_by_one, thread_id))

    thread_id, run_id = await _new_run(pool)
    batched = saver.fenced(run_id, 1, write_behind=True)
    conn, tx = await _locked_run(pool, run_id)
    try:
        await _put(batched, thread_id, None, 0)
        await _flush_started(batched)  # held on the lock
        config = await _save_twice_and_write(batched, thread_id)
    finally:
        await tx.rollback()
        await pool.release(conn)
    await batched.flush()
    assert batched.statements == 2
    got = await saver.aget_tuple(config)

    assert expected is not None and got is not None
    assert got.metadata["source"] == expected.metadata["source"] == "second"
    assert sorted(got.pending_writes) == sorted(expected.pending_writes)
    assert ("t", "x", "first") in got.pending_writes
    assert ("t", ERROR, "boom 2") in got.pending_writes


async def test_a_lost_run_saves_nothing_and_says_so_at_the_next_save(
    saver: PostgresCheckpointer, pool: asyncpg.Pool
) -> None:
    thread_id, run_id = await _new_run(pool)
    fenced = saver.fenced(run_id, 1, write_behind=True)
    await _set_run(pool, run_id, attempt=2)  # another worker claimed the run
    await _put(fenced, thread_id, None, 1)  # queued: the refusal comes with the flush
    with pytest.raises(LostOwnership):
        await fenced.flush()
    with pytest.raises(LostOwnership):
        await _put(fenced, thread_id, None, 2)
    assert await fenced.aget_tuple(generate_config(thread_id)) is None  # reads do not raise
    assert await _counts(pool, thread_id) == dict.fromkeys(TABLES, 0)


class _State(TypedDict):
    count: int


def _five_steps() -> StateGraph[Any]:
    builder: StateGraph[Any] = StateGraph(_State)
    previous = START
    for i in range(5):

        async def step(state: _State) -> dict[str, Any]:
            await asyncio.sleep(0)
            return {"count": state["count"] + 1}

        builder.add_node(f"s{i}", step)
        builder.add_edge(previous, f"s{i}")
        previous = f"s{i}"
    return builder


async def test_a_graph_under_async_durability_saves_the_same_history_in_fewer_statements(
    saver: PostgresCheckpointer, pool: asyncpg.Pool
) -> None:
    histories = {}
    statements = {}
    for durability, write_behind in (("sync", False), ("async", True)):
        thread_id, run_id = await _new_run(pool)
        fenced = saver.fenced(run_id, 1, write_behind=write_behind)
        graph = _five_steps().compile(checkpointer=fenced)
        config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
        assert await graph.ainvoke({"count": 0}, config, durability=durability) == {"count": 5}
        await fenced.flush()
        history = [s async for s in graph.aget_state_history(config)]
        histories[durability] = [(s.metadata["step"], s.values, s.next) for s in history]
        statements[durability] = fenced.statements
    assert histories["async"] == histories["sync"]
    assert len(histories["sync"]) == 7  # input, then before each of the five steps, then done
    assert statements["async"] < statements["sync"]

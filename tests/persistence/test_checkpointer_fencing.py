"""Fenced checkpoint writes: a worker that lost its run's attempt can no longer save progress."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import AsyncIterator
from typing import Any, TypedDict
from uuid import UUID, uuid4

import asyncpg
import pytest
import pytest_asyncio
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.conformance.test_utils import (
    generate_checkpoint,
    generate_config,
    generate_metadata,
)
from langgraph.checkpoint.serde.types import ERROR
from langgraph.graph import END, START, StateGraph

from app.persistence.checkpointer import LostOwnership, PostgresCheckpointer
from tests.conftest import EngineUrls, migrated_pool
from tests.helpers import eventually

TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(engines: EngineUrls) -> AsyncIterator[asyncpg.Pool]:
    async with migrated_pool(engines.database_uri, prefix="lgql_test_fence") as pool:
        yield pool


@pytest.fixture
def saver(pool: asyncpg.Pool) -> PostgresCheckpointer:
    return PostgresCheckpointer(pool)


async def _new_run(pool: asyncpg.Pool) -> tuple[str, str]:
    """A thread and its run, 'running' at attempt 1: (thread_id, run_id)."""
    thread_id, run_id = uuid4(), uuid4()
    await pool.execute("INSERT INTO threads (thread_id) VALUES ($1)", thread_id)
    await pool.execute(
        "INSERT INTO runs (run_id, thread_id, assistant_id, status, attempt)"
        " VALUES ($1, $2, $3, 'running', 1)",
        run_id,
        thread_id,
        uuid4(),
    )
    return str(thread_id), str(run_id)


async def _set_run(pool: asyncpg.Pool, run_id: str, **values: Any) -> None:
    assignments = ", ".join(f"{column} = ${i}" for i, column in enumerate(values, start=2))
    await pool.execute(
        f"UPDATE runs SET {assignments} WHERE run_id = $1", UUID(run_id), *values.values()
    )


async def _counts(pool: asyncpg.Pool, thread_id: str) -> dict[str, int]:
    return {
        table: await pool.fetchval(f"SELECT count(*) FROM {table} WHERE thread_id = $1", thread_id)
        for table in TABLES
    }


async def _put(
    saver: PostgresCheckpointer,
    thread_id: str,
    parent: RunnableConfig | None,
    step: int,
    **metadata: Any,
) -> RunnableConfig:
    """A checkpoint whose channel `a` has a new version (so a new blob) at every step."""
    config = generate_config(thread_id)
    if parent is not None:
        config["configurable"]["checkpoint_id"] = parent["configurable"]["checkpoint_id"]
    checkpoint = generate_checkpoint(channel_values={"a": step}, channel_versions={"a": step})
    md: Any = generate_metadata(step=step, **metadata)
    return await saver.aput(config, checkpoint, md, {"a": step})


async def test_fenced_writes_follow_the_run_attempt(
    saver: PostgresCheckpointer, pool: asyncpg.Pool
) -> None:
    thread_id, run_id = await _new_run(pool)
    first = saver.fenced(run_id, 1)
    assert first.pool is saver.pool
    assert first.serde is saver.serde

    c1 = await _put(first, thread_id, None, 1)
    await first.aput_writes(c1, [("a", "regular")], "task-1")
    await first.aput_writes(c1, [(ERROR, "special")], "task-1")  # the upsert statement
    assert await _counts(pool, thread_id) == dict.fromkeys(TABLES, 1) | {"checkpoint_writes": 2}

    await _set_run(pool, run_id, attempt=2)  # another worker claimed the run
    before = await _counts(pool, thread_id)
    with pytest.raises(LostOwnership) as lost:
        await _put(first, thread_id, c1, 2)
    assert (lost.value.run_id, lost.value.attempt) == (run_id, 1)
    assert run_id in str(lost.value) and "attempt 1" in str(lost.value)
    with pytest.raises(LostOwnership):
        await first.aput_writes(c1, [("a", "late"), ("b", "late")], "task-2")
    with pytest.raises(LostOwnership):
        await first.aput_writes(c1, [(ERROR, "late")], "task-1")
    with pytest.raises(LostOwnership):  # re-saving an existing checkpoint would update it
        await first.aput(
            c1,
            generate_checkpoint(checkpoint_id=c1["configurable"]["checkpoint_id"]),
            generate_metadata(step=1, late=True),
            {},
        )
    assert await _counts(pool, thread_id) == before
    tup = await saver.aget_tuple(generate_config(thread_id))  # reads are not fenced
    assert tup is not None
    assert tup.config == c1
    assert "late" not in tup.metadata
    assert tup.checkpoint["channel_values"] == {"a": 1}
    assert sorted(tup.pending_writes or []) == sorted(
        [("task-1", "a", "regular"), ("task-1", ERROR, "special")]
    )

    second = saver.fenced(run_id, 2)
    c2 = await _put(second, thread_id, c1, 2)
    await second.aput_writes(c2, [("a", "new owner")], "task-2")
    assert await _counts(pool, thread_id) == {
        "checkpoints": 2,
        "checkpoint_blobs": 2,
        "checkpoint_writes": 3,
    }

    await _set_run(pool, run_id, status="success")  # finished: nobody writes any more
    before = await _counts(pool, thread_id)
    with pytest.raises(LostOwnership):
        await _put(second, thread_id, c2, 3)
    with pytest.raises(LostOwnership):
        await second.aput_writes(c2, [("a", "after the end")], "task-3")
    assert await _counts(pool, thread_id) == before
    await _put(saver, thread_id, c2, 3)  # the unfenced checkpointer is not held back
    assert (await _counts(pool, thread_id))["checkpoints"] == 3


async def test_fence_needs_the_run(saver: PostgresCheckpointer, pool: asyncpg.Pool) -> None:
    thread_id, run_id = await _new_run(pool)
    await _set_run(pool, run_id, status="pending")
    with pytest.raises(LostOwnership):
        await _put(saver.fenced(run_id, 1), thread_id, None, 1)
    with pytest.raises(LostOwnership):
        await _put(saver.fenced(str(uuid4()), 1), thread_id, None, 1)  # no such run
    assert await _counts(pool, thread_id) == dict.fromkeys(TABLES, 0)
    with pytest.raises(ValueError):
        saver.fenced("not-a-uuid", 1)
    await saver.fenced(run_id, 1).aput_writes(generate_config(thread_id), [], "task")  # no-op


def test_lost_ownership_pickles() -> None:
    error = pickle.loads(pickle.dumps(LostOwnership("run-x", 3)))
    assert isinstance(error, LostOwnership)
    assert (error.run_id, error.attempt) == ("run-x", 3)
    assert str(error) == str(LostOwnership("run-x", 3))


async def test_write_racing_a_claim_waits_for_it(
    saver: PostgresCheckpointer, pool: asyncpg.Pool
) -> None:
    """A claim committed after the write's statement started still fences it out: the write
    waits for the claim's row lock, then sees the bumped attempt (no stale-snapshot window)."""
    thread_id, run_id = await _new_run(pool)
    claimer = await pool.acquire()
    try:
        claim = claimer.transaction()
        await claim.start()
        await claimer.execute("UPDATE runs SET attempt = 2 WHERE run_id = $1", UUID(run_id))
        write = asyncio.create_task(_put(saver.fenced(run_id, 1), thread_id, None, 1))

        async def waiting_for_the_lock() -> bool:
            return bool(
                await pool.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )

        await eventually(waiting_for_the_lock, what="the write to wait for the claim's row lock")
        assert not write.done()  # held on the claim's row lock
        await claim.commit()
        with pytest.raises(LostOwnership):
            await asyncio.wait_for(write, 5)
    finally:
        await pool.release(claimer)
    assert await _counts(pool, thread_id) == dict.fromkeys(TABLES, 0)


class _State(TypedDict):
    log: list[str]


@pytest.mark.parametrize("durability", ["sync", "async", "exit"])
async def test_graph_stops_saving_when_the_run_is_claimed_again(
    saver: PostgresCheckpointer, pool: asyncpg.Pool, durability: Any
) -> None:
    """Node `b` runs while another worker claims the run: from then on nothing is saved, and
    `ainvoke` raises LostOwnership."""
    thread_id, run_id = await _new_run(pool)

    async def a(state: _State) -> dict[str, Any]:
        return {"log": [*state["log"], "a"]}

    async def b(state: _State) -> dict[str, Any]:
        await _set_run(pool, run_id, attempt=2)
        return {"log": [*state["log"], "b"]}

    async def c(state: _State) -> dict[str, Any]:
        return {"log": [*state["log"], "c"]}

    builder = StateGraph(_State)
    for name, node in (("a", a), ("b", b), ("c", c)):
        builder.add_node(name, node)
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("b", "c")
    builder.add_edge("c", END)
    graph = builder.compile(checkpointer=saver.fenced(run_id, 1))
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
    with pytest.raises(LostOwnership):
        await graph.ainvoke({"log": []}, config, durability=durability)
    # No save is in flight now: LangGraph's loop waits for its background saves before it raises.

    history = [s async for s in graph.aget_state_history(config)]
    steps = [s.metadata["step"] for s in reversed(history) if s.metadata]
    # Checkpoints saved before the claim: input (-1), before a (0), after a (1). With "async"
    # durability they are saved in the background, so the claim may overtake some of them.
    expected = {"sync": [-1, 0, 1], "async": [-1, 0, 1][: len(steps)], "exit": []}[durability]
    assert steps == expected
    assert all("b" not in s.values.get("log", []) for s in history)
    if durability == "sync":
        assert history[0].values == {"log": ["a"]}
        assert history[0].next == ("b",)
    writers = await pool.fetch(
        "SELECT DISTINCT channel FROM checkpoint_writes WHERE thread_id = $1", thread_id
    )
    assert "branch:to:c" not in {r["channel"] for r in writers}  # b's writes were refused

"""The asyncpg checkpointer: LangGraph's conformance suite in full, plus our own guarantees."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any, TypedDict
from uuid import uuid4

import asyncpg
import pytest
import pytest_asyncio
from langchain_core.runnables import RunnableConfig
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.base import WRITES_IDX_MAP, BaseCheckpointSaver
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES
from langgraph.checkpoint.conformance.test_utils import (
    generate_checkpoint,
    generate_config,
    generate_metadata,
)
from langgraph.checkpoint.serde.types import ERROR, INTERRUPT
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from app.persistence.checkpointer import PostgresCheckpointer
from tests.conftest import EngineUrls, migrated_pool

CONFORMANCE_TESTS = 81


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(engines: EngineUrls) -> AsyncIterator[asyncpg.Pool]:
    """A database of its own (some conformance tests list every thread), migrated by Alembic."""
    async with migrated_pool(engines.database_uri, prefix="lgql_test_ckpt") as pool:
        yield pool


@pytest.fixture
def saver(pool: asyncpg.Pool) -> PostgresCheckpointer:
    return PostgresCheckpointer(pool)


async def test_conformance_full(pool: asyncpg.Pool) -> None:
    async def factory() -> AsyncIterator[PostgresCheckpointer]:
        yield PostgresCheckpointer(pool)

    registered = checkpointer_test(name="lgql PostgresCheckpointer")(factory)
    report = await validate(registered)

    failures = [f for r in report.results.values() for f in r.failures]
    assert not failures, "\n".join(failures)
    undetected = {c.value for c in ALL_CAPABILITIES} - {
        name for name, r in report.results.items() if r.detected
    }
    assert not undetected, f"capabilities not implemented: {undetected}"
    assert report.conformance_level() == "FULL"
    passed = sum(r.tests_passed for r in report.results.values())
    assert passed == CONFORMANCE_TESTS


async def _put(
    saver: PostgresCheckpointer,
    thread_id: str,
    values: dict[str, Any],
    versions: dict[str, Any],
    new_versions: dict[str, Any],
    parent: dict[str, Any] | None = None,
    **metadata: Any,
) -> Any:
    config = generate_config(thread_id)
    if parent is not None:
        config["configurable"]["checkpoint_id"] = parent["configurable"]["checkpoint_id"]
    checkpoint = generate_checkpoint(channel_values=values, channel_versions=versions)
    md: Any = generate_metadata(**metadata)
    return await saver.aput(config, checkpoint, md, new_versions)


async def _blob_rows(pool: asyncpg.Pool, thread_id: str) -> list[tuple[str, str]]:
    rows = await pool.fetch(
        "SELECT channel, version FROM checkpoint_blobs WHERE thread_id = $1 ORDER BY 1, 2",
        thread_id,
    )
    return [(r["channel"], r["version"]) for r in rows]


async def test_unchanged_channels_are_not_rewritten(
    saver: PostgresCheckpointer, pool: asyncpg.Pool
) -> None:
    tid = str(uuid4())
    first = await _put(saver, tid, {"a": [1], "b": "x"}, {"a": 1, "b": 1}, {"a": 1, "b": 1})
    await _put(saver, tid, {"a": [1, 2], "b": "x"}, {"a": 2, "b": 1}, {"a": 2}, parent=first)
    assert await _blob_rows(pool, tid) == [("a", "1"), ("a", "2"), ("b", "1")]
    latest = await saver.aget_tuple(generate_config(tid))
    assert latest is not None
    assert latest.checkpoint["channel_values"] == {"a": [1, 2], "b": "x"}


async def test_nul_characters(saver: PostgresCheckpointer) -> None:
    """JSONB cannot hold NUL: metadata loses it, channel values (blobs) keep it."""
    tid = str(uuid4())
    stored = await _put(
        saver,
        tid,
        {"text": "a\x00b"},
        {"text": 1},
        {"text": 1},
        note="x\x00y",
        nested={"deep": ["p\x00q"]},
    )
    tup = await saver.aget_tuple(stored)
    assert tup is not None
    assert tup.checkpoint["channel_values"]["text"] == "a\x00b"
    metadata: dict[str, Any] = dict(tup.metadata)
    assert metadata["note"] == "xy"
    assert metadata["nested"] == {"deep": ["pq"]}
    listed = [t async for t in saver.alist(generate_config(tid), filter={"note": "x\x00y"})]
    assert len(listed) == 1


async def test_special_writes_upsert_regular_writes_keep_first(
    saver: PostgresCheckpointer,
) -> None:
    stored = await _put(saver, str(uuid4()), {}, {}, {})
    await saver.aput_writes(stored, [("ch", "first")], "task")
    await saver.aput_writes(stored, [("ch", "second")], "task")
    await saver.aput_writes(stored, [(ERROR, "boom 1")], "task")
    await saver.aput_writes(stored, [(ERROR, "boom 2"), (ERROR, "boom 3")], "task")
    await saver.aput_writes(stored, [(INTERRUPT, {"q": 1})], "task")
    tup = await saver.aget_tuple(stored)
    assert tup is not None
    assert sorted(tup.pending_writes or []) == sorted(
        [("task", "ch", "first"), ("task", ERROR, "boom 3"), ("task", INTERRUPT, {"q": 1})]
    )
    assert WRITES_IDX_MAP[ERROR] < 0


async def test_pending_writes_in_writes_sort_key_order(saver: PostgresCheckpointer) -> None:
    stored = await _put(saver, str(uuid4()), {}, {}, {})
    await saver.aput_writes(stored, [("c", 1), ("c", 2)], "t-b", task_path="~b")
    await saver.aput_writes(stored, [("c", 3)], "t-a", task_path="~b")
    await saver.aput_writes(stored, [("c", 4)], "t-z", task_path="")
    await saver.aput_writes(stored, [("c", 5)], "t-y", task_path="B")  # "B" < "~b" < "b" in C
    tup = await saver.aget_tuple(stored)
    assert tup is not None
    assert [w[2] for w in tup.pending_writes or []] == [4, 5, 3, 1, 2]


async def test_delete_for_runs_removes_run_writes_and_orphan_blobs(
    saver: PostgresCheckpointer, pool: asyncpg.Pool
) -> None:
    tid = str(uuid4())
    kept = await _put(
        saver, tid, {"m": ["a"], "n": 0}, {"m": 1, "n": 1}, {"m": 1, "n": 1}, run_id="run-1"
    )
    # Run 2 first writes against run 1's checkpoint, then saves its own.
    run2_config: RunnableConfig = {**kept, "metadata": {"run_id": "run-2"}}
    await saver.aput_writes(run2_config, [("m", "b")], "task-2")
    await _put(
        saver,
        tid,
        {"m": ["a", "b"], "n": 0},
        {"m": 2, "n": 1},
        {"m": 2},
        parent=kept,
        run_id="run-2",
    )
    await saver.adelete_for_runs(["run-2"])
    tup = await saver.aget_tuple(generate_config(tid))
    assert tup is not None
    assert tup.config["configurable"]["checkpoint_id"] == kept["configurable"]["checkpoint_id"]
    assert tup.pending_writes == []
    assert tup.checkpoint["channel_values"] == {"m": ["a"], "n": 0}
    assert await _blob_rows(pool, tid) == [("m", "1"), ("n", "1")]


async def test_prune_keep_latest_collects_blobs_and_parents(
    saver: PostgresCheckpointer, pool: asyncpg.Pool
) -> None:
    tid = str(uuid4())
    c1 = await _put(saver, tid, {"a": 1, "b": 1}, {"a": 1, "b": 1}, {"a": 1, "b": 1})
    c2 = await _put(saver, tid, {"a": 2, "b": 1}, {"a": 2, "b": 1}, {"a": 2}, parent=c1)
    await saver.aprune([tid])
    assert await _blob_rows(pool, tid) == [("a", "2"), ("b", "1")]
    tup = await saver.aget_tuple(generate_config(tid))
    assert tup is not None
    assert tup.config["configurable"]["checkpoint_id"] == c2["configurable"]["checkpoint_id"]
    assert tup.parent_config is None
    assert tup.checkpoint["channel_values"] == {"a": 2, "b": 1}


async def test_list_across_threads_and_namespaces(saver: PostgresCheckpointer) -> None:
    tag = str(uuid4())
    first = await _put(saver, str(uuid4()), {}, {}, {}, tag=tag)
    second = await _put(saver, str(uuid4()), {}, {}, {}, tag=tag)
    found = [t.config async for t in saver.alist(None, filter={"tag": tag})]
    assert [c["configurable"]["checkpoint_id"] for c in found] == [
        second["configurable"]["checkpoint_id"],
        first["configurable"]["checkpoint_id"],
    ]
    older = [t.config async for t in saver.alist(None, filter={"tag": tag}, before=second)]
    assert older == [first]
    child = generate_config(first["configurable"]["thread_id"], checkpoint_ns="sub:1")
    await saver.aput(child, generate_checkpoint(), generate_metadata(), {})
    every_ns: RunnableConfig = {"configurable": {"thread_id": first["configurable"]["thread_id"]}}
    assert len([t async for t in saver.alist(every_ns)]) == 2


async def test_prune_refuses_bad_input(saver: PostgresCheckpointer) -> None:
    with pytest.raises(TypeError):
        await saver.aprune("thread")
    with pytest.raises(ValueError):
        await saver.aprune(["thread"], strategy="everything")


def test_sync_api_points_to_async(saver: PostgresCheckpointer) -> None:
    with pytest.raises(NotImplementedError, match="aget_tuple"):
        saver.get_tuple(generate_config())


def test_next_version_increases(saver: PostgresCheckpointer) -> None:
    v1 = saver.get_next_version(None, None)
    v2 = saver.get_next_version(v1, None)
    assert v1 < v2
    assert saver.get_next_version(v1, None) != v2  # forks get distinct versions
    assert saver.get_next_version(7, None) > saver.get_next_version("6.x", None)  # type: ignore[arg-type]


class _State(TypedDict):
    log: list[str]
    answer: str


def _graph(saver: PostgresCheckpointer) -> Any:
    def ask(state: _State) -> dict[str, Any]:
        return {"answer": interrupt("question?"), "log": [*state["log"], "ask"]}

    def done(state: _State) -> dict[str, Any]:
        return {"log": [*state["log"], f"done:{state['answer']}"]}

    builder = StateGraph(_State)
    builder.add_node("ask", ask)
    builder.add_node("done", done)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", "done")
    builder.add_edge("done", END)
    return builder.compile(checkpointer=saver)


async def test_graph_interrupt_resume_and_history(saver: PostgresCheckpointer) -> None:
    graph = _graph(saver)
    config = {"configurable": {"thread_id": str(uuid4())}}
    first = await graph.ainvoke({"log": [], "answer": ""}, config)
    assert "__interrupt__" in first
    state = await graph.aget_state(config)
    assert state.next == ("ask",)
    assert state.tasks[0].interrupts[0].value == "question?"
    result = await graph.ainvoke(Command(resume="42"), config)
    assert result["log"] == ["ask", "done:42"]
    history = [s async for s in graph.aget_state_history(config)]
    assert [s.metadata["step"] for s in history] == sorted(
        (s.metadata["step"] for s in history), reverse=True
    )
    assert history[0].values["log"] == ["ask", "done:42"]


def _append_all(state: list[Any], writes: Sequence[list[Any]]) -> list[Any]:
    return [*state, *(item for write in writes for item in write)]


class _DeltaState(TypedDict):
    items: Annotated[list[Any], DeltaChannel(_append_all, snapshot_frequency=3)]
    other: Annotated[list[Any], DeltaChannel(_append_all, snapshot_frequency=100)]


async def test_delta_channel_history_matches_base_walk(saver: PostgresCheckpointer) -> None:
    def left(state: _DeltaState) -> dict[str, Any]:
        return {"items": [f"L{len(state['items'])}"]}

    def right(state: _DeltaState) -> dict[str, Any]:
        return {"items": [f"R{len(state['items'])}"], "other": ["r"]}

    builder = StateGraph(_DeltaState)
    builder.add_node("left", left)
    builder.add_node("right", right)
    builder.add_edge(START, "left")
    builder.add_edge(START, "right")
    graph = builder.compile(checkpointer=saver)
    config: RunnableConfig = {"configurable": {"thread_id": str(uuid4())}}
    for i in range(7):
        result = await graph.ainvoke({"items": [f"in{i}"], "other": []}, config)
    assert len(result["items"]) == 21
    assert result["other"] == ["r"] * 7

    channels = ["items", "other", "missing"]
    history = [s async for s in graph.aget_state_history(config)]
    assert len(history) > 10
    targets: list[RunnableConfig] = [
        {"configurable": {"thread_id": config["configurable"]["thread_id"]}}
    ]
    targets += [s.config for s in history]
    for target in targets:
        ours = await saver.aget_delta_channel_history(config=target, channels=channels)
        base = await BaseCheckpointSaver.aget_delta_channel_history(
            saver, config=target, channels=channels
        )
        assert ours == base

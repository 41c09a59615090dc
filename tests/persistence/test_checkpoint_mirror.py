"""A run on a thread with no checkpoint reads the thread's latest checkpoints from its own saves
(app/persistence/checkpoint_mirror.py): what it answers is exactly what Postgres answers once the
saves are in, for graphs that use every kind of save (steps, reducers, fan-out, subgraphs,
interrupts, errors), and it answers nothing it cannot know."""

from __future__ import annotations

import asyncio
import operator
from collections.abc import AsyncIterator
from typing import Annotated, Any, TypedDict
from uuid import uuid4

import asyncpg
import pytest
import pytest_asyncio
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Command, Send, interrupt

from app.persistence.checkpointer import PostgresCheckpointer
from tests.conftest import EngineUrls, migrated_pool
from tests.persistence.test_checkpointer_fencing import _new_run


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(engines: EngineUrls) -> AsyncIterator[asyncpg.Pool]:
    async with migrated_pool(engines.database_uri, prefix="lgql_test_mirror") as pool:
        yield pool


@pytest.fixture
def saver(pool: asyncpg.Pool) -> PostgresCheckpointer:
    return PostgresCheckpointer(pool)


class _Chat(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    total: Annotated[int, operator.add]
    note: str
    items: list[int]


def _steps() -> Any:
    builder: StateGraph[Any] = StateGraph(_Chat)
    builder.add_node("a", lambda s: {"messages": [AIMessage("a")], "total": 1, "note": "é\u00e9"})
    builder.add_node("b", lambda s: {"messages": [AIMessage("b")], "total": 2})
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    return builder


def _fan_out() -> Any:
    builder: StateGraph[Any] = StateGraph(_Chat)
    builder.add_node("split", lambda s: {"note": "split"})
    builder.add_node("work", lambda item: {"total": item["n"]})
    builder.add_conditional_edges(
        "split", lambda s: [Send("work", {"n": n}) for n in s.get("items") or []]
    )
    builder.add_edge(START, "split")
    return builder


def _subgraph() -> Any:
    inner: StateGraph[Any] = StateGraph(_Chat)
    inner.add_node("deep", lambda s: {"total": 10, "note": "inner"})
    inner.add_edge(START, "deep")
    outer: StateGraph[Any] = StateGraph(_Chat)
    outer.add_node("child", inner.compile())
    outer.add_node("after", lambda s: {"total": 100})
    outer.add_edge(START, "child")
    outer.add_edge("child", "after")
    return outer


def _asks() -> Any:
    def ask(state: _Chat) -> dict[str, Any]:
        answer = interrupt({"question": "name?"})
        return {"note": str(answer)}

    inner: StateGraph[Any] = StateGraph(_Chat)
    inner.add_node("ask", ask)
    inner.add_edge(START, "ask")
    outer: StateGraph[Any] = StateGraph(_Chat)
    outer.add_node("first", lambda s: {"total": 1})
    outer.add_node("child", inner.compile())
    outer.add_edge(START, "first")
    outer.add_edge("first", "child")
    outer.add_edge("child", END)
    return outer


def _fails() -> Any:
    def boom(state: _Chat) -> dict[str, Any]:
        raise RuntimeError("boom")

    builder: StateGraph[Any] = StateGraph(_Chat)
    builder.add_node("ok", lambda s: {"total": 1})
    builder.add_node("boom", boom)
    builder.add_edge(START, "ok")
    builder.add_edge("ok", "boom")
    return builder


GRAPHS = {
    "steps": (_steps, {"messages": [HumanMessage("hi")]}),
    "fan_out": (_fan_out, {"items": [1, 2, 3]}),
    "subgraph": (_subgraph, {"total": 0}),
    "interrupt": (_asks, {"total": 0}),
    "error": (_fails, {"total": 0}),
}


def _exact(found: Any) -> str:
    """A tuple as a string that also tells dict order apart."""
    return repr(found)


async def _compare(
    saver: PostgresCheckpointer, fenced: Any, thread_id: str, namespaces: list[str]
) -> int:
    """Every namespace's latest checkpoint from the mirror equals Postgres's; how many the mirror
    answered."""
    before = fenced.mirrored_reads
    answered = []
    for ns in namespaces:
        config: RunnableConfig = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns}}
        answered.append(await fenced.aget_tuple(config))
    await fenced.flush()
    for ns, mirrored in zip(namespaces, answered, strict=True):
        config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns}}
        stored = await saver.aget_tuple(config)
        assert _exact(mirrored) == _exact(stored), ns
        if stored is not None:  # and by id
            by_id = await fenced.aget_tuple(stored.config)
            assert _exact(by_id) == _exact(stored), ns
    return int(fenced.mirrored_reads - before)


@pytest.mark.parametrize("write_behind", [True, False], ids=["async", "sync"])
@pytest.mark.parametrize("name", list(GRAPHS))
async def test_the_mirror_answers_what_postgres_answers(
    saver: PostgresCheckpointer, pool: asyncpg.Pool, name: str, write_behind: bool
) -> None:
    make, graph_input = GRAPHS[name]
    thread_id, run_id = await _new_run(pool)
    fenced = saver.fenced(run_id, 1, write_behind=write_behind, fresh_thread=thread_id)
    graph = make().compile(checkpointer=fenced)
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
    with pytest.raises(RuntimeError) if name == "error" else _no_error():
        await graph.ainvoke(graph_input, config)
    await _settled()
    # The graph's own start read came from the mirror (there was nothing).
    assert fenced.mirrored_reads >= 1
    await fenced.flush()
    namespaces = [""] + [
        ns
        for (ns,) in [
            tuple(r)
            for r in await pool.fetch(
                "SELECT DISTINCT checkpoint_ns FROM checkpoints WHERE thread_id = $1 AND"
                " checkpoint_ns <> ''",
                thread_id,
            )
        ]
    ]
    if name in ("subgraph", "interrupt"):
        assert len(namespaces) > 1 or name == "subgraph"
    assert await _compare(saver, fenced, thread_id, [*namespaces, "nowhere"]) >= len(namespaces)
    # The state LangGraph builds from it (tasks, interrupts, values) is the same too.
    mirrored_state = await graph.aget_state(config, subgraphs=True)
    stored_state = await make().compile(checkpointer=saver).aget_state(config, subgraphs=True)
    assert _exact(mirrored_state.values) == _exact(stored_state.values)
    assert mirrored_state.next == stored_state.next
    assert _exact(mirrored_state.interrupts) == _exact(stored_state.interrupts)
    assert _exact(mirrored_state.tasks) == _exact(stored_state.tasks)


async def test_a_resumed_interrupt_reads_its_own_writes(
    saver: PostgresCheckpointer, pool: asyncpg.Pool
) -> None:
    """Interrupted, then resumed by the same attempt's saver (as a `Command(resume=...)` run on a
    thread it created would): the end state matches Postgres."""
    ends = []
    for fresh in (True, False):
        thread_id, run_id = await _new_run(pool)
        fenced = saver.fenced(
            run_id, 1, write_behind=True, fresh_thread=thread_id if fresh else None
        )
        graph = _asks().compile(checkpointer=fenced)
        config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
        await graph.ainvoke({"total": 0}, config)
        ends.append(await graph.ainvoke(Command(resume="Ada"), config))
        await _compare(saver, fenced, thread_id, [""])
    assert ends[0] == ends[1]
    assert ends[0]["note"] == "Ada"


async def test_what_the_mirror_cannot_know_is_read_from_postgres(
    saver: PostgresCheckpointer, pool: asyncpg.Pool
) -> None:
    """Another thread, and an older checkpoint of its own thread, come from Postgres."""
    thread_id, run_id = await _new_run(pool)
    fenced = saver.fenced(run_id, 1, write_behind=True, fresh_thread=thread_id)
    graph = _steps().compile(checkpointer=fenced)
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
    await graph.ainvoke({"messages": [HumanMessage("hi")]}, config)
    history = [s async for s in graph.aget_state_history(config)]
    oldest = history[-1].config
    reads = fenced.mirrored_reads
    older = await fenced.aget_tuple(oldest)
    assert fenced.mirrored_reads == reads  # not the latest: asked Postgres
    assert _exact(older) == _exact(await saver.aget_tuple(oldest))
    other: RunnableConfig = {"configurable": {"thread_id": str(uuid4()), "checkpoint_ns": ""}}
    assert await fenced.aget_tuple(other) is None
    assert fenced.mirrored_reads == reads


async def test_without_a_fresh_thread_every_read_goes_to_postgres(
    saver: PostgresCheckpointer, pool: asyncpg.Pool
) -> None:
    thread_id, run_id = await _new_run(pool)
    fenced = saver.fenced(run_id, 1, write_behind=True)
    await (
        _steps()
        .compile(checkpointer=fenced)
        .ainvoke({"messages": [HumanMessage("hi")]}, {"configurable": {"thread_id": thread_id}})
    )
    await fenced.aget_tuple({"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}})
    assert fenced.mirrored_reads == 0


async def _settled() -> None:
    """Let the tasks LangGraph left behind an exception hand their saves over (its error write
    under `sync` is submitted as the exception unwinds)."""
    for _ in range(20):
        await asyncio.sleep(0)


class _no_error:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


async def test_the_claim_says_whether_the_thread_has_a_checkpoint(
    saver: PostgresCheckpointer, pool: asyncpg.Pool
) -> None:
    """`lgql_claim_run` reports a thread with no checkpoint as fresh, under the thread's lock."""
    from app.db import run_queue

    thread_id = uuid4()
    await pool.execute("INSERT INTO threads (thread_id) VALUES ($1)", thread_id)

    async def claimed_fresh() -> bool:
        run_id = uuid4()
        await pool.execute(
            "INSERT INTO runs (run_id, thread_id, assistant_id, status, attempt)"
            " VALUES ($1, $2, $3, 'pending', 0)",
            run_id,
            thread_id,
            uuid4(),
        )
        async with pool.acquire() as conn:
            claimed = await run_queue.claim(conn, run_id, worker_id="w", lease_seconds=30)
        assert claimed is not None
        await pool.execute("UPDATE runs SET status = 'success' WHERE run_id = $1", run_id)
        return claimed[2]

    assert await claimed_fresh() is True
    config: RunnableConfig = {"configurable": {"thread_id": str(thread_id)}}
    await _steps().compile(checkpointer=saver).ainvoke({"messages": [HumanMessage("hi")]}, config)
    assert await claimed_fresh() is False

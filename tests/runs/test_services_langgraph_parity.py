"""What the services gained for LangGraph's REST API, on their own (any transport may use them):
thread prune, supersteps (bulk state updates), offset pages, more sort keys."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from app.errors import BadUserInput, Conflict
from app.pagination import PageRequest, SortOrder
from app.runtime.langgraph_config import load_langgraph_config
from app.services.assistants import AssistantFilter
from app.services.container import Services, open_services
from app.services.threads import StateWrite, ThreadFilter
from tests.conftest import EngineUrls, make_settings


@pytest_asyncio.fixture(loop_scope="session", scope="module")
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


def said(text: str, role: str = "user") -> dict[str, object]:
    return {"messages": [{"role": role, "content": text}]}


async def seeded(services: Services, *turns: str) -> str:
    """A thread of the echo graph whose history is `turns`, written as supersteps."""
    thread = await services.threads.create(graph_id="echo")
    tid = str(thread.thread_id)
    steps = [[StateWrite(as_node="__input__", values={})]]
    for i, text in enumerate(turns):
        steps.append([StateWrite(as_node="__start__" if i == 0 else "echo", values=said(text))])
    await services.threads.bulk_update_state(tid, steps)
    return tid


async def test_supersteps_write_one_checkpoint_each(services: Services) -> None:
    tid = await seeded(services, "hi", "there")
    thread = await services.threads.get(tid)
    assert [m["content"] for m in thread.values["messages"]] == ["hi", "there"]
    assert thread.status == "idle"
    history = await services.threads.history(thread, limit=10)
    assert len(history) == 3
    assert history[0]["metadata"]["source"] == "update"


async def test_supersteps_take_commands(services: Services) -> None:
    thread = await services.threads.create(graph_id="echo")
    tid = str(thread.thread_id)
    await services.threads.bulk_update_state(
        tid,
        [
            [StateWrite(as_node="__input__", values={})],
            [StateWrite(as_node="__start__", command={"update": said("via command")})],
        ],
    )
    state = await services.threads.state(await services.threads.get(tid))
    assert [m["content"] for m in state["values"]["messages"]] == ["via command"]


async def test_supersteps_refuse_what_does_not_fit(services: Services) -> None:
    thread = await services.threads.create(graph_id="echo")
    tid = str(thread.thread_id)
    with pytest.raises(BadUserInput, match="does not exist"):
        await services.threads.bulk_update_state(tid, [[StateWrite(as_node="nope", values={})]])
    with pytest.raises(BadUserInput, match="at least one update"):
        await services.threads.bulk_update_state(tid, [[]])
    no_graph = await services.threads.create()
    with pytest.raises(BadUserInput, match="no graph"):
        await services.threads.bulk_update_state(
            str(no_graph.thread_id), [[StateWrite(as_node="echo", values={})]]
        )
    # Nothing was written by the refused updates.
    assert await services.threads.history(await services.threads.get(tid), limit=5) == []


async def test_prune_delete_and_keep_latest(services: Services) -> None:
    gone = await seeded(services, "a")
    kept = await seeded(services, "b", "c")
    absent = str(uuid.uuid4())
    assert await services.threads.prune([gone, absent]) == 1
    assert await services.threads.count(ThreadFilter(ids=[gone])) == 0
    assert await services.threads.prune([kept, kept], strategy="keep_latest") == 1
    thread = await services.threads.get(kept)
    history = await services.threads.history(thread, limit=10)
    assert len(history) == 1
    assert [m["content"] for m in history[0]["values"]["messages"]] == ["b", "c"]
    with pytest.raises(BadUserInput, match="prune strategy"):
        await services.threads.prune([kept], strategy="everything")


async def test_update_state_still_refuses_a_busy_thread(services: Services) -> None:
    """The shared write path keeps update_state's rule: no state write under an active run."""
    from app.db.models import Run

    tid = await seeded(services, "x")
    async with services.db.sessions.begin() as session:
        session.add(
            Run(
                run_id=uuid.uuid4(),
                thread_id=uuid.UUID(tid),
                assistant_id=uuid.uuid4(),
                status="running",
                metadata_={},
                kwargs={},
                multitask_strategy="reject",
            )
        )
    with pytest.raises(Conflict):
        await services.threads.bulk_update_state(tid, [[StateWrite(as_node="echo", values={})]])


async def test_offset_pages_and_sort_keys(services: Services) -> None:
    tag = uuid.uuid4().hex
    made = [
        await services.assistants.create(graph_id="echo", name=f"{tag}-{i}", metadata={"t": tag})
        for i in range(5)
    ]
    flt = AssistantFilter(metadata={"t": tag})
    page = await services.assistants.search(
        flt, PageRequest(first=2, offset=2), sort_by="name", order=SortOrder.ASC
    )
    assert [a.name for a in page.items] == [f"{tag}-2", f"{tag}-3"]
    assert page.has_next_page and page.has_previous_page
    last = await services.assistants.search(
        flt, PageRequest(first=2, offset=4), sort_by="name", order=SortOrder.ASC
    )
    assert [a.assistant_id for a in last.items] == [made[4].assistant_id]
    assert not last.has_next_page

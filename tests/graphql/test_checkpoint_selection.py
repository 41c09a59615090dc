"""Choosing a checkpoint by id, namespace and map (issue 13, item 7), over GraphQL and over
LangGraph Server's REST API with the real `langgraph_sdk`: a run starts from a subgraph's
checkpoint (`subgraph_interrupt` asks its question inside the `child` subgraph), a state update
lands in a subgraph's namespace, and a namespace or id the thread lacks is NOT_FOUND."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import NotFoundError, UnprocessableEntityError

from tests.conftest import GraphQLClient, LiveServer
from tests.helpers import new_thread, run_and_wait

GRAPH = "subgraph_interrupt"

STATE = """query($id: ID!, $ns: String! = "", $cid: String, $map: JSON) { thread(id: $id) {
  status values
  state(checkpointNs: $ns, checkpointId: $cid, checkpointMap: $map, subgraphs: true) {
    values next checkpoint { checkpointId checkpointNs checkpointMap }
    tasks { name state { values checkpoint { checkpointId checkpointNs checkpointMap } } }
  } } }"""
UPDATE = """mutation($id: ID!, $values: JSON, $asNode: String, $cid: String, $ns: String! = "",
  $map: JSON) {
  updateThreadState(threadId: $id, values: $values, asNode: $asNode, checkpointId: $cid,
    checkpointNs: $ns, checkpointMap: $map) {
    checkpoint { checkpointId checkpointNs } thread { status values } } }"""


async def interrupted_in_child(client: GraphQLClient) -> tuple[str, dict[str, Any]]:
    """A thread whose run stopped at the `child` subgraph's question, and the subgraph's
    checkpoint there (`checkpointId`, `checkpointNs`, `checkpointMap`)."""
    tid = await new_thread(client)
    first = await run_and_wait(client, assistantId=GRAPH, threadId=tid, input={"value": ""})
    assert first["interrupts"], first
    return tid, await child_checkpoint(client, tid)


async def child_checkpoint(client: GraphQLClient, tid: str) -> dict[str, Any]:
    state = (await client.data(STATE, {"id": tid}))["thread"]["state"]
    (task,) = [t for t in state["tasks"] if t["name"] == "child"]
    assert task["state"]["values"] == {"value": "a"}, task
    checkpoint: dict[str, Any] = task["state"]["checkpoint"]
    assert checkpoint["checkpointNs"].startswith("child:"), checkpoint
    return checkpoint


async def answered(client: GraphQLClient, tid: str, answer: str) -> dict[str, Any]:
    done = await run_and_wait(client, assistantId=GRAPH, threadId=tid, command={"resume": answer})
    assert done["run"]["status"] == "SUCCESS" and not done["interrupts"], done
    return done


async def langgraph_itself() -> dict[str, Any]:
    """LangGraph's own outcome, in-process on its in-memory saver, of what the tests ask of
    lgql: interrupted in the child, answered, then run from the child's checkpoint config."""
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import Command

    from tests.fixtures.graphs.agents.subgraph_interrupt import builder

    graph = builder.compile(checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "t"}}
    await graph.ainvoke({"value": ""}, config)
    (task,) = (await graph.aget_state(config, subgraphs=True)).tasks
    assert task.state is not None and not isinstance(task.state, dict)
    chosen = task.state.config["configurable"]
    await graph.ainvoke(Command(resume="x"), config)
    await graph.ainvoke(None, {"configurable": {**chosen, "thread_id": "t"}})
    return dict((await graph.aget_state(config)).values)


# --- GraphQL: a run from a subgraph's checkpoint -----------------------------------------------


@pytest.mark.parametrize("with_map", [True, False], ids=["ns+id+map", "ns+id"])
async def test_a_run_starts_inside_the_subgraph_at_its_checkpoint(
    gql_client: GraphQLClient, with_map: bool
) -> None:
    tid, checkpoint = await interrupted_in_child(gql_client)
    assert (await answered(gql_client, tid, "x"))["values"] == {
        "value": "ax",
        "trace": ["prepare", "finish"],
    }

    chosen: dict[str, Any] = {
        "checkpointId": checkpoint["checkpointId"],
        "checkpointNs": checkpoint["checkpointNs"],
    }
    if with_map:
        chosen["checkpointMap"] = checkpoint["checkpointMap"]
    again = await run_and_wait(gql_client, assistantId=GRAPH, threadId=tid, **chosen)
    # Back at the child's question: the parent as it was when the child's checkpoint was
    # written (LangGraph replays the parent from the map's root entry, and the child anew).
    assert again["values"] == {"value": "", "trace": ["prepare"]}, again
    assert again["values"] == await langgraph_itself(), "as LangGraph does, in-process"
    assert [i["value"] for i in again["interrupts"]] == [{"question": "Append what?"}]
    await child_checkpoint(gql_client, tid)

    assert (await answered(gql_client, tid, "y"))["values"] == {
        "value": "ay",
        "trace": ["prepare", "finish"],
    }


async def test_a_root_checkpoint_still_forks_as_before(gql_client: GraphQLClient) -> None:
    tid, checkpoint = await interrupted_in_child(gql_client)
    await answered(gql_client, tid, "x")
    root = checkpoint["checkpointMap"][""]
    again = await run_and_wait(gql_client, assistantId=GRAPH, threadId=tid, checkpointId=root)
    assert again["values"] == {"value": "", "trace": ["prepare"]}, again
    assert again["interrupts"], again


async def test_a_checkpoint_the_thread_lacks_is_not_found(gql_client: GraphQLClient) -> None:
    tid, checkpoint = await interrupted_in_child(gql_client)
    create = """mutation($input: RunInput!) { createRun(input: $input) { id } }"""
    base = {"assistantId": GRAPH, "threadId": tid}
    ns, cid, cmap = (
        checkpoint["checkpointNs"],
        checkpoint["checkpointId"],
        checkpoint["checkpointMap"],
    )
    wrong = [
        {"checkpointNs": "child:00000000-0000-0000-0000-000000000000", "checkpointId": cid},
        {"checkpointNs": ns, "checkpointId": "1f000000-0000-6000-8000-000000000000"},
        {"checkpointNs": "", "checkpointId": cid},  # the child's id is no root checkpoint
        {"checkpointNs": ns, "checkpointId": cid, "checkpointMap": {**cmap, "": cid}},
    ]
    for chosen in wrong:
        code = await gql_client.error_code(create, {"input": {**base, **chosen}})
        assert code == "NOT_FOUND", chosen
    bad = [
        {"checkpointNs": ns},  # which of the subgraph's checkpoints?
        {"checkpointNs": ns, "checkpointId": cid, "checkpointMap": {"": 1}},
        {"checkpointNs": ns, "checkpointId": cid, "checkpointMap": ["no"]},
    ]
    for chosen in bad:
        code = await gql_client.error_code(create, {"input": {**base, **chosen}})
        assert code == "BAD_USER_INPUT", chosen
    # Nothing was started: the thread still waits at the child's question.
    thread = (await gql_client.data(STATE, {"id": tid}))["thread"]
    assert thread["status"] == "INTERRUPTED"
    assert thread["values"] == {"value": "", "trace": ["prepare"]}

    state_at = await gql_client.error_code(STATE, {"id": tid, "ns": ns, "cid": "nope"})
    assert state_at == "NOT_FOUND"
    state_map = {"id": tid, "ns": ns, "cid": cid, "map": {"": "nope"}}
    assert await gql_client.error_code(STATE, state_map) == "NOT_FOUND"
    sub = await gql_client.data(STATE, {"id": tid, "ns": ns, "cid": cid, "map": cmap})
    assert sub["thread"]["state"]["values"] == {"value": "a"}


# --- GraphQL: a state update in a subgraph's namespace -----------------------------------------


async def test_update_state_in_a_subgraph_namespace(gql_client: GraphQLClient) -> None:
    tid, checkpoint = await interrupted_in_child(gql_client)
    ns = checkpoint["checkpointNs"]
    update = {"id": tid, "values": {"value": "A"}, "asNode": "a", "ns": ns}
    result = (await gql_client.data(UPDATE, update))["updateThreadState"]
    assert result["checkpoint"]["checkpointNs"] == ns
    assert result["checkpoint"]["checkpointId"] != checkpoint["checkpointId"]
    # The thread's own state is the parent's, untouched; the child's moved on.
    assert result["thread"] == {
        "status": "INTERRUPTED",
        "values": {"value": "", "trace": ["prepare"]},
    }
    sub = (await gql_client.data(STATE, {"id": tid, "ns": ns}))["thread"]["state"]
    assert sub["values"] == {"value": "A"}
    assert sub["checkpoint"]["checkpointId"] == result["checkpoint"]["checkpointId"]

    # From a chosen checkpoint of the child (a fork of it), with its map.
    fork = {**update, "values": {"value": "B"}, "cid": checkpoint["checkpointId"]}
    fork["map"] = checkpoint["checkpointMap"]
    forked = (await gql_client.data(UPDATE, fork))["updateThreadState"]["checkpoint"]
    assert forked["checkpointNs"] == ns
    sub = (await gql_client.data(STATE, {"id": tid, "ns": ns}))["thread"]["state"]
    assert sub["values"] == {"value": "B"}


async def test_update_state_in_a_namespace_the_thread_lacks(gql_client: GraphQLClient) -> None:
    tid, checkpoint = await interrupted_in_child(gql_client)
    ns = checkpoint["checkpointNs"]
    values = {"id": tid, "values": {"value": "A"}, "asNode": "a"}
    unknown_ns = {**values, "ns": "child:00000000-0000-0000-0000-000000000000"}
    assert await gql_client.error_code(UPDATE, unknown_ns) == "NOT_FOUND"
    unknown_id = {**values, "ns": ns, "cid": "1f000000-0000-6000-8000-000000000000"}
    assert await gql_client.error_code(UPDATE, unknown_id) == "NOT_FOUND"
    parent_node = {**values, "ns": ns, "asNode": "prepare"}  # a node of the parent, not the child
    assert await gql_client.error_code(UPDATE, parent_node) == "BAD_USER_INPUT"
    sub = (await gql_client.data(STATE, {"id": tid, "ns": ns}))["thread"]["state"]
    assert sub["values"] == {"value": "a"}, "nothing was written"


# --- REST, with langgraph_sdk ------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def sdk(live_server: LiveServer) -> AsyncIterator[LangGraphClient]:
    client = get_client(url=live_server.url, timeout=60)
    try:
        yield client
    finally:
        await client.http.client.aclose()


def chosen(**fields: Any) -> Any:
    """A `checkpoint` body: LangGraph Server takes any of its keys (the SDK's type wants all)."""
    return fields


async def sdk_interrupted_in_child(sdk: LangGraphClient) -> tuple[str, Any]:
    thread = await sdk.threads.create()
    tid = thread["thread_id"]
    await sdk.runs.wait(tid, GRAPH, input={"value": ""})
    state = await sdk.threads.get_state(tid, subgraphs=True)
    (task,) = [t for t in state["tasks"] if t["name"] == "child"]
    assert task["state"] is not None
    sub: Any = task["state"]
    return tid, chosen(**sub["checkpoint"])


async def test_sdk_run_from_a_subgraph_checkpoint(sdk: LangGraphClient) -> None:
    tid, checkpoint = await sdk_interrupted_in_child(sdk)
    assert set(checkpoint) >= {"checkpoint_id", "checkpoint_ns", "checkpoint_map"}
    await sdk.runs.wait(tid, GRAPH, command={"resume": "x"})
    assert (await sdk.threads.get(tid))["values"] == {"value": "ax", "trace": ["prepare", "finish"]}

    run = await sdk.runs.create(tid, GRAPH, checkpoint=checkpoint)
    await sdk.runs.join(tid, run["run_id"])
    thread = await sdk.threads.get(tid)
    assert thread["status"] == "interrupted"
    assert thread["values"] == {"value": "", "trace": ["prepare"]}
    stored: Any = await sdk.runs.get(tid, run["run_id"])
    assert stored["kwargs"]["checkpoint_ns"] == checkpoint["checkpoint_ns"]
    assert stored["kwargs"]["checkpoint_map"] == checkpoint["checkpoint_map"]

    await sdk.runs.wait(tid, GRAPH, command={"resume": "y"})
    assert (await sdk.threads.get(tid))["values"] == {"value": "ay", "trace": ["prepare", "finish"]}

    wrong = chosen(**{**checkpoint, "checkpoint_id": "1f000000-0000-6000-8000-000000000000"})
    with pytest.raises(NotFoundError):
        await sdk.runs.create(tid, GRAPH, checkpoint=wrong)
    with pytest.raises(NotFoundError):
        await sdk.runs.create(
            tid,
            GRAPH,
            checkpoint=chosen(**{**checkpoint, "checkpoint_ns": "child:nope"}),
        )
    with pytest.raises(UnprocessableEntityError):
        await sdk.runs.create(
            tid,
            GRAPH,
            checkpoint=chosen(checkpoint_ns=checkpoint["checkpoint_ns"]),
        )


async def test_sdk_update_state_in_a_subgraph_namespace(sdk: LangGraphClient) -> None:
    tid, checkpoint = await sdk_interrupted_in_child(sdk)
    ns = checkpoint["checkpoint_ns"]
    result = await sdk.threads.update_state(
        tid,
        {"value": "A"},
        as_node="a",
        checkpoint=chosen(checkpoint_ns=ns),
    )
    assert result["checkpoint"]["checkpoint_ns"] == ns
    sub = await sdk.threads.get_state(tid, checkpoint=chosen(checkpoint_ns=ns))
    assert sub["values"] == {"value": "A"}
    assert (await sdk.threads.get(tid))["values"] == {"value": "", "trace": ["prepare"]}

    with pytest.raises(NotFoundError):
        await sdk.threads.update_state(
            tid,
            {"value": "B"},
            as_node="a",
            checkpoint=chosen(checkpoint_ns="child:nope"),
        )
    with pytest.raises(NotFoundError):
        await sdk.threads.update_state(
            tid,
            {"value": "B"},
            as_node="a",
            checkpoint=chosen(**{**checkpoint, "checkpoint_id": "nope"}),
        )

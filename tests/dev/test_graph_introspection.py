"""Drawing, schemas and subgraphs of registered graphs; the shared fixture graphs run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from app.runtime.graphs import GraphRegistry
from app.runtime.langgraph_config import load_langgraph_config

SHARED = Path(__file__).resolve().parents[1] / "fixtures" / "graphs" / "langgraph.json"
SCHEMA_KEYS = {"input_schema", "output_schema", "state_schema", "config_schema", "context_schema"}


pytestmark = pytest.mark.usefixtures("isolated_process_state")


async def load(path: Path) -> GraphRegistry:
    return await GraphRegistry.load(load_langgraph_config(path))


# --- introspection ----------------------------------------------------------------------------


async def test_draw_shape() -> None:
    registry = await load(SHARED)
    drawn = await registry.draw("steps")
    assert [node["id"] for node in drawn["nodes"]] == [
        "__start__",
        *(f"step_{i}" for i in range(1, 6)),
        "__end__",
    ]
    assert drawn["nodes"][1] == {"id": "step_1", "type": "runnable", "data": {"name": "step_1"}}
    assert {"source": "__start__", "target": "step_1"} in drawn["edges"]
    assert {"source": "step_5", "target": "__end__"} in drawn["edges"]
    json.dumps(drawn)


async def test_draw_xray_expands_subgraphs() -> None:
    registry = await load(SHARED)
    flat = {node["id"] for node in (await registry.draw("subgraph_parent"))["nodes"]}
    assert "child" in flat and not any(n.startswith("child:") for n in flat)
    for xray in (True, 1):
        deep = {node["id"] for node in (await registry.draw("subgraph_parent", xray=xray))["nodes"]}
        assert {"child:inner_a", "child:inner_b"} <= deep
    for bad in (0, -1):
        with pytest.raises(ValueError, match="Invalid xray value"):
            await registry.draw("subgraph_parent", xray=bad)


async def test_mermaid() -> None:
    registry = await load(SHARED)
    text = await registry.mermaid("subgraph_parent", xray=True)
    assert "graph TD;" in text
    assert "inner_a" in text and "prepare" in text


async def test_schemas_shape() -> None:
    registry = await load(SHARED)
    schemas = await registry.schemas("echo")
    assert set(schemas) == {"graph_id", *SCHEMA_KEYS}
    assert schemas["graph_id"] == "echo"
    assert schemas["input_schema"]["properties"]["messages"]["type"] == "array"
    assert schemas["state_schema"]["title"] == "echo_state"  # named after the graph id
    assert set(schemas["state_schema"]["properties"]) == {"messages"}
    assert schemas["config_schema"] == {}
    assert schemas["context_schema"] is None
    schemas["input_schema"]["mutated"] = True
    assert "mutated" not in (await registry.schemas("echo"))["input_schema"]


async def test_schemas_of_a_context_schema_graph() -> None:
    registry = await load(SHARED)
    schemas = await registry.schemas("ctx")
    context = schemas["context_schema"]
    assert context["title"] == "Context"
    assert set(context["properties"]) == {"user_name", "greeting"}
    assert schemas["config_schema"] == context
    json.dumps(schemas)


async def test_schemas_of_a_factory() -> None:
    registry = await load(SHARED)
    schemas = await registry.schemas("factory", {"configurable": {"prefix": ">"}})
    assert schemas["graph_id"] == "factory"
    assert set(schemas["output_schema"]["properties"]) == {"value", "reply"}


async def test_subgraphs() -> None:
    registry = await load(SHARED)
    found = await registry.subgraphs("subgraph_parent")
    assert list(found) == ["child"]
    assert set(found["child"]) == SCHEMA_KEYS
    assert set(found["child"]["state_schema"]["properties"]) == {"value"}
    assert await registry.subgraphs("subgraph_parent", namespace="child") == found
    assert await registry.subgraphs("subgraph_parent", namespace="other") == {}
    assert await registry.subgraphs("subgraph_parent", recurse=True) == found
    assert await registry.subgraphs("steps") == {}


# --- the shared fixture graphs other tests use ------------------------------------------------


async def test_shared_fixture_graphs_run() -> None:
    registry = await load(SHARED)
    # In langgraph.json's order (the file grows as tests need more graphs).
    assert registry.graph_ids == list(json.loads(SHARED.read_text())["graphs"])
    assert registry.info("ctx").description == "Greets the user named in the run context."

    echo = await registry.build("echo")
    out = await echo.ainvoke({"messages": [{"role": "user", "content": "hi"}]})
    assert [(m.type, m.content) for m in out["messages"]] == [("human", "hi"), ("ai", "hi")]

    assert (await (await registry.build("steps")).ainvoke({"count": 0})) == {"count": 5}
    assert (await (await registry.build("steps")).ainvoke({})) == {"count": 5}

    parent = await registry.build("subgraph_parent")
    out = await parent.ainvoke({"value": "v"})
    assert out == {"value": "vab", "trace": ["prepare", "finish"]}
    namespaces = {ns async for ns, _ in parent.astream({"value": "v"}, subgraphs=True)}
    assert any(ns and ns[0].startswith("child:") for ns in namespaces)

    factory = await registry.build("factory", {"configurable": {"prefix": ">"}})
    assert (await factory.ainvoke({"value": "v"}))["reply"] == ">v"

    ctx = await registry.build("ctx")
    out = await ctx.ainvoke({}, context={"user_name": "Ada"})
    assert out == {"greeting": "Hello, Ada!"}

    stream = await registry.build("stream100")
    custom = [c async for c in stream.astream({}, stream_mode="custom")]
    assert custom == [{"i": i} for i in range(100)]

    interrupting = await registry.build("interrupt", checkpointer=InMemorySaver())
    config: RunnableConfig = {"configurable": {"thread_id": "t"}}
    out = await interrupting.ainvoke({"question": "Sure?"}, config)
    assert out["__interrupt__"][0].value == {"question": "Sure?"}
    assert (await interrupting.ainvoke(Command(resume="yes"), config))["answer"] == "yes"

    slow = await registry.build("slow")
    assert await slow.ainvoke({"seconds": 0.05}) == {"seconds": 0.05, "count": 1}

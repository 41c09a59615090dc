"""The graph registry: langgraph.json loading, every graph form, drawing, schemas, subgraphs."""

from __future__ import annotations

import logging
import os
import sys
import uuid
from pathlib import Path

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.pregel import Pregel
from langgraph.store.memory import InMemoryStore

from app.runtime.graphs import (
    NAMESPACE_GRAPH,
    GraphLoadError,
    GraphNotFoundError,
    GraphRegistry,
    default_assistant_id,
)
from app.runtime.langgraph_config import (
    load_langgraph_config,
    parse_langgraph_config,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "graphs"
SHARED = FIXTURES / "langgraph.json"
FORMS = FIXTURES / "forms" / "langgraph.json"
ENV_MAPPING = FIXTURES / "forms" / "env_mapping.json"
BROKEN = FIXTURES / "broken" / "langgraph.json"
SCHEMA_KEYS = {"input_schema", "output_schema", "state_schema", "config_schema", "context_schema"}


pytestmark = pytest.mark.usefixtures("isolated_process_state")


async def load(path: Path) -> GraphRegistry:
    return await GraphRegistry.load(load_langgraph_config(path))


# --- loading ----------------------------------------------------------------------------------


async def test_env_file_applied_before_graphs_import(
    elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FIXTURE_GREETING", raising=False)
    registry = await load(FORMS)
    graph = await registry.build("env_graph")
    result = await graph.ainvoke({"value": "x"})
    assert result["reply"] == "hello-from-env-file:x"


async def test_env_mapping_applied_before_graphs_import(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FIXTURE_GREETING", "from-process")
    registry = await load(ENV_MAPPING)
    assert os.environ["FIXTURE_NUMBER"] == "3"
    assert os.environ["FIXTURE_FLAG"] == "true"
    result = await (await registry.build("env_graph")).ainvoke({"value": "x"})
    assert result["reply"] == "hello-from-mapping:x"


async def test_load_from_another_working_directory(elsewhere: Path) -> None:
    registry = await load(FORMS)
    assert registry.graph_ids == list(load_langgraph_config(FORMS).graphs)
    assert "compiled" in registry and "nope" not in registry
    assert len(registry) == len(registry.graph_ids)
    assert registry.config is not None and registry.config.config_path == FORMS


async def test_graph_info() -> None:
    registry = await load(FORMS)
    compiled = registry.info("compiled")
    assert compiled.source == "./compiled.py:graph"
    assert compiled.location == str(FORMS.parent / "compiled.py")
    assert compiled.name == "compiled"  # the default "LangGraph" name gives way to the id
    assert compiled.description is None and not compiled.is_factory
    assert registry.info("described").description == "The compiled graph, described."
    assert registry.info("named").name == "MyAgent"
    assert registry.info("package").name == "packaged"
    assert registry.info("sync_factory").name == "sync_factory"
    assert registry.info("sync_factory").is_factory
    assert [info.graph_id for info in registry] == registry.graph_ids
    with pytest.raises(GraphNotFoundError, match="Graph 'nope' not found"):
        registry.info("nope")


def test_default_assistant_id_is_langgraph_servers() -> None:
    assert NAMESPACE_GRAPH == uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")
    assert default_assistant_id("agent") == uuid.uuid5(NAMESPACE_GRAPH, "agent")


async def test_compiled_graph_gets_a_copy_with_the_servers_persistence() -> None:
    registry = await load(FORMS)
    saver, store = InMemorySaver(), InMemoryStore()
    graph = await registry.build("compiled", checkpointer=saver, store=store)
    assert isinstance(graph, Pregel)
    assert graph.checkpointer is saver and graph.store is store
    assert graph.name == "compiled"
    again = await registry.build("compiled")
    assert again is not graph and again.checkpointer is None
    config: RunnableConfig = {"configurable": {"thread_id": "t1"}}
    assert (await graph.ainvoke({"value": "v"}, config))["reply"] == "compiled:v"
    assert (await graph.aget_state(config)).values["reply"] == "compiled:v"


async def test_own_checkpointer_is_replaced_and_warned(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="app.runtime.graphs"):
        registry = await load(FORMS)
    assert "'own_checkpointer' was compiled with its own checkpointer" in caplog.text
    saver = InMemorySaver()
    assert (await registry.build("own_checkpointer", checkpointer=saver)).checkpointer is saver
    assert (await registry.build("own_checkpointer")).checkpointer is None


async def test_state_graph_is_compiled() -> None:
    registry = await load(FORMS)
    graph = await registry.build("state_graph")
    assert isinstance(graph, Pregel)
    assert (await graph.ainvoke({"value": "v"}))["reply"] == "state_graph:v"


async def test_sync_factory_called_per_build_with_the_config() -> None:
    registry = await load(FORMS)
    events = sys.modules["__factories"].EVENTS
    events.clear()
    saver = InMemorySaver()
    config: RunnableConfig = {"configurable": {"prefix": "p1:", "thread_id": "t"}}
    graph = await registry.build("sync_factory", config, checkpointer=saver)
    assert graph.checkpointer is saver
    assert graph.name == "sync_factory"
    assert (await graph.ainvoke({"value": "v"}, config))["reply"] == "p1:v"
    await registry.build("sync_factory", {"configurable": {"prefix": "p2:"}})
    assert events == [("sync", "p1:", "p1:"), ("sync", "p2:", "p2:")]
    assert "__pregel_runtime" not in config["configurable"]  # the caller's config is untouched


async def test_async_and_no_arg_factories() -> None:
    registry = await load(FORMS)
    events = sys.modules["__factories"].EVENTS
    events.clear()
    graph = await registry.build("async_factory", {"configurable": {"prefix": "x"}})
    assert (await graph.ainvoke({"value": "v"}))["reply"] == "async:v"
    graph = await registry.build("no_arg_factory")
    assert (await graph.ainvoke({"value": "v"}))["reply"] == "no_arg:v"
    assert events == [("async", "x"), ("no_arg",)]


async def test_context_manager_factory_needs_open() -> None:
    registry = await load(FORMS)
    events = sys.modules["__factories"].EVENTS
    events.clear()
    async with registry.open("cm_factory") as graph:
        assert events == [("enter",)]
        assert (await graph.ainvoke({"value": "v"}))["reply"] == "cm:v"
    assert events == [("enter",), ("exit",)]
    with pytest.raises(TypeError, match=r"use GraphRegistry\.open"):
        await registry.build("cm_factory")


async def test_server_runtime_factory() -> None:
    registry = await load(FORMS)
    events = sys.modules["__factories"].EVENTS
    events.clear()
    await registry.build("runtime_factory", context={"user": "u1"})
    await registry.schemas("runtime_factory")
    assert events == [
        ("runtime", "threads.create_run", {"user": "u1"}),
        ("runtime", "assistants.read", None),
    ]


async def test_package_module_form_through_dependencies() -> None:
    registry = await load(FORMS)
    graph = await registry.build("package")
    assert (await graph.ainvoke({"value": "v"}))["reply"] == "package:v"


async def test_same_file_name_in_two_folders() -> None:
    registry = await load(FORMS)
    a = await registry.build("same_name_a")
    b = await registry.build("same_name_b")
    assert (a.name, b.name) == ("graph_a", "graph_b")
    assert (await b.ainvoke({"value": "v"}))["reply"] == "b:v"
    assert sys.modules["__a__graph"].__file__ == str(FORMS.parent / "a" / "graph.py")


async def test_same_relative_path_in_another_config_does_not_collide(tmp_path: Path) -> None:
    first = await load(FORMS)
    (tmp_path / "compiled.py").write_text(
        "from lgql_forms_common import build\ngraph = build('other:').compile()\n"
    )
    config = parse_langgraph_config(
        {"graphs": {"compiled": "./compiled.py:graph"}}, tmp_path / "langgraph.json"
    )
    other = await GraphRegistry.load(config)
    assert (await (await other.build("compiled")).ainvoke({"value": "v"}))["reply"] == "other:v"
    assert (await (await first.build("compiled")).ainvoke({"value": "v"}))["reply"] == "compiled:v"


async def test_loading_twice() -> None:
    first, second = await load(FORMS), await load(FORMS)
    assert first.graph_ids == second.graph_ids


async def test_unknown_graph() -> None:
    registry = await load(SHARED)
    with pytest.raises(
        GraphNotFoundError, match=r"Graph 'nope' not found. Expected one of: \[.*'ctx', 'echo'"
    ):
        await registry.build("nope")


# --- load failures ----------------------------------------------------------------------------


async def test_import_failure_names_graph_file_and_exception() -> None:
    with pytest.raises(GraphLoadError) as info:
        await load(BROKEN)
    message = str(info.value)
    assert "'broken'" in message
    assert str(BROKEN.parent / "broken.py") in message
    assert "RuntimeError: boom: this fixture fails on import" in message
    assert isinstance(info.value.cause, RuntimeError)
    assert info.value.graph_id == "broken"


async def _load_single(tmp_path: Path, spec: str, source: str | None = None) -> GraphRegistry:
    if source is not None:
        (tmp_path / "g.py").write_text(source)
    data = {"graphs": {"g": spec}}
    return await GraphRegistry.load(parse_langgraph_config(data, tmp_path / "langgraph.json"))


async def test_missing_variable_lists_graphs_found(tmp_path: Path) -> None:
    source = (FIXTURES / "agents" / "steps.py").read_text()
    with pytest.raises(GraphLoadError, match=r"'grap' is not defined in .*Graphs found in it:"):
        await _load_single(tmp_path, "./g.py:grap", source)


async def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(GraphLoadError, match=r"FileNotFoundError: no such file: .*absent\.py"):
        await _load_single(tmp_path, "./absent.py:graph")


async def test_missing_module_hints_at_installing(tmp_path: Path) -> None:
    with pytest.raises(GraphLoadError, match=r"ModuleNotFoundError.*packages are installed"):
        await _load_single(tmp_path, "lgql_no_such_module.graphs:graph")


async def test_not_a_graph(tmp_path: Path) -> None:
    with pytest.raises(GraphLoadError, match=r"'graph' in .* is a int, not a compiled graph"):
        await _load_single(tmp_path, "./g.py:graph", "graph = 3\n")


async def test_factory_with_bad_signature(tmp_path: Path) -> None:
    source = "def graph(a, b, c):\n    pass\n"
    with pytest.raises(GraphLoadError, match="must take no argument"):
        await _load_single(tmp_path, "./g.py:graph", source)


async def test_factory_returning_a_non_graph(tmp_path: Path) -> None:
    registry = await _load_single(tmp_path, "./g.py:graph", "def graph():\n    return 3\n")
    with pytest.raises(GraphLoadError, match="returned int, not a graph"):
        await registry.build("g")


async def test_javascript_graphs_are_refused(tmp_path: Path) -> None:
    (tmp_path / "g.ts").write_text("export const graph = 1;\n")
    with pytest.raises(GraphLoadError, match="JavaScript graphs are not supported"):
        await _load_single(tmp_path, "./g.ts:graph")


async def test_from_objects() -> None:
    shared = await load(SHARED)
    steps = await shared.build("steps")
    registry = GraphRegistry.from_objects({"s": steps}, descriptions={"s": "five steps"})
    assert registry.info("s").description == "five steps"
    assert registry.info("s").name == "steps"
    assert (await (await registry.build("s")).ainvoke({"count": 0}))["count"] == 5
    with pytest.raises(GraphLoadError, match="not a compiled graph"):
        GraphRegistry.from_objects({"bad": object()})

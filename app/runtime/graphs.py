"""The graphs of ``langgraph.json``: imported once at startup, handed out per run, introspected.

Behaviour follows LangGraph Server (``langgraph_api/graph.py``, ``api/assistants.py``):

- a graph value is a compiled graph, a ``StateGraph`` (compiled at load), or a factory: a sync or
  async callable, or one returning a (async) context manager, taking no argument, the run
  ``config``, a ``langgraph_sdk.runtime.ServerRuntime`` (recognised by its annotation), or both.
  Factories are called on every :meth:`GraphRegistry.open` / :meth:`GraphRegistry.build`.
- every handed-out graph is a copy carrying the server's checkpointer and store, replacing any the
  graph was compiled with (``None`` removes them, as for stateless runs); the shared compiled
  graph is never mutated. LangGraph's dev server refuses a graph compiled with its own
  persistence and its deployed server silently replaces it: we replace it and log a warning.
- a graph still named LangGraph's default ``"LangGraph"`` is renamed to its graph id.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeAlias

from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import var_child_runnable_config
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import StateGraph
from langgraph.pregel import Pregel
from langgraph.store.base import BaseStore
from langgraph_sdk.auth.types import BaseUser

from app.runtime.graph_introspection import (
    GraphVisualizationError,
    check_xray,
    draw_json,
    draw_mermaid,
    graph_schemas,
    subgraph_schemas,
)
from app.runtime.graph_loader import (
    AccessContext,
    FactoryArg,
    call_factory,
    classify_factory,
    factory_config,
    import_graph_value,
)
from app.runtime.langgraph_config import (
    GraphSpec,
    LanggraphConfig,
    add_dependency_paths,
    apply_env,
    load_langgraph_config,
)
from app.runtime.reload import error_location, forget_project_modules

logger = logging.getLogger(__name__)

__all__ = [
    "NAMESPACE_GRAPH",
    "AccessContext",
    "AnyPregel",
    "GraphInfo",
    "GraphLoadError",
    "GraphNotFoundError",
    "GraphRegistry",
    "GraphVisualizationError",
    "default_assistant_id",
]

NAMESPACE_GRAPH = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")

AnyPregel: TypeAlias = Pregel[Any, Any, Any, Any]
"""A compiled graph of any state/context; bare ``Pregel`` would mean "no context" to mypy."""


def default_assistant_id(graph_id: str) -> uuid.UUID:
    """The system assistant's id for ``graph_id``, identical to LangGraph Server's."""
    return uuid.uuid5(NAMESPACE_GRAPH, graph_id)


class GraphLoadError(RuntimeError):
    """A graph of langgraph.json could not be imported or produced."""

    def __init__(self, graph_id: str, location: str, cause: BaseException) -> None:
        self.graph_id = graph_id
        self.location = location
        self.cause = cause
        self.where = error_location(cause)
        message = (
            f"Failed to load graph '{graph_id}' from {location}: {type(cause).__name__}: {cause}"
        )
        if self.where is not None:
            message += f" (at {self.where})"
        if isinstance(cause, ImportError):
            message += (
                " (check that the project's packages are installed: langgraph.json "
                "'dependencies' only puts local folders on sys.path)"
            )
        super().__init__(message)


class GraphNotFoundError(LookupError):
    """No graph with this id is registered."""

    def __init__(self, graph_id: str, known: list[str]) -> None:
        self.graph_id = graph_id
        super().__init__(f"Graph '{graph_id}' not found. Expected one of: {sorted(known)}")


@dataclass(frozen=True, slots=True)
class GraphInfo:
    graph_id: str
    source: str
    """The spec as written in langgraph.json, e.g. ``./agent.py:graph``."""
    description: str | None
    name: str
    """The system assistant's name: the compiled graph's own name unless it is LangGraph's
    default ``"LangGraph"``, else (and for factories) the graph id."""
    location: str = ""
    """Absolute file path or module name the graph was imported from."""
    is_factory: bool = False


@dataclass(frozen=True, slots=True)
class _Entry:
    info: GraphInfo
    graph: AnyPregel | None
    factory: Callable[..., Any] | None = None
    factory_args: tuple[FactoryArg, ...] = ()


def _entry_from_value(spec: GraphSpec, value: Any) -> _Entry:
    if isinstance(value, StateGraph):
        value = value.compile()
    if isinstance(value, Pregel):
        own = [
            f"{kind} ({type(obj).__name__})"
            for kind, obj in (("checkpointer", value.checkpointer), ("store", value.store))
            if isinstance(obj, BaseCheckpointSaver | BaseStore)
        ]
        if own:
            logger.warning(
                "graph '%s' was compiled with its own %s; the server's replaces it",
                spec.graph_id,
                " and ".join(own),
            )
        name = value.name if value.name and value.name != "LangGraph" else spec.graph_id
        info = GraphInfo(spec.graph_id, spec.source, spec.description, name, spec.location)
        return _Entry(info, value)
    if callable(value):
        args = classify_factory(value)
        info = GraphInfo(
            spec.graph_id, spec.source, spec.description, spec.graph_id, spec.location, True
        )
        return _Entry(info, None, value, args)
    raise TypeError(
        f"'{spec.variable}' in {spec.location} is a {type(value).__name__}, "
        "not a compiled graph, a StateGraph, or a graph factory"
    )


def _load_entry(spec: GraphSpec, imported: dict[str, ModuleType]) -> _Entry:
    return _entry_from_value(spec, import_graph_value(spec, imported))


class GraphRegistry:
    """The graphs of one langgraph.json, by graph id, in file order."""

    def __init__(
        self, entries: Mapping[str, _Entry], config: LanggraphConfig | None = None
    ) -> None:
        self._entries = dict(entries)
        self.config = config
        self._schema_cache: dict[str, dict[str, Any]] = {}

    @classmethod
    async def load(cls, config: LanggraphConfig) -> GraphRegistry:
        """Apply ``env`` and ``dependencies``, then import every graph (in worker threads)."""
        await asyncio.to_thread(apply_env, config)
        await asyncio.to_thread(add_dependency_paths, config)
        entries: dict[str, _Entry] = {}
        imported: dict[str, ModuleType] = {}
        # One at a time: concurrent imports of user code can deadlock on module locks.
        for spec in config.graph_specs():
            try:
                entries[spec.graph_id] = await asyncio.to_thread(_load_entry, spec, imported)
            except Exception as exc:
                raise GraphLoadError(spec.graph_id, spec.location, exc) from exc
            logger.debug("loaded graph %s from %s", spec.graph_id, spec.source)
        return cls(entries, config)

    async def reload(self) -> LanggraphConfig:
        """Read langgraph.json again and import every graph afresh, the project's own modules
        included (`lgql dev`'s hot reload); then serve the new graphs. A graph already handed
        out (a run in progress) keeps its code. When anything fails (ConfigError,
        GraphLoadError), the registry and the imported modules stay as they were.

        Returns the new config. Only a registry loaded from a file can reload."""
        if self.config is None or self.config.config_path is None:
            raise RuntimeError("only a registry loaded from langgraph.json can reload")
        config = await asyncio.to_thread(load_langgraph_config, self.config.config_path)
        snapshot = await asyncio.to_thread(forget_project_modules, self.config, config)
        try:
            fresh = await GraphRegistry.load(config)
        except BaseException:
            await asyncio.to_thread(snapshot.restore)
            raise
        # One assignment each: a reader sees the old graphs or the new ones, never a mix.
        self._entries = fresh._entries
        self._schema_cache = {}
        self.config = config
        return config

    @classmethod
    def from_objects(
        cls, graphs: Mapping[str, Any], *, descriptions: Mapping[str, str] | None = None
    ) -> GraphRegistry:
        """A registry of in-memory graphs or factories (tests, embedding lgql)."""
        entries: dict[str, _Entry] = {}
        for graph_id, value in graphs.items():
            description = (descriptions or {}).get(graph_id)
            spec = GraphSpec(
                graph_id, f"<object>:{graph_id}", "module", "<object>", graph_id, description
            )
            try:
                entries[graph_id] = _entry_from_value(spec, value)
            except Exception as exc:
                raise GraphLoadError(graph_id, "<object>", exc) from exc
        return cls(entries)

    @property
    def graph_ids(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, graph_id: object) -> bool:
        return graph_id in self._entries

    def __iter__(self) -> Iterator[GraphInfo]:
        return (entry.info for entry in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def info(self, graph_id: str) -> GraphInfo:
        return self._entry(graph_id).info

    def _entry(self, graph_id: str) -> _Entry:
        try:
            return self._entries[graph_id]
        except KeyError:
            raise GraphNotFoundError(graph_id, self.graph_ids) from None

    @asynccontextmanager
    async def open(
        self,
        graph_id: str,
        config: RunnableConfig | None = None,
        *,
        checkpointer: BaseCheckpointSaver | None = None,
        store: BaseStore | None = None,
        access_context: AccessContext = "threads.create_run",
        context: Any = None,
        user: BaseUser | None = None,
    ) -> AsyncIterator[AnyPregel]:
        """The graph for one use. Context-manager factories stay open for the block."""
        async with AsyncExitStack() as stack:
            yield await self._produce(
                graph_id, config, checkpointer, store, access_context, context, user, stack
            )

    async def build(
        self,
        graph_id: str,
        config: RunnableConfig | None = None,
        *,
        checkpointer: BaseCheckpointSaver | None = None,
        store: BaseStore | None = None,
        access_context: AccessContext = "threads.create_run",
        context: Any = None,
        user: BaseUser | None = None,
    ) -> AnyPregel:
        """The graph for one use; a factory returning a context manager needs :meth:`open`."""
        return await self._produce(
            graph_id, config, checkpointer, store, access_context, context, user, None
        )

    async def _produce(
        self,
        graph_id: str,
        config: RunnableConfig | None,
        checkpointer: BaseCheckpointSaver | None,
        store: BaseStore | None,
        access_context: AccessContext,
        context: Any,
        user: BaseUser | None,
        stack: AsyncExitStack | None,
    ) -> AnyPregel:
        entry = self._entry(graph_id)
        if entry.factory is None:
            assert entry.graph is not None
            return self._finish(entry, entry.graph, checkpointer, store)
        run_config = factory_config(config, checkpointer, store, access_context, context)
        # get_config() inside the factory sees the config, as in LangGraph Server.
        token = var_child_runnable_config.set(run_config)
        try:
            produced = call_factory(
                entry.factory,
                entry.factory_args,
                run_config,
                store=store,
                access_context=access_context,
                context=context,
                user=user,
            )
            if hasattr(produced, "__aenter__") and hasattr(produced, "__aexit__"):
                if stack is None:
                    raise TypeError(_CM_MESSAGE.format(graph_id=graph_id))
                value = await stack.enter_async_context(produced)
            elif hasattr(produced, "__enter__") and hasattr(produced, "__exit__"):
                if stack is None:
                    raise TypeError(_CM_MESSAGE.format(graph_id=graph_id))
                value = stack.enter_context(produced)
            elif inspect.isawaitable(produced):
                value = await produced
            else:
                value = produced
        finally:
            var_child_runnable_config.reset(token)
        return self._finish(entry, value, checkpointer, store)

    def _finish(
        self,
        entry: _Entry,
        value: Any,
        checkpointer: BaseCheckpointSaver | None,
        store: BaseStore | None,
    ) -> AnyPregel:
        if isinstance(value, StateGraph):
            value = value.compile()
        if not isinstance(value, Pregel):
            raise GraphLoadError(
                entry.info.graph_id,
                entry.info.location,
                TypeError(f"the graph factory returned {type(value).__name__}, not a graph"),
            )
        update: dict[str, Any] = {"checkpointer": checkpointer, "store": store}
        if value.name == "LangGraph":
            update["name"] = entry.info.graph_id
        return value.copy(update=update)

    async def draw(
        self, graph_id: str, config: RunnableConfig | None = None, *, xray: bool | int = False
    ) -> dict[str, Any]:
        """``{"nodes": [...], "edges": [...]}`` as LangGraph Server's ``/assistants/{id}/graph``."""
        check_xray(xray)
        async with self.open(graph_id, config, access_context="assistants.read") as graph:
            return await asyncio.to_thread(draw_json, graph, xray)

    async def mermaid(
        self, graph_id: str, config: RunnableConfig | None = None, *, xray: bool | int = False
    ) -> str:
        """The Mermaid text of the drawing (``graph.get_graph(xray=...).draw_mermaid()``)."""
        check_xray(xray)
        async with self.open(graph_id, config, access_context="assistants.read") as graph:
            return await asyncio.to_thread(draw_mermaid, graph, xray)

    async def schemas(self, graph_id: str, config: RunnableConfig | None = None) -> dict[str, Any]:
        """``graph_id`` plus the five JSON schemas of LangGraph's ``/assistants/{id}/schemas``."""
        entry = self._entry(graph_id)
        cache = self._schema_cache  # this generation's: a reload meanwhile starts a new one
        # A compiled graph's schemas never change; a factory's may depend on the config.
        cached = cache.get(graph_id) if entry.factory is None else None
        if cached is None:
            async with self.open(graph_id, config, access_context="assistants.read") as graph:
                cached = await asyncio.to_thread(graph_schemas, graph)
            if entry.factory is None:
                cache[graph_id] = cached
        return {"graph_id": graph_id, **copy.deepcopy(cached)}

    async def subgraphs(
        self,
        graph_id: str,
        config: RunnableConfig | None = None,
        *,
        namespace: str | None = None,
        recurse: bool = False,
    ) -> dict[str, dict[str, Any]]:
        """Namespace → schemas (no ``graph_id`` key), as LangGraph's ``…/subgraphs``."""
        async with self.open(graph_id, config, access_context="assistants.read") as graph:
            return await asyncio.to_thread(subgraph_schemas, graph, namespace, recurse)


_CM_MESSAGE = (
    "the factory of graph '{graph_id}' returns a context manager: use GraphRegistry.open()"
)

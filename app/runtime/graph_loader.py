"""Importing user graph modules and calling graph factories, the way LangGraph Server does.

Internal to :mod:`app.runtime.graphs`.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.util
import inspect
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import ensure_config
from langgraph._internal._constants import CONFIG_KEY_CHECKPOINTER, CONFIG_KEY_RUNTIME
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import StateGraph
from langgraph.pregel import Pregel
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore
from langgraph_sdk.auth.types import BaseUser
from langgraph_sdk.runtime import ServerRuntime, _ExecutionRuntime, _ReadRuntime

from app.runtime.langgraph_config import GraphSpec

AccessContext = Literal["threads.create_run", "threads.update", "threads.read", "assistants.read"]
"""Why a graph is wanted; factories taking a ``ServerRuntime`` see it as ``access_context``."""

FactoryArg = tuple[str, Literal["config", "runtime"], bool]
"""One factory parameter: its name, what it receives, whether it is keyword-only."""


def _is_runtime_annotation(annotation: Any) -> bool:
    if annotation is inspect.Parameter.empty:
        return False
    if isinstance(annotation, str):  # a forward reference get_type_hints could not resolve
        return annotation.strip("'\"").split("[", 1)[0].rsplit(".", 1)[-1] == "ServerRuntime"
    if annotation is ServerRuntime:
        return True
    if isinstance(annotation, type):
        return issubclass(annotation, _ExecutionRuntime | _ReadRuntime)
    origin = typing.get_origin(annotation)
    if origin is ServerRuntime:
        return True
    args = typing.get_args(annotation)  # Annotated[ServerRuntime, ...], ServerRuntime | None
    return origin is not None and bool(args) and _is_runtime_annotation(args[0])


def classify_factory(fn: Callable[..., Any]) -> tuple[FactoryArg, ...]:
    """What to pass a factory: nothing, the config, a ``ServerRuntime``, or both.

    A parameter annotated ``ServerRuntime`` gets the runtime, any other gets the config, as in
    LangGraph Server; arguments go positionally unless keyword-only.
    """
    params = [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    try:
        hints = typing.get_type_hints(
            fn, localns={"ServerRuntime": ServerRuntime, "RunnableConfig": RunnableConfig}
        )
    except Exception:
        hints = {}
    kinds: list[Literal["config", "runtime"]] = [
        "runtime" if _is_runtime_annotation(hints.get(p.name, p.annotation)) else "config"
        for p in params
    ]
    if len(params) > 2 or (len(params) == 2 and kinds.count("runtime") != 1):
        raise ValueError(
            f"graph factory {getattr(fn, '__qualname__', fn)!r} must take no argument, a "
            "config, a ServerRuntime, or one config and one ServerRuntime; got parameters "
            f"{[p.name for p in params]}"
        )
    return tuple(
        (p.name, kind, p.kind == p.KEYWORD_ONLY) for p, kind in zip(params, kinds, strict=True)
    )


def module_name(spec: GraphSpec) -> str:
    """LangGraph's module name for a graph file, made unique within the process.

    ``./src/agent.py`` becomes ``__src__agent`` as in LangGraph, so classes from user modules
    that ``langgraph dev`` pickled into checkpoints resolve here too. Another langgraph.json in
    the same process with a file at the same relative path gets a suffix instead of clobbering.
    """
    written = spec.source.rpartition(":")[0]
    name = written.replace("/", "__").replace("\\", "__").replace(".py", "").replace(" ", "_")
    name = name.lstrip(".").replace(".", "_") or "graph"
    existing = sys.modules.get(name)
    existing_file = getattr(existing, "__file__", None)
    if existing is not None and (
        existing_file is None or Path(existing_file).resolve() != Path(spec.location)
    ):
        name += "_" + hashlib.sha1(spec.location.encode()).hexdigest()[:10]
    return name


def import_file(spec: GraphSpec) -> ModuleType:
    path = Path(spec.location)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    name = module_name(spec)
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    # Registered before running it, as the import system does, so the module's own classes
    # (dataclasses, pydantic models, pickling) can find it.
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _missing_variable(spec: GraphSpec, module: ModuleType) -> ValueError:
    public = [k for k in vars(module) if not k.startswith("_")]
    likely = [k for k in public if isinstance(vars(module)[k], Pregel | StateGraph)]
    hint = ""
    if likely:
        hint = " Graphs found in it: " + ", ".join(likely)
    elif public:
        hint = " It defines: " + ", ".join(public[:20])
    return ValueError(f"'{spec.variable}' is not defined in {spec.location}.{hint}")


def import_graph_value(spec: GraphSpec, imported: dict[str, ModuleType] | None = None) -> Any:
    """Import the spec's file or module and return the named variable. Blocking.

    ``imported`` maps files already executed during this load: several graphs of one file share
    one execution of it (LangGraph re-executes the file per graph, running its side effects and
    creating distinct classes each time).
    """
    if spec.is_js:
        raise NotImplementedError("JavaScript graphs are not supported by lgql")
    if spec.kind == "module":
        module = importlib.import_module(spec.location)
    elif imported is not None and spec.location in imported:
        module = imported[spec.location]
    else:
        module = import_file(spec)
        if imported is not None:
            imported[spec.location] = module
    try:
        return vars(module)[spec.variable]
    except KeyError:
        raise _missing_variable(spec, module) from None


def factory_config(
    config: RunnableConfig | None,
    checkpointer: BaseCheckpointSaver | None,
    store: BaseStore | None,
    access_context: AccessContext,
    context: Any,
) -> RunnableConfig:
    """The config a factory receives: a copy of the run's, plus what LangGraph Server adds."""
    # A copy: the caller's config goes on to the run and must not carry factory-only keys.
    result = ensure_config(config)
    configurable = result.setdefault("configurable", {})
    executing = access_context == "threads.create_run"
    # So get_store()/get_runtime() work inside the factory, as they do in a node. LangGraph
    # Server puts its ServerRuntime here for runs; a real Runtime is what langgraph expects.
    configurable[CONFIG_KEY_RUNTIME] = Runtime(context=context if executing else None, store=store)
    if checkpointer is not None:
        configurable.setdefault(CONFIG_KEY_CHECKPOINTER, checkpointer)
    configurable["__is_for_execution__"] = executing
    return result


def call_factory(
    factory: Callable[..., Any],
    args_spec: tuple[FactoryArg, ...],
    config: RunnableConfig,
    *,
    store: BaseStore | None,
    access_context: AccessContext,
    context: Any,
    user: BaseUser | None,
) -> Any:
    runtime: Any = None
    if any(what == "runtime" for _, what, _ in args_spec):
        # The server's store may be None (no store configured); ServerRuntime only annotates it.
        if access_context == "threads.create_run":
            runtime = _ExecutionRuntime(
                access_context=access_context,
                user=user,
                store=typing.cast(BaseStore, store),
                context=copy.copy(context),
            )
        else:
            runtime = _ReadRuntime(
                access_context=access_context, user=user, store=typing.cast(BaseStore, store)
            )
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for name, what, keyword_only in args_spec:
        value = runtime if what == "runtime" else config
        if keyword_only:
            kwargs[name] = value
        else:
            args.append(value)
    return factory(*args, **kwargs)

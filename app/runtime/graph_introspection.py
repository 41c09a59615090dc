"""Drawings and JSON schemas of compiled graphs, shaped as LangGraph Server returns them.

Blocking and CPU-bound: :mod:`app.runtime.graphs` calls these in worker threads.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from langchain_core.utils.pydantic import create_model_v2
from langgraph.pregel import Pregel
from pydantic import TypeAdapter

logger = logging.getLogger(__name__)

# Run-scoped keys LangGraph Server leaves out of the published config schema.
_EXCLUDED_CONFIG_KEYS = (
    "__pregel_checkpointer",
    "__pregel_store",
    "checkpoint_id",
    "checkpoint_ns",
    "thread_id",
)


class GraphVisualizationError(ValueError):
    """The graph cannot be drawn or list its subgraphs (LangGraph Server answers 422)."""


def check_xray(xray: bool | int) -> None:
    """LangGraph Server answers 422 "Invalid xray value" to anything but a bool or an int > 0."""
    if not isinstance(xray, bool) and (not isinstance(xray, int) or xray <= 0):
        raise ValueError("Invalid xray value: expected a boolean or a positive integer")


def jsonable(value: Any) -> Any:
    # Schemas and drawings can hold non-JSON leaves (defaults, enums); the GraphQL JSON scalar
    # and the REST body must never fail on them.
    return json.loads(json.dumps(value, default=str))


def _try_schema(graph: Pregel, what: str, fn: Callable[[], Any]) -> Any:
    # One underivable schema (e.g. typing.TypedDict on Python 3.11) must not hide the others.
    try:
        return fn()
    except Exception as exc:
        logger.warning("cannot build the %s schema of graph %s: %s", what, graph.name, exc)
        return None


def _state_jsonschema(graph: Pregel) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key in graph.stream_channels_list:
        update_type = getattr(graph.channels[key], "UpdateType", Any)
        try:
            create_model_v2(key, root=(update_type, None)).model_json_schema()
            fields[key] = (update_type, None)
        except Exception:
            fields[key] = (Any, None)
    model = create_model_v2(graph.get_name("State"), field_definitions=fields)
    return model.model_json_schema()


def _config_jsonschema(graph: Pregel) -> dict[str, Any]:
    # LangGraph Server publishes the schema of `configurable`, which is the context schema.
    if graph.context_schema is None:
        return {}
    schema = TypeAdapter(graph.context_schema).json_schema()
    for key in _EXCLUDED_CONFIG_KEYS:
        schema.get("properties", {}).pop(key, None)
    return schema


def graph_schemas(graph: Pregel) -> dict[str, Any]:
    """``input_schema``, ``output_schema``, ``state_schema``, ``config_schema``,
    ``context_schema``; each ``None`` when it cannot be derived."""
    schemas = {
        "input_schema": _try_schema(graph, "input", graph.get_input_jsonschema),
        "output_schema": _try_schema(graph, "output", graph.get_output_jsonschema),
        "state_schema": _try_schema(graph, "state", lambda: _state_jsonschema(graph)),
        "config_schema": _try_schema(graph, "config", lambda: _config_jsonschema(graph)),
        "context_schema": _try_schema(graph, "context", graph.get_context_jsonschema),
    }
    result: dict[str, Any] = jsonable(schemas)
    return result


def draw_json(graph: Pregel, xray: bool | int) -> dict[str, Any]:
    try:
        drawable = graph.get_graph(xray=xray)
    except NotImplementedError as exc:
        raise GraphVisualizationError("The graph does not support visualization") from exc
    data = drawable.to_json()
    # LangGraph Server drops the class path of each node's runnable (internal detail).
    for node in data.get("nodes", []):
        if isinstance(node.get("data"), dict):
            node["data"].pop("id", None)
    result: dict[str, Any] = jsonable(data)
    return result


def draw_mermaid(graph: Pregel, xray: bool | int) -> str:
    try:
        return graph.get_graph(xray=xray).draw_mermaid()
    except NotImplementedError as exc:
        raise GraphVisualizationError("The graph does not support visualization") from exc


def subgraph_schemas(
    graph: Pregel, namespace: str | None, recurse: bool
) -> dict[str, dict[str, Any]]:
    try:
        found = list(graph.get_subgraphs(namespace=namespace, recurse=recurse))
    except NotImplementedError as exc:
        raise GraphVisualizationError("The graph does not support visualization") from exc
    return {ns: graph_schemas(sub) for ns, sub in found if isinstance(sub, Pregel)}

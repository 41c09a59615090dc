"""A thread's stored run events as LangGraph's Protocol v2 events (`@langchain/protocol`).

lgql stores each run's events as LangGraph Server names them (`metadata`, `values`,
`updates|<ns>`, `messages` tuples, `custom`, `tasks`, `checkpoints`, then `end` or `error`).
`ProtocolEvents` reads them in order, one thread's stream from its start, and gives the
envelopes Protocol v2 clients read: `{type: "event", event_id, seq, method, params: {namespace,
timestamp, data[, node]}}` with `method` one of

- `lifecycle`: the root's `running` at a run's start, its end (`completed`, `failed`,
  `interrupted` when it stopped at an interrupt); a subgraph's `started` when its namespace is
  first seen and `completed` when its parent's step ends;
- `values`, `updates` (`params.node` names the node), `tasks`, `checkpoints` (`{id,
  parent_id, step, source}`), `custom` (`{payload}`);
- `messages`: the content-block events (`message-start`, `content-block-start`,
  `content-block-delta`, `content-block-finish`, `message-finish`) built from the message
  chunks of `messages-tuple`; a tool's result as a `tool` message under `[..., "tools:<id>"]`;
- `tools`: `tool-started` when a node returns an AI message with tool calls, `tool-finished`
  (or `tool-error`) when the tool's message comes back;
- `input.requested`: one per interrupt (`{interrupt_id, payload}`), from `__interrupt__`.

Numbering is deterministic: the same stored events give the same `seq` and the same `event_id`
(the stored event's id, with `.<n>` for the second and later envelopes made from it), whatever a
connection's filter, so a client reconnecting with `since` (or deduplicating by `event_id`) meets
the numbers it saw before. `seq` is anchored on the stored event's time: at least its id's
milliseconds times 1000 (`SEQ_PER_MS`), and one more than the envelope before. A connection that
starts reading later in the thread's stream (its older runs expired or were trimmed meanwhile)
gives the same numbers from the first pause of a millisecond on, and a `since` from before the
expiry still lets every newer event through (a plain counter would start again at 1). The
numbers stay below 2^53 (JavaScript's exact integers) for centuries. Pure: no I/O.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import _compat_bridge as bridge
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ToolMessage,
)

#: The fixed channels (`custom:<name>` is open-ended).
CHANNELS = frozenset(
    {
        "values",
        "updates",
        "messages",
        "tools",
        "lifecycle",
        "input",
        "tasks",
        "checkpoints",
        "custom",
    }
)

#: `seq` of the first envelope made from a stored event is at least its id's ms times this.
SEQ_PER_MS = 1000

#: What a run started by `run.start` streams: everything the channels are made from.
RUN_STREAM_MODES = ["values", "updates", "messages-tuple", "custom", "tasks", "checkpoints"]

_MESSAGE_CLASSES: dict[str, type[BaseMessage]] = {
    "AIMessageChunk": AIMessageChunk,
    "ai": AIMessage,
    "tool": ToolMessage,
}


def is_channel(value: Any) -> bool:
    return isinstance(value, str) and (
        value in CHANNELS or (value.startswith("custom:") and len(value) > len("custom:"))
    )


def channel_of(event: dict[str, Any]) -> str:
    method = str(event.get("method"))
    return "input" if method == "input.requested" else method


def _segment_name(segment: str) -> str:
    return segment.split(":", 1)[0]


def namespace_matches(namespace: list[str], prefix: list[str]) -> bool:
    """`namespace` starts with `prefix`; a prefix segment without `:` also matches a segment
    with any task id (`child` matches `child:<task id>`), as LangGraph's filter does."""
    if len(prefix) > len(namespace):
        return False
    for want, have in zip(prefix, namespace, strict=False):
        if want == have:
            continue
        if ":" in want or _segment_name(have) != want:
            return False
    return True


@dataclass(frozen=True)
class Filter:
    """A subscription: channels, namespace prefixes (None: all) and depth below them."""

    channels: frozenset[str]
    namespaces: tuple[tuple[str, ...], ...] | None = None
    depth: int | None = None

    def matches(self, event: dict[str, Any]) -> bool:
        channel = channel_of(event)
        params = event.get("params") or {}
        if channel == "custom":
            data = params.get("data")
            name = data.get("name") if isinstance(data, dict) else None
            if "custom" not in self.channels and f"custom:{name}" not in self.channels:
                return False
        elif channel not in self.channels:
            return False
        if not self.namespaces:
            return True
        namespace = list(params.get("namespace") or [])
        return any(
            namespace_matches(namespace, list(prefix))
            and (self.depth is None or len(namespace) - len(prefix) <= self.depth)
            for prefix in self.namespaces
        )


class FilterError(ValueError):
    """A subscription body that does not fit (its message says what)."""


def parse_filter(params: Any, *, what: str) -> Filter:
    """`{channels, namespaces?, depth?}` as a Filter. Raises FilterError."""
    if not isinstance(params, dict):
        raise FilterError(f"{what} must be a JSON object with `channels`")
    channels = params.get("channels")
    if not isinstance(channels, list) or not channels:
        raise FilterError("`channels` is required and must be a non-empty array")
    bad = [repr(c) if not isinstance(c, str) else c for c in channels if not is_channel(c)]
    if bad:
        raise FilterError(
            "`channels` contains unsupported entries: "
            + ", ".join(bad[:5])
            + ". Allowed: values, updates, messages, tools, lifecycle, input, tasks, "
            "checkpoints, custom, or `custom:<name>`"
        )
    namespaces = params.get("namespaces")
    prefixes: tuple[tuple[str, ...], ...] | None = None
    if namespaces is not None:
        if not isinstance(namespaces, list) or not all(
            isinstance(ns, list) and all(isinstance(s, str) for s in ns) for ns in namespaces
        ):
            raise FilterError("`namespaces` must be an array of arrays of strings")
        prefixes = tuple(tuple(ns) for ns in namespaces) or None
    depth = params.get("depth")
    if depth is not None and (not isinstance(depth, int) or isinstance(depth, bool) or depth < 0):
        raise FilterError("`depth` must be a non-negative integer")
    return Filter(frozenset(channels), prefixes, depth)


def parse_since(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise FilterError("`since` must be a non-negative integer (the last `seq` received)")
    return value


# --- messages ------------------------------------------------------------------------------


def _message(data: Any) -> BaseMessage | None:
    if not isinstance(data, dict):
        return None
    cls = _MESSAGE_CLASSES.get(str(data.get("type")))
    if cls is None:
        return None
    try:
        return cls.model_validate(data)
    except Exception:
        return None


def _scalars(metadata: Any) -> dict[str, Any]:
    """The message metadata a `message-start` may carry (scalars only, per the protocol)."""
    if not isinstance(metadata, dict):
        return {}
    keep = (
        "langgraph_node",
        "langgraph_step",
        "run_id",
        "thread_id",
        "ls_provider",
        "ls_model_name",
    )
    return {
        k: metadata[k]
        for k in keep
        if k in metadata and isinstance(metadata[k], str | int | float | bool)
    }


@dataclass
class _Streaming:
    """One AI message being streamed chunk by chunk (`chunks_to_events`, one chunk at a time)."""

    blocks: dict[Any, tuple[int, Any]] = field(default_factory=dict)
    usage: Any = None
    response_metadata: dict[str, Any] = field(default_factory=dict)

    def feed(self, chunk: AIMessageChunk) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if chunk.response_metadata:
            self.response_metadata.update(chunk.response_metadata)
        for key, block in bridge._iter_protocol_blocks(chunk):
            if key not in self.blocks:
                index = len(self.blocks)
                self.blocks[key] = (index, dict(block))
                out.append(
                    {
                        "event": "content-block-start",
                        "index": index,
                        "content": bridge._start_skeleton(block),
                    }
                )
            else:
                index, existing = self.blocks[key]
                self.blocks[key] = (index, bridge._accumulate(existing, block))
            delta = bridge._to_content_delta(block)
            if delta is not None:
                out.append({"event": "content-block-delta", "index": index, "delta": delta})
        if chunk.usage_metadata:
            self.usage = bridge._accumulate_usage(self.usage, chunk.usage_metadata)
        return out

    def finish(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [
            {
                "event": "content-block-finish",
                "index": index,
                "content": bridge._finalize_block(block),
            }
            for index, block in self.blocks.values()
        ]
        out.append(
            dict(
                bridge._build_message_finish(
                    usage=self.usage, response_metadata=self.response_metadata
                )
            )
        )
        return out


def _whole_message_events(message: BaseMessage, role: str, metadata: dict[str, Any]) -> list[Any]:
    events: list[dict[str, Any]] = [dict(e) for e in bridge.message_to_events(message)]
    start = events[0]
    start["role"] = role
    if metadata:
        start["metadata"] = {**(start.get("metadata") or {}), **metadata}
    return events


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            p if isinstance(p, str) else str(p.get("text", ""))
            for p in content
            if isinstance(p, str) or (isinstance(p, dict) and p.get("type") == "text")
        ]
        if parts:
            return "".join(parts)
    return json.dumps(content, default=str)


# --- runs ----------------------------------------------------------------------------------


@dataclass
class _Run:
    run_id: str
    graph_name: str
    ended: bool = False
    interrupted: bool = False
    interrupts: set[str] = field(default_factory=set)
    # Namespaces (as tuples) announced `started` and not yet completed, in order.
    open: dict[tuple[str, ...], str] = field(default_factory=dict)
    seen: set[tuple[str, ...]] = field(default_factory=set)
    streaming: dict[tuple[tuple[str, ...], str], _Streaming] = field(default_factory=dict)
    streamed: set[tuple[tuple[str, ...], str]] = field(default_factory=set)
    tools: dict[str, tuple[str, ...]] = field(default_factory=dict)
    checkpoints: set[tuple[tuple[str, ...], str]] = field(default_factory=set)
    status: str = "running"


@dataclass(frozen=True)
class Source:
    """A stored event: its id in the thread's stream, its run, its name and data."""

    id: str
    run_id: str
    event: str
    data: Any


class ProtocolEvents:
    """Turns one thread's stored events, in stream order, into Protocol v2 envelopes."""

    def __init__(self) -> None:
        self.seq = 0
        self._runs: dict[str, _Run] = {}
        self._current: _Run | None = None
        self._source_id = ""
        self._floor = 0
        self._made = 0

    # --- what a connection may ask about --------------------------------------------------

    @property
    def current_run(self) -> str | None:
        return None if self._current is None else self._current.run_id

    def tree(self) -> dict[str, Any]:
        """`agent.getTree`'s answer for the current run: the root and the subgraphs seen."""
        run = self._current
        if run is None:
            return {"namespace": [], "status": "started", "graph_name": "root"}

        def node(ns: tuple[str, ...]) -> dict[str, Any]:
            children = sorted(n for n in run.seen if len(n) == len(ns) + 1 and n[: len(ns)] == ns)
            status = run.status if not ns else ("started" if ns in run.open else "completed")
            out: dict[str, Any] = {
                "namespace": list(ns),
                "status": status,
                "graph_name": run.graph_name if not ns else _segment_name(ns[-1]),
            }
            if children:
                out["children"] = [node(c) for c in children]
            return out

        return node(())

    # --- conversion ------------------------------------------------------------------------

    def convert(self, source: Source, *, graph_name: str | None = None) -> list[dict[str, Any]]:
        """The envelopes `source` makes (none for what the protocol does not carry).
        `graph_name` names the root graph when `source` starts a run (`metadata`)."""
        self._source_id = source.id
        ms = source.id.split("-", 1)[0]
        self._floor = int(ms) * SEQ_PER_MS if ms.isdigit() else 0
        self._made = 0
        out: list[dict[str, Any]] = []
        name = source.event
        if name == "metadata":
            self._start(source, graph_name or "root", out)
            return out
        run = self._runs.get(source.run_id)
        if run is None:
            # A run whose start is no longer in the stream (trimmed): follow it from here.
            run = self._start(
                Source(source.id, source.run_id, "metadata", {}), graph_name or "root", out
            )
        if name == "end":
            status = (source.data or {}).get("status") if isinstance(source.data, dict) else None
            self._end(run, str(status or "success"), None, out)
            return out
        if name == "error":
            data = source.data if isinstance(source.data, dict) else {}
            message = data.get("message") or data.get("error") or "Run errored"
            self._end(run, "error", str(message), out)
            return out
        mode, *segments = name.split("|")
        namespace = tuple(segments)
        if mode in ("debug", "events") or mode.startswith("messages/"):
            return out
        if namespace:
            self._announce(run, namespace, out)
        handler = getattr(self, f"_on_{mode}", None)
        if handler is not None:
            handler(run, namespace, source.data, out)
        return out

    def _event(
        self,
        method: str,
        namespace: Iterable[str],
        data: Any,
        *,
        node: str | None = None,
    ) -> dict[str, Any]:
        self.seq = max(self.seq + 1, self._floor)
        event_id = self._source_id if self._made == 0 else f"{self._source_id}.{self._made}"
        self._made += 1
        params: dict[str, Any] = {
            "namespace": list(namespace),
            "timestamp": int(time.time() * 1000),
            "data": data,
        }
        if node is not None:
            params["node"] = node
        return {
            "type": "event",
            "event_id": event_id,
            "seq": self.seq,
            "method": method,
            "params": params,
        }

    def _start(self, source: Source, graph_name: str, out: list[dict[str, Any]]) -> _Run:
        previous = self._runs.get(source.run_id)
        run = _Run(run_id=source.run_id, graph_name=graph_name)
        if previous is not None and not previous.ended:
            # A retry of the same run (a new attempt): the earlier attempt's open pieces end.
            self._close_messages(previous, out)
        self._runs[source.run_id] = run
        self._current = run
        out.append(self._event("lifecycle", (), {"event": "running", "graph_name": graph_name}))
        return run

    def _end(self, run: _Run, status: str, error: str | None, out: list[dict[str, Any]]) -> None:
        if run.ended:
            return
        run.ended = True
        self._close_messages(run, out)
        failed = status != "success"
        for ns in sorted(run.open, key=len, reverse=True):
            data = {"event": "failed" if failed else "completed", "graph_name": run.open[ns]}
            out.append(self._event("lifecycle", ns, data))
        run.open.clear()
        if run.interrupted and not failed:
            run.status = "interrupted"
            return  # said when the interrupt came
        if failed:
            # A cancelled run ends `failed` too: clients wait for `completed` or `failed`.
            message = error or f"The run ended with status {status}"
            run.status = "failed"
            data = {"event": "failed", "graph_name": run.graph_name, "error": message}
        else:
            run.status = "completed"
            data = {"event": "completed", "graph_name": run.graph_name}
        out.append(self._event("lifecycle", (), data))

    def _announce(self, run: _Run, namespace: tuple[str, ...], out: list[dict[str, Any]]) -> None:
        for depth in range(1, len(namespace) + 1):
            ns = namespace[:depth]
            if ns in run.seen:
                continue
            run.seen.add(ns)
            run.open[ns] = _segment_name(ns[-1])
            data = {"event": "started", "graph_name": run.open[ns]}
            out.append(self._event("lifecycle", ns, data))

    def _complete_children(
        self,
        run: _Run,
        parent: tuple[str, ...],
        out: list[dict[str, Any]],
        *,
        name: str | None = None,
        task_id: str | None = None,
        status: str = "completed",
    ) -> None:
        # Deepest first, so a child completes before its parent.
        for ns in sorted(
            (
                n
                for n in list(run.open)
                if len(n) > len(parent)
                and n[: len(parent)] == parent
                and (name is None or _segment_name(n[len(parent)]) == name)
                and (task_id is None or n[len(parent)].partition(":")[2] == task_id)
            ),
            key=len,
            reverse=True,
        ):
            graph_name = run.open.pop(ns)
            out.append(self._event("lifecycle", ns, {"event": status, "graph_name": graph_name}))

    # --- one handler per stream mode ---------------------------------------------------------

    def _interrupts(
        self, run: _Run, namespace: tuple[str, ...], items: Any, out: list[dict[str, Any]]
    ) -> None:
        said = False
        for item in items if isinstance(items, list | tuple) else ():
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                continue
            if item["id"] in run.interrupts:
                continue
            run.interrupts.add(item["id"])
            # `payload` is the protocol's name; the Python SDK reads `value`.
            data = {"interrupt_id": item["id"], "payload": item.get("value")}
            data["value"] = data["payload"]
            out.append(self._event("input.requested", namespace, data))
            said = True
        if said and not run.interrupted:
            run.interrupted = True
            run.status = "interrupted"
            out.append(
                self._event("lifecycle", (), {"event": "interrupted", "graph_name": run.graph_name})
            )

    def _on_values(
        self, run: _Run, namespace: tuple[str, ...], data: Any, out: list[dict[str, Any]]
    ) -> None:
        if isinstance(data, dict) and "__interrupt__" in data:
            self._interrupts(run, namespace, data["__interrupt__"], out)
            data = {k: v for k, v in data.items() if k != "__interrupt__"}
            if not data:
                return
        out.append(self._event("values", namespace, data))

    def _on_updates(
        self, run: _Run, namespace: tuple[str, ...], data: Any, out: list[dict[str, Any]]
    ) -> None:
        if not isinstance(data, dict):
            out.append(self._event("updates", namespace, data))
            return
        for node, values in data.items():
            if node == "__interrupt__":
                self._interrupts(run, namespace, values, out)
                continue
            self._tool_events(run, namespace, node, values, out)
            out.append(self._event("updates", namespace, values, node=node))
            self._complete_children(run, namespace, out, name=node)

    def _tool_events(
        self,
        run: _Run,
        namespace: tuple[str, ...],
        node: str,
        values: Any,
        out: list[dict[str, Any]],
    ) -> None:
        messages = values.get("messages") if isinstance(values, dict) else None
        if isinstance(messages, dict):
            messages = [messages]
        for message in messages if isinstance(messages, list) else ():
            if not isinstance(message, dict):
                continue
            kind = message.get("type")
            if kind in ("ai", "AIMessageChunk"):
                # The node's message is whole now: a stream of it still open ends here.
                key = (namespace, str(message.get("id")))
                streaming = run.streaming.pop(key, None)
                if streaming is not None:
                    for data in streaming.finish():
                        out.append(self._event("messages", namespace, data))
                for call in message.get("tool_calls") or ():
                    call_id = call.get("id") if isinstance(call, dict) else None
                    if not isinstance(call_id, str) or call_id in run.tools:
                        continue
                    run.tools[call_id] = namespace
                    data = {
                        "event": "tool-started",
                        "tool_call_id": call_id,
                        "tool_name": call.get("name") or "",
                        "input": call.get("args"),
                    }
                    out.append(self._event("tools", namespace, data, node=node))
            elif kind == "tool":
                call_id = message.get("tool_call_id")
                if not isinstance(call_id, str) or call_id not in run.tools:
                    continue
                run.tools.pop(call_id)
                if message.get("status") == "error":
                    data = {
                        "event": "tool-error",
                        "tool_call_id": call_id,
                        "message": _content_text(message.get("content")),
                    }
                else:
                    data = {"event": "tool-finished", "tool_call_id": call_id, "output": message}
                out.append(self._event("tools", namespace, data, node=node))
                self._tool_message(namespace, call_id, message, out)

    def _tool_message(
        self,
        namespace: tuple[str, ...],
        call_id: str,
        message: dict[str, Any],
        out: list[dict[str, Any]],
    ) -> None:
        """A tool's result on the `messages` channel too, as a `tool` message of its own
        namespace (LangGraph Server's v2 streams do the same)."""
        text = _content_text(message.get("content"))
        ns = (*namespace, f"tools:{call_id}")
        start = {
            "event": "message-start",
            "role": "tool",
            "id": message.get("id") or f"tool-{call_id}",
            "tool_call_id": call_id,
        }
        for data in (
            start,
            {"event": "content-block-start", "index": 0, "content": {"type": "text", "text": ""}},
            {
                "event": "content-block-delta",
                "index": 0,
                "delta": {"type": "text-delta", "text": text},
            },
            {
                "event": "content-block-finish",
                "index": 0,
                "content": {"type": "text", "text": text},
            },
            {"event": "message-finish"},
        ):
            out.append(self._event("messages", ns, data))

    def _on_messages(
        self, run: _Run, namespace: tuple[str, ...], data: Any, out: list[dict[str, Any]]
    ) -> None:
        if not isinstance(data, list | tuple) or len(data) != 2:
            return
        raw, metadata = data
        message = _message(raw)
        if message is None or isinstance(message, ToolMessage):
            return  # a tool's message is told with its `tool-finished`
        meta = _scalars(metadata)
        message_id = message.id or ""
        key = (namespace, message_id)
        if isinstance(message, AIMessageChunk):
            streaming = run.streaming.get(key)
            if streaming is None:
                run.streamed.add(key)
                streaming = run.streaming[key] = _Streaming()
                start: dict[str, Any] = dict(
                    bridge._build_message_start(message, message_id or None)
                )
                if meta:
                    start["metadata"] = {**(start.get("metadata") or {}), **meta}
                out.append(self._event("messages", namespace, start))
            for item in streaming.feed(message):
                out.append(self._event("messages", namespace, {**item, "id": message_id}))
            if message.chunk_position == "last":
                run.streaming.pop(key, None)
                for item in streaming.finish():
                    out.append(self._event("messages", namespace, {**item, "id": message_id}))
            return
        if key in run.streamed:
            return  # its chunks were streamed (or it was told whole): nothing to add
        run.streamed.add(key)
        for item in _whole_message_events(message, "ai", meta):
            out.append(self._event("messages", namespace, {**item, "id": message_id}))

    def _close_messages(self, run: _Run, out: list[dict[str, Any]]) -> None:
        for (namespace, message_id), streaming in list(run.streaming.items()):
            for item in streaming.finish():
                out.append(self._event("messages", namespace, {**item, "id": message_id}))
        run.streaming.clear()

    def _on_custom(
        self, run: _Run, namespace: tuple[str, ...], data: Any, out: list[dict[str, Any]]
    ) -> None:
        out.append(self._event("custom", namespace, {"payload": data}))

    def _on_tasks(
        self, run: _Run, namespace: tuple[str, ...], data: Any, out: list[dict[str, Any]]
    ) -> None:
        out.append(self._event("tasks", namespace, data))
        if isinstance(data, dict) and "result" in data and isinstance(data.get("id"), str):
            status = "interrupted" if data.get("interrupts") else "completed"
            if data.get("error"):
                status = "failed"
            self._complete_children(run, namespace, out, task_id=data["id"], status=status)

    def _on_checkpoints(
        self, run: _Run, namespace: tuple[str, ...], data: Any, out: list[dict[str, Any]]
    ) -> None:
        if not isinstance(data, dict):
            return
        config = data.get("config") or {}
        checkpoint_id = (config.get("configurable") or {}).get("checkpoint_id")
        if not isinstance(checkpoint_id, str):
            return
        if (namespace, checkpoint_id) in run.checkpoints:
            return
        run.checkpoints.add((namespace, checkpoint_id))
        metadata = data.get("metadata") or {}
        envelope: dict[str, Any] = {
            "id": checkpoint_id,
            "step": metadata.get("step", 0),
            "source": metadata.get("source", "loop"),
        }
        parent = ((data.get("parent_config") or {}).get("configurable") or {}).get("checkpoint_id")
        if isinstance(parent, str):
            envelope["parent_id"] = parent
        out.append(self._event("checkpoints", namespace, envelope))

"""Runs a graph for one attempt of a run: builds its config and input, streams it, and reads the
state it ended in. Knows LangGraph, not the queue: leases, cancel and statuses are the worker's."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple
from langgraph.store.base import BaseStore, Op, Result
from langgraph.types import StateSnapshot

from app import faults
from app.observability import tracing
from app.runtime.commands import command_from_json
from app.runtime.graphs import AnyPregel, GraphRegistry
from app.runtime.run_options import RunOptions
from app.runtime.stream_events import EventShaper, langgraph_modes

#: The saves an attempt's checkpointer still held when the graph ended, to be written with the
#: run's end in one statement (opaque here: the checkpointer's batch).
FinalSaves = Sequence[Sequence[Any]]


class FencedSaver(Protocol):
    """A checkpoint saver (a `BaseCheckpointSaver`) whose saves hold only while its attempt owns
    the run; `flush` waits for the saves it batched; `hold_back` takes those not yet sent out,
    for the caller to write with the run's end."""

    async def flush(self) -> None: ...

    async def hold_back(self) -> FinalSaves | None: ...


class RunCheckpointer(Protocol):
    """What execution needs of the checkpointer (app.persistence.checkpointer): the executor
    runs graphs and does not know where their checkpoints live."""

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None: ...

    def fenced(
        self,
        run_id: str,
        attempt: int,
        *,
        write_behind: bool = False,
        fresh_thread: str | None = None,
    ) -> FencedSaver: ...


#: Receives every event of the run, named and shaped as LangGraph Server sends them.
EventSink = Callable[[str, Any], None]


@dataclass(frozen=True)
class Executed:
    """How the graph ended: its state, and the attempt's saver, whose last saves may still be
    queued: the caller takes them (`hold_back`) to write with the run's end, or they go out on
    their own a moment later."""

    state: StateSnapshot
    saver: FencedSaver


@dataclass(frozen=True)
class RunSpec:
    """What the executor needs to know of a run and the rows around it."""

    run_id: str
    thread_id: str
    attempt: int
    graph_id: str
    assistant_id: str
    assistant_config: dict[str, Any]
    assistant_context: dict[str, Any]
    metadata: dict[str, Any]
    options: RunOptions
    #: The thread had no checkpoint when this attempt claimed the run: the checkpointer answers
    #: the thread's reads from this attempt's own saves (app.persistence.checkpoint_mirror).
    fresh_thread: bool = False


def build_config(spec: RunSpec, *, resuming: bool) -> RunnableConfig:
    """The assistant's config with the run's merged over it, plus the ids LangGraph Server adds."""
    base = spec.assistant_config or {}
    override = spec.options.config
    config: dict[str, Any] = {
        k: v
        for k, v in {**base, **override}.items()
        if k not in ("configurable", "metadata", "tags")
    }
    tags = [*(base.get("tags") or []), *(override.get("tags") or [])]
    if tags:
        config["tags"] = tags
    configurable: dict[str, Any] = {
        **(base.get("configurable") or {}),
        **(override.get("configurable") or {}),
        "run_id": spec.run_id,
        "thread_id": spec.thread_id,
        "graph_id": spec.graph_id,
        "assistant_id": spec.assistant_id,
        "checkpoint_ns": "",
    }
    # The chosen checkpoint, as LangGraph Server puts it in `configurable`: the root graph
    # starts from `checkpoint_map[""]` when the namespace is a subgraph's, each subgraph from
    # its own entry. A resumed attempt continues from where the first one got to instead.
    options = spec.options
    if not resuming:
        if options.checkpoint_id:
            configurable["checkpoint_id"] = options.checkpoint_id
        if options.checkpoint_ns:
            configurable["checkpoint_ns"] = options.checkpoint_ns
        if options.checkpoint_map:
            configurable["checkpoint_map"] = dict(options.checkpoint_map)
    config["configurable"] = configurable
    config["metadata"] = {
        **(base.get("metadata") or {}),
        **(override.get("metadata") or {}),
        **spec.metadata,
        "run_id": spec.run_id,
        "thread_id": spec.thread_id,
        "graph_id": spec.graph_id,
        "assistant_id": spec.assistant_id,
        "run_attempt": spec.attempt,
    }
    config["run_id"] = spec.run_id
    return cast(RunnableConfig, config)


def build_context(spec: RunSpec) -> dict[str, Any]:
    return {**(spec.assistant_context or {}), **spec.options.context}


def build_input(options: RunOptions, *, resuming: bool) -> Any:
    """The graph input: the run's input, or its command; nothing when resuming an attempt."""
    if resuming:
        return None
    if options.command:
        return command_from_json(options.command)
    return options.input


class FaultMarkingStore(BaseStore):
    """The store a graph is given: lgql's store, whose lost or broken connections leave as
    `app.faults.InfrastructureFault` (lgql's fault, retried), unlike the same errors from a
    node's own database code (the graph's, ending the run ERROR)."""

    def __init__(self, backend: BaseStore) -> None:
        self.backend = backend
        self.supports_ttl = backend.supports_ttl
        self.ttl_config = getattr(backend, "ttl_config", None)

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        with faults.lgql_statement():
            return await self.backend.abatch(ops)

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        with faults.lgql_statement():
            return self.backend.batch(ops)


async def started_earlier(checkpointer: RunCheckpointer, spec: RunSpec) -> bool:
    """Whether an earlier attempt of this run already saved progress (then we resume it)."""
    if spec.attempt <= 1:
        return False
    latest = await checkpointer.aget_tuple(
        {"configurable": {"thread_id": spec.thread_id, "checkpoint_ns": ""}}
    )
    return latest is not None and latest.metadata.get("run_id") == spec.run_id


async def execute(
    graphs: GraphRegistry,
    checkpointer: RunCheckpointer,
    spec: RunSpec,
    *,
    store: BaseStore | None = None,
    sink: EventSink | None = None,
) -> Executed:
    """Run the graph to its end (or its interrupt) and return the state it stopped in, with
    the saver that may still hold its last saves; every event the run's stream modes ask for
    goes to `sink(event, data)`.

    Checkpoint writes go through a view fenced on this attempt, so a worker that lost the run
    raises `LostOwnership` at its next write instead of overwriting the new owner's progress.
    """
    with faults.lgql_statement():  # before the graph: lgql's own read
        resuming = await started_earlier(checkpointer, spec)
    config = tracing.traced_config(build_config(spec, resuming=resuming))  # node spans, if on
    context = build_context(spec)
    run = spec.options
    # `sync` waits for each save before the next step; the others may batch them.
    fenced = checkpointer.fenced(
        spec.run_id,
        spec.attempt,
        write_behind=run.durability != "sync",
        fresh_thread=spec.thread_id if spec.fresh_thread else None,
    )
    requested = list(run.stream_mode)
    shaper = EventShaper(requested)
    subgraphs = run.stream_subgraphs
    options: dict[str, Any] = {
        "stream_mode": langgraph_modes(requested) or ["values"],
        "subgraphs": subgraphs,
        "interrupt_before": run.interrupt_before,
        "interrupt_after": run.interrupt_after,
        "durability": run.durability,
        "context": context or None,
    }
    graph_input = build_input(run, resuming=resuming)

    def deliver(item: Any) -> None:
        if sink is None:
            return
        namespace, mode, payload = _unpack(item, subgraphs)
        for name, data in shaper.shape(mode, namespace, payload):
            sink(name, data)

    try:
        async with graphs.open(
            spec.graph_id,
            config,
            # FencedSaver is a BaseCheckpointSaver: a Protocol cannot say so.
            checkpointer=cast(BaseCheckpointSaver[Any], fenced),
            store=FaultMarkingStore(store) if store is not None else None,
            context=context,
        ) as graph:
            if "events" in requested and sink is not None:
                # astream_events carries the other modes too: the root run's stream chunks.
                events = graph.astream_events(graph_input, config, version="v2", **options)
                async for event in events:
                    if "langsmith:hidden" in (event.get("tags") or ()):
                        continue
                    if event["event"] == "on_chain_stream" and event.get("run_id") == spec.run_id:
                        deliver(event["data"]["chunk"])
                    else:
                        sink("events", event)
            else:
                async for item in graph.astream(graph_input, config, **options):
                    deliver(item)
            # On a thread this attempt wrote whole, the end state comes from its own saves, and
            # what is still queued can go with the run's end, in the same statement (one round
            # trip and one commit less); elsewhere the read waits for the saves to land first.
            return Executed(await final_state(graph, spec.thread_id), fenced)
    except BaseException:
        # However the graph stopped (its error, a cancel), what it handed to the checkpointer
        # is saved before the worker records how the run ended; the graph's own exception is
        # the one to report.
        with contextlib.suppress(Exception):
            await fenced.flush()
        raise


async def final_state(graph: AnyPregel, thread_id: str) -> StateSnapshot:
    return await graph.aget_state({"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}})


async def current_state(
    graphs: GraphRegistry, checkpointer: BaseCheckpointSaver[Any], spec: RunSpec
) -> StateSnapshot:
    """The thread's state now (after a failure, a cancel or a rollback)."""
    config = build_config(spec, resuming=True)
    async with graphs.open(
        spec.graph_id, config, checkpointer=checkpointer, access_context="threads.read"
    ) as graph:
        return await final_state(graph, spec.thread_id)


def _unpack(item: Any, subgraphs: bool) -> tuple[tuple[str, ...], str, Any]:
    if subgraphs:
        namespace, mode, payload = item
        return tuple(namespace), mode, payload
    mode, payload = item
    return (), mode, payload

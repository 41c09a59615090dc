"""OpenTelemetry traces, when asked for: `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_TRACES_EXPORTER`
set, and the `lgql[otel]` extra installed (the SDK and the OTLP exporter). Otherwise every hook
here is a flag test and nothing else: no SDK import, no span, no callback.

What is traced:
- a span per GraphQL operation (Strawberry's OpenTelemetry extension, without its span per field);
- a run, from the request that created it to the worker that executes it: `createRun` (and every
  run-creating operation) stores the W3C trace context of its span in the run's `kwargs`
  (`trace_context`), and the worker's `lgql.run` span continues that trace, across the queue and
  whichever process picks the run up;
- under it, a span per graph node (`lgql.node`, from LangChain callbacks) and per checkpoint write
  (`lgql.checkpoint.write`);
- run id, thread id, assistant id and graph id as attributes (`lgql.run_id`, …).

`OTEL_TRACES_EXPORTER`: `otlp` (default; OTLP over HTTP to `OTEL_EXPORTER_OTLP_ENDPOINT`, or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), `console`, or `none`. `OTEL_SERVICE_NAME` names the service
(default `lgql`); the SDK reads the other standard `OTEL_*` variables itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

__all__ = [
    "TRACE_CONTEXT_KEY",
    "carry",
    "enabled",
    "graphql_extensions",
    "run_span",
    "setup",
    "shutdown",
    "span",
    "traced_config",
    "use_provider",
]

log = logging.getLogger("lgql.tracing")

#: The key of a run's `kwargs` holding the trace context of the request that created it.
TRACE_CONTEXT_KEY = "trace_context"

_tracer: Tracer | None = None
_provider: Any = None
_NOTHING = contextlib.nullcontext()


def enabled() -> bool:
    return _tracer is not None


def wanted() -> bool:
    """Whether the environment asks for traces."""
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return bool(
        exporter
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def setup() -> bool:
    """Start tracing when the environment asks for it; whether it is on. Each `lgql` command
    calls this once, before building its app or worker."""
    if _tracer is not None or not wanted():
        return enabled()
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        log.warning(
            "OTEL_* variables ask for traces but the OpenTelemetry SDK is not installed: "
            "pip install 'lgql[otel]'; tracing stays off"
        )
        return False
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "lgql"}
    provider = TracerProvider(resource=Resource.create(attributes))
    kind = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    exporter: Any
    if kind == "console":
        exporter = ConsoleSpanExporter()
    elif kind == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            log.warning("the OTLP exporter is not installed: pip install 'lgql[otel]'")
            return False
        exporter = OTLPSpanExporter()
    else:
        log.warning("OTEL_TRACES_EXPORTER=%s is not supported (otlp, console, none)", kind)
        return False
    provider.add_span_processor(BatchSpanProcessor(exporter))
    use_provider(provider)
    log.info("tracing on: %s exporter", kind)
    return True


def use_provider(provider: TracerProvider | None) -> None:
    """Trace with `provider` (tests give one with an in-memory exporter); None: tracing off."""
    global _tracer, _provider
    _provider = provider
    _tracer = None if provider is None else provider.get_tracer("lgql")


def shutdown() -> None:
    """Send the spans still batched (at process exit)."""
    if _provider is not None:
        with contextlib.suppress(Exception):
            _provider.shutdown()


# --- GraphQL ---------------------------------------------------------------------------------


def graphql_extensions() -> list[Any]:
    """The schema extensions tracing adds (none when off): a span per operation, current while
    it executes, so the runs it creates carry its trace."""
    if _tracer is None:
        return []
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from strawberry.extensions import LifecycleStep, SchemaExtension
    from strawberry.extensions.tracing import OpenTelemetryExtension

    provider = _provider

    class OperationSpan(OpenTelemetryExtension):
        # A span per operation, not one per resolved field.
        resolve = SchemaExtension.resolve  # type: ignore[assignment]

        def __init__(self) -> None:
            super().__init__(tracer_provider=provider)

        def on_operation(self) -> Iterator[None]:  # type: ignore[override]
            hook = super().on_operation()
            next(hook)
            span = self._span_holder[LifecycleStep.OPERATION]
            token = otel_context.attach(trace.set_span_in_context(span))
            try:
                yield
            finally:
                with contextlib.suppress(Exception):
                    span.set_attribute(
                        "graphql.operation.type", self.execution_context.operation_type.value
                    )
                otel_context.detach(token)
                with contextlib.suppress(StopIteration):
                    next(hook)

    return [OperationSpan]


# --- runs ------------------------------------------------------------------------------------


def carry(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A new run's `kwargs`, with the current trace context when there is one to carry."""
    if _tracer is None:
        return kwargs
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    if carrier:
        kwargs[TRACE_CONTEXT_KEY] = carrier
    return kwargs


def run_span(
    *,
    run_id: str,
    thread_id: str,
    assistant_id: str,
    graph_id: str,
    attempt: int,
    trace_context: Any,
) -> contextlib.AbstractContextManager[Any]:
    """The worker's span of one attempt at a run, current while the attempt executes; a child
    of the span that created the run (`trace_context`, as `carry` stored it)."""
    if _tracer is None:
        return _NOTHING
    from opentelemetry import propagate, trace

    parent = propagate.extract(trace_context) if isinstance(trace_context, dict) else None
    attributes: dict[str, str | int] = {
        "lgql.run_id": run_id,
        "lgql.thread_id": thread_id,
        "lgql.assistant_id": assistant_id,
        "lgql.graph_id": graph_id,
        "lgql.run.attempt": attempt,
    }
    return _tracer.start_as_current_span(
        "lgql.run", context=parent, kind=trace.SpanKind.CONSUMER, attributes=attributes
    )


def run_status(status: str) -> None:
    """Record how the current run ended on its span."""
    if _tracer is None:
        return
    from opentelemetry import trace

    current = trace.get_current_span()
    current.set_attribute("lgql.run.status", status)
    if status in ("error", "timeout"):
        current.set_status(trace.Status(trace.StatusCode.ERROR, status))


def span(name: str) -> contextlib.AbstractContextManager[Any]:
    """A child span of the current one (nothing when tracing is off)."""
    if _tracer is None:
        return _NOTHING
    return _tracer.start_as_current_span(name)


def traced_config(config: Any) -> Any:
    """A graph's config with the callback that opens a span per node (unchanged when off)."""
    if _tracer is None:
        return config
    from langchain_core.callbacks import BaseCallbackManager
    from opentelemetry import trace

    handler = _node_spans_handler(_tracer, trace.get_current_span())
    callbacks = config.get("callbacks")
    if callbacks is None:
        config["callbacks"] = [handler]
    elif isinstance(callbacks, list):
        config["callbacks"] = [*callbacks, handler]
    elif isinstance(callbacks, BaseCallbackManager):
        callbacks = callbacks.copy()
        callbacks.add_handler(handler, inherit=True)
        config["callbacks"] = callbacks
    return config


def _node_spans_class() -> type:
    from langchain_core.callbacks import BaseCallbackHandler
    from langgraph.errors import GraphBubbleUp

    class NodeSpans(BaseCallbackHandler):
        """A span per graph node: a chain run named after the `langgraph_node` it runs in.
        Inline (no thread), and only while tracing is on."""

        run_inline = True

        def __init__(self, tracer: Tracer, parent: Span) -> None:
            self.tracer = tracer
            self.parent = parent
            self.spans: dict[uuid.UUID, Span] = {}
            self.nodes: dict[uuid.UUID, str] = {}
            # Every chain run's parent, to find a node's nearest traced ancestor (a subgraph's
            # nodes nest under the parent graph's node that runs it).
            self.parents: dict[uuid.UUID, uuid.UUID | None] = {}

        def on_chain_start(
            self,
            serialized: dict[str, Any] | None,
            inputs: Any,
            *,
            run_id: uuid.UUID,
            parent_run_id: uuid.UUID | None = None,
            metadata: dict[str, Any] | None = None,
            **kwargs: Any,
        ) -> None:
            from opentelemetry import trace

            self.parents[run_id] = parent_run_id
            node = (metadata or {}).get("langgraph_node")
            if node is None or kwargs.get("name") != node:
                return
            ancestor = parent_run_id
            while ancestor is not None and ancestor not in self.spans:
                ancestor = self.parents.get(ancestor)
            parent = self.spans[ancestor] if ancestor is not None else self.parent
            if ancestor is not None and self.nodes[ancestor] == node:
                return  # the node's own function, run inside it under the same name
            self.nodes[run_id] = node
            self.spans[run_id] = self.tracer.start_span(
                f"lgql.node {node}",
                context=trace.set_span_in_context(parent),
                attributes={
                    "lgql.node": node,
                    "lgql.step": (metadata or {}).get("langgraph_step", -1),
                    "lgql.checkpoint_ns": (metadata or {}).get("checkpoint_ns", ""),
                },
            )

        def _end(self, run_id: uuid.UUID, error: BaseException | None = None) -> None:
            self.parents.pop(run_id, None)
            self.nodes.pop(run_id, None)
            span = self.spans.pop(run_id, None)
            if span is None:
                return
            # An interrupt or a `Command` to a parent graph is control flow, not a failure.
            if error is not None and not isinstance(error, GraphBubbleUp):
                from opentelemetry import trace

                span.record_exception(error)
                span.set_status(trace.Status(trace.StatusCode.ERROR, type(error).__name__))
            span.end()

        def on_chain_end(self, outputs: Any, *, run_id: uuid.UUID, **kwargs: Any) -> None:
            self._end(run_id)

        def on_chain_error(self, error: BaseException, *, run_id: uuid.UUID, **kwargs: Any) -> None:
            self._end(run_id, error)

    return NodeSpans


def _node_spans_handler(tracer: Tracer, parent: Span) -> Any:
    """The callback handler (its class built on first use: LangChain imported only then)."""
    global _node_spans
    if _node_spans is None:
        _node_spans = _node_spans_class()
    return _node_spans(tracer, parent)


_node_spans: type | None = None

"""OpenTelemetry traces, with the SDK's in-memory exporter: a run created over GraphQL is one
trace, from the API's operation span through the queue (the trace context stored on the run)
to the worker's run span, its node spans and its checkpoint writes; tracing off costs nothing
and lgql without the SDK still starts."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest_asyncio
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from app.observability import tracing
from tests.conftest import ROOT, EngineUrls, GraphQLClient, LiveServer, make_settings, start_server
from tests.processes import poll_until

CREATE_RUN = """mutation CreateTraced($input: RunInput!) {
  createRun(input: $input) { id threadId assistantId kwargs }
}"""
RUN = "query($id: ID!) { run(id: $id) { status } }"


@dataclass
class Traced:
    server: LiveServer
    exporter: InMemorySpanExporter


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def traced(
    engines: EngineUrls, database_uri: str, redis_prefix: str, redis_cleanup: None
) -> AsyncIterator[Traced]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    try:
        server = await start_server(
            make_settings(f"{redis_prefix}_traced"),
            database_uri=database_uri,
            redis_uri=engines.redis_uri,
        )
        try:
            yield Traced(server, exporter)
        finally:
            await server.stop()
    finally:
        tracing.use_provider(None)
        provider.shutdown()


async def run_traced(traced: Traced, graph: str, graph_input: dict[str, Any]) -> dict[str, Any]:
    client = GraphQLClient(traced.server.graphql_url)
    try:
        run = (
            await client.data(CREATE_RUN, {"input": {"assistantId": graph, "input": graph_input}})
        )["createRun"]
    finally:
        await client.close()
    return run


async def run_span(traced: Traced, run_id: str) -> tuple[ReadableSpan, list[ReadableSpan]]:
    """The run's span once it ended, and every span of its trace by then."""

    async def ended() -> tuple[ReadableSpan, list[ReadableSpan]] | None:
        spans = list(traced.exporter.get_finished_spans())
        for span in spans:
            if span.name == "lgql.run" and (span.attributes or {}).get("lgql.run_id") == run_id:
                assert span.context is not None
                trace_id = span.context.trace_id
                return span, [s for s in spans if s.context and s.context.trace_id == trace_id]
        return None

    return await poll_until(ended, deadline=60, what=f"the span of run {run_id}")


def parent_of(span: ReadableSpan, spans: list[ReadableSpan]) -> ReadableSpan | None:
    if span.parent is None:
        return None
    return next((s for s in spans if s.context and s.context.span_id == span.parent.span_id), None)


def ancestors(span: ReadableSpan, spans: list[ReadableSpan]) -> list[ReadableSpan]:
    found = []
    current = parent_of(span, spans)
    while current is not None:
        found.append(current)
        current = parent_of(current, spans)
    return found


def children(span: ReadableSpan, spans: list[ReadableSpan]) -> list[ReadableSpan]:
    assert span.context is not None
    return [s for s in spans if s.parent is not None and s.parent.span_id == span.context.span_id]


async def test_a_run_is_one_trace_from_the_request_to_its_nodes(traced: Traced) -> None:
    run = await run_traced(traced, "steps", {"count": 0})
    carried = run["kwargs"]["trace_context"]["traceparent"]
    span, spans = await run_span(traced, run["id"])

    # The worker's span continues the trace the request started, under its operation's span.
    assert span.context is not None
    assert carried.split("-")[1] == format(span.context.trace_id, "032x")
    above = ancestors(span, spans)
    assert [s.name for s in above] == ["GraphQL Query: CreateTraced"], [s.name for s in above]
    assert (above[0].attributes or {}).get("graphql.operation.type") == "mutation"
    assert span.attributes == {
        "lgql.run_id": run["id"],
        "lgql.thread_id": run["threadId"],
        "lgql.assistant_id": run["assistantId"],
        "lgql.graph_id": "steps",
        "lgql.run.attempt": 1,
        "lgql.run.status": "success",
    }

    below = children(span, spans)
    nodes = [s for s in below if s.name.startswith("lgql.node ")]
    assert sorted(s.name for s in nodes) == [f"lgql.node step_{i}" for i in range(1, 6)]
    assert all((s.attributes or {}).get("lgql.node") for s in nodes)
    # The run's end is a span of its own; on this thread with no checkpoint, the steps' saves
    # are batched and the last batch (here: all of them) is written by the end's call.
    ends = [s for s in below if s.name == "lgql.run.end"]
    assert len(ends) == 1, [s.name for s in below]
    assert all(s.name in ("lgql.run.end", "lgql.checkpoint.write") or s in nodes for s in below)
    # Every span of the run's trace is within it: one trace per run.
    assert {s.context.trace_id for s in spans if s.context} == {span.context.trace_id}


async def test_subgraph_nodes_nest_under_the_node_that_runs_them(traced: Traced) -> None:
    run = await run_traced(traced, "subgraph_parent", {"value": ""})
    span, spans = await run_span(traced, run["id"])
    inner = [s for s in spans if s.name in ("lgql.node inner_a", "lgql.node inner_b")]
    assert len(inner) == 2
    for node in inner:
        parent = parent_of(node, spans)
        assert parent is not None and parent.name == "lgql.node child", parent
    child = next(s for s in spans if s.name == "lgql.node child")
    assert parent_of(child, spans) is span


async def test_a_failed_run_marks_its_spans(traced: Traced) -> None:
    run = await run_traced(traced, "fail", {"message": "kaput"})
    span, spans = await run_span(traced, run["id"])
    assert (span.attributes or {}).get("lgql.run.status") == "error"
    assert span.status.status_code is StatusCode.ERROR
    node = next(s for s in spans if s.name == "lgql.node explode")
    assert node.status.status_code is StatusCode.ERROR
    assert any(e.name == "exception" for e in node.events)


def test_off_tracing_changes_nothing() -> None:
    was = tracing._provider
    tracing.use_provider(None)
    try:
        kwargs: dict[str, Any] = {"input": {}}
        assert tracing.carry(kwargs) == {"input": {}}
        config: dict[str, Any] = {"configurable": {}}
        assert tracing.traced_config(config) is config and "callbacks" not in config
        assert tracing.graphql_extensions() == []
        with tracing.span("nothing") as nothing:
            assert nothing is None
    finally:
        tracing.use_provider(was)


def _setup_in_child(env: dict[str, str], prelude: str = "") -> subprocess.CompletedProcess[str]:
    code = f"{prelude}\nfrom app.observability import tracing\nprint(tracing.setup())"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_the_environment_turns_tracing_on() -> None:
    assert _setup_in_child({}).stdout.strip() == "False"
    assert _setup_in_child({"OTEL_TRACES_EXPORTER": "console"}).stdout.strip() == "True"
    on = _setup_in_child({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert on.stdout.strip() == "True"
    assert _setup_in_child({"OTEL_TRACES_EXPORTER": "none"}).stdout.strip() == "False"


def test_without_the_otel_extra_lgql_runs_untraced() -> None:
    """The SDK missing (lgql installed without `[otel]`): a clear warning, tracing off, and the
    app still builds."""
    hide_sdk = "import sys\nsys.modules['opentelemetry.sdk'] = None"
    child = _setup_in_child(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"},
        prelude=f"{hide_sdk}\nimport logging\nlogging.basicConfig()\nimport app.server",
    )
    assert child.stdout.strip() == "False"
    assert "lgql[otel]" in child.stderr

"""The GraphQL operations' metrics, as a Strawberry schema extension: each operation counted by
type and outcome, queries and mutations timed, and open subscriptions gauged by transport (a
subscription's operation lasts as long as its stream, so the gauge goes down when it ends)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from app.observability import metrics, tracing

__all__ = ["GraphQLMetrics", "schema_extensions"]


def _transport(context: Any) -> str:
    request = getattr(context, "request", None)
    scope = getattr(request, "scope", None) or {}
    if scope.get("type") == "websocket":
        return "websocket"
    accept = request.headers.get("accept", "") if request is not None else ""
    if "text/event-stream" in accept:
        return "sse"
    if "multipart/mixed" in accept:
        return "multipart"
    return "http"


class GraphQLMetrics(SchemaExtension):
    def __init__(self) -> None:
        self._executed = False
        self._subscription: str | None = None

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            ctx = self.execution_context
            try:
                kind = ctx.operation_type.value
            except Exception:  # no document (a parse error), or no operation to choose
                kind = "unknown"
            if not self._executed:
                # Refused before execution (parse, validation, limits, a missing operation).
                outcome = "rejected"
            elif ctx.pre_execution_errors or (ctx.result is not None and ctx.result.errors):
                # (Strawberry files an executed operation's errors as `pre_execution_errors` too.)
                outcome = "error"
            else:
                outcome = "success"
            if self._subscription is not None:
                metrics.SUBSCRIPTIONS.labels(self._subscription).dec()
                metrics.graphql_operation(kind, outcome, None)
            else:
                metrics.graphql_operation(kind, outcome, time.perf_counter() - started)

    def on_execute(self) -> Iterator[None]:
        self._executed = True
        ctx = self.execution_context
        if ctx.operation_type is OperationType.SUBSCRIPTION:
            self._subscription = _transport(ctx.context)
            metrics.SUBSCRIPTIONS.labels(self._subscription).inc()
        yield


def schema_extensions() -> list[Any]:
    """The extensions observability adds to the schema: metrics always, a span per operation
    when tracing is on."""
    return [GraphQLMetrics, *tracing.graphql_extensions()]

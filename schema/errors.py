"""Every error a client sees carries `extensions.code`; unexpected ones are masked and logged."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.schema.exceptions import InvalidOperationTypeError

from app.errors import ServiceError, unavailable

log = logging.getLogger("lgql.graphql")

INTERNAL_MESSAGE = "Unexpected error."


def _code_for(error: GraphQLError, *, phase: str) -> str:
    original = error.original_error
    if isinstance(original, ServiceError):
        return original.code
    if original is not None and not isinstance(original, GraphQLError):
        return "INTERNAL_SERVER_ERROR"
    if phase == "parse":
        return "GRAPHQL_PARSE_FAILED"
    if phase == "validate":
        # Variables that do not fit their declared types are bad input, not a bad document.
        if error.message.startswith("Variable '$"):
            return "BAD_USER_INPUT"
        return "GRAPHQL_VALIDATION_FAILED"
    # Errors from the executor itself with no original error are variable/argument coercion.
    return "BAD_USER_INPUT"


WRONG_OPERATION_MESSAGE = (
    "This transport runs subscriptions only (the legacy graphql-ws protocol): send queries and "
    "mutations over HTTP or the graphql-transport-ws protocol."
)


def _with_code(error: GraphQLError, *, phase: str) -> GraphQLError:
    if error.extensions and "code" in error.extensions:
        return error
    if isinstance(error.original_error, InvalidOperationTypeError):
        # The client sent an operation its transport does not carry: its mistake, said plainly.
        return GraphQLError(
            WRONG_OPERATION_MESSAGE,
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={**(error.extensions or {}), "code": "BAD_REQUEST"},
        )
    original = error.original_error
    if original is not None and not isinstance(original, ServiceError | GraphQLError):
        # Postgres or Redis down is "retry later", not a bug: typed, and not masked.
        fault = unavailable(original)
        if fault is not None:
            log.warning("%s at %s: %r", fault.code, error.path, original)
            original = fault
            error = GraphQLError(
                fault.message,
                nodes=error.nodes,
                source=error.source,
                positions=error.positions,
                path=error.path,
                original_error=fault,
                extensions=error.extensions,
            )
    code = _code_for(error, phase=phase)
    extensions = dict(error.extensions or {})
    extensions["code"] = code
    message = error.message
    if isinstance(original, ServiceError):
        extensions.update({k: v for k, v in original.details.items() if _plain(v)})
    elif code == "INTERNAL_SERVER_ERROR":
        log.error("unexpected error in %s", error.path, exc_info=original)
        message = INTERNAL_MESSAGE
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=None if code == "INTERNAL_SERVER_ERROR" else original,
        extensions=extensions,
    )


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


class ErrorCodes(SchemaExtension):
    """Adds `extensions.code` to every error and masks unexpected ones, in query and mutation
    results and in every result of a subscription."""

    def _phase(self) -> str:
        ctx = self.execution_context
        if ctx.graphql_document is None:
            return "parse"
        if ctx.pre_execution_errors:
            return "validate"
        return "execute"

    def on_operation(self) -> Iterator[None]:
        yield
        ctx = self.execution_context
        phase = self._phase()
        # Pre-execution errors (parse, validation) may be answered from this list rather than
        # from `result`; rewrite it in place so every holder of it sees the codes.
        if ctx.pre_execution_errors:
            ctx.pre_execution_errors[:] = [
                _with_code(e, phase=phase) for e in ctx.pre_execution_errors
            ]
        result = ctx.result
        if result is not None and result.errors:
            result.errors = [_with_code(e, phase=phase) for e in result.errors]

    #: `on_stream_result` below only rewrites errors (see `LeanExtensionsRunner`).
    WATCHES_STREAM_ERRORS_ONLY = True

    def on_stream_result(self, result: Any) -> Iterator[None]:
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = [_with_code(e, phase=self._phase()) for e in errors]
        yield

"""A document with several operations names the one to run (the GraphQL spec, "GetOperation").

Strawberry falls back to the document's first operation when no `operationName` is given, so
`mutation A {…} mutation B {…}` ran A. graphql-core's executor would refuse it, but Strawberry
passes it the first operation's name; this extension refuses it before validation ends, on
every transport (HTTP, SSE, multipart, WebSocket), with graphql-core's message.
"""

from __future__ import annotations

from collections.abc import Iterator

from graphql import GraphQLError, OperationDefinitionNode
from strawberry.extensions.base_extension import SchemaExtension

MUST_PROVIDE_OPERATION_NAME = "Must provide operation name if query contains multiple operations."


def several_operations(document: object) -> bool:
    definitions = getattr(document, "definitions", ())
    return sum(isinstance(d, OperationDefinitionNode) for d in definitions) > 1


class RequireOperationName(SchemaExtension):
    def on_validate(self) -> Iterator[None]:
        ctx = self.execution_context
        # Strawberry keeps the name the request gave apart from the one it falls back to
        # (`operation_name`); only the given one tells "none given" from "the first one's".
        given = getattr(ctx, "_provided_operation_name", None)
        if (
            given is None
            and not ctx.pre_execution_errors
            and several_operations(ctx.graphql_document)
        ):
            # Set before validation runs: Strawberry then skips it and answers this error.
            ctx.pre_execution_errors = [
                GraphQLError(MUST_PROVIDE_OPERATION_NAME, extensions={"code": "BAD_REQUEST"})
            ]
        yield

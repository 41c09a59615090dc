"""The schema: root types assembled with the limits and error handling every request gets."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import strawberry
from graphql import ASTValidationRule, GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaxTokensLimiter,
    ParserCache,
    ValidationCache,
)
from strawberry.extensions.base_extension import SchemaExtension
from strawberry.extensions.max_aliases import create_validator as alias_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule
from strawberry.types.execution import ExecutionContext

from app.settings import Settings, get_settings
from schema.errors import ErrorCodes
from schema.mutation import Mutation
from schema.query import Query
from schema.subscription import Subscription

SDL_PATH = Path(__file__).with_name("schema.graphql")


class DocumentCache(ParserCache):
    """Strawberry's parse cache, except that a document that does not parse is left to
    Strawberry's own parse step, whose error path reports it like any other request error
    (the cache raises from inside the extension hook, past our error codes)."""

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        with contextlib.suppress(GraphQLError):
            context.graphql_document = self.cached_parse_document(
                context.query, **context.parse_options
            )
        yield


class LgqlSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Strawberry logs every error with a traceback, client mistakes included; `ErrorCodes`
        # already logs the unexpected ones, which are the only ones an operator must see.
        return None


def build_schema(settings: Settings | None = None) -> strawberry.Schema:
    settings = settings or get_settings()
    max_tokens = settings.max_tokens
    # The depth and alias rules are built once: the validation cache is keyed on the rule
    # classes, and Strawberry's limiter extensions would build new ones for every request.
    limits: list[type[ASTValidationRule]] = [
        depth_rule(settings.max_query_depth, None, None),
        alias_rule(settings.max_aliases),
    ]
    # Factories, not instances: Strawberry builds a fresh extension per request (strawberry#4369).
    extensions: list[type[SchemaExtension] | Callable[[], SchemaExtension]] = [
        ErrorCodes,
        # Clients send the same few documents over and over: parse and validate each once.
        lambda: DocumentCache(maxsize=1024),
        lambda: ValidationCache(maxsize=1024),
        lambda: MaxTokensLimiter(max_token_count=max_tokens),
        lambda: AddValidationRules(limits),
    ]
    if not settings.introspection:
        extensions.append(DisableIntrospection)
    return LgqlSchema(
        query=Query, mutation=Mutation, subscription=Subscription, extensions=extensions
    )


def export_sdl() -> str:
    return str(strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription)) + "\n"

"""The schema: root types assembled with the limits and error handling every request gets."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import strawberry
from graphql import (
    BREAK,
    ASTValidationRule,
    DocumentNode,
    GraphQLError,
    StringValueNode,
    Visitor,
    visit,
)
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaxTokensLimiter,
    ParserCache,
)
from strawberry.extensions.base_extension import SchemaExtension
from strawberry.extensions.max_aliases import create_validator as alias_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.name_converter import NameConverter
from strawberry.types.execution import ExecutionContext

from app.observability.graphql import schema_extensions as observability_extensions
from app.settings import Settings, get_settings
from app.storable import NUL_MESSAGE, nul_at
from schema.errors import ErrorCodes
from schema.event_execution import EventExecutionContext, LeanExtensionsRunner
from schema.input_conversion import install_input_conversion
from schema.mutation import Mutation
from schema.operation_name import RequireOperationName
from schema.query import Query
from schema.scalars import JSON, json_scalar
from schema.subscription import Subscription
from schema.warnings import ResponseWarnings

SDL_PATH = Path(__file__).with_name("schema.graphql")


# Documents longer than this are parsed and validated every time instead of cached: the caches
# keep their keys (the query text, the document with its source), and one 10 MB document sent
# once stayed in memory until a thousand others pushed it out (bench/bench_sockets.py: +30 MiB
# after one frame just under the body limit). Real clients' documents are a few KB.
MAX_CACHED_DOCUMENT_CHARS = 64 * 1024


class DocumentCache(ParserCache):
    """Strawberry's parse cache, except that a document that does not parse is left to
    Strawberry's own parse step, whose error path reports it like any other request error
    (the cache raises from inside the extension hook, past our error codes), and so is a
    document too large to keep (`MAX_CACHED_DOCUMENT_CHARS`)."""

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if len(context.query or "") > MAX_CACHED_DOCUMENT_CHARS:
            yield
            return
        with contextlib.suppress(GraphQLError):
            context.graphql_document = self.cached_parse_document(
                context.query, **context.parse_options
            )
        yield


class _BySource:
    """A parsed document as a cache key: equal and hashed by its source text. graphql-core hashes
    a document by walking its whole syntax tree on every lookup (10 µs for a small mutation); a
    string's hash is computed once."""

    __slots__ = ("_hash", "document", "source")

    def __init__(self, document: DocumentNode, source: str) -> None:
        self.document = document
        self.source = source
        self._hash = hash(source)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _BySource) and other.source == self.source


@functools.cache
def _validator(maxsize: int) -> Callable[..., list[GraphQLError]]:
    """One LRU of validation results per size, shared by every request (as Strawberry's)."""
    from strawberry.schema.schema import validate_document

    @functools.lru_cache(maxsize=maxsize)
    def validated(
        schema: Any, keyed: _BySource, rules: tuple[type[ASTValidationRule], ...]
    ) -> list[GraphQLError]:
        return validate_document(schema, keyed.document, rules)

    return validated


class DocumentValidationCache(SchemaExtension):
    """Strawberry's `ValidationCache`, keyed by the document's text rather than its syntax tree
    (the same text always parses to the same document), except for documents too large to keep
    (`MAX_CACHED_DOCUMENT_CHARS`) or without their source, which Strawberry validates itself."""

    def __init__(self, maxsize: int) -> None:
        super().__init__()
        self._validated = _validator(maxsize)

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        source = document.loc.source.body if document is not None and document.loc else None
        if document is None or source is None or len(source) > MAX_CACHED_DOCUMENT_CHARS:
            yield
            return
        context.pre_execution_errors = self._validated(
            context.schema._schema, _BySource(document, source), context.validation_rules
        )
        yield


class RefuseNul(SchemaExtension):
    """Refuses any operation whose variables or string literals hold U+0000 (`BAD_USER_INPUT`),
    before validation ends: Postgres can store it in no text or jsonb column, so wherever such
    a string reached the database it failed there, as an INTERNAL_SERVER_ERROR."""

    def on_validate(self) -> Iterator[None]:
        ctx = self.execution_context
        where = _nul_in_variables(ctx.variables)
        # A literal can only hold U+0000 through an escape; skip the walk for the rest.
        if where is None and ctx.graphql_document is not None and "\\u" in (ctx.query or ""):
            where = _nul_in_literals(ctx.graphql_document)
        if where is not None:
            # Set before validation runs: Strawberry then skips it and answers these errors.
            ctx.pre_execution_errors = [
                GraphQLError(
                    f"{NUL_MESSAGE} ({where}).",
                    extensions={"code": "BAD_USER_INPUT"},
                )
            ]
        yield


def _nul_in_variables(variables: dict[str, Any] | None) -> str | None:
    for name, value in (variables or {}).items():
        if nul_at(value) is not None:
            return f"variable `${name}`"
    return None


def _nul_in_literals(document: DocumentNode) -> str | None:
    found: list[StringValueNode] = []

    class Finder(Visitor):
        def enter_string_value(self, node: StringValueNode, *_: Any) -> Any:
            if "\x00" in node.value:
                found.append(node)
                return BREAK
            return None

    visit(document, Finder())
    if not found:
        return None
    location = found[0].loc
    if location is None:
        return "a string literal"
    line, column = location.source.get_location(location.start)
    return f"string literal at line {line}, column {column}"


class CachedNameConverter(NameConverter):
    """Strawberry's name converter, remembering each name it converts. Strawberry converts the
    name of every field of an input to camelCase each time it converts arguments (twenty-odd
    for a `RunInput`, on every `createRun`), and that was a tenth of the API's CPU per run; the
    names never change."""

    def __init__(self) -> None:
        super().__init__()
        self._names: dict[str, str] = {}

    def apply_naming_config(self, name: str) -> str:
        converted = self._names.get(name)
        if converted is None:
            converted = self._names[name] = super().apply_naming_config(name)
        return converted


class LgqlSchema(strawberry.Schema):
    def create_extensions_runner(
        self, execution_context: ExecutionContext, extensions: list[SchemaExtension]
    ) -> SchemaExtensionsRunner:
        return LeanExtensionsRunner(execution_context, extensions)

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
        ResponseWarnings,
        # Clients send the same few documents over and over: parse and validate each once.
        lambda: DocumentCache(maxsize=1024),
        lambda: DocumentValidationCache(maxsize=1024),
        RefuseNul,
        RequireOperationName,
        lambda: MaxTokensLimiter(max_token_count=max_tokens),
        lambda: AddValidationRules(limits),
    ]
    if not settings.introspection:
        extensions.append(DisableIntrospection)
    extensions.extend(observability_extensions())  # metrics; a span per operation when tracing
    # The JSON scalar is built here rather than once at import: its limits are this schema's
    # settings, so a test or an embedding app can serve two schemas with different limits.
    json = json_scalar(max_depth=settings.max_json_depth, max_bytes=settings.max_json_bytes)
    schema = LgqlSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
        scalar_overrides={JSON: json},
        config=StrawberryConfig(name_converter=CachedNameConverter()),
        # Run events are rendered from a plan made once per subscription (the API's main cost
        # per event otherwise); see schema/event_execution.py.
        execution_context_class=EventExecutionContext,
    )
    # Our inputs convert from a plan made once per type, not field by field on each request.
    install_input_conversion(schema)
    return schema


def export_sdl() -> str:
    schema = strawberry.Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        scalar_overrides={JSON: json_scalar()},
    )
    return str(schema) + "\n"

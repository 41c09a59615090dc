"""Subscription events rendered from a plan made once per subscription, instead of executing the
document again for every event; and extension hooks asked only of the extensions that have them.

graphql-core executes a subscription's selection set anew for each event (ExecuteSubscriptionEvent):
it collects the root fields, coerces the root field's arguments, resolves and completes every
sub-field through the resolver machinery. For a run's stream that is most of the API's CPU per
event. When the document asks for leaf fields (scalars, enums, lists of them) of the event
object, and nothing can run per field (no middleware, no resolver, no arguments, no field
extension or permission), the result of that execution is a pure function of the event: the plan
computes it directly, with the same leaf serializers. Anything the plan cannot render exactly (a
null in a non-null position, a value a scalar refuses) falls back to graphql-core for that event,
so errors come out as they always did.

A transport may also take a subscription's events straight from the resolver's stream
(`direct_events`), rendering each with the plan, instead of through graphql-core's and
Strawberry's per-event layers (an async generator, a callback and three coroutines per event in
theirs): an event the plan cannot render, or one some extension has results for, is given back
and goes through their execution as before, in its place in the stream.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, cast

from graphql import (
    ExecutionResult,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    OperationType,
    Undefined,
    is_leaf_type,
)
from graphql.execution.collect_fields import collect_fields
from strawberry.extensions import SchemaExtension
from strawberry.extensions.context import StreamResultContextManager
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types import ExecutionContext
from strawberry.types.execution import StreamExecutionResult
from strawberry.types.field import StrawberryField

from schema.extension_hooks import (
    ExecutingHooks,
    OperationHooks,
    ParsingHooks,
    ValidationHooks,
    overrides,
)

_BACKREF = GraphQLCoreConverter.DEFINITION_BACKREF


class _CannotRender(Exception):
    """This event needs graphql-core's full execution (it produces an error)."""


@dataclass(frozen=True, slots=True)
class _Leaf:
    key: str
    resolve: Callable[[Any], Any] | None  # None: __typename
    coerce: Callable[[Any], Any]  # the leaf type's output coercion
    non_null: bool
    listed: bool  # a list of leaves
    items_non_null: bool


@dataclass(frozen=True, slots=True)
class _Plan:
    root_key: str
    root_non_null: bool
    typename: str
    fields: tuple[_Leaf, ...]

    def render(self, event: Any) -> dict[str, Any]:
        if event is None:
            if self.root_non_null:
                raise _CannotRender
            return {self.root_key: None}
        out: dict[str, Any] = {}
        for leaf in self.fields:
            if leaf.resolve is None:
                out[leaf.key] = self.typename
                continue
            value = leaf.resolve(event)
            if value is None:
                if leaf.non_null:
                    raise _CannotRender
                out[leaf.key] = None
            elif leaf.listed:
                items: list[Any] = []
                for item in value:
                    if item is None:
                        if leaf.items_non_null:
                            raise _CannotRender
                        items.append(None)
                    else:
                        items.append(_coerced(leaf.coerce, item))
                out[leaf.key] = items
            else:
                out[leaf.key] = _coerced(leaf.coerce, value)
        return {self.root_key: out}


def _coerced(coerce: Callable[[Any], Any], value: Any) -> Any:
    """graphql-core's `complete_leaf_value` with the leaf's coercion looked up once: a value
    the scalar refuses (None or Undefined) is rendered by graphql-core, with its error."""
    coerced = coerce(value)
    if coerced is None or coerced is Undefined:
        raise _CannotRender
    return coerced


def _no_coercion(value: Any) -> Any:
    return value


def _unwrap(type_: GraphQLOutputType) -> tuple[GraphQLOutputType, bool]:
    if isinstance(type_, GraphQLNonNull):
        return cast(GraphQLOutputType, type_.of_type), True
    return type_, False


def _basic_resolver(field_def: Any) -> Callable[[Any], Any] | None:
    """What the field's own resolver does when it only reads an attribute (Strawberry's basic
    field: `default_resolver(source, python_name)`), as one call of the event."""
    definition = field_def.extensions.get(_BACKREF)
    if not isinstance(definition, StrawberryField) or not definition.is_basic_field:
        return None
    if definition.permission_classes or definition.extensions or field_def.args:
        return None
    resolve = field_def.resolve
    if resolve is None or not getattr(resolve, "_is_default", False):
        return None
    name, default = definition.python_name, definition.default_resolver
    if default is getattr:
        return attrgetter(name)
    return lambda source: default(source, name)


def _leaf(key: str, field_def: Any) -> _Leaf | None:
    resolve = _basic_resolver(field_def)
    if resolve is None:
        return None
    type_, non_null = _unwrap(field_def.type)
    listed = items_non_null = False
    if isinstance(type_, GraphQLList):
        type_, items_non_null = _unwrap(cast(GraphQLOutputType, type_.of_type))
        listed = True
    if not is_leaf_type(type_):
        return None
    return _Leaf(key, resolve, type_.coerce_output_value, non_null, listed, items_non_null)


def _plan_of(executor: StrawberryGraphQLCoreExecutionContext) -> _Plan | None:
    """The plan of the subscription `executor` runs, or None if graphql-core must execute."""
    operation = executor.operation
    manager = executor.middleware_manager
    if operation.operation is not OperationType.SUBSCRIPTION or (
        manager is not None and manager.middlewares
    ):
        return None
    root_type = executor.schema.subscription_type
    if root_type is None:
        return None
    grouped, defers, _ = collect_fields(
        executor.schema,
        executor.fragments,
        executor.variable_values,
        root_type,
        operation,
        executor.hide_suggestions,
    )
    if len(grouped) != 1 or defers:
        return None
    ((root_key, details),) = grouped.items()
    root_def = root_type.fields.get(details[0].node.name.value)
    definition = root_def.extensions.get(_BACKREF) if root_def is not None else None
    if not isinstance(definition, StrawberryField) or not definition.is_subscription:
        return None
    assert root_def is not None
    object_type, root_non_null = _unwrap(root_def.type)
    if not isinstance(object_type, GraphQLObjectType) or object_type.is_type_of is not None:
        return None
    sub_grouped, sub_defers, _ = executor.collect_subfields(object_type, details)
    if sub_defers:
        return None
    fields: list[_Leaf] = []
    for key, sub_details in sub_grouped.items():
        name = sub_details[0].node.name.value
        if name == "__typename":
            fields.append(_Leaf(key, None, _no_coercion, True, False, False))
            continue
        field_def = object_type.fields.get(name)
        leaf = _leaf(key, field_def) if field_def is not None else None
        if leaf is None:
            return None
        fields.append(leaf)
    return _Plan(root_key, root_non_null, object_type.name, tuple(fields))


class _Rendered:
    """Stands in for graphql-core's per-event executor: the event's result, already made."""

    __slots__ = ("result",)

    def __init__(self, data: dict[str, Any]) -> None:
        self.result = ExecutionResult(data=data)

    def execute_operation(self, serially: bool | None = None) -> ExecutionResult:
        return self.result


_UNPLANNED: Any = object()


class _Raised:
    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


class _EventSource:
    """The resolver's stream as graphql-core iterates it, with what `DirectEvents` gave back
    served first."""

    __slots__ = ("given_back", "iterator")

    def __init__(self, iterator: Any) -> None:
        self.iterator = iterator
        self.given_back: list[Any] = []

    def __aiter__(self) -> _EventSource:
        return self

    def __anext__(self) -> Awaitable[Any]:
        # No coroutine of its own in the common case: the resolver's own awaitable.
        return self._replay() if self.given_back else self.iterator.__anext__()

    async def _replay(self) -> Any:
        item = self.given_back.pop()
        if isinstance(item, _Raised):
            raise item.error
        return item

    async def aclose(self) -> None:
        close = getattr(self.iterator, "aclose", None)
        if close is not None:
            await close()


class DirectEvents:
    """One subscription's events for a transport to take straight from the resolver's stream
    (`next_data`), once its first result has gone through Strawberry (`direct_events`)."""

    __slots__ = ("_context", "_plan", "_runner", "_source")

    def __init__(self, runner: LeanExtensionsRunner, context: ExecutionContext) -> None:
        self._runner = runner
        self._context = context
        self._plan: _Plan | None = None
        self._source: _EventSource | None = None

    def _attach(self, plan: _Plan, source: _EventSource) -> None:
        self._plan, self._source = plan, source

    @property
    def usable(self) -> bool:
        # Every extension watching stream results only rewrites errors, which a rendered
        # event has none of.
        return self._source is not None and self._runner.errors_only

    async def next_data(self) -> dict[str, Any] | None:
        """The next event's `data`, rendered; None when the event (or the resolver's error) was
        given back for the result stream to execute, in its place. Raises StopAsyncIteration
        at the resolver's end."""
        assert self._source is not None and self._plan is not None
        source = self._source
        try:
            payload = await source.iterator.__anext__()
        except StopAsyncIteration:
            raise
        except Exception as error:
            source.given_back.append(_Raised(error))  # Strawberry makes it the error result
            return None
        if self._context.extensions_results or self._runner.has_results():
            source.given_back.append(payload)
            return None
        try:
            return self._plan.render(payload)
        except Exception:
            source.given_back.append(payload)  # graphql-core's execution makes its error
            return None


_DIRECT: ContextVar[DirectEvents | None] = ContextVar("lgql_direct_events", default=None)


def direct_events() -> DirectEvents | None:
    """The current subscription's events, if a transport may take them directly: called in the
    task that iterates the subscription's results, after its first result."""
    direct = _DIRECT.get()
    return direct if direct is not None and direct.usable else None


class EventExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context, rendering subscription events from a plan when it can."""

    _event_plan: _Plan | None = _UNPLANNED

    def _plan(self) -> _Plan | None:
        plan = self._event_plan
        if plan is _UNPLANNED:
            plan = self._event_plan = _plan_of(self)
        return plan

    def cancellable_iterable(self, iterable: Any) -> Any:
        iterable = super().cancellable_iterable(iterable)
        direct, plan = _DIRECT.get(), self._plan()
        if direct is None or plan is None:
            return iterable
        source = _EventSource(iterable.__aiter__())
        direct._attach(plan, source)
        return source

    def build_per_event_executor(self, payload: Any) -> Any:
        plan = self._plan()
        if plan is not None:
            try:
                return _Rendered(plan.render(payload))
            except Exception:
                pass
        return super().build_per_event_executor(payload)


class _NoHooks:
    """`async with` that does nothing: no extension watches stream results."""

    __slots__ = ()

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_HOOKS = _NoHooks()


class LeanExtensionsRunner(SchemaExtensionsRunner):
    """Strawberry's runner, asking for results and stream-result hooks only the extensions that
    have them. Strawberry asks every extension for both on every result, and a subscription makes
    one result per event: with a dozen extensions, that was a third of the API's cost per event.
    Skipping the others changes nothing: the base `get_results` returns `{}` and the base
    `on_stream_result` is no hook. An extension whose `on_stream_result` only acts on a result's
    errors says so (`WATCHES_STREAM_ERRORS_ONLY = True`) and is not asked about the others."""

    def __init__(
        self, execution_context: ExecutionContext, extensions: list[SchemaExtension] | None = None
    ) -> None:
        super().__init__(execution_context, extensions)
        self._with_results = [e for e in self.extensions if overrides(type(e), "get_results")]
        self._watching = [e for e in self.extensions if overrides(type(e), "on_stream_result")]
        # When every watcher only rewrites errors (`WATCHES_STREAM_ERRORS_ONLY`), a result
        # without errors (nearly every event) skips the hooks' context managers.
        self.errors_only = all(
            getattr(type(e), "WATCHES_STREAM_ERRORS_ONLY", False) for e in self._watching
        )
        # A subscription run by this runner may have its events taken directly (`DirectEvents`).
        _DIRECT.set(DirectEvents(self, execution_context))

    def has_results(self) -> bool:
        """Whether an extension has results for the result about to be made (Strawberry asks
        `get_results` of each for every result: it has no side effects)."""
        return any(extension.get_results() for extension in self._with_results)

    # The phases' hooks, wrapped once per extension class (schema/extension_hooks.py).
    def operation(self) -> OperationHooks:
        return OperationHooks(self.extensions)

    def validation(self) -> ValidationHooks:
        return ValidationHooks(self.extensions)

    def parsing(self) -> ParsingHooks:
        return ParsingHooks(self.extensions)

    def executing(self) -> ExecutingHooks:
        return ExecutingHooks(self.extensions)

    def on_stream_result(self, result: StreamExecutionResult) -> Any:
        if not self._watching or (self.errors_only and not getattr(result, "errors", None)):
            return _NO_HOOKS
        return StreamResultContextManager(self._watching, result)

    async def get_extensions_results(self, ctx: ExecutionContext) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for extension in self._with_results:
            results = extension.get_results()
            # Nearly always a dict: awaited only when it is not (no `inspect.isawaitable`).
            data.update(results if isinstance(results, dict) else await results)
        data.update(ctx.extensions_results)
        return data

"""Extension phase hooks wrapped once per class (schema/extension_hooks.py) run as Strawberry's own
wrapping runs them: every kind of hook, in every phase, in the same order, with the same errors."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import strawberry
from strawberry.extensions import SchemaExtension

from schema.extension_hooks import OperationHooks, _wrap_for
from schema.schema import LgqlSchema, build_schema

pytestmark = pytest.mark.asyncio

LOG: list[str] = []


@strawberry.type
class Query:
    @strawberry.field
    def hello(self) -> str:
        LOG.append("resolve")
        return "world"


class Generators(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        LOG.append("gen.operation.enter")
        yield
        LOG.append("gen.operation.exit")

    def on_parse(self) -> Iterator[None]:
        LOG.append("gen.parse.enter")
        yield
        LOG.append("gen.parse.exit")

    def on_validate(self) -> Iterator[None]:
        LOG.append("gen.validate.enter")
        yield
        LOG.append("gen.validate.exit")

    def on_execute(self) -> Iterator[None]:
        LOG.append(f"gen.execute.enter:{self.execution_context.operation_name}")
        yield
        LOG.append("gen.execute.exit")


class AsyncGenerators(SchemaExtension):
    async def on_operation(self) -> AsyncIterator[None]:
        LOG.append("agen.operation.enter")
        yield
        LOG.append("agen.operation.exit")

    async def on_execute(self) -> AsyncIterator[None]:
        LOG.append("agen.execute.enter")
        yield
        LOG.append("agen.execute.exit")


class Coroutines(SchemaExtension):
    async def on_parse(self) -> None:  # type: ignore[override]
        LOG.append("coro.parse")

    async def on_execute(self) -> None:  # type: ignore[override]
        LOG.append("coro.execute")


class Plain(SchemaExtension):
    def on_validate(self) -> None:  # type: ignore[override]
        LOG.append("plain.validate")

    def on_operation(self) -> None:  # type: ignore[override]
        LOG.append("plain.operation")


class FailingOnEnter(SchemaExtension):
    def on_execute(self) -> Iterator[None]:
        LOG.append("failing.enter")
        raise RuntimeError("the hook broke")
        yield


class FailingOnExit(SchemaExtension):
    def on_execute(self) -> Iterator[None]:
        yield
        LOG.append("failing.exit")
        raise RuntimeError("the hook broke")


class Catching(SchemaExtension):
    """Sees the exception of a hook entered after it, as with Strawberry's exit stack."""

    def on_execute(self) -> Iterator[None]:
        try:
            yield
        except RuntimeError as exc:
            LOG.append(f"catching saw: {exc}")
            raise


class Swallowing(SchemaExtension):
    """Suppresses what a hook entered after it raises: the exits before it see nothing."""

    def on_execute(self) -> Iterator[None]:
        try:
            yield
        except RuntimeError as exc:
            LOG.append(f"swallowing saw: {exc}")


class ExitsAfter(SchemaExtension):
    def on_execute(self) -> Iterator[None]:
        try:
            yield
        except RuntimeError as exc:
            LOG.append(f"exits-after saw: {exc}")
            raise
        LOG.append("exits-after saw nothing")


class AsyncFailingOnExit(SchemaExtension):
    async def on_execute(self) -> AsyncIterator[None]:
        yield
        LOG.append("async-failing.exit")
        raise RuntimeError("the async hook broke")


async def _run(schema_class: type[strawberry.Schema], extensions: list[Any]) -> tuple[Any, list]:
    LOG.clear()
    schema = schema_class(query=Query, extensions=extensions)
    result = await schema.execute("query Hi { hello }", operation_name="Hi")
    errors = [e.message for e in result.errors or []]
    return (result.data, errors), list(LOG)


@pytest.mark.parametrize(
    "extensions",
    [
        [Generators, AsyncGenerators, Coroutines, Plain],
        [Plain, Coroutines, AsyncGenerators, Generators],
        [Catching, FailingOnEnter, Generators],
        [Catching, FailingOnExit, Generators],
        [ExitsAfter, Swallowing, FailingOnExit, Generators],
        [Swallowing, Catching, AsyncFailingOnExit, FailingOnExit],
        [ExitsAfter, AsyncGenerators, FailingOnEnter],
    ],
    ids=[
        "every-kind",
        "reversed",
        "a-hook-raises-on-enter",
        "a-hook-raises-on-exit",
        "a-hook-swallows-an-exit-error",
        "two-hooks-raise-on-exit",
        "an-async-hook-before-a-failing-enter",
    ],
)
async def test_hooks_run_as_strawberry_runs_them(extensions: list[Any]) -> None:
    stock = await _run(strawberry.Schema, extensions)
    ours = await _run(LgqlSchema, extensions)
    assert ours == stock
    result, log = ours
    if FailingOnEnter in extensions:
        assert result == (None, ["the hook broke"]) and "resolve" not in log
    elif Swallowing in extensions:
        # The hook entered first swallows what the exits after it raised, and no error is
        # left; the hook outside it sees none.
        assert result == ({"hello": "world"}, [])
        assert log.index("failing.exit") < log.index("swallowing saw: the hook broke")
    elif FailingOnExit in extensions:
        assert result[1] == ["the hook broke"]
        assert log.index("failing.exit") < log.index("catching saw: the hook broke")
    else:
        assert result == ({"hello": "world"}, [])
        assert "resolve" in log and "gen.execute.enter:Hi" in log and "coro.parse" in log


def _run_sync(schema_class: type[strawberry.Schema], extensions: list[Any]) -> tuple[Any, list]:
    LOG.clear()
    schema = schema_class(query=Query, extensions=extensions)
    result = schema.execute_sync("query Hi { hello }", operation_name="Hi")
    # An async hook is named in the error with its object's address: not the same object.
    errors = [re.sub(r" at 0x[0-9a-f]+", "", e.message) for e in result.errors or []]
    return (result.data, errors), list(LOG)


@pytest.mark.parametrize(
    "extensions",
    [
        [Generators, Plain],
        [Catching, FailingOnExit, Generators],
        [ExitsAfter, Swallowing, FailingOnExit, Generators],
        [Catching, FailingOnEnter, Generators],
        [Generators, AsyncGenerators],
    ],
    ids=["plain", "raises-on-exit", "swallows", "raises-on-enter", "an-async-hook"],
)
async def test_sync_execution_runs_them_as_strawberry_does(extensions: list[Any]) -> None:
    assert _run_sync(LgqlSchema, extensions) == _run_sync(strawberry.Schema, extensions)


async def test_an_instance_is_bound_per_request() -> None:
    first, second = Generators(), Generators()
    hooks_1 = OperationHooks([first]).hooks
    hooks_2 = OperationHooks([second]).hooks
    assert [h.extension for h in hooks_1] == [first] and [h.extension for h in hooks_2] == [second]


async def test_a_hook_that_is_not_callable_is_refused_as_strawberry_refuses_it() -> None:
    class Broken(SchemaExtension):
        on_operation = 42  # type: ignore[assignment]

    with pytest.raises(ValueError, match="must be callable"):
        _wrap_for(Broken, "on_operation")


async def test_the_servers_schema_uses_them() -> None:
    schema = build_schema()
    result = await schema.execute("query Q { __typename }", operation_name="Q")
    assert result.errors is None and result.data == {"__typename": "Query"}
    runner = schema.create_extensions_runner(None, [])  # type: ignore[arg-type]
    assert isinstance(runner.operation(), OperationHooks)

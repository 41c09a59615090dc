"""Schema extensions' phase hooks (operation, parsing, validation, execution), wrapped once per
extension class instead of once per request.

For each phase of each request, Strawberry looks at every extension's hook and wraps it in a
fresh context manager: `contextlib.contextmanager` over a newly bound method, which inspects the
function and copies its metadata (`functools.wraps`) every time, for a dozen extensions and four
phases. What the wrapping depends on (which hook the class overrides, and whether it is a
generator, an async generator, a coroutine or a plain function) is fixed per class, so it is
decided and wrapped once here; a request only binds its own instances (about 7 % of the API's
CPU for a trivial query, 3 to 4 % for `createThread`). The hooks run as Strawberry runs them: same
order, same context managers, same errors.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import AsyncIterator, Callable, Iterator

from strawberry.extensions import SchemaExtension
from strawberry.extensions.context import (
    ExecutingContextManager,
    ExtensionContextManagerBase,
    OperationContextManager,
    ParsingContextManager,
    ValidationContextManager,
    WrappedHook,
)

# (extension class, hook name) → how to wrap an instance's hook; None: the class has none.
_Wrap = Callable[[SchemaExtension], WrappedHook]
_wraps: dict[tuple[type[SchemaExtension], str], _Wrap | None] = {}


def overrides(cls: type[SchemaExtension], hook_name: str) -> bool:
    """Whether extensions of `cls` have a hook of their own (SchemaExtension's are no-ops)."""
    return getattr(cls, hook_name) is not getattr(SchemaExtension, hook_name)


def _wrap_for(cls: type[SchemaExtension], hook_name: str) -> _Wrap | None:
    if not overrides(cls, hook_name):
        return None
    hook_fn = getattr(cls, hook_name)
    if inspect.isgeneratorfunction(hook_fn):
        sync_cm = contextlib.contextmanager(hook_fn)
        return lambda ext: WrappedHook(ext, functools.partial(sync_cm, ext), False)
    if inspect.isasyncgenfunction(hook_fn):
        async_cm = contextlib.asynccontextmanager(hook_fn)
        return lambda ext: WrappedHook(ext, functools.partial(async_cm, ext), True)
    if inspect.iscoroutinefunction(hook_fn):

        @contextlib.asynccontextmanager
        async def awaiting(ext: SchemaExtension) -> AsyncIterator[None]:
            await hook_fn(ext)
            yield

        return lambda ext: WrappedHook(ext, functools.partial(awaiting, ext), True)
    if callable(hook_fn):

        @contextlib.contextmanager
        def calling(ext: SchemaExtension) -> Iterator[None]:
            hook_fn(ext)
            yield

        return lambda ext: WrappedHook(ext, functools.partial(calling, ext), False)
    raise ValueError(f"Hook {hook_name} on {cls.__name__} must be callable, received {hook_fn!r}")


class _WrappedOnce(ExtensionContextManagerBase):
    __slots__ = ()

    def get_hook(self, extension: SchemaExtension) -> WrappedHook | None:
        key = (type(extension), self.HOOK_NAME)
        try:
            wrap = _wraps[key]
        except KeyError:
            wrap = _wraps[key] = _wrap_for(type(extension), self.HOOK_NAME)
        return None if wrap is None else wrap(extension)


class OperationHooks(_WrappedOnce, OperationContextManager):
    __slots__ = ()


class ParsingHooks(_WrappedOnce, ParsingContextManager):
    __slots__ = ()


class ValidationHooks(_WrappedOnce, ValidationContextManager):
    __slots__ = ()


class ExecutingHooks(_WrappedOnce, ExecutingContextManager):
    __slots__ = ()

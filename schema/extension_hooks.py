"""Schema extensions' phase hooks (operation, parsing, validation, execution), wrapped once per
extension class instead of once per request.

For each phase of each request, Strawberry looks at every extension's hook and wraps it in a
fresh context manager: `contextlib.contextmanager` over a newly bound method, which inspects the
function and copies its metadata (`functools.wraps`) every time, for a dozen extensions and four
phases. What the wrapping depends on (which hook the class overrides, and whether it is a
generator, an async generator, a coroutine or a plain function) is fixed per class, so it is
decided and wrapped once here; a request only binds its own instances (about 7 % of the API's
CPU for a trivial query, 3 to 4 % for `createThread`). Which extensions have a phase's hook is
found once per list of extension classes, and a phase enters and leaves its hooks on a plain list
rather than an exit stack. The hooks run as Strawberry runs them: same order, same context
managers, same errors.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import Any

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
# (hook name, extension classes in order) → each extension with the hook: its index, its wrap.
_plans: dict[tuple[Any, ...], list[tuple[int, _Wrap]]] = {}


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
    """A phase's hooks, entered in order and left in reverse as Strawberry's exit stack does
    (the same calls, errors, suppression and exception context), on a plain list of the
    entered context managers: an `ExitStack` wraps each exit in a closure of its own, and an
    `AsyncExitStack` awaits its way through each, in four phases of every request."""

    __slots__ = ("_entered",)

    def __init__(self, extensions: list[SchemaExtension]) -> None:
        # Which of the extensions have this phase's hook depends on their classes alone:
        # found once per list of classes, then each request binds its own instances.
        key = (self.HOOK_NAME, *map(type, extensions))
        plan = _plans.get(key)
        if plan is None:
            plan = _plans[key] = [
                (i, wrap)
                for i, extension in enumerate(extensions)
                if (wrap := self._wrap(type(extension))) is not None
            ]
        self.hooks = [wrap(extensions[i]) for i, wrap in plan]
        self.default_hook = getattr(SchemaExtension, self.HOOK_NAME)

    def _wrap(self, cls: type[SchemaExtension]) -> _Wrap | None:
        key = (cls, self.HOOK_NAME)
        try:
            return _wraps[key]
        except KeyError:
            _wraps[key] = _wrap_for(cls, self.HOOK_NAME)
            return _wraps[key]

    def __enter__(self) -> None:
        self._entered: list[tuple[bool, Any]] = []
        for hook in self.hooks:
            if hook.is_async:
                raise RuntimeError(
                    f"SchemaExtension hook {hook.extension}.{self.HOOK_NAME} "
                    "failed to complete synchronously."
                )
            manager: Any = hook.hook()
            # A hook that fails here leaves those before it entered, as a failed
            # `enter_context` leaves an exit stack that is never exited.
            manager.__enter__()
            self._entered.append((False, manager))

    async def __aenter__(self) -> None:
        self._entered = []
        for hook in self.hooks:
            manager: Any = hook.hook()
            if hook.is_async:
                await manager.__aenter__()
            else:
                manager.__enter__()
            self._entered.append((hook.is_async, manager))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        unwinding = _Unwinding(exc_type, exc_val, exc_tb)
        entered = self._entered
        while entered:
            unwinding.exit(entered.pop()[1])
        unwinding.finish()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        unwinding = _Unwinding(exc_type, exc_val, exc_tb)
        entered = self._entered
        while entered:
            is_async, manager = entered.pop()
            if is_async:
                await unwinding.aexit(manager)
            else:
                unwinding.exit(manager)
        unwinding.finish()


class _Unwinding:
    """What an exit stack carries from one exit to the next: the exception each exit sees (the
    one the block raised, none once an exit suppressed it, or the one the last exit raised), and
    whether the whole exit ends by raising an exit's exception."""

    __slots__ = ("_frame_exc", "_pending", "details")

    def __init__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self.details: tuple[Any, Any, Any] = (exc_type, exc_val, exc_tb)
        # The exception being handled where the block sits, if any: the end of an exception's
        # context chain is fixed up to it, not looped through it.
        self._frame_exc = sys.exception()
        self._pending = False

    def exit(self, manager: Any) -> None:
        """Leave one entered context manager with what the exits before it left."""
        try:
            self._returned(manager.__exit__(*self.details))
        except BaseException as exc:
            self._raised(exc)

    async def aexit(self, manager: Any) -> None:
        """`exit` for an async context manager."""
        try:
            self._returned(await manager.__aexit__(*self.details))
        except BaseException as exc:
            self._raised(exc)

    def _returned(self, suppress: bool | None) -> None:
        if suppress:
            self._pending = False
            self.details = (None, None, None)

    def _raised(self, new: BaseException) -> None:
        self._fix_context(new, self.details[1])
        self._pending = True
        self.details = (type(new), new, new.__traceback__)

    def _fix_context(self, new: BaseException, old: BaseException | None) -> None:
        # The new exception's context chain ends at the exception the exit saw, unless it
        # ran into the one being handled around the block: then it is made to end there.
        while True:
            context = new.__context__
            if context is None or context is old:
                return
            if context is self._frame_exc:
                break
            new = context
        new.__context__ = old

    def finish(self) -> None:
        """Raise what the last exit raised, if an exit raised (after any suppression). Whether
        the block's exception was suppressed is not passed on: Strawberry's phases ignore what
        their exit stack returns, so an exception a hook swallows still goes on."""
        if self._pending:
            exc = self.details[1]
            fixed = exc.__context__
            try:
                raise exc
            except BaseException:
                exc.__context__ = fixed  # `raise` in the handler set it to itself's context
                raise


class OperationHooks(_WrappedOnce, OperationContextManager):
    __slots__ = ()


class ParsingHooks(_WrappedOnce, ParsingContextManager):
    __slots__ = ()


class ValidationHooks(_WrappedOnce, ValidationContextManager):
    __slots__ = ()


class ExecutingHooks(_WrappedOnce, ExecutingContextManager):
    __slots__ = ()

"""Who the current operation acts for, and the check services run before touching a resource.

The API sets the user for each request and WebSocket connection (`acting_as`); code of the
server's own (workers firing crons, sweepers) runs with no user and is not filtered.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from app.auth.filters import AuthFilter
from app.auth.handlers import AuthHandlers, User
from app.errors import ServiceError

_current: ContextVar[User | None] = ContextVar("lgql_auth_user", default=None)


@contextmanager
def acting_as(user: User | None) -> Iterator[None]:
    token = _current.set(user)
    try:
        yield
    finally:
        _current.reset(token)


def set_user_for_task(user: User | None) -> None:
    """Set the user for the rest of the current task (a WebSocket connection's): every task it
    starts from now on (its operations) acts for that user."""
    _current.set(user)


class Authorization:
    """The auth handlers as services see them: `check` before every operation."""

    def __init__(self, handlers: AuthHandlers | None) -> None:
        self.handlers = handlers

    @property
    def enabled(self) -> bool:
        return self.handlers is not None

    async def check(self, resource: str, action: str, value: dict[str, Any]) -> AuthFilter | None:
        """The filter the current user is held to for `action` on `resource` (None: no limit).
        Handlers may change `value` in place (stamp metadata, rewrite a store namespace).
        Raises Forbidden / Unauthenticated / NotFound as the handler decides."""
        user = _current.get()
        if self.handlers is None or user is None:
            return None
        return await self.handlers.authorize(user, resource, action, value)

    def identity(self) -> str | None:
        """The current user's identity; None for the server's own work or without auth."""
        user = _current.get()
        return None if self.handlers is None or user is None else str(user.identity)

    def user_fields(self) -> dict[str, Any]:
        """What a run's `config.configurable` carries about its user, as on LangGraph Server."""
        user = _current.get()
        if self.handlers is None or user is None:
            return {}
        permissions = list(getattr(user, "permissions", ()) or ())
        as_dict = user.dict() if hasattr(user, "dict") else {"identity": user.identity}
        # Stored with the run (and read in another process): only what JSON can carry.
        as_dict = json.loads(json.dumps(as_dict, default=str))
        return {
            "langgraph_auth_user_id": user.identity,
            "langgraph_auth_user": as_dict,
            "langgraph_auth_permissions": permissions,
        }


def is_visible(flt: AuthFilter | None, metadata: dict[str, Any] | None) -> bool:
    """Whether `flt` (None: no limit) lets a resource with this metadata through."""
    return flt is None or flt.matches(metadata)


def require_visible(
    flt: AuthFilter | None, metadata: dict[str, Any] | None, not_found: ServiceError
) -> None:
    """Raise `not_found` when `flt` hides a resource with this metadata: to a user who may not
    see it, a resource that exists looks exactly like one that does not."""
    if not is_visible(flt, metadata):
        raise not_found

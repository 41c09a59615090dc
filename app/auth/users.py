"""The authenticated user, in the shapes LangGraph's auth handlers expect."""

from __future__ import annotations

import builtins
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langgraph_sdk.auth.types import StudioUser


@dataclass(frozen=True)
class AuthUser:
    """What `@auth.authenticate` returned, normalized: an identity, permissions, and every other
    field it gave (handlers read them as `ctx.user["org_id"]` or `ctx.user.org_id`)."""

    identity: str
    permissions: tuple[str, ...] = ()
    display_name: str = ""
    is_authenticated: bool = True
    fields: Mapping[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self._all()[key]

    def __contains__(self, key: object) -> bool:
        return key in self._all()

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __getattr__(self, name: str) -> Any:
        fields = object.__getattribute__(self, "fields")
        if name in fields:
            return fields[name]
        raise AttributeError(name)

    def get(self, key: str, default: Any = None) -> Any:
        return self._all().get(key, default)

    def dict(self) -> builtins.dict[str, Any]:
        return self._all()

    def _all(self) -> builtins.dict[str, Any]:
        return {
            **self.fields,
            "identity": self.identity,
            "display_name": self.display_name or self.identity,
            "is_authenticated": self.is_authenticated,
            "permissions": list(self.permissions),
        }


def normalize_user(result: Any) -> AuthUser | StudioUser:
    """`@auth.authenticate`'s result as a user. It may return an identity string, a dict with
    `identity`, an object with an `identity` attribute, or a `(permissions, user)` tuple.
    Raises ValueError for anything else (a bug in the auth file, reported as a server error)."""
    permissions: Sequence[str] | None = None
    if isinstance(result, tuple):
        if len(result) != 2:
            raise ValueError("@auth.authenticate returned a tuple that is not (permissions, user)")
        permissions, result = result
    if isinstance(result, StudioUser):
        return result
    if isinstance(result, str):
        return AuthUser(identity=result, permissions=tuple(permissions or ()))
    if isinstance(result, Mapping):
        data = dict(result)
    elif hasattr(result, "identity"):
        data = {k: getattr(result, k) for k in dir(result) if not k.startswith("_")}
        data = {k: v for k, v in data.items() if not callable(v)}
    else:
        raise ValueError(
            "@auth.authenticate must return an identity string, a dict with 'identity', or an "
            f"object with an 'identity' attribute; got {type(result).__name__}"
        )
    identity = data.pop("identity", None)
    if not isinstance(identity, str) or not identity:
        raise ValueError("@auth.authenticate returned a user without a string 'identity'")
    perms = data.pop("permissions", None)
    if permissions is None:
        permissions = perms or ()
    return AuthUser(
        identity=identity,
        permissions=tuple(str(p) for p in permissions),
        display_name=str(data.pop("display_name", "") or identity),
        is_authenticated=bool(data.pop("is_authenticated", True)),
        fields=data,
    )

"""Running a `langgraph_sdk.Auth` object's handlers: `@auth.authenticate` for every request and
WebSocket connection, `@auth.on…` for every operation on a resource."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from langgraph_sdk import Auth
from langgraph_sdk.auth.exceptions import HTTPException as AuthHTTPException
from langgraph_sdk.auth.types import AuthContext, StudioUser
from starlette.datastructures import QueryParams
from starlette.requests import HTTPConnection, Request

from app.auth.filters import AuthFilter, AuthFilterError
from app.auth.users import AuthUser, normalize_user
from app.errors import Forbidden, NotFound, ServiceError, Unauthenticated
from app.runtime.graph_loader import import_graph_value
from app.runtime.langgraph_config import ConfigError, LanggraphConfig

log = logging.getLogger("lgql.auth")

User = AuthUser | StudioUser
STUDIO_USER = "langgraph-studio-user"
AUTHENTICATE_PARAMS = frozenset(
    {
        "request",
        "scope",
        "path",
        "method",
        "path_params",
        "query_params",
        "headers",
        "authorization",
    }
)


class AuthHandlerError(RuntimeError):
    """The auth file misbehaved (bad return value, unexpected exception): an operator's problem,
    logged in full, masked as an internal error for the client."""


class Headers(dict[bytes, bytes]):
    """Request headers as LangGraph hands them to `authenticate` (lower-case bytes keys), also
    answering `headers.get("authorization")` with str keys, which many auth files use."""

    def _key(self, key: object) -> object:
        return key.lower().encode("latin-1") if isinstance(key, str) else key

    def __getitem__(self, key: object) -> bytes:
        return super().__getitem__(self._key(key))  # type: ignore[index]

    def __contains__(self, key: object) -> bool:
        return super().__contains__(self._key(key))

    def get(self, key: object, default: Any = None) -> Any:
        return super().get(self._key(key), default)  # type: ignore[call-overload]


def credential_headers(payload: Any) -> dict[str, str]:
    """Headers a WebSocket client put in its `connection_init` payload: its string entries
    (`{"Authorization": "Bearer …"}`), and those under `headers` (`{"headers": {…}}`)."""
    if not isinstance(payload, Mapping):
        return {}
    found = {k: v for k, v in payload.items() if isinstance(k, str) and isinstance(v, str)}
    nested = payload.get("headers")
    if isinstance(nested, Mapping):
        found.update({k: v for k, v in nested.items() if isinstance(k, str) and isinstance(v, str)})
    return found


@dataclass
class Credentials:
    """What a request or WebSocket connection presents. `extra_headers` are those a WebSocket
    client sent in its `connection_init` payload (browsers cannot set handshake headers)."""

    connection: HTTPConnection
    extra_headers: Mapping[str, str] = field(default_factory=dict)

    def headers(self) -> Headers:
        merged = Headers(
            (k.lower(), v) for k, v in self.connection.scope.get("headers", []) if k is not None
        )
        for name, value in self.extra_headers.items():
            try:
                merged[name.lower().encode("latin-1")] = value.encode("latin-1")
            except UnicodeEncodeError:  # not a header value HTTP could carry: ignored
                continue
        return merged


@dataclass
class AuthHandlers:
    auth: Auth
    studio_auth: bool = False
    """Under `lgql dev` (unless `auth.disable_studio_auth`), requests marked
    `x-auth-scheme: langsmith` act as LangGraph Studio's user, as with `langgraph dev`."""

    @classmethod
    def load(
        cls, config: LanggraphConfig, *, dev: bool, auth_type: str | None = None
    ) -> AuthHandlers | None:
        """The `auth` of langgraph.json, imported (blocking). None when there is none, or when
        `LANGGRAPH_AUTH_TYPE=noop` turns it off. Raises ConfigError when `auth.path` does not
        name an `Auth` object."""
        if auth_type == "noop":
            return None
        if auth_type not in (None, "", "custom"):
            raise ConfigError(
                f"LANGGRAPH_AUTH_TYPE={auth_type!r} is not supported: use 'custom' (langgraph.json "
                "auth.path) or 'noop'"
            )
        auth_config = config.auth or {}
        path = auth_config.get("path")
        if not path:
            return None
        if not isinstance(path, str):
            raise ConfigError("auth.path must be a string")
        spec = config.object_spec("auth.path", path)
        try:
            value = import_graph_value(spec)
        except Exception as exc:
            raise ConfigError(f"auth.path {path!r}: {type(exc).__name__}: {exc}") from exc
        if not isinstance(value, Auth):
            raise ConfigError(
                f"auth.path {path!r} is a {type(value).__name__}, expected a langgraph_sdk.Auth"
            )
        studio = dev and not auth_config.get("disable_studio_auth", False)
        return cls(value, studio_auth=studio)

    # -- authentication ---------------------------------------------------------------------

    async def authenticate(self, credentials: Credentials) -> User:
        """The user behind `credentials`. Raises Unauthenticated (401 from the handler, or no
        handler result), Forbidden (403), NotFound (404); AuthHandlerError for handler bugs."""
        headers = credentials.headers()
        if self.studio_auth and headers.get("x-auth-scheme") == b"langsmith":
            return StudioUser(STUDIO_USER, is_authenticated=True)
        fn = self.auth._authenticate_handler
        if fn is None:  # authorization handlers only: everyone is the same anonymous user
            return AuthUser(identity="anonymous", is_authenticated=False)
        try:
            result = await _call(fn, self._arguments(fn, credentials, headers))
        except AuthHTTPException as exc:
            raise _service_error(exc) from None
        except AssertionError as exc:
            raise Forbidden(str(exc) or "Forbidden") from None
        except ServiceError:
            raise
        except Exception as exc:
            log.exception("@auth.authenticate raised")
            raise AuthHandlerError(f"@auth.authenticate raised {type(exc).__name__}") from exc
        if result is None:
            raise Unauthenticated("Not authenticated")
        try:
            return normalize_user(result)
        except ValueError as exc:
            raise AuthHandlerError(str(exc)) from exc

    @staticmethod
    def _arguments(fn: Any, credentials: Credentials, headers: Headers) -> dict[str, Any]:
        conn = credentials.connection
        scope = conn.scope
        wanted = set(inspect.signature(fn).parameters)
        unknown = wanted - AUTHENTICATE_PARAMS
        if unknown:
            raise AuthHandlerError(
                f"@auth.authenticate takes unknown parameters {sorted(unknown)}; known: "
                f"{sorted(AUTHENTICATE_PARAMS)}"
            )
        available: dict[str, Any] = {
            "scope": scope,
            "path": scope.get("path", ""),
            "method": scope.get("method", "WEBSOCKET" if scope["type"] == "websocket" else "GET"),
            "path_params": scope.get("path_params", {}),
            "query_params": QueryParams(scope.get("query_string", b"")),
            "headers": headers,
            "authorization": (
                auth.decode("latin-1") if (auth := headers.get("authorization")) else None
            ),
        }
        if "request" in wanted:
            if scope["type"] != "http":
                raise Forbidden(
                    "This server's @auth.authenticate takes `request`, which a WebSocket "
                    "connection does not have; it should take `headers` or `authorization`."
                )
            available["request"] = (
                conn if isinstance(conn, Request) else Request(scope, conn.receive)  # type: ignore[attr-defined]
            )
        return {name: available[name] for name in wanted}

    # -- authorization ----------------------------------------------------------------------

    async def authorize(
        self, user: User, resource: str, action: str, value: dict[str, Any]
    ) -> AuthFilter | None:
        """Run the most specific handler for (resource, action), as LangGraph does. It may
        change `value` (e.g. stamp `value["metadata"]["owner"]`). Returns the filter it set,
        None when it allowed everything. Raises Forbidden (False, 403, assertion),
        Unauthenticated (401), NotFound (404), AuthHandlerError (a bug in the handler)."""
        handler = self._handler(resource, action)
        if handler is None:
            return None
        permissions = list(getattr(user, "permissions", ()) or ())
        ctx = AuthContext(permissions=permissions, user=user, resource=resource, action=action)  # type: ignore[arg-type]
        try:
            result = await _call(handler, {"ctx": ctx, "value": value})
        except AuthHTTPException as exc:
            raise _service_error(exc) from None
        except AssertionError as exc:
            raise Forbidden(str(exc) or "Forbidden") from None
        except ServiceError:
            raise
        except Exception as exc:
            log.exception("auth handler for %s.%s raised", resource, action)
            raise AuthHandlerError(f"auth handler for {resource}.{action} failed") from exc
        if result is None or result is True:
            return None
        if result is False:
            raise Forbidden("Forbidden")
        try:
            return AuthFilter.parse(result)
        except AuthFilterError as exc:
            log.error("auth handler for %s.%s returned a bad filter: %s", resource, action, exc)
            raise AuthHandlerError(str(exc)) from exc

    def _handler(self, resource: str, action: str) -> Any:
        handlers = self.auth._handlers
        for key in ((resource, action), (resource, "*"), ("*", action), ("*", "*")):
            if handlers.get(key):
                return handlers[key][-1]
        if self.auth._global_handlers:
            return self.auth._global_handlers[-1]
        return None


async def _call(fn: Any, kwargs: dict[str, Any]) -> Any:
    if inspect.iscoroutinefunction(fn):
        return await fn(**kwargs)
    result = await asyncio.to_thread(fn, **kwargs)
    if inspect.isawaitable(result):
        return await result
    return result


def _service_error(exc: AuthHTTPException) -> ServiceError:
    detail = str(exc.detail)
    if exc.status_code == 401:
        return Unauthenticated(detail)
    if exc.status_code == 404:
        return NotFound(detail)
    return Forbidden(detail)

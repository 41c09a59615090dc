"""Authentication of every HTTP request, before it reaches GraphQL (WebSocket connections are
authenticated at `connection_init`, where clients put their credentials, in the GraphQL view).

Public: `/ok` (health checks carry no credentials), GraphiQL's static assets, the GraphiQL
page itself (a GET of `/graphql` with no `query`) and the console (`/console`): the pages hold
no data, and their requests carry the credentials the user sets in them.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import parse_qs

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from app.auth.context import Authorization, acting_as
from app.auth.handlers import AuthHandlerError, Credentials
from app.errors import ServiceError

log = logging.getLogger("lgql.auth")

USER_SCOPE_KEY = "lgql.user"
PUBLIC_PREFIXES = ("/static/", "/console/")
# Probes (liveness, readiness) answer without credentials, as load balancers call them.
PUBLIC_PATHS = ("/ok", "/ready", "/console")


def _is_public(scope: Scope) -> bool:
    path: str = scope.get("path", "")
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
        return True
    if scope.get("method") == "GET" and path == "/graphql":
        return "query" not in parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return False


def _metrics_token(scope: Scope) -> object:
    return getattr(scope["app"].state, "metrics_token", None)


class AuthenticationMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or _is_public(scope)
            or scope.get("method") == "OPTIONS"
            # LGQL_METRICS_TOKEN set: the metrics route checks its own token (app.observability).
            or (scope.get("path") == "/metrics" and _metrics_token(scope) is not None)
        ):
            await self.app(scope, receive, send)
            return
        services = getattr(scope["app"].state, "services", None)
        auth: Authorization | None = getattr(services, "auth", None)
        if auth is None or auth.handlers is None:
            await self.app(scope, receive, send)
            return
        try:
            user = await auth.handlers.authenticate(Credentials(HTTPConnection(scope, receive)))
        except ServiceError as exc:
            status = (
                401 if exc.code == "UNAUTHENTICATED" else 403 if exc.code == "FORBIDDEN" else 404
            )
            await _reject(send, status, exc.message, exc.code)
            return
        except AuthHandlerError:
            await _reject(send, 500, "Internal server error", "INTERNAL_SERVER_ERROR")
            return
        scope[USER_SCOPE_KEY] = user
        with acting_as(user):
            await self.app(scope, receive, send)


async def _reject(send: Send, status: int, message: str, code: str) -> None:
    # GraphQL clients read `errors`, LangGraph's REST clients `detail`: one body serves both.
    body = json.dumps(
        {"errors": [{"message": message, "extensions": {"code": code}}], "detail": message}
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

"""Where Prometheus scrapes: `GET /metrics` on the API (a Starlette route), and a small HTTP
listener of its own on workers (`lgql worker --metrics-port`, off by default).

`LGQL_METRICS_TOKEN` set: a scrape must carry `Authorization: Bearer <token>` (Prometheus's
`authorization` scrape setting), whatever the API's own auth. Unset: the API's `/metrics` is
behind the same authentication as every other route when langgraph.json configures auth, and
open otherwise; a worker's listener is open (it listens only when asked to).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging

from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.observability import metrics

__all__ = ["authorized", "metrics_route", "serve_worker_metrics"]

log = logging.getLogger("lgql.metrics")


def authorized(header: str | None, token: str | None) -> bool:
    """Whether an `Authorization` header carries the metrics token (always, without one)."""
    if not token:
        return True
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)


def _unauthorized() -> JSONResponse:
    return JSONResponse(
        {
            "errors": [
                {"message": "Invalid metrics token", "extensions": {"code": "UNAUTHENTICATED"}}
            ]
        },
        status_code=401,
        headers={"WWW-Authenticate": "Bearer"},
    )


def metrics_route(token: SecretStr | None) -> Route:
    """The API's `GET /metrics` (`token`: LGQL_METRICS_TOKEN)."""
    secret = token.get_secret_value() if token is not None else None

    async def endpoint(request: Request) -> Response:
        if not authorized(request.headers.get("authorization"), secret):
            return _unauthorized()
        return Response(await metrics.exposition(), media_type=metrics.CONTENT_TYPE)

    return Route("/metrics", endpoint, methods=["GET"])


# --- the worker's listener -------------------------------------------------------------------

_MAX_HEAD_BYTES = 16 * 1024


async def serve_worker_metrics(host: str, port: int, token: str | None) -> asyncio.Server:
    """Answer `GET /metrics` on `host:port` until the returned server is closed. HTTP/1.1, one
    request per connection: all a scraper needs, without a web server in the worker."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                head = await reader.readuntil(b"\r\n\r\n")
            status, body, content_type = await _answer(head, token)
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n".encode()
                + (b"WWW-Authenticate: Bearer\r\n" if status.startswith("401") else b"")
                + b"\r\n"
                + body
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass  # a client that went away or sent garbage gets nothing
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, host, port, limit=_MAX_HEAD_BYTES)
    log.info("worker metrics on http://%s:%s/metrics", host, port)
    return server


async def _answer(head: bytes, token: str | None) -> tuple[str, bytes, str]:
    lines = head.decode("latin-1").split("\r\n")
    method, _, rest = lines[0].partition(" ")
    path = rest.partition(" ")[0].partition("?")[0]
    if path != "/metrics":
        return "404 Not Found", b"not found: try /metrics\n", "text/plain; charset=utf-8"
    if method not in ("GET", "HEAD"):
        return "405 Method Not Allowed", b"GET /metrics\n", "text/plain; charset=utf-8"
    header = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "authorization":
            header = value.strip()
    if not authorized(header, token):
        return "401 Unauthorized", b"invalid metrics token\n", "text/plain; charset=utf-8"
    body = await metrics.exposition()
    return "200 OK", b"" if method == "HEAD" else body, metrics.CONTENT_TYPE

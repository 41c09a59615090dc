"""The run console at `/console`: a single-page app (sources in `console/`, built into
`app/static/console/`) that speaks only lgql's public GraphQL API.

Every path under `/console/` that is not an asset gets the page itself (the app routes in the
browser), so `/console/runs/<id>` and the like open directly. Assets have content-hashed names
and are cached for a year; the page is revalidated each time. Everything is gzipped when the
browser accepts it.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

__all__ = ["CONSOLE_DIR", "CONSOLE_PATH", "console_routes"]

CONSOLE_DIR = Path(__file__).parent / "static" / "console"
CONSOLE_PATH = "/console"
IMMUTABLE = "public, max-age=31536000, immutable"
NOT_BUILT = "The console is not built: cd console && npm ci && npm run build\n"


class _HashedAssets(StaticFiles):
    """Static files whose names carry their content hash: cacheable forever."""

    def file_response(
        self,
        full_path: PathLike,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["cache-control"] = IMMUTABLE
        return response


def _page(scope: Scope) -> Response:
    index = CONSOLE_DIR / "index.html"
    if not index.is_file():
        return PlainTextResponse(NOT_BUILT, status_code=503)
    base = scope.get("root_path", "")  # the mount's own path, under any outer root path
    app_root = scope.get("app_root_path", "")
    body = (
        index.read_text(encoding="utf-8")
        .replace("{{BASE}}", html.escape(base))
        .replace("{{GRAPHQL}}", html.escape(f"{app_root}/graphql"))
        .replace("{{ASSETS}}", html.escape(f"{base}/assets"))
    )
    return HTMLResponse(body, headers={"cache-control": "no-cache"})


async def _spa(request: Request) -> Response:
    return _page(request.scope)


async def _to_slash(request: Request) -> Response:
    return RedirectResponse(f"{request.scope.get('root_path', '')}{CONSOLE_PATH}/", status_code=308)


def console_routes() -> list[BaseRoute]:
    """`/console` (redirects to `/console/`) and everything under it."""
    console = Starlette(
        routes=[
            Mount("/assets", app=_HashedAssets(directory=CONSOLE_DIR / "assets", check_dir=False)),
            Route("/{path:path}", _spa, methods=["GET", "HEAD"]),
        ],
        middleware=[Middleware(GZipMiddleware, minimum_size=500)],
    )
    return [
        Route(CONSOLE_PATH, _to_slash, methods=["GET", "HEAD"]),
        Mount(CONSOLE_PATH, app=console),
    ]

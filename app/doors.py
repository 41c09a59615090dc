"""The MCP and A2A doors' routes, their modules imported on the first request.

Their SDKs (`mcp`, `a2a-sdk` and what they pull in) take about 30 MiB of memory once imported,
in every API process, and most deployments never call them: so an API process imports them when
a request first reaches `/mcp`, `/a2a/…` or an agent card, not at start-up. The routes (paths,
methods) are fixed here, so what a client sees does not depend on whether they were loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

if TYPE_CHECKING:
    from app.a2a.door import A2ADoor
    from app.mcp.door import McpDoor

MCP_PATH = "/mcp"
A2A_PATH = "/a2a/{assistant_id}"
CARD_PATH = "/.well-known/agent-card.json"


class _Asgi:
    """An ASGI app around a coroutine method (Starlette takes a bare function or method as a
    request/response endpoint, GET only)."""

    def __init__(self, call: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.call = call

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.call(scope, receive, send)


class LazyDoors:
    """The two doors' ASGI endpoints; `aclose()` when the app stops (MCP's session manager runs
    in a task of its own from its first request until then)."""

    def __init__(self, *, max_body_bytes: int) -> None:
        self.max_body_bytes = max_body_bytes
        self._lock = asyncio.Lock()
        self._mcp: McpDoor | None = None
        self._mcp_running: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._a2a: A2ADoor | None = None

    def routes(self) -> list[BaseRoute]:
        return [
            Route(MCP_PATH, _Asgi(self._call_mcp)),
            Route(CARD_PATH, self._well_known_card, methods=["GET"]),
            Route(f"{A2A_PATH}{CARD_PATH}", self._assistant_card, methods=["GET"]),
            Route(A2A_PATH, _Asgi(self._call_a2a)),
        ]

    async def aclose(self) -> None:
        self._stop.set()
        if self._mcp_running is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._mcp_running

    # --- MCP ---------------------------------------------------------------------------------

    async def _call_mcp(self, scope: Scope, receive: Receive, send: Send) -> None:
        door = self._mcp or await self._load_mcp()
        await door(scope, receive, send)

    async def _load_mcp(self) -> McpDoor:
        async with self._lock:
            if self._mcp is None:
                from app.mcp.door import McpDoor

                door = McpDoor(max_body_bytes=self.max_body_bytes)
                started = asyncio.get_running_loop().create_future()
                self._mcp_running = asyncio.create_task(
                    self._run_mcp(door, started), name="lgql-mcp-sessions"
                )
                await started
                self._mcp = door
        return self._mcp

    async def _run_mcp(self, door: McpDoor, started: asyncio.Future[None]) -> None:
        async with door.lifespan():
            started.set_result(None)
            await self._stop.wait()

    # --- A2A ---------------------------------------------------------------------------------

    def _load_a2a(self) -> A2ADoor:
        if self._a2a is None:
            from app.a2a.door import A2ADoor

            self._a2a = A2ADoor(max_body_bytes=self.max_body_bytes)
        return self._a2a

    async def _call_a2a(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._load_a2a()(scope, receive, send)

    async def _well_known_card(self, request: Request) -> Response:
        self._load_a2a()
        from app.a2a.door import well_known_card

        return await well_known_card(request)

    async def _assistant_card(self, request: Request) -> Response:
        self._load_a2a()
        from app.a2a.door import assistant_card

        return await assistant_card(request)

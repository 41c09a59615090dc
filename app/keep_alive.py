"""Slow JSON answers over plain HTTP, kept alive with whitespace.

An answer that waits for a run (`runAndWait`, A2A's `message/send`) may take minutes, and proxies
and clients with idle timeouts would cut the connection. So when the answer is not ready after
`KEEP_ALIVE_AFTER` seconds, the 200 starts and a newline goes out every `KEEP_ALIVE_EVERY`
seconds until the JSON body is ready (JSON allows leading whitespace; LangGraph Server does the
same). A quick answer goes out as it is, with its own status and headers.

The answer is awaited in the request's own task, and a timer starts the newlines only for an
answer still pending after `KEEP_ALIVE_AFTER`: nearly every answer is quick, and a task of its
own (with the wait on it) cost each of them a loop turn and a handful of objects.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Sequence

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

KEEP_ALIVE_AFTER = 5.0
KEEP_ALIVE_EVERY = 5.0


class _Newlines:
    """The slow answer's start and its newlines, sent by a task of their own once started."""

    def __init__(self, send: Send, media_type: str, headers: Sequence[tuple[bytes, bytes]]) -> None:
        self._send = send
        self._media_type = media_type
        self._headers = headers
        self._ready = asyncio.Event()
        self.task: asyncio.Task[bool] | None = None

    def start(self) -> None:
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> bool:
        """Whether the client is still there when the answer is ready."""
        try:
            await self._send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", self._media_type.encode()),
                        (b"cache-control", b"no-cache, no-transform"),
                        (b"x-accel-buffering", b"no"),
                        *self._headers,
                    ],
                }
            )
            while not self._ready.is_set():
                await self._send({"type": "http.response.body", "body": b"\n", "more_body": True})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ready.wait(), KEEP_ALIVE_EVERY)
        except OSError:  # the client went away
            return False
        return True

    async def stop(self) -> bool:
        """Stop the newlines; whether the client is still there to get the body."""
        assert self.task is not None
        self._ready.set()
        return await self.task


async def answer_with_keep_alive(
    answer: Awaitable[Response],
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    media_type: str,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """Send `answer`'s response, kept alive as the module says (`media_type`: the slow answer's
    content type, fixed before the body is known; `headers`: more headers of the slow answer,
    such as a REST run's `Location`). A client that goes away stops the sending, not `answer`:
    what that means is the operation's to decide."""
    newlines = _Newlines(send, media_type, headers)
    timer = asyncio.get_running_loop().call_later(KEEP_ALIVE_AFTER, newlines.start)
    client_there = True
    try:
        response = await answer
    finally:
        timer.cancel()
        if newlines.task is not None:
            client_there = await newlines.stop()
    if newlines.task is None:
        await response(scope, receive, send)
    elif client_there:
        body = bytes(response.body)
        await send({"type": "http.response.body", "body": body, "more_body": False})

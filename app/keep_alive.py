"""Slow JSON answers over plain HTTP, kept alive with whitespace.

An answer that waits for a run (`runAndWait`, A2A's `message/send`) may take minutes, and proxies
and clients with idle timeouts would cut the connection. So when the answer is not ready after
`KEEP_ALIVE_AFTER` seconds, the 200 starts and a newline goes out every `KEEP_ALIVE_EVERY`
seconds until the JSON body is ready (JSON allows leading whitespace; LangGraph Server does the
same). A quick answer goes out as it is, with its own status and headers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

KEEP_ALIVE_AFTER = 5.0
KEEP_ALIVE_EVERY = 5.0


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
    task = asyncio.ensure_future(answer)
    done, _ = await asyncio.wait({task}, timeout=KEEP_ALIVE_AFTER)
    if done:
        await task.result()(scope, receive, send)
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", media_type.encode()),
                (b"cache-control", b"no-cache, no-transform"),
                (b"x-accel-buffering", b"no"),
                *headers,
            ],
        }
    )
    try:
        while not task.done():
            await send({"type": "http.response.body", "body": b"\n", "more_body": True})
            await asyncio.wait({task}, timeout=KEEP_ALIVE_EVERY)
    except OSError:  # the client went away
        return
    body = bytes(task.result().body)
    await send({"type": "http.response.body", "body": body, "more_body": False})

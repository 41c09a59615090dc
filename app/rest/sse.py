"""Server-sent events as LangGraph Server frames them, for every REST route that streams.

- A frame is `event: <name>`, `data: <json>`, then `id: <event id>` when the event has one,
  each line ended by CRLF, and a blank line (LangGraph's order and line ends; the SDKs split
  on any of CR, LF, CRLF).
- A comment `: heartbeat` goes out after `HEARTBEAT_EVERY` seconds without a frame, so proxies
  with idle timeouts keep a quiet stream open (LangGraph: every 5 s).
- A client that goes away (ASGI `http.disconnect`) stops the stream: the event source is closed
  at once, so its cleanup (`on_disconnect: cancel`, a subscription's taps) runs.
- An exception while streaming becomes a last `error` event (`{"error", "message"}`, as
  LangGraph's), never a silent end: a service error says its message, anything else only its
  class (its text may carry internals) and is logged.

`Last-Event-ID` (the header browsers' EventSource and the SDKs send when they reconnect) is read
by `last_event_id`. `run_frames` / `thread_frames` turn lgql's stored run events
(`app.services.run_streams`) into LangGraph's SSE events: see their docstrings for the two events
of lgql's own (`end`, `gap`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from app.errors import ServiceError, unavailable
from app.rest.http import dumps
from app.services.run_streams import StreamEvent, in_thread_modes

log = logging.getLogger("lgql.rest.sse")

T = TypeVar("T")

#: Seconds of silence after which a `: heartbeat` comment is sent (LangGraph Server: 5).
HEARTBEAT_EVERY = 5.0
HEARTBEAT = b": heartbeat\r\n\r\n"
MEDIA_TYPE = "text/event-stream"

_SEP = b"\r\n"


def _field(value: str) -> bytes:
    # A name or id with a line break would end its line early and forge another field.
    return value.replace("\r", "").replace("\n", "").encode()


def frame(event: str, data: Any, event_id: str | None = None) -> bytes:
    """One SSE frame: `event`, `data` as JSON (bytes are sent as they are), and `id` if any."""
    payload = data if isinstance(data, bytes) else dumps(data)
    parts = [b"event: ", _field(event), _SEP, b"data: ", payload, _SEP]
    if event_id is not None:
        parts += [b"id: ", _field(event_id), _SEP]
    parts.append(_SEP)
    return b"".join(parts)


def error_frame(exc: BaseException) -> bytes:
    """The `error` event that ends a stream broken by `exc`."""
    fault = unavailable(exc)
    if fault is not None:
        exc = fault
    if isinstance(exc, ServiceError):
        return frame("error", {"error": exc.code, "message": exc.message})
    return frame("error", {"error": type(exc).__name__, "message": "An internal error occurred"})


@contextlib.asynccontextmanager
async def closing(source: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """`contextlib.aclosing` for an async iterator typed as such (the services' streams are
    async generators): closed on the way out, so that its cleanup runs."""
    try:
        yield source
    finally:
        aclose: Callable[[], Awaitable[Any]] | None = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()


def last_event_id(request: Request) -> str | None:
    """The `Last-Event-ID` header, None when absent or empty (an empty id resets the cursor)."""
    value = request.headers.get("last-event-id")
    return value.strip() or None if value is not None else None


class EventSourceResponse(Response):
    """An SSE answer streaming `frames` (whole frames, as `frame` makes them), with heartbeats
    and disconnect handling as the module says. `frames` is closed however the stream ends."""

    media_type = MEDIA_TYPE

    def __init__(
        self,
        frames: AsyncIterator[bytes],
        *,
        headers: Mapping[str, str] | None = None,
        heartbeat_every: float | None = None,
    ) -> None:
        super().__init__(
            status_code=200,
            headers={
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
                **(headers or {}),
            },
            media_type=MEDIA_TYPE,
        )
        # Starlette's Response computes a content-length for an empty body: a stream has none.
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self.frames = frames
        self.heartbeat_every = HEARTBEAT_EVERY if heartbeat_every is None else heartbeat_every

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        pump = asyncio.ensure_future(self._pump(send))
        gone = asyncio.ensure_future(wait_for_disconnect(receive))
        try:
            await asyncio.wait({pump, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump, gone):
                task.cancel()
            pumped, _ = await asyncio.gather(pump, gone, return_exceptions=True)
        if isinstance(pumped, Exception):
            # Only sending can fail here (the source's errors became an `error` event): the
            # connection is gone, with nothing left to tell.
            log.debug("an event stream's connection failed: %r", pumped)

    async def _pump(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        frames = self.frames
        pending: asyncio.Future[bytes] | None = None
        try:
            while True:
                pending = asyncio.ensure_future(anext(frames))
                while True:
                    done, _ = await asyncio.wait({pending}, timeout=self.heartbeat_every)
                    if done:
                        break
                    await send({"type": "http.response.body", "body": HEARTBEAT, "more_body": True})
                try:
                    chunk = pending.result()
                except StopAsyncIteration:
                    break
                except Exception as exc:
                    if unavailable(exc) is None and not isinstance(exc, ServiceError):
                        log.exception("error while streaming events")
                    chunk = error_frame(exc)
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    break
                finally:
                    pending = None
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            if pending is not None and not pending.done():
                # Cancelled while waiting for the next frame: the source sees the
                # cancellation where it waits, and its cleanup runs.
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending
            aclose: Callable[[], Awaitable[Any]] | None = getattr(frames, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()


async def wait_for_disconnect(receive: Receive) -> None:
    """Return once the client has gone away."""
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return


# --- lgql's run events as LangGraph's SSE events -------------------------------------------------

#: Event ids that are not a position in a stream (lgql's synthesized ends and gaps use them).
_NO_ID = ("", "0-0")


def _id(event: StreamEvent) -> str | None:
    return None if event.id in _NO_ID else event.id


def _keeps(modes: Iterable[str] | None) -> Callable[[str], bool]:
    """Whether an event name passes a join's `stream_mode` filter (LangGraph's matching: the
    name, its `mode|ns` base, any `messages…` event for `messages` or `messages-tuple`);
    `metadata`, `error` and `gap` always pass."""
    wanted = set(modes or ())
    if not wanted:
        return lambda _: True
    messages = bool(wanted & {"messages", "messages-tuple"})

    def keep(name: str) -> bool:
        base = name.split("|", 1)[0]
        if base in wanted or name in ("metadata", "error", "gap"):
            return True
        return messages and base.startswith("messages")

    return keep


async def run_frames(
    events: AsyncIterator[StreamEvent], *, stream_mode: Iterable[str] | None = None
) -> AsyncIterator[bytes]:
    """A run's events as LangGraph Server streams them, ending with the run.

    lgql's `end` event (`{run_id, status}`) is not sent: LangGraph Server ends a run's stream by
    closing it, and the SDKs, finding no `end`, ask the run's status to tell an end from a cut
    (a run that ended in ERROR says so with its `error` event first). An end lgql had to take
    from the database with status `error` or `timeout` (its `error` event never reached Redis)
    becomes an `error` event, so that clients learn it failed. A `gap` (events lost in Redis)
    is sent as event `gap`, without an id (resume after the last event before it)."""
    keep = _keeps(stream_mode)
    async with closing(events) as source:
        async for event in source:
            if event.event == "end":
                status = (event.data or {}).get("status")
                if status in ("error", "timeout"):
                    yield frame(
                        "error",
                        {"error": "RunError", "message": f"The run ended with status {status}"},
                    )
                return
            if keep(event.event):
                yield frame(event.event, event.data, _id(event))


#: `GET /threads/{id}/stream`'s `stream_modes`.
THREAD_STREAM_MODES = ("run_modes", "lifecycle", "state_update")


async def thread_frames(
    events: AsyncIterator[StreamEvent], *, stream_modes: Iterable[str] = ("run_modes",)
) -> AsyncIterator[bytes]:
    """A thread's events (every run, in order) as LangGraph Server's thread stream sends them:
    each run's end (lgql's `end`, or after its `error`) is `metadata {"status": "run_done",
    "run_id"}`. `stream_modes`: `run_modes` (every run event), `lifecycle` (only runs' start
    `metadata` and `run_done`), `state_update` (`{"thread_id", "state"}` after each state
    update; `app.services.run_streams.in_thread_modes`)."""
    modes = set(stream_modes)
    everything = "run_modes" in modes
    lifecycle = everything or "lifecycle" in modes
    async with closing(events) as source:
        async for event in source:
            if event.event == "state_update":
                if in_thread_modes(event, modes):
                    yield frame(event.event, event.data, _id(event))
            elif event.event in ("end", "error"):
                if everything and event.event == "error":
                    yield frame("error", event.data, _id(event))
                if lifecycle:
                    done = {"status": "run_done", "run_id": event.run_id}
                    yield frame("metadata", done, _id(event))
            elif everything or event.event == "gap" or (lifecycle and event.event == "metadata"):
                yield frame(event.event, event.data, _id(event))

"""Run events in Redis Streams: what the worker emits, what subscribers read.

Each run has a stream (`<prefix>:run:<id>:events`) and each thread one more
(`<prefix>:thread:<id>:events`) that carries the events of all its runs in order. An entry's
Redis id is the event id, so a reader that reconnects with its last id misses nothing and sees
nothing twice. Appends are fenced like every other write of a run: a Lua script adds them only
while the run's owner key still names the attempt doing the writing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from app.runtime.serialization import dumps

log = logging.getLogger("lgql.streams")

#: Events that end a run's stream.
TERMINAL_EVENTS = ("end", "error")

# KEYS: run stream, thread stream, owner key. ARGV: attempt, maxlen, then (event, data) pairs.
# Returns the run stream ids, or false when the attempt no longer owns the run.
_APPEND = """
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return false end
local ids = {}
for i = 3, #ARGV, 2 do
  local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*',
                        'event', ARGV[i], 'data', ARGV[i + 1])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',
             'event', ARGV[i], 'data', ARGV[i + 1], 'run', KEYS[1])
  ids[#ids + 1] = id
end
return ids
"""


@dataclass(frozen=True)
class StreamEvent:
    id: str
    run_id: str
    event: str
    data: Any


class EventStreams:
    def __init__(
        self, redis: aioredis.Redis, prefix: str, *, retention_seconds: float, maxlen: int
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.retention_seconds = retention_seconds
        self.maxlen = maxlen
        self._append = redis.register_script(_APPEND)

    def run_key(self, run_id: str) -> str:
        return f"{self.prefix}:run:{run_id}:events"

    def thread_key(self, thread_id: str) -> str:
        return f"{self.prefix}:thread:{thread_id}:events"

    def _owner_key(self, run_id: str) -> str:
        return f"{self.prefix}:run:{run_id}:owner"

    # --- writing (workers) -------------------------------------------------------------------

    async def claim(self, run_id: str, attempt: int) -> None:
        """Make `attempt` the only one allowed to append to the run's streams."""
        await self.redis.set(self._owner_key(run_id), str(attempt), ex=7 * 24 * 3600)

    def publisher(self, run_id: str, thread_id: str, attempt: int) -> EventPublisher:
        return EventPublisher(self, run_id, thread_id, attempt)

    async def append(
        self, run_id: str, thread_id: str, attempt: int, events: list[tuple[str, bytes]]
    ) -> list[str] | None:
        args: list[Any] = [str(attempt), str(self.maxlen)]
        for name, data in events:
            args += [name, data]
        result = await self._append(
            keys=[self.run_key(run_id), self.thread_key(thread_id), self._owner_key(run_id)],
            args=args,
        )
        if not result:
            return None
        return [i.decode() if isinstance(i, bytes) else str(i) for i in result]

    async def expire(self, run_id: str, thread_id: str) -> None:
        """After the run: keep its events for the retention period, then let Redis drop them."""
        ttl = max(1, int(self.retention_seconds))
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.expire(self.run_key(run_id), ttl)
            pipe.expire(self.thread_key(thread_id), ttl)
            pipe.expire(self._owner_key(run_id), ttl)
            await pipe.execute()

    # --- reading (API) -----------------------------------------------------------------------

    async def read(
        self,
        key: str,
        *,
        after: str | None,
        stop_at_end: bool,
        when_idle: Callable[[], Awaitable[bool]] | None = None,
        block_ms: int = 15000,
    ) -> AsyncIterator[StreamEvent]:
        """Events of stream `key` after `after` ("0-0" or None: from the start), as they come.

        With `stop_at_end`, stops after a terminal event. Every `block_ms` without events it asks
        `when_idle()`; True ends the reading (say, the run ended and its stream expired).
        """
        cursor = after or "0-0"
        while True:
            response = await self.redis.xread({key: cursor}, count=500, block=block_ms)
            if not response:
                if when_idle is not None and await when_idle():
                    return
                continue
            for _stream, entries in response:
                for entry_id, fields in entries:
                    cursor = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                    event = fields[b"event"].decode()
                    run_key = fields.get(b"run", key.encode()).decode()
                    yield StreamEvent(
                        id=cursor,
                        run_id=run_key.split(":")[-2],
                        event=event,
                        data=orjson.loads(fields[b"data"]),
                    )
                    if stop_at_end and event in TERMINAL_EVENTS:
                        return

    async def exists(self, key: str) -> bool:
        return bool(await self.redis.exists(key))


class EventPublisher:
    """Appends one attempt's events in order without making the graph wait for Redis: events
    queue up and a background task sends whatever has gathered in one script call."""

    def __init__(self, streams: EventStreams, run_id: str, thread_id: str, attempt: int) -> None:
        self.streams = streams
        self.run_id = run_id
        self.thread_id = thread_id
        self.attempt = attempt
        self._queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.lost = False

    async def __aenter__(self) -> EventPublisher:
        self._task = asyncio.create_task(self._send_loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def emit(self, event: str, data: Any) -> None:
        self._queue.put_nowait((event, dumps(data)))

    async def close(self) -> None:
        """Send everything emitted so far, then stop."""
        if self._task is None:
            return
        self._queue.put_nowait(None)
        with contextlib.suppress(Exception):
            await self._task
        self._task = None

    async def _send_loop(self) -> None:
        done = False
        while not done:
            item = await self._queue.get()
            batch: list[tuple[str, bytes]] = []
            while True:
                if item is None:
                    done = True
                    break
                batch.append(item)
                if len(batch) >= 200 or self._queue.empty():
                    break
                item = self._queue.get_nowait()
            if batch and not self.lost:
                await self._send(batch)

    async def _send(self, batch: list[tuple[str, bytes]]) -> None:
        # A Redis blip must not drop events: retry with backoff for about half a minute.
        for attempt in range(8):
            try:
                ids = await self.streams.append(self.run_id, self.thread_id, self.attempt, batch)
            except Exception:
                log.warning("could not append events of run %s", self.run_id, exc_info=True)
                await asyncio.sleep(0.1 * 2**attempt)
                continue
            if ids is None:
                self.lost = True
            return
        log.error("dropped %d events of run %s: Redis unreachable", len(batch), self.run_id)

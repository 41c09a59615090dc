"""One Redis pub/sub connection per process for the notices everyone in it waits on.

Run-end notices (for `runAndWait`, joins) and stream-append notices (for the stream
multiplexer) arrive on pattern subscriptions of a single connection, whatever the number of
waiters: a subscription per waiter would cost a connection and two round trips each. A pattern
is subscribed once, when first used, and stays; handlers are plain callbacks run in the listener
task, so they must not block.

Pub/sub is lossy across reconnects. Whenever a pattern's subscription is (re)confirmed, its
`on_resync` callback runs: owners look again at what they might have missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import redis.asyncio as aioredis

log = logging.getLogger("lgql.notices")

#: How long `ready()` waits for Redis before giving up (the caller's request then fails like any
#: other Redis command would).
READY_TIMEOUT_SECONDS = 10.0

Handler = Callable[[bytes, bytes], None]


def escape_pattern(text: str) -> str:
    """`text` matched literally in a Redis glob pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


@dataclass
class _Pattern:
    on_message: Handler
    on_resync: Callable[[], None] | None
    confirmed: asyncio.Event = field(default_factory=asyncio.Event)


class Notices:
    """The pattern subscriptions of one Redis client (so: of one process)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._patterns: dict[bytes, _Pattern] = {}
        self._pubsub: aioredis.client.PubSub | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def add(
        self, pattern: str, on_message: Handler, on_resync: Callable[[], None] | None = None
    ) -> None:
        """Register `pattern` (subscribed on the first `ready()`)."""
        key = pattern.encode()
        if key in self._patterns:
            return
        self._patterns[key] = _Pattern(on_message, on_resync)
        if self._task is not None and not self._task.done():
            # Listening already (patterns are normally all added before): start over with every
            # pattern, rather than subscribe on a connection another task is reading.
            self._task.cancel()
            self._task = None

    async def ready(self, pattern: str) -> None:
        """Return once `pattern` is subscribed: a message published from now on reaches its
        handler (or, after a reconnect, its `on_resync`)."""
        entry = self._patterns[pattern.encode()]
        if entry.confirmed.is_set():
            return
        if self._task is None or self._task.done():
            if self._closed:
                raise RuntimeError("notices are closed")
            # One task owns the connection: it subscribes and reads; nobody else touches it.
            self._task = asyncio.create_task(self._listen(), name="lgql-notices")
        try:
            await asyncio.wait_for(entry.confirmed.wait(), READY_TIMEOUT_SECONDS)
        except TimeoutError as exc:
            raise aioredis.ConnectionError("Redis did not confirm a subscription") from exc

    async def _listen(self) -> None:
        delay = 0.1
        while not self._closed:
            pubsub = self.redis.pubsub()
            self._pubsub = pubsub
            try:
                await pubsub.psubscribe(*self._patterns)
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is None:
                        continue
                    delay = 0.1
                    kind = message["type"]
                    if kind == "pmessage":
                        entry = self._patterns.get(message["pattern"])
                        if entry is not None:
                            self._call(entry.on_message, message["channel"], message["data"])
                    elif kind == "psubscribe":
                        # First confirmation, or redis-py resubscribing after a reconnect.
                        entry = self._patterns.get(message["channel"])
                        if entry is not None:
                            entry.confirmed.set()
                            if entry.on_resync is not None:
                                self._call(entry.on_resync)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("notice listener lost Redis; reconnecting", exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                self._pubsub = None
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    @staticmethod
    def _call(fn: Callable[..., None], *args: bytes) -> None:
        try:
            fn(*args)
        except Exception:  # one bad handler must not kill every waiter's notices
            log.exception("notice handler failed")

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None
        for entry in self._patterns.values():
            entry.confirmed.clear()


# One `Notices` per Redis client: the broker and the event streams share the client, so they
# share the connection. The broker closes it (`Broker.close`), which drops the entry.
_BY_CLIENT: dict[int, Notices] = {}


def notices_for(redis: aioredis.Redis) -> Notices:
    found = _BY_CLIENT.get(id(redis))
    if found is None or found.redis is not redis:
        found = _BY_CLIENT[id(redis)] = Notices(redis)
    return found


async def close_notices(redis: aioredis.Redis) -> None:
    found = _BY_CLIENT.get(id(redis))
    if found is not None and found.redis is redis:
        del _BY_CLIENT[id(redis)]
        await found.close()

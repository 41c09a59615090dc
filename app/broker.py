"""Run messages over Redis: the queue's doorbell, cancel requests, and run-end notices.

Postgres decides (which run may start, who owns it, how it ended); Redis only carries news of
it, so a lost message delays something but never loses it: workers also sweep the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import redis.asyncio as aioredis
from arq.connections import ArqRedis, RedisSettings, create_pool

log = logging.getLogger("lgql.broker")

# How long a finished run's outcome stays in Redis for waiters (longer than any sane wait gap).
RESULT_TTL_SECONDS = 600
EXECUTE_RUN = "execute_run"
SEND_WEBHOOK = "send_webhook"


def redis_settings(url: str) -> RedisSettings:
    # Retries keep a worker alive through a Redis restart (arq#386, #435).
    settings = RedisSettings.from_dsn(url)
    settings.retry_on_timeout = True
    settings.conn_retries = 10
    return settings


async def connect_queue(url: str, prefix: str) -> ArqRedis:
    """A Redis client that can also enqueue arq jobs (one client for all of lgql's Redis use)."""
    return await create_pool(redis_settings(url), default_queue_name=f"{prefix}:queue")


class Broker:
    def __init__(self, redis: ArqRedis, prefix: str) -> None:
        self.redis: aioredis.Redis = redis
        self.queue = redis
        self.prefix = prefix
        self._cancel_handlers: dict[str, Callable[[str], None]] = {}
        self._cancel_listener: asyncio.Task[None] | None = None
        self._cancel_listener_lock = asyncio.Lock()

    # --- keys --------------------------------------------------------------------------------

    @property
    def queue_name(self) -> str:
        return f"{self.prefix}:queue"

    @property
    def doorbell_key(self) -> str:
        return f"{self.prefix}:arq:doorbell"

    def _control_channel(self, run_id: str) -> str:
        return f"{self.prefix}:run:{run_id}:control"

    def _end_channel(self, run_id: str) -> str:
        return f"{self.prefix}:run:{run_id}:end"

    def _result_key(self, run_id: str) -> str:
        return f"{self.prefix}:run:{run_id}:result"

    # --- the queue ---------------------------------------------------------------------------

    async def enqueue_run(self, run_id: str, *, job_key: str, defer_seconds: float = 0) -> None:
        """Ask a worker to try to start `run_id`. `job_key` makes the arq job id: one job per key,
        so repeated requests for the same reason collapse, and different reasons never block
        each other (a stale job id would otherwise swallow the request, arq#485)."""
        await self.queue.enqueue_job(
            EXECUTE_RUN,
            run_id,
            _job_id=f"run:{run_id}:{job_key}",
            _queue_name=self.queue_name,
            _defer_by=defer_seconds if defer_seconds > 0 else None,
        )
        if defer_seconds <= 0:
            await self.ring()

    async def enqueue_webhook(
        self, delivery_id: str, attempt: int, *, defer_seconds: float = 0
    ) -> None:
        """Ask a worker to make attempt `attempt` of a webhook delivery. One job id per delivery
        and attempt: the sweeper and a deferred retry asking for the same attempt collapse."""
        await self.queue.enqueue_job(
            SEND_WEBHOOK,
            delivery_id,
            _job_id=f"webhook:{delivery_id}:{attempt}",
            _queue_name=self.queue_name,
            _defer_by=defer_seconds if defer_seconds > 0 else None,
        )
        if defer_seconds <= 0:
            await self.ring()

    async def ring(self) -> None:
        """Tell a worker to look at arq's queue now. The doorbell is a sorted set holding at
        most one ring, so that workers wait on it and on run wake-ups with one `BZPOPMIN`."""
        await self.redis.zadd(self.doorbell_key, {"ring": time.time()}, nx=True)

    # --- cancel requests ---------------------------------------------------------------------

    async def send_cancel(self, run_id: str, action: str) -> None:
        await self.redis.publish(self._control_channel(run_id), action.encode())

    @contextlib.asynccontextmanager
    async def cancel_requests(
        self, run_id: str, on_request: Callable[[str], None]
    ) -> AsyncIterator[None]:
        """Call `on_request(action)` for every cancel request of `run_id` while in the block.

        One pattern subscription per process serves every run it executes: subscribing per
        run would cost a connection and two round trips for each.
        """
        await self._ensure_cancel_listener()
        self._cancel_handlers[run_id] = on_request
        try:
            yield
        finally:
            self._cancel_handlers.pop(run_id, None)

    async def _ensure_cancel_listener(self) -> None:
        if self._cancel_listener is not None and not self._cancel_listener.done():
            return
        async with self._cancel_listener_lock:
            if self._cancel_listener is not None and not self._cancel_listener.done():
                return
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            await pubsub.psubscribe(self._control_channel("*"))
            self._cancel_listener = asyncio.create_task(self._listen_for_cancels(pubsub))

    async def _listen_for_cancels(self, pubsub: Any) -> None:
        try:
            async for message in pubsub.listen():
                if not message or message.get("type") != "pmessage":
                    continue
                channel = message["channel"].decode()
                run_id = channel[len(self.prefix) + len(":run:") : -len(":control")]
                handler = self._cancel_handlers.get(run_id)
                if handler is not None:
                    handler(message["data"].decode())
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def close(self) -> None:
        if self._cancel_listener is not None:
            self._cancel_listener.cancel()
            with contextlib.suppress(BaseException):
                await self._cancel_listener
            self._cancel_listener = None

    # --- run ends ----------------------------------------------------------------------------

    async def publish_run_end(self, run_id: str, outcome: dict[str, Any]) -> None:
        """Record how the run ended (for waiters that arrive later) and tell current waiters."""
        payload = orjson.dumps(outcome)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self._result_key(run_id), payload, ex=RESULT_TTL_SECONDS)
            pipe.publish(self._end_channel(run_id), payload)
            await pipe.execute()

    async def run_outcome(self, run_id: str) -> dict[str, Any] | None:
        raw = await self.redis.get(self._result_key(run_id))
        return None if raw is None else dict(orjson.loads(raw))

    async def wait_for_run_end(
        self,
        run_id: str,
        *,
        fallback: Callable[[], Awaitable[dict[str, Any] | None]],
        recheck_seconds: float = 5.0,
        database_every: float = 60.0,
    ) -> dict[str, Any]:
        """The run's outcome, once it has ended.

        Subscribes first, then looks for an outcome already recorded (in Redis, then once in the
        database), so no end is missed. While waiting it looks at the recorded outcome in Redis
        every `recheck_seconds`; the database (`fallback`) is asked again only every
        `database_every` seconds, in case Redis restarted and lost the notice.
        """
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self._end_channel(run_id))
        loop = asyncio.get_running_loop()
        try:
            outcome = await self.run_outcome(run_id) or await fallback()
            if outcome is not None:
                return outcome
            asked_database_at = loop.time()
            while True:
                message = await pubsub.get_message(timeout=recheck_seconds)
                if message and message.get("type") == "message":
                    return dict(orjson.loads(message["data"]))
                outcome = await self.run_outcome(run_id)
                if outcome is None and loop.time() - asked_database_at >= database_every:
                    asked_database_at = loop.time()
                    outcome = await fallback()
                if outcome is not None:
                    return outcome
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

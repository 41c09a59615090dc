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
from arq.connections import ArqRedis, create_pool

from app.messaging.notices import close_notices, escape_pattern, notices_for
from app.messaging.redis_client import redis_settings

log = logging.getLogger("lgql.broker")

# How long a finished run's outcome stays in Redis for waiters (longer than any sane wait gap).
RESULT_TTL_SECONDS = 600
# Waiters look at recorded outcomes this often (all of a process's waiters in one MGET), in case
# a run-end notice was lost; the database only after FIRST_DATABASE_CHECK, then once a minute.
RECHECK_SECONDS = 5.0
FIRST_DATABASE_CHECK = 1.0
# How long a run's start waits for the cancel listener's subscription (Redis away: it goes on,
# cancels reach it through the database meanwhile).
CANCEL_SUBSCRIBE_WAIT = 2.0
EXECUTE_RUN = "execute_run"
SEND_WEBHOOK = "send_webhook"


async def connect_queue(url: str, prefix: str) -> ArqRedis:
    """A Redis client that can also enqueue arq jobs (one client for all of lgql's Redis use), on a
    Redis server or a Sentinel service (`app.messaging.redis_client`)."""
    return await create_pool(redis_settings(url), default_queue_name=f"{prefix}:queue")


class Broker:
    def __init__(self, redis: ArqRedis, prefix: str) -> None:
        self.redis: aioredis.Redis = redis
        self.queue = redis
        self.prefix = prefix
        self._cancel_handlers: dict[str, Callable[[str], None]] = {}
        self._cancel_listener: asyncio.Task[None] | None = None
        self._cancel_listener_lock = asyncio.Lock()
        self._cancel_subscribed = asyncio.Event()
        self._end_waiters: dict[str, list[_EndWaiter]] = {}
        self._end_recheck: asyncio.Task[None] | None = None
        self._lookups: list[tuple[str, asyncio.Future[bytes | None]]] = []
        self._lookup_sender: asyncio.Task[None] | None = None
        # Runs this process executes (`executing_here`): None until their end is committed
        # here, then their outcome.
        self._here: dict[str, dict[str, Any] | None] = {}
        notices_for(redis).add(self._end_pattern, self._on_end_notice, self._recheck_waiters_soon)

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
        """Start the listener if it is not running, and wait (a while) for its subscription.

        Never raises: cancel requests also reach a run through the database (its lease
        renewal reads them), so a run starting while Redis is away goes ahead, and the
        listener subscribes once Redis is back."""
        if self._cancel_listener is None or self._cancel_listener.done():
            async with self._cancel_listener_lock:
                if self._cancel_listener is None or self._cancel_listener.done():
                    self._cancel_subscribed.clear()
                    self._cancel_listener = asyncio.create_task(
                        self._listen_for_cancels(), name="lgql-cancel-listener"
                    )
        if not self._cancel_subscribed.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._cancel_subscribed.wait(), CANCEL_SUBSCRIBE_WAIT)

    async def _listen_for_cancels(self) -> None:
        """One pattern subscription for every run of the process, kept through Redis restarts:
        a lost connection is reopened with backoff (before, the task died with the connection
        and cancels went unheard until the next run started)."""
        delay = 0.1
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.psubscribe(self._control_channel("*"))
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if not message:
                        continue
                    kind = message.get("type")
                    if kind == "psubscribe":
                        # First subscription, or redis-py's own after a reconnect.
                        if not self._cancel_subscribed.is_set():
                            log.debug("cancel listener subscribed")
                        self._cancel_subscribed.set()
                        delay = 0.1
                        continue
                    if kind != "pmessage":
                        continue
                    channel = message["channel"].decode()
                    run_id = channel[len(self.prefix) + len(":run:") : -len(":control")]
                    handler = self._cancel_handlers.get(run_id)
                    if handler is not None:
                        try:
                            handler(message["data"].decode())
                        except Exception:
                            log.exception("cancel handler failed")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._cancel_subscribed.is_set():
                    log.warning("cancel listener lost Redis (%s); reconnecting", exc)
                self._cancel_subscribed.clear()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def close(self) -> None:
        if self._cancel_listener is not None:
            self._cancel_listener.cancel()
            with contextlib.suppress(BaseException):
                await self._cancel_listener
            self._cancel_listener = None
        if self._end_recheck is not None:
            self._end_recheck.cancel()
            with contextlib.suppress(BaseException):
                await self._end_recheck
            self._end_recheck = None
        await close_notices(self.redis)

    # --- run ends ----------------------------------------------------------------------------

    def end_channel(self, run_id: str) -> str:
        """Where a run's end is announced (for `EventStreams.finish`)."""
        return self._end_channel(run_id)

    def result_key(self, run_id: str) -> str:
        """Where a finished run's outcome is recorded (read by joins in their opening script)."""
        return self._result_key(run_id)

    @property
    def _end_pattern(self) -> str:
        return f"{escape_pattern(self.prefix)}:run:*:end"

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

    @contextlib.asynccontextmanager
    async def run_end_notices(
        self,
        run_id: str,
        on_end: Callable[[dict[str, Any]], None],
        *,
        recheck_seconds: float = RECHECK_SECONDS,
        on_resync: Callable[[], None] | None = None,
        committed: bool = False,
    ) -> AsyncIterator[None]:
        """Call `on_end(outcome)` (once) when `run_id` ends, while in the block; `on_resync()`
        whenever the notice subscription comes back after losing Redis (the notice and the
        recorded outcome may both be lost: Redis may have restarted empty). `committed`: the
        caller wants the outcome only, not the run's events, so a run ending in this very
        process may tell it as soon as the end is committed (`ended_here`), before its last
        events are in Redis; a stream reader must not ask for it.

        Every waiter of the process shares one pattern subscription (`app.messaging.notices`): no
        connection and no round trip per waiter. Once the block is entered, no end published
        afterwards is missed; an end published before must be looked up by the caller
        (`run_outcome`). While waiters exist, one `MGET` every `recheck_seconds` looks at the
        recorded outcomes of all of them, in case a notice was lost (it is lossy across
        reconnects, which also trigger a recheck).
        """
        await notices_for(self.redis).ready(self._end_pattern)
        waiter = _EndWaiter(on_end, recheck_seconds, on_resync, committed=committed)
        self._end_waiters.setdefault(run_id, []).append(waiter)
        if self._end_recheck is None or self._end_recheck.done():
            self._end_recheck = asyncio.create_task(self._recheck_waiters())
        try:
            yield
        finally:
            waiters = self._end_waiters.get(run_id)
            if waiters is not None:
                with contextlib.suppress(ValueError):
                    waiters.remove(waiter)
                if not waiters:
                    del self._end_waiters[run_id]

    async def _recorded_outcome(self, run_id: str) -> dict[str, Any] | None:
        """`run_outcome`, for waiters: the lookups of waiters that start together go out as one
        MGET, so a burst of `runAndWait`s costs a round trip and a connection, not one each."""
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._lookups.append((run_id, future))
        if self._lookup_sender is None or self._lookup_sender.done():
            self._lookup_sender = asyncio.create_task(self._send_lookups())
        raw = await future
        return None if raw is None else dict(orjson.loads(raw))

    async def _send_lookups(self) -> None:
        while self._lookups:
            batch, self._lookups = self._lookups[:512], self._lookups[512:]
            try:
                raws: list[Any] = await self.redis.mget([self._result_key(r) for r, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), raw in zip(batch, raws, strict=True):
                if not future.done():
                    future.set_result(raw)

    def executing_here(self, run_id: str) -> None:
        """This process executes the run from now on (it claimed it), until `executed_here`:
        its end, once committed here, is told here (`ended_here`), so a waiter that starts
        meanwhile need not look in Redis for an outcome recorded before it listened."""
        self._here[run_id] = None

    def executed_here(self, run_id: str) -> None:
        """The run's execution in this process is over (ended, handed back or lost)."""
        self._here.pop(run_id, None)

    def ended_here(self, run_id: str, outcome: dict[str, Any]) -> None:
        """The run ended in this process and its end is committed: its waiters here that want
        the outcome only (`committed`) have it now, without the round trip of the end's
        publication through Redis (which still follows, for everyone else)."""
        if run_id in self._here:
            self._here[run_id] = outcome
        for waiter in list(self._end_waiters.get(run_id, ())):
            if waiter.committed:
                waiter.fire(outcome)

    def _on_end_notice(self, channel: bytes, data: bytes) -> None:
        # "<prefix>:run:<id>:end"
        run_id = channel.decode()[len(self.prefix) + len(":run:") : -len(":end")]
        waiters = self._end_waiters.get(run_id)
        if waiters:
            outcome = dict(orjson.loads(data))
            for waiter in list(waiters):
                waiter.fire(outcome)

    def _recheck_waiters_soon(self) -> None:
        for waiters in list(self._end_waiters.values()):
            for waiter in list(waiters):
                waiter.resync()
        if self._end_waiters:
            task = asyncio.create_task(self._recheck_once())
            task.add_done_callback(lambda _: None)

    async def _recheck_once(self) -> None:
        run_ids = list(self._end_waiters)
        if not run_ids:
            return
        try:
            raws = await self.redis.mget([self._result_key(r) for r in run_ids])
        except Exception:  # Redis is down: the next recheck (or reconnect) tries again
            log.debug("could not recheck run outcomes", exc_info=True)
            return
        for run_id, raw in zip(run_ids, raws, strict=True):
            if raw is not None:
                outcome = dict(orjson.loads(raw))
                for waiter in list(self._end_waiters.get(run_id, ())):
                    waiter.fire(outcome)

    async def _recheck_waiters(self) -> None:
        """While anyone waits: every few seconds, one MGET for all of them."""
        while self._end_waiters:
            interval = min(
                (w.recheck_seconds for ws in self._end_waiters.values() for w in ws),
                default=RECHECK_SECONDS,
            )
            await asyncio.sleep(interval)
            await self._recheck_once()

    async def wait_for_run_end(
        self,
        run_id: str,
        *,
        fallback: Callable[[], Awaitable[dict[str, Any] | None]],
        recheck_seconds: float = RECHECK_SECONDS,
        database_every: float = 60.0,
    ) -> dict[str, Any]:
        """The run's outcome, once it has ended.

        Listens first (the process's shared subscription), then looks for an outcome already
        recorded in Redis, so no end is missed. The recorded outcome is looked at again every
        `recheck_seconds` (one MGET for all waiters of the process). The database (`fallback`)
        is asked once the wait has lasted `FIRST_DATABASE_CHECK` (in case Redis restarted and
        lost both the record and the notice; most runs end sooner, so most waits never ask),
        then every `database_every` seconds.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[dict[str, Any]] = loop.create_future()
        # Set when Redis came back: the database is asked at once rather than at the next
        # `database_every` (Redis may have lost the notice and the recorded outcome).
        resynced = asyncio.Event()

        def on_end(outcome: dict[str, Any]) -> None:
            if not done.done():
                done.set_result(outcome)

        async with self.run_end_notices(
            run_id, on_end, recheck_seconds=recheck_seconds, on_resync=resynced.set, committed=True
        ):
            if run_id in self._here:
                # Executed here: ended already (its outcome), or not yet, and then `ended_here`
                # tells the waiter just registered; nothing was recorded in Redis before.
                outcome = self._here[run_id]
            else:
                outcome = await self._recorded_outcome(run_id)
            if outcome is not None:
                return outcome
            wait = min(FIRST_DATABASE_CHECK, database_every)
            while True:
                woken: asyncio.Future[Any] = asyncio.ensure_future(resynced.wait())
                either: list[asyncio.Future[Any]] = [done, woken]
                try:
                    await asyncio.wait(either, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    woken.cancel()
                if done.done():
                    return done.result()
                resynced.clear()
                outcome = await fallback()
                if outcome is not None:
                    return outcome
                wait = database_every


class _EndWaiter:
    __slots__ = ("committed", "fired", "on_end", "on_resync", "recheck_seconds")

    def __init__(
        self,
        on_end: Callable[[dict[str, Any]], None],
        recheck_seconds: float,
        on_resync: Callable[[], None] | None = None,
        *,
        committed: bool = False,
    ) -> None:
        self.on_end = on_end
        self.recheck_seconds = recheck_seconds
        self.on_resync = on_resync
        self.committed = committed
        self.fired = False

    def resync(self) -> None:
        if not self.fired and self.on_resync is not None:
            try:
                self.on_resync()
            except Exception:
                log.exception("run-end resync callback failed")

    def fire(self, outcome: dict[str, Any]) -> None:
        if not self.fired:
            self.fired = True
            try:
                self.on_end(outcome)
            except Exception:
                log.exception("run-end callback failed")

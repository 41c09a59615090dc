"""Run events in Redis Streams: what the worker emits, what subscribers read.

Each event is written once, to its thread's stream (`<prefix>:thread:<id>:events`; a stateless
run has a thread of its own too), with the run id in the entry. The Redis entry id is the event
id for both subscriptions: `threadStream` resumes after it directly, and `joinRunStream` resumes
after it reading the same stream and keeping its own run's entries. A small hash per run
(`<prefix>:run:<id>:stream`) says which attempt owns the run's appends and where the run's
first event is, so that a join starts there instead of at the thread's beginning.

Appends are fenced like every other write of a run, inside the append script: an attempt at
least as new as the recorded owner appends and becomes the owner; an older one is refused.

Readers in an API process share one multiplexer (`StreamHub`): every append publishes a tiny
notice (the thread's channel, the last id), one pattern subscription per process receives them
(`app.messaging.notices`), and the hub reads every stream that has news in one `XREAD`, whatever the
number of subscribers. Each subscriber (`Tap`) has a bounded buffer; one that falls behind is
detached and catches up with reads of its own from its cursor, so nothing is dropped and no
subscriber holds up another.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import ormsgpack
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from app import faults
from app.messaging.notices import escape_pattern, notices_for
from app.observability import metrics
from app.runtime.serialization import dumps

log = logging.getLogger("lgql.streams")

#: Events that end a run's stream.
TERMINAL_EVENTS = ("end", "error")

# While a run appends, its keys live this long (a run whose workers all died for good must not
# leave them forever); its end sets them to the retention (`expire`).
RUNNING_TTL_SECONDS = 7 * 24 * 3600
# Entries read per command: the hub's XREAD, a catch-up read.
PAGE = 500
# Entries a subscriber's opening script returns with its look at the stream. (Converting entries
# to Lua and back costs more than an XREAD's reply: only a few, so that a join of a running run
# has its first events at once, and a replay is read by XREADs.)
FIRST_PAGE = 50
# A subscriber's buffer: past this many undelivered events it is detached and reads for itself.
TAP_BUFFER = 1024
# Streams per hub XREAD.
KEYS_PER_READ = 256
# How long a reader's own read is retried while Redis is unreachable.
READ_RETRY_SECONDS = 30.0

# Every append publishes a notice on its thread's channel: the batch's last id, and, for a small
# batch, a newline then its entries as one MessagePack array ([previous last id, run id, then
# id, event, data per entry]): a multiplexer that has read up to the previous id takes them as
# they are, with no read of its own, and one C call unpacks them (splitting the text form cost
# 3 µs an event in Python). Bigger ones carry the last id alone, and multiplexers read the
# stream. A process that follows nobody on the thread reads the last id alone.
NOTICE_PAYLOAD_MAX = 65536
_NOTIFY = f"""
local function notify(channel, prev, run, ids, argv, first, gap)
  local size = 0
  if gap then
    -- The batch starts with a gap event that is not in `argv`: readers read it from the stream.
    redis.call('PUBLISH', channel, ids[#ids])
    return
  end
  for k = 1, #ids do size = size + #argv[first + 2 * k - 1] end
  if size > {NOTICE_PAYLOAD_MAX} then
    redis.call('PUBLISH', channel, ids[#ids])
    return
  end
  local parts = {{prev, run}}
  for k = 1, #ids do
    local i = first + 2 * (k - 1)
    parts[#parts + 1] = ids[k]
    parts[#parts + 1] = argv[i]
    parts[#parts + 1] = argv[i + 1]
  end
  redis.call('PUBLISH', channel, ids[#ids] .. '\\n' .. cmsgpack.pack(parts))
end
local function last_id(key)
  local tail = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
  if tail[1] then return tail[1][1] end
  return '0-0'
end
-- The attempt's fence and its count check. `expected` is how many events the attempt has sent
-- before this batch ('' = no check); the hash's `n` is how many of them Redis holds. Returns
-- (skip, gap id): skip when this very batch is already in (a retry whose first answer was
-- lost); a gap event is appended first when Redis holds fewer than were sent (it came back
-- empty or behind, or the writer gave up on a batch during an outage).
local function fence_and_count(stream, hash, attempt, expected, count, maxlen, run)
  local owner = tonumber(redis.call('HGET', hash, 'owner') or '0')
  if attempt < owner then return nil end
  local have = 0
  if attempt == owner then
    have = tonumber(redis.call('HGET', hash, 'n') or '0')
  else
    -- A newer attempt (or the hash is gone): it owns the run's appends from now on.
    redis.call('HSET', hash, 'owner', attempt)
  end
  if expected == '' then return false, false end
  local want = tonumber(expected)
  if have >= want + count and count > 0 then return true, false end
  local gap = false
  if want > have then
    gap = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'event', 'gap',
      'data', cjson.encode({{run_id = run, attempt = attempt, lost = want - have,
                            reason = 'events were lost in Redis or could not be written'}}),
      'run', run)
    redis.call('HSETNX', hash, 'start', gap)
  end
  redis.call('HSET', hash, 'n', want + count)
  return false, gap
end
"""

# KEYS: thread stream, run hash. ARGV: attempt, maxlen, ttl, run id, notice channel, expected
# count ('' = none), then the (event, data) pairs as one MessagePack array of strings: one
# argument instead of two per event, which redis-py's asyncio client encodes one by one in Python
# (a third of a 100-event append's time). Returns the new entry ids (a gap event's first), or
# false when a newer attempt owns the run.
_APPEND = (
    _NOTIFY
    + """
local attempt = tonumber(ARGV[1])
local batch = cmsgpack.unpack(ARGV[7])
local prev = last_id(KEYS[1])
local skip, gap = fence_and_count(KEYS[1], KEYS[2], attempt, ARGV[6], #batch / 2, ARGV[2],
                                  ARGV[4])
if skip == nil then return false end
if skip then return {} end
local ids = {}
if gap then ids[1] = gap end
for i = 1, #batch, 2 do
  ids[#ids + 1] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*',
                             'event', batch[i], 'data', batch[i + 1], 'run', ARGV[4])
end
if #ids > 0 then
  redis.call('HSETNX', KEYS[2], 'start', ids[1])
  notify(ARGV[5], prev, ARGV[4], ids, batch, 1, gap)
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return ids
"""
)

# A run's last event, its retention and its outcome in one round trip. KEYS: thread stream, run
# hash, outcome key. ARGV: attempt, maxlen, retention, run id, notice channel, end channel,
# outcome (or ''), outcome ttl, event, data, expected count ('' = none). The event is fenced and
# counted like any append (a gap event goes first when Redis lost some); the outcome
# (the database's verdict, already committed) is recorded and announced regardless. Returns the
# event's id, or false when a newer attempt owns the run's appends.
_FINISH = (
    _NOTIFY
    + """
local id = false
local prev = last_id(KEYS[1])
local skip, gap = fence_and_count(KEYS[1], KEYS[2], tonumber(ARGV[1]), ARGV[11], 1, ARGV[2],
                                  ARGV[4])
if skip == false then
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*',
                  'event', ARGV[9], 'data', ARGV[10], 'run', ARGV[4])
  local ids = {id}
  if gap then ids = {gap, id} end
  redis.call('HSETNX', KEYS[2], 'start', ids[1])
  notify(ARGV[5], prev, ARGV[4], ids, ARGV, 9, gap)
elseif skip then
  id = prev  -- this end is in already (a retry whose first answer was lost)
end
redis.call('EXPIRE', KEYS[2], ARGV[3])
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local mine = true
if last[1] then
  local fields = last[1][2]
  for i = 1, #fields, 2 do
    if fields[i] == 'run' and fields[i + 1] ~= ARGV[4] then mine = false end
  end
  if mine then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
end
if ARGV[7] ~= '' then
  redis.call('SET', KEYS[3], ARGV[7], 'EX', ARGV[8])
  redis.call('PUBLISH', ARGV[6], ARGV[7])
end
return id
"""
)

# KEYS: thread stream, run hash, run outcome key (the last two: anything, when following a
# thread). ARGV: cursor ('' = from the run's first event, or the thread's first), page size,
# '1' when following a run. Returns {run's first id, recorded outcome, the stream's last id,
# entries, the stream's first id, whether the run's first entry is a writer's `gap`}: one
# atomic look, so an append is either in the entries or after the last id (and the first id
# says whether anything the reader needs was removed). A run that starts with a gap lost its
# earlier events (Redis came back empty): they were what a cursor from before it was waiting for.
_OPEN = """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local last_id = '0-0'
if last[1] then last_id = last[1][1] end
local head = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
local first_id = false
if head[1] then first_id = head[1][1] end
local start, outcome, start_gap = false, false, 0
if ARGV[3] == '1' then
  start = redis.call('HGET', KEYS[2], 'start')
  outcome = redis.call('GET', KEYS[3])
  if start and ARGV[1] ~= '' then
    local entry = redis.call('XRANGE', KEYS[1], start, start)
    if entry[1] and entry[1][2][1] == 'event' and entry[1][2][2] == 'gap' then start_gap = 1 end
  end
end
local from
if ARGV[1] ~= '' then from = '(' .. ARGV[1]
elseif ARGV[3] ~= '1' then from = '-'
elseif start then from = start
else return {start, outcome, last_id, {}, first_id, start_gap} end
if ARGV[2] == '0' then return {start, outcome, last_id, {}, first_id, start_gap} end
return {start, outcome, last_id, redis.call('XRANGE', KEYS[1], from, '+', 'COUNT', ARGV[2]),
        first_id, start_gap}
"""

# KEYS: thread stream, run hash. ARGV: ttl, run id. The run's hash keeps its events findable
# for the retention; the thread's stream too, unless another run has appended since (then it
# is that run's to expire when it ends; its next append would lengthen it again anyway).
_EXPIRE = """
redis.call('EXPIRE', KEYS[2], ARGV[1])
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if not last[1] then return 0 end
local fields = last[1][2]
for i = 1, #fields, 2 do
  if fields[i] == 'run' and fields[i + 1] ~= ARGV[2] then return 0 end
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""

Seq = tuple[int, int]
ZERO: Seq = (0, 0)


def seq_of(entry_id: str) -> Seq:
    ms, _, n = entry_id.partition("-")
    return (int(ms), int(n or 0))


# Not frozen (nothing assigns to an event; hashable all the same): a frozen dataclass's
# `__init__` sets each field through `object.__setattr__`, 2.1 against 0.5 µs here, and every
# event of every stream is made once per process that reads it.
@dataclass(slots=True, unsafe_hash=True)
class StreamEvent:
    id: str
    run_id: str
    event: str
    data: Any
    # The id as numbers, for ordering (entry ids do not sort as strings).
    seq: Seq = field(default=ZERO, compare=False, repr=False)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _event(entry_id: bytes | str, fields: dict[bytes, bytes]) -> StreamEvent:
    eid = _text(entry_id)
    return StreamEvent(
        id=eid,
        run_id=fields[b"run"].decode(),
        event=fields[b"event"].decode(),
        data=orjson.loads(fields[b"data"]),
        seq=seq_of(eid),
    )


def _raw_event(entry: list[Any]) -> StreamEvent:
    """An entry as a Lua script returns it: [id, [field, value, ...]]."""
    flat = entry[1]
    if len(flat) == 6 and flat[0] == b"event" and flat[2] == b"data" and flat[4] == b"run":
        # The order the append script writes: no dict to build.
        eid = _text(entry[0])
        return StreamEvent(
            id=eid,
            run_id=flat[5].decode(),
            event=flat[1].decode(),
            data=orjson.loads(flat[3]),
            seq=seq_of(eid),
        )
    return _event(entry[0], dict(zip(flat[::2], flat[1::2], strict=True)))


def _notice(payload: bytes) -> tuple[Seq, Seq | None, list[StreamEvent]]:
    """An append notice: the batch's last id, and, when it carries its entries, the stream's
    last id before the batch and the entries (see `_NOTIFY`)."""
    head, _, body = payload.partition(b"\n")
    last = seq_of(head.decode())
    if not body:
        return last, None, []
    # Every string of it is text: ids, the run id, event names and the events' JSON.
    flat = ormsgpack.unpackb(body)
    run, loads = flat[1], orjson.loads
    events = [
        StreamEvent(id=eid, run_id=run, event=event, data=loads(data), seq=seq_of(eid))
        for eid, event, data in zip(flat[2::3], flat[3::3], flat[4::3], strict=True)
    ]
    return last, seq_of(flat[0]), events


def lost_after(known: str | None, first: str | None) -> bool:
    """Whether entries after `known` (an entry the reader knows existed: the last it delivered,
    its cursor, or its run's first event) may be gone from a stream whose first entry is now
    `first`. Entries leave a stream only from its head (trimming, `MAXLEN`) or all at once
    (expiry, Redis back empty; new entries then have later ids): as long as the stream still
    starts at or before `known`, nothing after it was removed."""
    if known is None:
        return False
    return first is None or seq_of(first) > seq_of(known)


def gap_event(run_id: str, last_event_id: str | None, **extra: Any) -> StreamEvent:
    """What a reader is told when events it should have had are gone: `gap`, with the last
    event id it had (resume after the events that follow, not after this one)."""
    data = {"run_id": run_id, "last_event_id": last_event_id, **extra}
    return StreamEvent(id=last_event_id or "0-0", run_id=run_id, event="gap", data=data)


@dataclass
class Opened:
    """What a subscriber finds when it opens: where the run's events start in its thread's
    stream (None: it has appended nothing, or they expired), the run's recorded outcome, the
    tap that follows the stream from there, the last entry the reader is known to have had
    (`known`, for `lost_after`) and whether events after it are gone already (`lost`)."""

    start: str | None
    outcome: dict[str, Any] | None
    tap: Tap
    known: str | None = None
    lost: bool = False


class EventStreams:
    def __init__(
        self, redis: aioredis.Redis, prefix: str, *, retention_seconds: float, maxlen: int
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.retention_seconds = retention_seconds
        self.maxlen = maxlen
        self._append = redis.register_script(_APPEND)
        self._open = _Batched(redis, _OPEN)
        self._expire = redis.register_script(_EXPIRE)
        self._finish = redis.register_script(_FINISH)
        self.hub = StreamHub(self)

    def thread_key(self, thread_id: str) -> str:
        return f"{self.prefix}:thread:{thread_id}:events"

    def run_key(self, run_id: str) -> str:
        """The run's hash: its owning attempt and the id of its first event."""
        return f"{self.prefix}:run:{run_id}:stream"

    def notice_channel(self, thread_id: str) -> str:
        return f"{self.prefix}:thread:{thread_id}:appended"

    @property
    def notice_pattern(self) -> str:
        return f"{escape_pattern(self.prefix)}:thread:*:appended"

    def key_of_channel(self, channel: str) -> str:
        return channel[: -len(":appended")] + ":events"

    # --- writing (workers) -------------------------------------------------------------------

    async def claim(self, run_id: str, attempt: int) -> None:
        """Nothing to do: the append script fences by itself (an attempt takes ownership with
        its first append, which refuses any older attempt from then on). Kept for callers."""

    def publisher(self, run_id: str, thread_id: str, attempt: int) -> EventPublisher:
        return EventPublisher(self, run_id, thread_id, attempt)

    async def append(
        self,
        run_id: str,
        thread_id: str,
        attempt: int,
        events: list[tuple[str, bytes]],
        *,
        expected: int | None = None,
    ) -> list[str] | None:
        """Append `events` for `attempt`. `expected` is how many events the attempt sent before
        these: when Redis holds fewer (it lost them, or earlier batches were given up), a `gap`
        event goes first; when it already holds these (a retried call), nothing is appended."""
        args: list[Any] = [
            str(attempt),
            str(self.maxlen),
            str(RUNNING_TTL_SECONDS),
            run_id,
            self.notice_channel(thread_id),
            "" if expected is None else str(expected),
        ]
        flat: list[str] = []
        for name, data in events:
            # Lua's MessagePack reads strings, not binary: the data is JSON, so UTF-8.
            flat += (name, data.decode())
        args.append(ormsgpack.packb(flat))
        result = await self._append(
            keys=[self.thread_key(thread_id), self.run_key(run_id)], args=args
        )
        if result is None or result is False:
            return None
        return [_text(i) for i in result]

    async def publish_thread_event(self, thread_id: str, event: str, data: bytes) -> str:
        """Append an event of the thread itself, of no run (`state_update`), to its stream: its
        `run` is "" (run streams leave it out), and its notice carries only its id (readers read
        it from the stream). A thread's stream with no run to set its lifetime keeps it for the
        retention period. Returns the entry id."""
        key = self.thread_key(thread_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(
                key,
                {"event": event, "data": data, "run": ""},
                maxlen=self.maxlen,
                approximate=True,
            )
            pipe.expire(key, max(1, int(self.retention_seconds)), nx=True)
            entry_id, _ = await pipe.execute()
        entry = _text(entry_id)
        await self.redis.publish(self.notice_channel(thread_id), entry)
        return entry

    async def expire(self, run_id: str, thread_id: str) -> None:
        """After the run: keep its events for the retention period, then let Redis drop them."""
        ttl = max(1, int(self.retention_seconds))
        await self._expire(
            keys=[self.thread_key(thread_id), self.run_key(run_id)], args=[str(ttl), run_id]
        )

    async def finish(
        self,
        run_id: str,
        thread_id: str,
        attempt: int,
        event: str,
        data: Any,
        *,
        outcome: dict[str, Any] | None,
        outcome_key: str,
        outcome_channel: str,
        outcome_ttl: int,
        expected: int | None = None,
    ) -> str | None:
        """The run's last event (`end` or `error`), then `expire`, then (with `outcome`) what
        `Broker.publish_run_end` does, in one round trip instead of three; the order a reader
        relies on holds: the event is in the stream before the outcome is announced. Send
        whatever the attempt's publisher still holds first (`EventPublisher.close`), and pass
        its count (`EventPublisher.sent`) as `expected`. Returns the event's id, or None when a
        newer attempt owns the run's appends."""
        args: list[Any] = [
            str(attempt),
            str(self.maxlen),
            str(max(1, int(self.retention_seconds))),
            run_id,
            self.notice_channel(thread_id),
            outcome_channel,
            b"" if outcome is None else orjson.dumps(outcome),
            str(outcome_ttl),
            event,
            dumps(data),
            "" if expected is None else str(expected),
        ]
        result = await self._finish(
            keys=[self.thread_key(thread_id), self.run_key(run_id), outcome_key], args=args
        )
        return None if not result else _text(result)

    # --- reading (API) -----------------------------------------------------------------------

    async def open_run(
        self, run_id: str, thread_id: str, *, after: str | None, outcome_key: str
    ) -> Opened:
        """Follow `run_id`'s events: after `after`, else from its first event, else (it has not
        appended yet) from whatever its thread appends next. The tap yields every entry of the
        thread's stream from there: the caller keeps the run's own."""
        key = self.thread_key(thread_id)
        await self.hub.ready()
        sent_at = time.monotonic()
        start, outcome, last_id, entries, first, start_gap = await self._open(
            [key, self.run_key(run_id), outcome_key], [after or "", str(FIRST_PAGE), "1"]
        )
        start_id = _text(start) if start else None
        # The last entry this reader needs to still be there: its cursor, or its run's first
        # event when that comes later (a cursor from before the run), unless that first event
        # is a gap (what the run wrote before it, after the cursor, is gone).
        known = after
        if start_id is not None and (
            known is None or (seq_of(start_id) > seq_of(known) and not start_gap)
        ):
            known = start_id
        if after is not None:
            position = after
        elif start_id is not None:
            # Just before the first event: entry ids are exclusive cursors.
            position = _before(start_id)
        else:
            position = _text(last_id)
        tap = self.hub.tap(
            key,
            position=position,
            stream_last=_text(last_id),
            events=[_raw_event(e) for e in entries],
            full_page=bool(entries) and len(entries) >= FIRST_PAGE,
            sent_at=sent_at,
        )
        first_id = _text(first) if first else None
        return Opened(
            start_id,
            None if not outcome else dict(orjson.loads(outcome)),
            tap,
            known=known,
            lost=lost_after(known, first_id),
        )

    async def open_thread(self, thread_id: str, *, after: str | None) -> Tap:
        """Follow every entry of the thread's stream after `after` (from its start without)."""
        return (await self.open_thread_checked(thread_id, after=after)).tap

    async def open_thread_checked(self, thread_id: str, *, after: str | None) -> Opened:
        """`open_thread`, and whether entries after `after` are gone already (`Opened.lost`)."""
        key = self.thread_key(thread_id)
        await self.hub.ready()
        sent_at = time.monotonic()
        _, _, last_id, entries, first, _ = await self._open(
            [key, key, key], [after or "", str(FIRST_PAGE), "0"]
        )
        tap = self.hub.tap(
            key,
            position=after or "0-0",
            stream_last=_text(last_id),
            events=[_raw_event(e) for e in entries],
            full_page=bool(entries) and len(entries) >= FIRST_PAGE,
            sent_at=sent_at,
        )
        first_id = _text(first) if first else None
        return Opened(None, None, tap, known=after, lost=lost_after(after, first_id))

    async def first_id(self, key: str) -> str | None:
        """The id of the stream's first entry (None: empty or gone)."""
        head = await self.redis.xrange(key, "-", "+", count=1)
        return _text(head[0][0]) if head else None

    async def read_range(
        self, key: str, after: str, until: str | None, count: int
    ) -> list[StreamEvent]:
        """Entries of `key` after `after` (up to `until` when given), at most `count`."""
        # XREAD rather than XRANGE: the same entries, and redis-py parses its reply faster.
        # Retried through a Redis restart: a reader in the middle of a catch-up carries on.
        delay, waited = 0.1, 0.0
        while True:
            try:
                response = await self.redis.xread({key: after}, count=count)
                break
            except Exception as exc:
                if not faults.is_infrastructure_fault(exc) or waited >= READ_RETRY_SECONDS:
                    raise
                log.warning("could not read stream %s (%s); retrying", key, exc)
                await asyncio.sleep(delay)
                waited += delay
                delay = min(delay * 2, 2.0)
        events = [_event(i, f) for _, entries in response or () for i, f in entries]
        if until is not None:
            bound = seq_of(until)
            events = [e for e in events if e.seq <= bound]
        return events


class _Batched:
    """A Lua script whose concurrent calls go out together, as one pipeline on one connection:
    a burst of subscribers opening (a thousand clients reconnecting, say) costs a few round
    trips and a connection, not a connection each."""

    MAX_BATCH = 256

    def __init__(self, redis: aioredis.Redis, source: str) -> None:
        self.redis = redis
        self.script = redis.register_script(source)
        self._pending: list[tuple[list[str], list[str], asyncio.Future[Any]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def __call__(self, keys: list[str], args: list[str]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((keys, args, future))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send())
        return await future

    async def _send(self) -> None:
        while self._pending:
            batch = self._pending[: self.MAX_BATCH]
            del self._pending[: self.MAX_BATCH]
            try:
                results = await self._execute(batch)
            except Exception as exc:
                results = [exc] * len(batch)
            for (_, _, future), result in zip(batch, results, strict=True):
                if future.done():  # its caller went away
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def _execute(self, batch: list[tuple[list[str], list[str], Any]]) -> list[Any]:
        for attempt in range(2):
            async with self.redis.pipeline(transaction=False) as pipe:
                for keys, args, _ in batch:
                    # EVALSHA directly: a Script in a pipeline checks SCRIPT EXISTS every time.
                    pipe.evalsha(self.script.sha, len(keys), *keys, *args)
                results: list[Any] = await pipe.execute(raise_on_error=False)
            if attempt == 0 and any(isinstance(r, NoScriptError) for r in results):
                await self.redis.script_load(self.script.script)  # Redis restarted, or new
                continue
            return results
        return results


def _before(entry_id: str) -> str:
    """The greatest id below `entry_id` (an exclusive cursor that includes it)."""
    ms, n = seq_of(entry_id)
    if n > 0:
        return f"{ms}-{n - 1}"
    if ms > 0:
        return f"{ms - 1}-18446744073709551615"
    return "0-0"


class _Feed:
    """One stream that subscribers of this process follow: the hub's cursor in it and the
    subscribers it pushes to."""

    __slots__ = ("attached", "cursor", "key", "members", "seq")

    def __init__(self, key: str, cursor: str) -> None:
        self.key = key
        self.cursor = cursor
        self.seq = seq_of(cursor)
        self.members: set[Tap] = set()  # every open tap of the stream
        self.attached: set[Tap] = set()  # those the hub pushes to

    def advance(self, events: list[StreamEvent]) -> None:
        for tap in list(self.attached):
            tap._push(events)
        last = events[-1]
        self.cursor, self.seq = last.id, last.seq


class StreamHub:
    """The process's stream multiplexer: one notice subscription and one reader for every
    subscriber (see the module's docstring)."""

    # Notices seen for streams nobody here followed yet, kept for a few seconds: a subscriber
    # that opens meanwhile learns that its stream moved while it was looking.
    RECENT_SECONDS = 10.0

    def __init__(self, streams: EventStreams) -> None:
        self.streams = streams
        self.redis = streams.redis
        self.feeds: dict[str, _Feed] = {}
        self._dirty: dict[str, None] = {}  # ordered set
        self._reader: asyncio.Task[None] | None = None
        self._recent: dict[str, Seq] = {}
        self._recent_old: dict[str, Seq] = {}
        self._recent_since = self._recent_old_since = time.monotonic()
        # Counts reconnections of the notice subscription: a reader that sees it change looks
        # again at what Redis holds (it may have restarted empty) and at its run's status.
        self.generation = 0
        notices_for(self.redis).add(streams.notice_pattern, self._on_notice, self._on_resync)

    async def ready(self) -> None:
        await notices_for(self.redis).ready(self.streams.notice_pattern)

    # --- notices -----------------------------------------------------------------------------

    def _on_notice(self, channel: bytes, data: bytes) -> None:
        key = self.streams.key_of_channel(channel.decode())
        feed = self.feeds.get(key)
        if feed is None:
            # Nobody here follows it: remember only that it moved (the head of the notice).
            now = time.monotonic()
            if now - self._recent_since > self.RECENT_SECONDS:
                self._recent_old, self._recent = self._recent, {}
                self._recent_old_since, self._recent_since = self._recent_since, now
            self._recent[key] = seq_of(data.split(b"\n", 1)[0].decode())
            return
        last, prev, events = _notice(data)
        if last <= feed.seq:
            return  # read already
        if events and prev == feed.seq:
            # The batch right after what the hub has: take it from the notice, no read.
            feed.advance(events)
            return
        self._mark(key)

    def _on_resync(self) -> None:
        # (Re)subscribed: notices may have been lost meanwhile; look at every stream, and
        # wake every reader so that it checks nothing it needs was lost.
        self.generation += 1
        for key, feed in self.feeds.items():
            self._mark(key)
            for tap in feed.members:
                if tap.wake_on_resync:
                    tap.poke()

    def _recently_moved(self, key: str, seq: Seq, since: float) -> bool:
        if since < self._recent_old_since:
            return True  # notices from the opening's time are forgotten: assume it moved
        found = max(self._recent.get(key, ZERO), self._recent_old.get(key, ZERO))
        return found > seq

    # --- subscribers -------------------------------------------------------------------------

    def tap(
        self,
        key: str,
        *,
        position: str,
        stream_last: str,
        events: list[StreamEvent],
        full_page: bool,
        sent_at: float,
    ) -> Tap:
        """A subscriber of `key` that has read up to `position` (then `events`, if any; the
        stream's last id was `stream_last` when they were read)."""
        covered = events[-1].id if events else position
        tap = Tap(self, key, position, covered, events)
        feed = self.feeds.get(key)
        if feed is None:
            # The hub starts where the stream was, never past it: a cursor from the future
            # must not make it skip what is appended before that.
            start = min((covered, stream_last), key=seq_of)
            feed = self.feeds[key] = _Feed(key, start)
            if full_page or seq_of(stream_last) > feed.seq:
                self._mark(key)
            elif self._recently_moved(key, feed.seq, sent_at):
                self._mark(key)
        feed.members.add(tap)
        tap._feed = feed
        if tap.covered_seq >= feed.seq:
            feed.attached.add(tap)
            tap.attached = True
        return tap

    def _close(self, tap: Tap) -> None:
        feed = self.feeds.get(tap.key)
        if feed is None or tap not in feed.members:
            return
        feed.members.discard(tap)
        feed.attached.discard(tap)
        if not feed.members:
            del self.feeds[tap.key]
            self._dirty.pop(tap.key, None)

    # --- the reader --------------------------------------------------------------------------

    def _mark(self, key: str) -> None:
        self._dirty[key] = None
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read(), name="lgql-stream-hub")

    async def _read(self) -> None:
        """Read every stream with news, a batch of streams per XREAD, until none has any. One
        reader at a time per process, so a stream's events are pushed in order."""
        delay = 0.05
        while self._dirty:
            batch: dict[str, tuple[_Feed, str]] = {}
            for key in list(self._dirty)[:KEYS_PER_READ]:
                del self._dirty[key]
                feed = self.feeds.get(key)
                if feed is not None:
                    batch[key] = (feed, feed.cursor)
            if not batch:
                continue
            try:
                response = await self.redis.xread(
                    {key: cursor for key, (_, cursor) in batch.items()}, count=PAGE
                )
            except Exception:
                log.warning("stream hub could not read; retrying", exc_info=True)
                for key in batch:
                    self._dirty.setdefault(key, None)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.05
            for raw_key, entries in response or ():
                key = _text(raw_key)
                feed, cursor = batch[key]
                # The feed may have closed (or closed and reopened) during the read.
                if self.feeds.get(key) is not feed or feed.cursor != cursor or not entries:
                    continue
                feed.advance([_event(i, f) for i, f in entries])
                if len(entries) >= PAGE:
                    self._mark(key)


class Tap:
    """One subscriber's view of a stream: the events after its cursor, in order, once each.

    Attached, the hub pushes to its buffer. When the buffer is full the tap is detached and,
    once its consumer has drained the buffer, reads from Redis itself (from the last entry it
    holds up to the hub's cursor) until it has caught up, then attaches again.
    """

    __slots__ = (
        "_feed",
        "_poked",
        "_waiter",
        "attached",
        "buffer",
        "closed",
        "covered",
        "covered_seq",
        "generation",
        "hub",
        "key",
        "last_seq",
        "wake_on_resync",
    )

    def __init__(
        self, hub: StreamHub, key: str, position: str, covered: str, events: list[StreamEvent]
    ) -> None:
        self.hub = hub
        self.key = key
        self.last_seq = seq_of(position)  # the last event delivered (or the starting cursor)
        self.covered = covered  # the last entry read into the buffer
        self.covered_seq = seq_of(covered)
        self.buffer: collections.deque[StreamEvent] = collections.deque(events)
        self.attached = False
        self.closed = False
        self._feed: _Feed | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._poked = False
        self.generation = hub.generation  # the hub's, when this tap last checked for losses
        # Whether a reconnection of the notices makes a waiting `next()` return None (for
        # readers that then check for losses, `resynced`).
        self.wake_on_resync = False

    def resynced(self) -> bool:
        """True once after each reconnection of the hub's notices since the last call."""
        if self.generation == self.hub.generation:
            return False
        self.generation = self.hub.generation
        return True

    def _push(self, events: list[StreamEvent]) -> None:
        """From the hub: events after its cursor (some may be ones this tap already has)."""
        if len(self.buffer) + len(events) > TAP_BUFFER:
            # Too far behind: stop pushing; the consumer reads for itself from `covered`.
            assert self._feed is not None
            self._feed.attached.discard(self)
            self.attached = False
        else:
            self.buffer.extend(events)
            last = events[-1]
            if last.seq > self.covered_seq:
                self.covered, self.covered_seq = last.id, last.seq
        self._wake()

    def poke(self) -> None:
        """Make a waiting `next()` return None now (the caller has something to look at)."""
        self._poked = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _pop(self) -> StreamEvent | None:
        while self.buffer:
            event = self.buffer.popleft()
            if event.seq > self.last_seq:
                self.last_seq = event.seq
                return event
        return None

    async def next(self, idle_seconds: float) -> StreamEvent | None:
        """The next event; None after `idle_seconds` without one, or when poked."""
        deadline: float | None = None
        while True:
            event = self._pop()
            if event is not None:
                return event
            if self._poked:
                self._poked = False
                return None
            if not self.attached:
                await self._catch_up()
                continue
            loop = asyncio.get_running_loop()
            if deadline is None:
                deadline = loop.time() + idle_seconds
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            self._waiter = loop.create_future()
            try:
                await asyncio.wait_for(self._waiter, remaining)
            except TimeoutError:
                return None
            finally:
                self._waiter = None

    async def _catch_up(self) -> None:
        """Detached with an empty buffer: read from Redis up to the hub's cursor, or attach."""
        feed = self._feed
        assert feed is not None
        if self.covered_seq >= feed.seq:
            feed.attached.add(self)
            self.attached = True
            return
        until = feed.cursor
        events = await self.hub.streams.read_range(self.key, self.covered, until, PAGE)
        self.buffer.extend(events)
        if len(events) >= PAGE:
            self.covered, self.covered_seq = events[-1].id, events[-1].seq
        elif seq_of(until) > self.covered_seq:
            # Everything up to the hub's cursor then is read (even if trimmed away meanwhile).
            self.covered, self.covered_seq = until, seq_of(until)

    async def rest(self) -> AsyncIterator[StreamEvent]:
        """Everything after what was delivered, up to the stream's current end, without
        waiting for the hub (for a reader that knows the run has ended)."""
        while (event := self._pop()) is not None:
            yield event
        while True:
            after = f"{self.last_seq[0]}-{self.last_seq[1]}"
            events = await self.hub.streams.read_range(self.key, after, None, PAGE)
            for event in events:
                if event.seq > self.last_seq:
                    self.last_seq = event.seq
                    yield event
            if len(events) < PAGE:
                return

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.hub._close(self)


class EventPublisher:
    """Appends one attempt's events in order without making the graph wait for Redis: events
    queue up and a background task sends whatever has gathered in one script call.

    Every call carries how many events the attempt sent before it (`sent`), so the append
    script can tell when Redis holds fewer than were sent (Redis came back empty or behind, or
    a batch was given up during a long outage) and put a `gap` event in the stream, and when a
    retried batch is in already (its first answer was lost): no silent gap, no duplicate."""

    #: How long one batch is retried while Redis is unreachable before it is given up (the
    #: next append, or the run's end, then records the gap).
    GIVE_UP_SECONDS = 30.0

    def __init__(self, streams: EventStreams, run_id: str, thread_id: str, attempt: int) -> None:
        self.streams = streams
        self.run_id = run_id
        self.thread_id = thread_id
        self.attempt = attempt
        self._queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.lost = False
        self.sent = 0  # events of this attempt handed to Redis (or given up)

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
        try:
            await self._task
        except Exception:
            log.warning("event sender of run %s failed", self.run_id, exc_info=True)
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
        # A Redis blip must not drop events: retry with backoff. A retry of a call that did go
        # through is recognised by the count and not appended twice.
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self.GIVE_UP_SECONDS
        delay = 0.1
        try:
            while True:
                try:
                    ids = await self.streams.append(
                        self.run_id, self.thread_id, self.attempt, batch, expected=self.sent
                    )
                except Exception:
                    if loop.time() + delay > give_up_at:
                        # Counted as sent: the next append (or the run's end) finds Redis
                        # short of them and writes a gap event where they should have been.
                        log.error(
                            "gave up %d events of run %s: Redis unreachable; a gap event will "
                            "mark them",
                            len(batch),
                            self.run_id,
                        )
                        return
                    log.warning(
                        "could not append events of run %s; retrying", self.run_id, exc_info=True
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                metrics.stream_events(len(batch))
                if ids is None:
                    self.lost = True
                return
        finally:
            self.sent += len(batch)

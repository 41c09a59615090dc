"""Idempotency keys for creates (`createRun` and the other run creates, `createThread`,
`createAssistant`): a retry after an ambiguous failure (a timeout, a dropped connection, a 503)
never makes a second object.

The first request with a key creates the object and records the key in the same transaction. A
later request with the same key and the same input gets that object back (nothing is created);
with the same key and a different input it is a CONFLICT. Keys are per kind and per user, and are
kept for `RETENTION` (24 hours); past that the key is free again, and expired keys are deleted by a
sweep that API processes run now and then (at most every `SWEEP_EVERY`). A create that fails keeps
no key: its transaction, key included, is rolled back, so the retry tries again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import orjson

from app.db import idempotency as db
from app.errors import BadUserInput, Conflict

__all__ = [
    "MAX_KEY_LENGTH",
    "RETENTION",
    "IdempotencyKey",
    "fingerprint",
    "idempotency_key",
    "maybe_sweep",
]

log = logging.getLogger("lgql.idempotency")

#: How long a key is remembered after its first use.
RETENTION = timedelta(hours=24)
#: How often, at most, one process deletes expired keys.
SWEEP_EVERY = timedelta(minutes=10)
MAX_KEY_LENGTH = 255


def fingerprint(value: Any) -> str:
    """SHA-256 of a request's input as canonical JSON (sorted keys): equal inputs, equal hashes."""
    data = orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)
    return hashlib.sha256(data).hexdigest()


def idempotency_key(key: str | None) -> str | None:
    """`key` checked (None: no key). Raises BadUserInput for an empty key, one longer than
    `MAX_KEY_LENGTH` characters, or one with control characters."""
    if key is None:
        return None
    if not key or len(key) > MAX_KEY_LENGTH:
        raise BadUserInput(
            f"`idempotencyKey` must be 1 to {MAX_KEY_LENGTH} characters long",
            field="idempotencyKey",
        )
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in key):
        raise BadUserInput(
            "`idempotencyKey` cannot contain control characters", field="idempotencyKey"
        )
    return key


@dataclass(frozen=True)
class IdempotencyKey:
    """A checked key, for one kind of object, one user and one request input."""

    kind: str
    key: str
    owner: str
    request_hash: str

    @classmethod
    def of(
        cls, kind: str, key: str | None, *, owner: str | None, request: Any
    ) -> IdempotencyKey | None:
        """The key of a create request (None when it has none). Raises BadUserInput."""
        checked = idempotency_key(key)
        if checked is None:
            return None
        return cls(kind, checked, owner or "", fingerprint(request))

    async def claim(self, conn: asyncpg.Connection, resource_id: uuid.UUID) -> uuid.UUID | None:
        """Record the key for the object about to be created as `resource_id`, in the caller's
        transaction. None: create it. Else the id of the object an earlier request with this key
        made (return it, create nothing). Raises Conflict when that request's input differed."""
        earlier = await db.claim(
            conn,
            kind=self.kind,
            owner=self.owner,
            key=self.key,
            request_hash=self.request_hash,
            resource_id=resource_id,
            retention_seconds=RETENTION.total_seconds(),
        )
        if earlier is None:
            return None
        if earlier.request_hash != self.request_hash:
            raise Conflict(
                f"Idempotency key {self.key!r} was already used for a different {self.kind} "
                f"request (it created {self.kind} {earlier.resource_id}): use a new key for a "
                "new request",
                idempotencyKey=self.key,
                resource_id=str(earlier.resource_id),
            )
        return earlier.resource_id

    def gone(self, resource_id: uuid.UUID) -> Conflict:
        """The error for a repeat whose object has since been deleted (a stateless run that
        ended with its thread, a rolled-back run, a deleted thread): nothing new is made."""
        return Conflict(
            f"The {self.kind} {resource_id} created with idempotency key {self.key!r} no longer "
            "exists; use a new key to create another",
            idempotencyKey=self.key,
            resource_id=str(resource_id),
        )


class _Sweeper:
    """Deletes expired keys from time to time, in a task of its own: a request never waits for
    it, and its failure (Postgres away) only postpones it."""

    def __init__(self) -> None:
        self._last = 0.0
        self._task: asyncio.Task[None] | None = None

    def maybe_sweep(self, pool: asyncpg.Pool) -> None:
        now = time.monotonic()
        if now - self._last < SWEEP_EVERY.total_seconds() or self._task is not None:
            return
        self._last = now
        self._task = asyncio.create_task(self._sweep(pool))

    async def _sweep(self, pool: asyncpg.Pool) -> None:
        try:
            async with pool.acquire() as conn:
                while await db.sweep(conn) >= 1000:
                    pass
        except Exception:
            # Expired keys wait for the next sweep; nothing depends on this one.
            log.warning("could not sweep expired idempotency keys", exc_info=True)
        finally:
            self._task = None


_sweeper = _Sweeper()


def maybe_sweep(pool: asyncpg.Pool) -> None:
    """Start a sweep of expired keys unless this process ran one in the last `SWEEP_EVERY`;
    called after each create that used a key (keys only pile up where they are used)."""
    _sweeper.maybe_sweep(pool)

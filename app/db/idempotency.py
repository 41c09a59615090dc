"""Idempotency keys on asyncpg: claimed in the caller's transaction, beside the row they create.

Raw statements, as in `app.db.run_queue`: the run create path is hot and skips the ORM, and the
thread and assistant paths call the same functions on the connection under their session
(`app.db.engine.driver_connection`). The table is `app.db.models.IdempotencyKey`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

# A key past its `expires_at` counts as absent: a new use overwrites it, swept or not. The
# conflicting row is locked either way, so two requests with one key serialise here: the second
# waits for the first's transaction, then sees its key (committed) or takes it (rolled back).
_CLAIM = """
INSERT INTO idempotency_keys AS k (kind, owner, key, request_hash, resource_id, created_at,
                                   expires_at)
VALUES ($1, $2, $3, $4, $5, now(), now() + make_interval(secs => $6::float8))
ON CONFLICT (kind, owner, key) DO UPDATE
   SET request_hash = EXCLUDED.request_hash, resource_id = EXCLUDED.resource_id,
       created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at
 WHERE k.expires_at <= now()
RETURNING resource_id
"""

_EARLIER = """
SELECT request_hash, resource_id FROM idempotency_keys
 WHERE kind = $1 AND owner = $2 AND key = $3 AND expires_at > now()
"""

_SWEEP = """
DELETE FROM idempotency_keys
 WHERE ctid = ANY(ARRAY(SELECT ctid FROM idempotency_keys WHERE expires_at <= now() LIMIT $1))
"""


@dataclass(frozen=True)
class Earlier:
    """What an earlier request with the same key made, and the hash of its input."""

    request_hash: str
    resource_id: uuid.UUID


async def claim(
    conn: asyncpg.Connection,
    *,
    kind: str,
    owner: str,
    key: str,
    request_hash: str,
    resource_id: uuid.UUID,
    retention_seconds: float,
) -> Earlier | None:
    """Take `key` for a new `resource_id` in the caller's transaction (None: it is ours, create
    the object), or what an earlier, committed request with the key made. The key is written
    only if the caller's transaction commits."""
    for _ in range(3):
        taken = await conn.fetchval(
            _CLAIM, kind, owner, key, request_hash, resource_id, float(retention_seconds)
        )
        if taken is not None:
            return None
        row = await conn.fetchrow(_EARLIER, kind, owner, key)
        if row is not None:
            return Earlier(row["request_hash"], row["resource_id"])
        # Expired between the two statements (or swept): claim it again.
    raise RuntimeError(f"idempotency key {key!r} could not be claimed")


async def sweep(conn: asyncpg.Connection, *, limit: int = 1000) -> int:
    """Delete up to `limit` expired keys; how many were deleted."""
    status: str = await conn.execute(_SWEEP, limit)
    return int(status.rsplit(" ", 1)[-1])


#: Every statement above, for the test that plans each against the migrated schema.
STATEMENTS = (_CLAIM, _EARLIER, _SWEEP)

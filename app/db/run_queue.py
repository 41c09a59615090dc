"""The run queue's statements on asyncpg: create, claim, renew, end, hand back, next pending.

These run for every run, so they skip the ORM: each is a constant SQL text that asyncpg prepares
once per connection and then only binds and executes. SQLModel (`app.db.models`) stays the schema
of record; the columns named here are its columns, and `tests/runs/test_run_queue_sql.py` checks that
every statement still plans against the migrated tables.

JSONB travels as text both ways (`$n::jsonb` in, `col::text` or the driver's text out), so the
same functions work on a pool connection and on the connection under a SQLAlchemy session (whose
codecs also exchange JSON as text).

Every write a worker makes for a run it executes is fenced: it names the attempt it holds and
does nothing once another claim bumped the attempt.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from app.db.models import Run

_RUN_COLUMNS = (
    "run_id, thread_id, assistant_id, status, metadata::text AS metadata, kwargs::text AS kwargs,"
    " multitask_strategy, attempt, lease_until, lapses, worker_id, available_at, cancel_action,"
    " output::text AS output, error::text AS error, webhook, started_at, ended_at, created_at,"
    " updated_at"
)


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _loads(value: str | None) -> Any:
    return None if value is None else orjson.loads(value)


def run_of(row: asyncpg.Record) -> Run:
    """A `Run` from a row selected with `_RUN_COLUMNS` (no validation: the row is the truth)."""
    return Run.model_construct(
        run_id=row["run_id"],
        thread_id=row["thread_id"],
        assistant_id=row["assistant_id"],
        status=row["status"],
        metadata_=orjson.loads(row["metadata"]),
        kwargs=orjson.loads(row["kwargs"]),
        multitask_strategy=row["multitask_strategy"],
        attempt=row["attempt"],
        lease_until=row["lease_until"],
        lapses=row["lapses"],
        worker_id=row["worker_id"],
        available_at=row["available_at"],
        cancel_action=row["cancel_action"],
        output=_loads(row["output"]),
        error=_loads(row["error"]),
        webhook=row["webhook"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


# --- creating a run (API) ----------------------------------------------------------------------


@dataclass(frozen=True)
class RunCreation:
    """What `lgql_create_run` decided: `outcome` is `created` (then `run` is the new run),
    `no_assistant`, `no_thread` or `conflict` (nothing written); the assistant's graph and
    metadata, the thread's metadata if it existed before (its row is now locked), and its oldest
    active run other than the new one."""

    outcome: str
    graph_id: str | None
    assistant_metadata: dict[str, Any] | None
    thread_metadata: dict[str, Any] | None
    active_run_id: uuid.UUID | None
    run: Run | None
    #: Asked to claim it too (`claim_for`) and it could start: `run` is running, claimed, with
    #: its assistant's `graph_id`, `config` and `context` and whether its thread had no
    #: checkpoint (as `claim` answers).
    claimed: bool = False
    assistant: dict[str, Any] | None = None
    thread_fresh: bool = False


# Creation is a plpgsql function (migrations 0011, 0015): the assistant, the thread's lock (a new
# thread inserted busy and stamped instead), its active runs and the run's insert, each statement
# with a snapshot taken after the lock, in one round trip.
_CREATE = (
    "SELECT * FROM lgql_create_run($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11,"
    " $12::jsonb, $13::jsonb, $14, $15, $16)"
)
# The same creation, the run inserted running, claimed, when `claim`'s rule lets it start (0015).
_CREATE_CLAIMED = (
    "SELECT * FROM lgql_create_claimed_run($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11,"
    " $12::jsonb, $13::jsonb, $14, $15, $16, $17, $18)"
)


async def create_run(
    conn: asyncpg.Connection,
    *,
    run_id: uuid.UUID,
    thread_id: uuid.UUID,
    assistant_id: uuid.UUID,
    graphs: list[str],
    create_thread: bool,
    thread_metadata: dict[str, Any],
    now: datetime,
    ttl: dict[str, Any],
    reject: bool,
    metadata: dict[str, Any],
    kwargs: dict[str, Any],
    multitask_strategy: str,
    webhook: str | None,
    after_seconds: float,
    claim_for: str | None = None,
    lease_seconds: float = 0.0,
) -> RunCreation:
    """Insert a pending run of `assistant_id` (of one of `graphs`) on `thread_id`, marking the
    thread busy and stamping its metadata with the graph and assistant; with `create_thread`, a
    missing thread is inserted (`thread_metadata`, `ttl`'s columns, busy); with `reject`, not
    while the thread has an active run. With `claim_for` (a worker id), the new run is then
    claimed for it with a lease of `lease_seconds`, if it may start now (`claim`'s rule).
    Outside a transaction, commits at once."""
    claiming = () if claim_for is None else (claim_for, float(lease_seconds))
    row = await conn.fetchrow(
        _CREATE if claim_for is None else _CREATE_CLAIMED,
        run_id,
        thread_id,
        assistant_id,
        graphs,
        create_thread,
        _json(thread_metadata),
        now,
        ttl.get("ttl_minutes"),
        ttl.get("ttl_strategy"),
        ttl.get("expires_at"),
        reject,
        _json(metadata),
        _json(kwargs),
        multitask_strategy,
        webhook,
        float(after_seconds),
        *claiming,
    )
    assert row is not None  # the function always answers one row
    claimed = claim_for is not None and bool(row["claimed"])
    return RunCreation(
        outcome=row["outcome"],
        graph_id=row["graph_id"],
        assistant_metadata=_loads(row["assistant_metadata"]),
        thread_metadata=_loads(row["thread_metadata"]),
        active_run_id=row["active_run_id"],
        run=run_of(row) if row["outcome"] == "created" else None,
        claimed=claimed,
        assistant=_loads(row["assistant"]) if claimed else None,
        thread_fresh=claimed and bool(row["thread_fresh"]),
    )


_ACTIVE_RUNS = f"""
SELECT {_RUN_COLUMNS} FROM runs
 WHERE thread_id = $1 AND status IN ('pending', 'running')
 ORDER BY created_at, run_id
"""


async def active_runs(conn: asyncpg.Connection, thread_id: uuid.UUID) -> list[Run]:
    """The thread's pending and running runs, oldest first."""
    return [run_of(r) for r in await conn.fetch(_ACTIVE_RUNS, thread_id)]


_GET = f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = $1"


async def get(conn: asyncpg.Connection, run_id: uuid.UUID) -> Run | None:
    row = await conn.fetchrow(_GET, run_id)
    return None if row is None else run_of(row)


# --- the worker's side -------------------------------------------------------------------------

_LOCK_THREAD_OF_RUN = """
SELECT t.thread_id FROM threads t JOIN runs r ON r.thread_id = t.thread_id
 WHERE r.run_id = $1
   FOR UPDATE OF t
"""


async def lock_thread_of_run(conn: asyncpg.Connection, run_id: uuid.UUID) -> uuid.UUID | None:
    """Lock the thread row of a run (serialises every start and end on that thread)."""
    found: uuid.UUID | None = await conn.fetchval(_LOCK_THREAD_OF_RUN, run_id)
    return found


# Claim and finish are plpgsql functions (migration 0008): the thread's lock, then the decision
# in a statement whose snapshot is taken after it, in one round trip and one implicit transaction.
_CLAIM = "SELECT * FROM lgql_claim_run($1, $2, $3)"


async def claim(
    conn: asyncpg.Connection, run_id: uuid.UUID, *, worker_id: str, lease_seconds: float
) -> tuple[Run, dict[str, Any] | None, bool] | None:
    """pending → running for the oldest pending run of an idle thread, with its assistant's
    `graph_id`, `config` and `context` (None if the assistant is gone) and whether the thread
    has no checkpoint yet; None if not claimable. Takes the thread's lock itself (and, outside
    a transaction, commits at once)."""
    row = await conn.fetchrow(_CLAIM, run_id, worker_id, float(lease_seconds))
    if row is None:
        return None
    return run_of(row), _loads(row["assistant"]), bool(row["thread_fresh"])


_RENEW = """
UPDATE runs SET lease_until = now() + make_interval(secs => $3)
 WHERE run_id = $1 AND attempt = $2 AND status = 'running'
RETURNING cancel_action
"""


async def renew_lease(
    conn: asyncpg.Connection, run_id: uuid.UUID, attempt: int, lease_seconds: float
) -> tuple[bool, str | None]:
    """Extend the lease of a run we hold. Returns (still ours, cancel action requested)."""
    row = await conn.fetchrow(_RENEW, run_id, attempt, float(lease_seconds))
    return (row is not None, row[0] if row is not None else None)


_FINISH = """
SELECT * FROM lgql_finish_run($1, $2, $3, $4::jsonb, $5::jsonb, $6::jsonb, $7::jsonb, $8, $9,
                              $10)
"""

# The same, with the attempt's last checkpoint saves (`SAVE_FENCED`'s 32 arrays, in its order)
# written in the same call once the run ended there.
_FINISH_SAVING = f"""
SELECT * FROM lgql_finish_run($1, $2, $3, $4::jsonb, $5::jsonb, $6::jsonb, $7::jsonb, $8, $9,
                              $10, {", ".join(f"${n}" for n in range(11, 43))})
"""


async def finish(
    conn: asyncpg.Connection,
    run_id: uuid.UUID,
    attempt: int,
    *,
    status: str,
    output: dict[str, Any] | None,
    error: dict[str, Any] | None,
    values: dict[str, Any] | None,
    interrupts: dict[str, Any] | None,
    waiting: bool | None,
    has_state: bool,
    delete_thread: bool = False,
    saves: Sequence[Sequence[Any]] | None = None,
) -> tuple[Run, tuple[uuid.UUID, datetime] | None] | None:
    """running → `status` for the attempt we hold, the thread's status (and, with `has_state`,
    its values and interrupts) refreshed; returns the ended run and the thread's next pending run
    (id, available at), or None when the attempt is no longer ours (nothing written). Takes the
    thread's lock itself (and, outside a transaction, commits at once). The thread is busy while
    another run is pending or running; else error if this run failed; else interrupted if the
    latest checkpoint waits on a node (`waiting`; None: keep what the thread says); else idle.
    With `delete_thread` (a stateless run's), the thread and its checkpoints are deleted with
    the run's end. `saves`: the attempt's checkpoint saves not yet written (the arrays of
    `checkpoint_sql.SAVE_FENCED` after run and attempt), written with the end if it is ours (and
    moot when the thread goes with it)."""
    row = await conn.fetchrow(
        _FINISH if saves is None or delete_thread else _FINISH_SAVING,
        run_id,
        attempt,
        status,
        _json(output),
        _json(error),
        _json(values),
        _json(interrupts or {}),
        waiting,
        has_state,
        delete_thread,
        *(() if saves is None or delete_thread else saves),
    )
    if row is None:
        return None
    nxt = row["next_run_id"]
    return run_of(row), (nxt, row["next_available_at"]) if nxt is not None else None


_HAND_BACK = """
UPDATE runs SET status = 'pending', lease_until = NULL, worker_id = NULL, updated_at = now()
 WHERE run_id = $1 AND attempt = $2 AND status = 'running'
RETURNING run_id
"""


async def hand_back(conn: asyncpg.Connection, run_id: uuid.UUID, attempt: int) -> bool:
    """running → pending (a worker shutting down gives the run to another)."""
    return await conn.fetchval(_HAND_BACK, run_id, attempt) is not None


_DELETE_HELD = f"""
DELETE FROM runs WHERE run_id = $1 AND attempt = $2 AND status = 'running'
RETURNING {_RUN_COLUMNS}
"""


async def delete_held(conn: asyncpg.Connection, run_id: uuid.UUID, attempt: int) -> Run | None:
    """Delete a running run we hold (rollback); the row as it was, or None if not ours."""
    row = await conn.fetchrow(_DELETE_HELD, run_id, attempt)
    return None if row is None else run_of(row)


_REFRESH_THREAD = """
UPDATE threads t SET
    status = CASE
        WHEN EXISTS (SELECT 1 FROM runs o WHERE o.thread_id = t.thread_id
                       AND o.status IN ('pending', 'running')) THEN 'busy'
        WHEN $2 THEN 'error'
        WHEN COALESCE($3, t.status = 'interrupted') THEN 'interrupted'
        ELSE 'idle' END,
    values = CASE WHEN $6 THEN $4::jsonb ELSE t.values END,
    interrupts = CASE WHEN $6 THEN $5::jsonb ELSE t.interrupts END,
    state_updated_at = CASE WHEN $6 THEN now() ELSE t.state_updated_at END,
    updated_at = now()
 WHERE t.thread_id = $1
RETURNING status
"""


async def refresh_thread(
    conn: asyncpg.Connection,
    thread_id: uuid.UUID,
    *,
    last_error: bool,
    values: dict[str, Any] | None,
    interrupts: dict[str, Any] | None,
    waiting: bool | None,
    has_state: bool,
) -> str | None:
    """Recompute a thread's status (same rule as `finish`) and, with `has_state`, its values.
    Its new status, or None when there is no such thread."""
    status: str | None = await conn.fetchval(
        _REFRESH_THREAD,
        thread_id,
        last_error,
        waiting,
        _json(values),
        _json(interrupts or {}),
        has_state,
    )
    return status


_NEXT_PENDING = f"""
SELECT {_RUN_COLUMNS} FROM runs
 WHERE thread_id = $1 AND status = 'pending'
 ORDER BY created_at, run_id LIMIT 1
"""


async def next_pending(conn: asyncpg.Connection, thread_id: uuid.UUID) -> Run | None:
    row = await conn.fetchrow(_NEXT_PENDING, thread_id)
    return None if row is None else run_of(row)


# --- cancelling --------------------------------------------------------------------------------

_SET_STATUS = f"""
UPDATE runs SET status = $3, error = $4::jsonb, updated_at = now(),
       ended_at = CASE WHEN $3 IN ('pending', 'running') THEN ended_at ELSE now() END
 WHERE run_id = ANY($1::uuid[]) AND status = $2
RETURNING {_RUN_COLUMNS}
"""


async def set_status(
    conn: asyncpg.Connection,
    run_ids: Sequence[uuid.UUID],
    *,
    from_status: str,
    to_status: str,
    error: dict[str, Any] | None = None,
) -> list[Run]:
    """Runs moved from `from_status` to `to_status`; a final `to_status` stamps their end."""
    if not run_ids:
        return []
    rows = await conn.fetch(_SET_STATUS, list(run_ids), from_status, to_status, _json(error))
    return [run_of(r) for r in rows]


_REQUEST_CANCEL = """
UPDATE runs SET cancel_action = $2 WHERE run_id = ANY($1::uuid[]) AND status = 'running'
"""


async def request_cancel(
    conn: asyncpg.Connection, run_ids: Sequence[uuid.UUID], action: str
) -> None:
    """Record a cancel on running runs (their lease renewal applies it if the message is lost)."""
    if run_ids:
        await conn.execute(_REQUEST_CANCEL, list(run_ids), action)


_DELETE_RUNS = """
DELETE FROM runs WHERE run_id = ANY($1::uuid[]) AND ($2::text[] IS NULL OR status = ANY($2))
RETURNING run_id
"""


async def delete_runs(
    conn: asyncpg.Connection,
    run_ids: Sequence[uuid.UUID],
    *,
    statuses: Sequence[str] | None = None,
) -> list[uuid.UUID]:
    if not run_ids:
        return []
    rows = await conn.fetch(
        _DELETE_RUNS, list(run_ids), list(statuses) if statuses is not None else None
    )
    return [r[0] for r in rows]


# --- the sweeper -------------------------------------------------------------------------------

_EXPIRE = f"""
UPDATE runs SET
    lapses = lapses + 1,
    status = CASE WHEN lapses + 1 >= $1 THEN 'error' ELSE 'pending' END,
    error = CASE WHEN lapses + 1 >= $1 THEN jsonb_build_object(
        'error', 'RunAttemptsExceeded',
        'message', format('Run %s exceeded its %s attempts: its worker stopped '
                          'renewing its lease each time (killed, out of memory, or hung)',
                          run_id, lapses + 1))
        ELSE error END,
    ended_at = CASE WHEN lapses + 1 >= $1 THEN now() ELSE ended_at END,
    lease_until = NULL, worker_id = NULL, updated_at = now()
 WHERE run_id IN (SELECT run_id FROM runs WHERE status = 'running' AND lease_until < now()
                  ORDER BY lease_until LIMIT 500 FOR UPDATE SKIP LOCKED)
RETURNING {_RUN_COLUMNS}
"""


async def expire_leases(conn: asyncpg.Connection, *, max_attempts: int) -> list[Run]:
    """Runs whose lease lapsed: back to pending, or error once their workers died under them
    `max_attempts` times. Only lapses count: a run handed back by a worker shutting down cleanly
    (a deploy) keeps its budget."""
    return [run_of(r) for r in await conn.fetch(_EXPIRE, max_attempts)]


_DUE = """
SELECT r.run_id FROM runs r
 WHERE r.status = 'pending' AND r.available_at <= now() - make_interval(secs => $1)
   AND NOT EXISTS (SELECT 1 FROM runs o WHERE o.thread_id = r.thread_id AND o.status = 'running')
   AND NOT EXISTS (SELECT 1 FROM runs o
                    WHERE o.thread_id = r.thread_id AND o.status = 'pending'
                      AND (o.created_at, o.run_id) < (r.created_at, r.run_id))
 ORDER BY r.available_at
 LIMIT 500
"""


async def startable_runs(conn: asyncpg.Connection, *, grace_seconds: float) -> list[uuid.UUID]:
    """Pending runs that could start now and have waited `grace_seconds` (their wake-up was
    lost, delayed, or due now)."""
    return [r[0] for r in await conn.fetch(_DUE, float(grace_seconds))]


#: Every statement above, for the test that plans each against the migrated schema.
STATEMENTS = (
    _CREATE,
    _CREATE_CLAIMED,
    _ACTIVE_RUNS,
    _GET,
    _LOCK_THREAD_OF_RUN,
    _CLAIM,
    _RENEW,
    _FINISH,
    _FINISH_SAVING,
    _HAND_BACK,
    _DELETE_HELD,
    _REFRESH_THREAD,
    _NEXT_PENDING,
    _SET_STATUS,
    _REQUEST_CANCEL,
    _DELETE_RUNS,
    _EXPIRE,
    _DUE,
)

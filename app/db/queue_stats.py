"""How much work waits: runs due and not started, runs executing, the oldest due run's age.

The signal an autoscaler (KEDA), `/info`, `serverInfo` and the queue-depth metric read. One
statement over the runs table's partial indexes on active runs; callers cache it (a few seconds)
so that polling it costs Postgres nothing noticeable.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

#: Runs waiting or executing, as one number: the query of KEDA's `postgresql` trigger in
#: deploy/kubernetes/optional/scaledobject-postgresql.yaml (tests/operations/test_deploy_manifests.py
#: holds them equal), to divide by a worker's slots.
ACTIVE_RUNS_SQL = (
    "SELECT count(*) FROM runs"
    " WHERE status = 'running' OR (status = 'pending' AND available_at <= now())"
)

_QUEUE_STATS = """
SELECT count(*) FILTER (WHERE status = 'pending' AND available_at <= now()) AS pending,
       count(*) FILTER (WHERE status = 'running') AS running,
       extract(epoch FROM now() - min(available_at)
               FILTER (WHERE status = 'pending' AND available_at <= now()))::float8
           AS oldest_pending_seconds
  FROM runs
 WHERE status IN ('pending', 'running')
"""


@dataclass(frozen=True)
class QueueStats:
    #: Runs due (not delayed) that no worker has started.
    pending: int
    #: Runs a worker is executing.
    running: int
    #: Seconds the longest-waiting due run has waited since it became due (None: none waits).
    oldest_pending_seconds: float | None


async def queue_stats(conn: asyncpg.Connection | asyncpg.Pool) -> QueueStats:
    row = await conn.fetchrow(_QUEUE_STATS)
    assert row is not None
    oldest = row["oldest_pending_seconds"]
    return QueueStats(
        pending=int(row["pending"]),
        running=int(row["running"]),
        oldest_pending_seconds=None if oldest is None else max(0.0, float(oldest)),
    )

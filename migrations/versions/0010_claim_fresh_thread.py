"""the run claim says whether the run's thread has any checkpoint

A worker that knows the thread it starts on has no checkpoint at all (a stateless run, the first
run of a new thread) need not ask Postgres for the thread's latest checkpoint when the graph
starts, nor read back what it saved itself when the run ends: while it holds the run, nobody else
writes that thread's checkpoints (a busy thread refuses state updates), so its own saves are the
whole history. The claim already holds the thread's lock; one more column tells it.

Revision ID: 0010_claim_fresh_thread
Revises: 0009_idempotency_keys
Create Date: 2026-12-02 01:30:00
"""

import importlib
from collections.abc import Sequence

from alembic import op

revision: str = "0010_claim_fresh_thread"
down_revision: str | None = "0009_idempotency_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_previous = importlib.import_module("migrations.versions.0008_run_queue_functions")

CLAIM = f"""
CREATE FUNCTION lgql_claim_run(p_run_id uuid, p_worker_id text, p_lease float8)
RETURNS TABLE ({_previous._RUN_ROW}, assistant text, thread_fresh boolean)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    PERFORM 1 FROM threads t JOIN runs r ON r.thread_id = t.thread_id
      WHERE r.run_id = p_run_id FOR UPDATE OF t;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    -- pending -> running for the oldest pending run of a thread with none running; the
    -- assistant rides along (the worker needs it to build the graph), and whether the thread
    -- has no checkpoint yet (read under the lock: every earlier run's saves are committed).
    RETURN QUERY
    UPDATE runs SET status = 'running', attempt = runs.attempt + 1, worker_id = p_worker_id,
           lease_until = now() + make_interval(secs => p_lease), cancel_action = NULL,
           started_at = COALESCE(runs.started_at, now()), updated_at = now()
     WHERE runs.run_id = p_run_id AND runs.status = 'pending' AND runs.available_at <= now()
       AND NOT EXISTS (SELECT 1 FROM runs o
                        WHERE o.thread_id = runs.thread_id AND o.status = 'running')
       AND NOT EXISTS (SELECT 1 FROM runs o
                        WHERE o.thread_id = runs.thread_id AND o.status = 'pending'
                          AND (o.created_at, o.run_id) < (runs.created_at, runs.run_id))
    RETURNING {_previous._RETURNING_RUN},
        (SELECT json_build_object('graph_id', a.graph_id, 'config', a.config,
                                  'context', a.context)::text
           FROM assistants a WHERE a.assistant_id = runs.assistant_id),
        NOT EXISTS (SELECT 1 FROM checkpoints c
                     WHERE c.thread_id = (runs.thread_id::text COLLATE "C"));
END
$$
"""


def upgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS lgql_claim_run")
    op.execute(CLAIM)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS lgql_claim_run")
    op.execute(_previous.CLAIM)

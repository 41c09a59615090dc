"""run queue functions: claim and finish a run in one round trip

A run's claim and its end each take the thread's row lock and then decide in a statement of their
own, whose snapshot (taken after the lock) sees every start and end committed before it. As
separate statements that is BEGIN, lock, decide, COMMIT: four round trips. In a VOLATILE plpgsql
function each statement takes a fresh snapshot too, so the same two steps run in one call, and
the call is its own transaction. `app.db.run_queue` calls them; their columns are the `runs`
table's (as `app.db.models.Run` defines it), JSON as text.

Revision ID: 0008_run_queue_functions
Revises: 0007_cron_indexes
Create Date: 2026-12-01 22:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008_run_queue_functions"
down_revision: str | None = "0007_cron_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RUN_ROW = """
    run_id uuid, thread_id uuid, assistant_id uuid, status text, metadata text, kwargs text,
    multitask_strategy text, attempt integer, lease_until timestamptz, lapses integer,
    worker_id text, available_at timestamptz, cancel_action text, output text, error text,
    webhook text, started_at timestamptz, ended_at timestamptz, created_at timestamptz,
    updated_at timestamptz"""

_RETURNING_RUN = """
        runs.run_id, runs.thread_id, runs.assistant_id, runs.status, runs.metadata::text,
        runs.kwargs::text, runs.multitask_strategy, runs.attempt, runs.lease_until, runs.lapses,
        runs.worker_id, runs.available_at, runs.cancel_action, runs.output::text,
        runs.error::text, runs.webhook, runs.started_at, runs.ended_at, runs.created_at,
        runs.updated_at"""

CLAIM = f"""
CREATE OR REPLACE FUNCTION lgql_claim_run(p_run_id uuid, p_worker_id text, p_lease float8)
RETURNS TABLE ({_RUN_ROW}, assistant text)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    PERFORM 1 FROM threads t JOIN runs r ON r.thread_id = t.thread_id
      WHERE r.run_id = p_run_id FOR UPDATE OF t;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    -- pending -> running for the oldest pending run of a thread with none running; the
    -- assistant rides along (the worker needs it to build the graph).
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
    RETURNING {_RETURNING_RUN},
        (SELECT json_build_object('graph_id', a.graph_id, 'config', a.config,
                                  'context', a.context)::text
           FROM assistants a WHERE a.assistant_id = runs.assistant_id);
END
$$
"""

FINISH = f"""
CREATE OR REPLACE FUNCTION lgql_finish_run(
    p_run_id uuid, p_attempt integer, p_status text, p_output jsonb, p_error jsonb,
    p_values jsonb, p_interrupts jsonb, p_waiting boolean, p_has_state boolean)
RETURNS TABLE ({_RUN_ROW}, next_run_id uuid, next_available_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    PERFORM 1 FROM threads t JOIN runs r ON r.thread_id = t.thread_id
      WHERE r.run_id = p_run_id FOR UPDATE OF t;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    -- running -> p_status for the attempt the caller holds; the thread's status (busy while
    -- another run is pending or running, else error if this run failed, else interrupted if
    -- the latest checkpoint waits on a node (p_waiting; NULL: keep what the thread says), else
    -- idle) and, with p_has_state, its values; and the thread's next pending run.
    RETURN QUERY
    WITH ended AS (
        UPDATE runs SET status = p_status, output = p_output, error = p_error,
               lease_until = NULL, worker_id = NULL, ended_at = now(), updated_at = now()
         WHERE runs.run_id = p_run_id AND runs.attempt = p_attempt AND runs.status = 'running'
        RETURNING {_RETURNING_RUN}
    ), thread AS (
        UPDATE threads t SET
            status = CASE
                WHEN EXISTS (SELECT 1 FROM runs o WHERE o.thread_id = t.thread_id
                               AND o.status IN ('pending', 'running') AND o.run_id <> p_run_id)
                    THEN 'busy'
                WHEN p_status IN ('error', 'timeout') THEN 'error'
                WHEN COALESCE(p_waiting, t.status = 'interrupted') THEN 'interrupted'
                ELSE 'idle' END,
            values = CASE WHEN p_has_state THEN p_values ELSE t.values END,
            interrupts = CASE WHEN p_has_state THEN p_interrupts ELSE t.interrupts END,
            state_updated_at = CASE WHEN p_has_state THEN now() ELSE t.state_updated_at END,
            updated_at = now()
         WHERE t.thread_id = (SELECT e.thread_id FROM ended e)
    ), nxt AS (
        SELECT n.run_id, n.available_at FROM runs n
         WHERE n.thread_id = (SELECT e.thread_id FROM ended e) AND n.status = 'pending'
           AND n.run_id <> p_run_id
         ORDER BY n.created_at, n.run_id LIMIT 1
    )
    SELECT e.*, (SELECT nxt.run_id FROM nxt), (SELECT nxt.available_at FROM nxt) FROM ended e;
END
$$
"""


def upgrade() -> None:
    op.execute(CLAIM)
    op.execute(FINISH)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS lgql_finish_run")
    op.execute("DROP FUNCTION IF EXISTS lgql_claim_run")

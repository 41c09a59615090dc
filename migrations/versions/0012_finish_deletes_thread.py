"""a stateless run's end deletes its thread in the same call: lgql_finish_run(p_delete_thread)

A stateless run (LangGraph's `on_completion: delete`, the default without a thread) ended in a
transaction of its own: BEGIN; finish the run; delete the thread; delete its checkpoints; COMMIT:
five round trips at the end of every such run. The function now deletes the thread (its runs and
crons cascade) and its checkpoints itself when asked, in the same call and transaction, so no
one ever sees the run ended with its temporary thread still there, and the worker waits on one
round trip. The deletions are those of `app.db.threads.delete_one` and
`app.persistence.checkpoint_sql.DELETE_THREADS`.

Revision ID: 0012_finish_deletes_thread
Revises: 0011_create_run_function
Create Date: 2026-12-02 02:00:00
"""

import importlib
from collections.abc import Sequence

from alembic import op

revision: str = "0012_finish_deletes_thread"
down_revision: str | None = "0011_create_run_function"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_queue = importlib.import_module("migrations.versions.0008_run_queue_functions")

FINISH = f"""
CREATE FUNCTION lgql_finish_run(
    p_run_id uuid, p_attempt integer, p_status text, p_output jsonb, p_error jsonb,
    p_values jsonb, p_interrupts jsonb, p_waiting boolean, p_has_state boolean,
    p_delete_thread boolean)
RETURNS TABLE ({_queue._RUN_ROW}, next_run_id uuid, next_available_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_thread uuid;
BEGIN
    SELECT t.thread_id INTO v_thread FROM threads t JOIN runs r ON r.thread_id = t.thread_id
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
        RETURNING {_queue._RETURNING_RUN}
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
    -- A stateless run's thread goes with its end (only if it ended here: FOUND is the above's).
    IF p_delete_thread AND FOUND THEN
        DELETE FROM threads WHERE thread_id = v_thread;
        DELETE FROM checkpoints WHERE thread_id = v_thread::text;
        DELETE FROM checkpoint_blobs WHERE thread_id = v_thread::text;
        DELETE FROM checkpoint_writes WHERE thread_id = v_thread::text;
    END IF;
END
$$
"""


def upgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS lgql_finish_run")
    op.execute(FINISH)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS lgql_finish_run")
    op.execute(_queue.FINISH)

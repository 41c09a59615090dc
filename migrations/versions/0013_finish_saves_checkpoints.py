"""a run's end writes its last checkpoints in the same call: lgql_finish_run(..., saves)

Under LangGraph's `async` and `exit` durability, the attempt's checkpointer batches its saves
(`app.persistence.fenced_checkpointer`), and the graph's end used to flush what was still queued
in a statement (and a commit) of its own, just before the end's call: two round trips and two
commits back to back, on the path of every run. The function now takes that last batch (the
arrays of `app.persistence.checkpoint_sql.SAVE_FENCED`) and writes it in the same transaction,
once the run ended here: the run is ended with its last checkpoints or not at all, and a lost
attempt writes neither. A stateless run's thread is deleted instead, with everything it saved.

Revision ID: 0013_finish_saves_checkpoints
Revises: 0012_finish_deletes_thread
Create Date: 2026-12-02 05:00:00
"""

import importlib
from collections.abc import Sequence

from alembic import op

revision: str = "0013_finish_saves_checkpoints"
down_revision: str | None = "0012_finish_deletes_thread"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_queue = importlib.import_module("migrations.versions.0008_run_queue_functions")
_previous = importlib.import_module("migrations.versions.0012_finish_deletes_thread")

FINISH = f"""
CREATE FUNCTION lgql_finish_run(
    p_run_id uuid, p_attempt integer, p_status text, p_output jsonb, p_error jsonb,
    p_values jsonb, p_interrupts jsonb, p_waiting boolean, p_has_state boolean,
    p_delete_thread boolean,
    b_thread text[] DEFAULT '{{}}', b_ns text[] DEFAULT '{{}}', b_channel text[] DEFAULT '{{}}',
    b_version text[] DEFAULT '{{}}', b_type text[] DEFAULT '{{}}', b_blob bytea[] DEFAULT '{{}}',
    c_thread text[] DEFAULT '{{}}', c_ns text[] DEFAULT '{{}}', c_id text[] DEFAULT '{{}}',
    c_parent text[] DEFAULT '{{}}', c_checkpoint text[] DEFAULT '{{}}',
    c_metadata text[] DEFAULT '{{}}',
    k_thread text[] DEFAULT '{{}}', k_ns text[] DEFAULT '{{}}', k_id text[] DEFAULT '{{}}',
    k_task text[] DEFAULT '{{}}', k_path text[] DEFAULT '{{}}', k_run text[] DEFAULT '{{}}',
    k_idx integer[] DEFAULT '{{}}', k_channel text[] DEFAULT '{{}}', k_type text[] DEFAULT '{{}}',
    k_blob bytea[] DEFAULT '{{}}',
    r_thread text[] DEFAULT '{{}}', r_ns text[] DEFAULT '{{}}', r_id text[] DEFAULT '{{}}',
    r_task text[] DEFAULT '{{}}', r_path text[] DEFAULT '{{}}', r_run text[] DEFAULT '{{}}',
    r_idx integer[] DEFAULT '{{}}', r_channel text[] DEFAULT '{{}}', r_type text[] DEFAULT '{{}}',
    r_blob bytea[] DEFAULT '{{}}')
RETURNS TABLE ({_queue._RUN_ROW}, next_run_id uuid, next_available_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_thread uuid;
    v_ended boolean;
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
    -- Only if the run ended here (FOUND is the above's): a lost attempt writes nothing.
    v_ended := FOUND;
    IF NOT v_ended THEN
        RETURN;
    END IF;
    IF p_delete_thread THEN
        -- A stateless run's thread goes with its end, and so does what it saved.
        DELETE FROM threads WHERE thread_id = v_thread;
        DELETE FROM checkpoints WHERE thread_id = v_thread::text;
        DELETE FROM checkpoint_blobs WHERE thread_id = v_thread::text;
        DELETE FROM checkpoint_writes WHERE thread_id = v_thread::text;
        RETURN;
    END IF;
    -- The attempt's last saves, as `SAVE_FENCED` writes a batch (the run just ended here is
    -- the fence).
    IF cardinality(b_thread) > 0 THEN
        INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
        SELECT * FROM unnest(b_thread, b_ns, b_channel, b_version, b_type, b_blob)
        ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO NOTHING;
    END IF;
    IF cardinality(c_thread) > 0 THEN
        INSERT INTO checkpoints
            (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata)
        SELECT u.thread_id, u.ns, u.id, u.parent, u.checkpoint::jsonb, u.metadata::jsonb
          FROM unnest(c_thread, c_ns, c_id, c_parent, c_checkpoint, c_metadata)
               AS u(thread_id, ns, id, parent, checkpoint, metadata)
        ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id)
        DO UPDATE SET checkpoint = EXCLUDED.checkpoint, metadata = EXCLUDED.metadata;
    END IF;
    IF cardinality(k_thread) > 0 THEN
        INSERT INTO checkpoint_writes
            (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, run_id,
             idx, channel, type, blob)
        SELECT * FROM unnest(k_thread, k_ns, k_id, k_task, k_path, k_run, k_idx, k_channel,
                             k_type, k_blob)
        ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) DO NOTHING;
    END IF;
    IF cardinality(r_thread) > 0 THEN
        INSERT INTO checkpoint_writes
            (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, run_id,
             idx, channel, type, blob)
        SELECT * FROM unnest(r_thread, r_ns, r_id, r_task, r_path, r_run, r_idx, r_channel,
                             r_type, r_blob)
        ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
        DO UPDATE SET channel = EXCLUDED.channel, type = EXCLUDED.type, blob = EXCLUDED.blob;
    END IF;
END
$$
"""


def upgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS lgql_finish_run")
    op.execute(FINISH)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS lgql_finish_run")
    op.execute(_previous.FINISH)

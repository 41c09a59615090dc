"""fewer row versions per run: a run claimed as it is inserted, a new thread written once, and a
stateless run's end that does not update what it deletes

The run queue's functions wrote rows only to rewrite them in the same transaction. Every write of
a `threads` or `runs` row that changes an indexed column is a new row version with an entry in
each of the table's indexes (threads: seven, two of them GIN over `metadata` and `values`), and
it is most of the server time of a run's calls (measured in `bench/bench_run_queue.py`):

- `lgql_create_run` looked the thread up before inserting it, and then updated the row it had
  just inserted (busy, stamped with the graph: the values the insert could have written).
  A thread it creates is now inserted first, already busy and stamped, and neither looked up,
  updated, nor searched for active runs (a thread that did not exist has none).
- `lgql_create_claimed_run` called `lgql_create_run`, then `lgql_claim_run`, which locked the
  thread again and updated the run it had just inserted (pending -> running). The claim's rule
  (the thread's next run, due, none running) is decided by what the creation already read under
  the thread's lock: a run created on a thread with no active run, due now, is its next run.
  Such a run is now inserted running, claimed, in the same statement; any other stays pending
  for the workers, as before.
- `lgql_finish_run` with `p_delete_thread` (a stateless run) updated the run and its thread
  (status, values: the GIN index again) and then deleted both. It now deletes the run (returning
  it as it ended) and the thread, and writes neither.

Both creation functions come from one text (`_create`): they decide alike, and the claimed one
adds the claim. Signatures and result columns are unchanged (`app.db.run_queue` calls them as
before).

Revision ID: 0015_lean_run_queue_writes
Revises: 0014_create_claimed_run
Create Date: 2026-12-03 10:00:00
"""

import importlib
from collections.abc import Sequence

from alembic import op

revision: str = "0015_lean_run_queue_writes"
down_revision: str | None = "0014_create_claimed_run"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_queue = importlib.import_module("migrations.versions.0008_run_queue_functions")
_created = importlib.import_module("migrations.versions.0011_create_run_function")
_claimed = importlib.import_module("migrations.versions.0014_create_claimed_run")
_finish = importlib.import_module("migrations.versions.0013_finish_saves_checkpoints")

_CREATE_PARAMS = _claimed._CREATE_PARAMS  # lgql_create_run's, unchanged
_NO_RUN = _created._NO_RUN


def _create(claiming: bool) -> str:
    """`lgql_create_run`, or with `claiming` `lgql_create_claimed_run` (the same decisions, then
    the run inserted running for `p_worker_id` when it may start now)."""
    name = "lgql_create_claimed_run" if claiming else "lgql_create_run"
    params = _CREATE_PARAMS + (", p_worker_id text, p_lease float8" if claiming else "")
    extra_columns = ", assistant text, thread_fresh boolean, claimed boolean" if claiming else ""
    # The extra columns of an outcome that created nothing, or of a run left pending.
    unclaimed = ", NULL::text, NULL::boolean, false" if claiming else ""
    # Read under the thread's lock: with no active run, a run due now is the thread's next and
    # none is running (lgql_claim_run's rule). Such a run is inserted running, claimed.
    decide = "    v_claim := v_active IS NULL AND p_after <= 0;\n" if claiming else ""
    status = "CASE WHEN v_claim THEN 'running' ELSE 'pending' END" if claiming else "'pending'"
    claim_columns, claim_values = (
        (
            ",\n                          attempt, worker_id, lease_until, started_at",
            """,
                CASE WHEN v_claim THEN 1 ELSE 0 END,
                CASE WHEN v_claim THEN p_worker_id END,
                CASE WHEN v_claim THEN v_now + make_interval(secs => p_lease) END,
                CASE WHEN v_claim THEN v_now END""",
        )
        if claiming
        else ("", "")
    )
    # What a claim hands the executor of the assistant: read only when claiming.
    assistant_columns, assistant_into = (
        (", a.config, a.context", ", v_config, v_context") if claiming else ("", "")
    )
    claimed_columns = (
        """,
        CASE WHEN v_claim THEN json_build_object('graph_id', v_graph, 'config', v_config,
                                                 'context', v_context)::text END,
        CASE WHEN v_claim THEN NOT EXISTS (
            SELECT 1 FROM checkpoints c WHERE c.thread_id = (p_thread_id::text COLLATE "C"))
        END,
        v_claim"""
        if claiming
        else ""
    )
    return f"""
CREATE OR REPLACE FUNCTION {name}({params})
RETURNS TABLE (outcome text, graph_id text, assistant_metadata text, thread_metadata text,
               active_run_id uuid, {_queue._RUN_ROW}{extra_columns})
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_graph text;
    v_assistant text;
    v_config jsonb;
    v_context jsonb;
    v_thread text;
    v_active uuid;
    v_stamp jsonb;
    v_new boolean := false;
    v_claim boolean;
    v_now timestamptz;
BEGIN
    SELECT a.graph_id, a.metadata::text{assistant_columns}
      INTO v_graph, v_assistant{assistant_into}
      FROM assistants a WHERE a.assistant_id = p_assistant_id;
    IF NOT FOUND OR NOT (v_graph = ANY (p_graphs)) THEN
        RETURN QUERY SELECT 'no_assistant', NULL::text, NULL::text, NULL::text, NULL::uuid,
                            {_NO_RUN}{unclaimed};
        RETURN;
    END IF;
    -- The runs a thread gets are stamped with what runs them (LangGraph Server does too).
    v_stamp := jsonb_build_object('graph_id', v_graph, 'assistant_id', p_assistant_id::text);
    IF p_create_thread THEN
        -- The columns app.db.threads inserts a thread with, busy and stamped from the start. A
        -- row inserted here is this transaction's (locked, with no runs); an existing one is
        -- left as it is, and read and locked below.
        INSERT INTO threads (thread_id, metadata, config, status, values, interrupts,
                             created_at, updated_at, state_updated_at, ttl_minutes,
                             ttl_strategy, expires_at)
        VALUES (p_thread_id, p_thread_metadata || v_stamp, '{{}}'::jsonb, 'busy', NULL,
                '{{}}'::jsonb, p_now, p_now, p_now, p_ttl_minutes, p_ttl_strategy,
                p_expires_at)
        ON CONFLICT (thread_id) DO NOTHING;
        v_new := FOUND;
    END IF;
    IF NOT v_new THEN
        SELECT t.metadata::text INTO v_thread FROM threads t WHERE t.thread_id = p_thread_id
           FOR UPDATE;
        IF NOT FOUND THEN  -- absent (or deleted while this waited for its lock)
            RETURN QUERY SELECT 'no_thread', v_graph, v_assistant, NULL::text, NULL::uuid,
                                {_NO_RUN}{unclaimed};
            RETURN;
        END IF;
        SELECT r.run_id INTO v_active FROM runs r
         WHERE r.thread_id = p_thread_id AND r.status IN ('pending', 'running')
         ORDER BY r.created_at, r.run_id LIMIT 1;
        IF v_active IS NOT NULL AND p_reject THEN
            RETURN QUERY SELECT 'conflict', v_graph, v_assistant, v_thread, v_active,
                                {_NO_RUN}{unclaimed};
            RETURN;
        END IF;
    END IF;
{decide}    -- created_at is the clock now, under the thread's lock (not when the request came in): the
    -- order of creation times is the order of the double-texting decisions.
    v_now := clock_timestamp();
    RETURN QUERY
    WITH run AS (
        INSERT INTO runs (run_id, thread_id, assistant_id, status, metadata, kwargs,
                          multitask_strategy, webhook, created_at, updated_at,
                          available_at{claim_columns})
        VALUES (p_run_id, p_thread_id, p_assistant_id, {status}, p_metadata, p_kwargs,
                p_strategy, p_webhook, v_now, v_now,
                v_now + make_interval(secs => p_after){claim_values})
        RETURNING {_queue._RETURNING_RUN}
    ), thread AS (
        UPDATE threads SET status = 'busy', metadata = metadata || v_stamp, updated_at = v_now
         WHERE thread_id = p_thread_id AND NOT v_new
    )
    SELECT 'created', v_graph, v_assistant, v_thread, v_active, run.*{claimed_columns}
      FROM run;
END
$$
"""


# The run as it ended, from the row deleted instead of updated (the columns `_RETURNING_RUN`
# would read after the update), without a next run: the thread goes, and its runs with it.
_ENDED_DELETED = """
        runs.run_id, runs.thread_id, runs.assistant_id, p_status, runs.metadata::text,
        runs.kwargs::text, runs.multitask_strategy, runs.attempt, NULL::timestamptz, runs.lapses,
        NULL::text, runs.available_at, runs.cancel_action, p_output::text, p_error::text,
        runs.webhook, runs.started_at, now(), runs.created_at, now(),
        NULL::uuid, NULL::timestamptz"""

_STATELESS_END = f"""
    IF p_delete_thread THEN
        -- A stateless run's thread goes with its end, and so does what it saved: the run is
        -- deleted as it ends (for the attempt the caller holds), and nothing is written first.
        RETURN QUERY
        DELETE FROM runs
         WHERE runs.run_id = p_run_id AND runs.attempt = p_attempt AND runs.status = 'running'
        RETURNING {_ENDED_DELETED};
        IF NOT FOUND THEN  -- a lost attempt deletes nothing
            RETURN;
        END IF;
        DELETE FROM threads WHERE thread_id = v_thread;
        DELETE FROM checkpoints WHERE thread_id = v_thread::text;
        DELETE FROM checkpoint_blobs WHERE thread_id = v_thread::text;
        DELETE FROM checkpoint_writes WHERE thread_id = v_thread::text;
        RETURN;
    END IF;"""

# 0013's function, with the stateless end above taken before the update of run and thread.
_FINISH_LOCK_END = """    IF NOT FOUND THEN
        RETURN;
    END IF;
"""
_FINISH_DELETE_AFTER = """    IF p_delete_thread THEN
        -- A stateless run's thread goes with its end, and so does what it saved.
        DELETE FROM threads WHERE thread_id = v_thread;
        DELETE FROM checkpoints WHERE thread_id = v_thread::text;
        DELETE FROM checkpoint_blobs WHERE thread_id = v_thread::text;
        DELETE FROM checkpoint_writes WHERE thread_id = v_thread::text;
        RETURN;
    END IF;
"""
assert _finish.FINISH.count(_FINISH_LOCK_END) == 1
assert _finish.FINISH.count(_FINISH_DELETE_AFTER) == 1
FINISH = (
    _finish.FINISH.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")
    .replace(_FINISH_DELETE_AFTER, "")
    .replace(_FINISH_LOCK_END, _FINISH_LOCK_END + _STATELESS_END + "\n")
)


def upgrade() -> None:
    op.execute(_create(claiming=False))
    op.execute(_create(claiming=True))
    op.execute(FINISH)


def downgrade() -> None:
    for previous in (_created.CREATE, _claimed.CREATE_CLAIMED, _finish.FINISH):
        op.execute(previous.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"))

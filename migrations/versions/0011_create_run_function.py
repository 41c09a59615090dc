"""run creation in one round trip: lgql_create_run

Creating a run was BEGIN; read the assistant and lock the thread; insert the thread if it is new;
read the thread's active runs; insert the run; COMMIT: five or six round trips on the API's
critical path for every run. Every decision between them is about rows the transaction already
holds, so they run in one VOLATILE plpgsql function, each statement with a fresh snapshot after the
thread's lock (the active runs include those committed while this waited for the lock), and the
call is its own transaction unless the caller opened one.

The function decides what the rows decide, and reports instead of raising, so nothing is written
unless a run is created: `no_assistant` (none, or of a graph this server does not serve),
`no_thread` (absent and not to be created), `conflict` (the thread has an active run and the
strategy is reject), `created`. What needs the caller stays in `app.services.runs`: the auth
filters' visibility (it calls inside its own transaction and rolls back what it may not see), the
idempotency key, and cancelling the superseded runs for interrupt and rollback.

Revision ID: 0011_create_run_function
Revises: 0010_claim_fresh_thread
Create Date: 2026-12-02 01:50:00
"""

import importlib
from collections.abc import Sequence

from alembic import op

revision: str = "0011_create_run_function"
down_revision: str | None = "0010_claim_fresh_thread"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_queue = importlib.import_module("migrations.versions.0008_run_queue_functions")
# A row of NULLs of the run columns' types, for the outcomes that create nothing.
_NO_RUN = ", ".join(
    f"NULL::{column.split()[1]}" for column in _queue._RUN_ROW.replace("\n", " ").split(",")
)

CREATE = f"""
CREATE FUNCTION lgql_create_run(
    p_run_id uuid, p_thread_id uuid, p_assistant_id uuid, p_graphs text[],
    p_create_thread boolean, p_thread_metadata jsonb, p_now timestamptz,
    p_ttl_minutes float8, p_ttl_strategy text, p_expires_at timestamptz,
    p_reject boolean, p_metadata jsonb, p_kwargs jsonb, p_strategy text, p_webhook text,
    p_after float8)
RETURNS TABLE (outcome text, graph_id text, assistant_metadata text, thread_metadata text,
               active_run_id uuid, {_queue._RUN_ROW})
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_graph text;
    v_assistant text;
    v_thread text;
    v_active uuid;
    v_stamp jsonb;
BEGIN
    SELECT a.graph_id, a.metadata::text INTO v_graph, v_assistant
      FROM assistants a WHERE a.assistant_id = p_assistant_id;
    IF NOT FOUND OR NOT (v_graph = ANY (p_graphs)) THEN
        RETURN QUERY SELECT 'no_assistant', NULL::text, NULL::text, NULL::text, NULL::uuid,
                            {_NO_RUN};
        RETURN;
    END IF;
    -- The runs a thread gets are stamped with what runs them (LangGraph Server does too).
    v_stamp := jsonb_build_object('graph_id', v_graph, 'assistant_id', p_assistant_id::text);
    SELECT t.metadata::text INTO v_thread FROM threads t WHERE t.thread_id = p_thread_id
       FOR UPDATE;
    IF NOT FOUND THEN
        IF NOT p_create_thread THEN
            RETURN QUERY SELECT 'no_thread', v_graph, v_assistant, NULL::text, NULL::uuid,
                                {_NO_RUN};
            RETURN;
        END IF;
        -- The columns app.db.threads inserts a thread with, busy from the start.
        INSERT INTO threads (thread_id, metadata, config, status, values, interrupts,
                             created_at, updated_at, state_updated_at, ttl_minutes,
                             ttl_strategy, expires_at)
        VALUES (p_thread_id, p_thread_metadata || v_stamp, '{{}}'::jsonb, 'busy', NULL,
                '{{}}'::jsonb, p_now, p_now, p_now, p_ttl_minutes, p_ttl_strategy,
                p_expires_at)
        ON CONFLICT (thread_id) DO NOTHING;
        IF NOT FOUND THEN  -- created concurrently by another request: lock it
            PERFORM 1 FROM threads t WHERE t.thread_id = p_thread_id FOR UPDATE;
        END IF;
    END IF;
    SELECT r.run_id INTO v_active FROM runs r
     WHERE r.thread_id = p_thread_id AND r.status IN ('pending', 'running')
     ORDER BY r.created_at, r.run_id LIMIT 1;
    IF v_active IS NOT NULL AND p_reject THEN
        RETURN QUERY SELECT 'conflict', v_graph, v_assistant, v_thread, v_active, {_NO_RUN};
        RETURN;
    END IF;
    -- created_at is the clock now, under the thread's lock (not when the request came in): the
    -- order of creation times is the order of the double-texting decisions.
    RETURN QUERY
    WITH clock AS (SELECT clock_timestamp() AS now), run AS (
        INSERT INTO runs (run_id, thread_id, assistant_id, status, metadata, kwargs,
                          multitask_strategy, webhook, created_at, updated_at, available_at)
        SELECT p_run_id, p_thread_id, p_assistant_id, 'pending', p_metadata, p_kwargs,
               p_strategy, p_webhook, clock.now, clock.now,
               clock.now + make_interval(secs => p_after)
          FROM clock
        RETURNING {_queue._RETURNING_RUN}
    ), thread AS (
        UPDATE threads SET status = 'busy', metadata = metadata || v_stamp,
               updated_at = (SELECT now FROM clock)
         WHERE thread_id = p_thread_id
    )
    SELECT 'created', v_graph, v_assistant, v_thread, v_active, run.* FROM run;
END
$$
"""


def upgrade() -> None:
    op.execute(CREATE)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS lgql_create_run")

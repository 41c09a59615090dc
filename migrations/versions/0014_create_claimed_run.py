"""a run created and claimed in one call, for the process that executes it: lgql_create_claimed_run

A run whose client waits on an API process with run slots (`LGQL_API_RUN_SLOTS`) is executed by
that process. It used to take two calls: the creation (`lgql_create_run`), then the claim
(`lgql_claim_run`), each its own transaction and commit, back to back on the path of the
client's first answer. The new function makes both decisions in one transaction, in order:
the creation, under the thread's lock, exactly as `lgql_create_run` decides it; then, if a run
was created, the claim, exactly as `lgql_claim_run` decides it (it starts only if it is its
thread's next run, due, and the thread has none running). A run created but not claimable stays
pending for the workers, as before. Both functions are called, not copied.

The claim compared `available_at` with `now()`, the transaction's start: in the creating
transaction that is earlier than the run's `available_at` (the clock under the thread's lock),
so it now reads `clock_timestamp()` (the same instant, outside a longer transaction), for its
lease and `started_at` too.

Revision ID: 0014_create_claimed_run
Revises: 0013_finish_saves_checkpoints
Create Date: 2026-12-02 16:00:00
"""

import importlib
from collections.abc import Sequence

from alembic import op

revision: str = "0014_create_claimed_run"
down_revision: str | None = "0013_finish_saves_checkpoints"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_queue = importlib.import_module("migrations.versions.0008_run_queue_functions")
_claim = importlib.import_module("migrations.versions.0010_claim_fresh_thread")

# The claim of 0010, on the clock rather than the transaction's start.
CLAIM = _claim.CLAIM.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION").replace(
    "now()", "clock_timestamp()"
)

_CREATE_PARAMS = """
    p_run_id uuid, p_thread_id uuid, p_assistant_id uuid, p_graphs text[],
    p_create_thread boolean, p_thread_metadata jsonb, p_now timestamptz,
    p_ttl_minutes float8, p_ttl_strategy text, p_expires_at timestamptz,
    p_reject boolean, p_metadata jsonb, p_kwargs jsonb, p_strategy text, p_webhook text,
    p_after float8"""
_CREATE_ARGS = ", ".join(p.split()[0] for p in _CREATE_PARAMS.replace("\n", " ").split(","))
_RUN_NAMES = [c.split()[0] for c in _queue._RUN_ROW.replace("\n", " ").split(",")]

CREATE_CLAIMED = f"""
CREATE FUNCTION lgql_create_claimed_run({_CREATE_PARAMS}, p_worker_id text, p_lease float8)
RETURNS TABLE (outcome text, graph_id text, assistant_metadata text, thread_metadata text,
               active_run_id uuid, {_queue._RUN_ROW}, assistant text, thread_fresh boolean,
               claimed boolean)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    c record;
    k record;
BEGIN
    SELECT * INTO c FROM lgql_create_run({_CREATE_ARGS});
    IF c.outcome = 'created' THEN
        SELECT * INTO k FROM lgql_claim_run(p_run_id, p_worker_id, p_lease);
        IF FOUND THEN
            RETURN QUERY SELECT c.outcome, c.graph_id, c.assistant_metadata, c.thread_metadata,
                                c.active_run_id, {", ".join("k." + n for n in _RUN_NAMES)},
                                k.assistant, k.thread_fresh, true;
            RETURN;
        END IF;
    END IF;
    RETURN QUERY SELECT c.outcome, c.graph_id, c.assistant_metadata, c.thread_metadata,
                        c.active_run_id, {", ".join("c." + n for n in _RUN_NAMES)},
                        NULL::text, NULL::boolean, false;
END
$$
"""


def upgrade() -> None:
    op.execute(CLAIM)
    op.execute(CREATE_CLAIMED)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS lgql_create_claimed_run")
    op.execute("DROP FUNCTION IF EXISTS lgql_claim_run")
    op.execute(_claim.CLAIM)

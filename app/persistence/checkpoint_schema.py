"""Tables of the asyncpg checkpointer (`app.persistence.checkpointer`).

Key columns are `COLLATE "C"`: comparisons become plain byte compares (faster than a locale's),
and `ORDER BY task_path, task_id, idx` then matches Python's string order, which is the order
LangGraph's `writes_sort_key` demands for pending writes, whatever the database's locale.

Channel values live in `checkpoint_blobs`, one row per (thread, namespace, channel, version), so a
checkpoint that leaves a channel unchanged points at the existing row instead of rewriting it.
Every value goes through the serializer (none is inlined into the checkpoint's JSONB): that keeps
an encrypting serializer in charge of all of them, and strings holding NUL, which JSONB rejects,
round-trip unchanged.
"""

from __future__ import annotations

CHECKPOINT_DDL: list[str] = [
    """
    CREATE TABLE checkpoints (
        thread_id text COLLATE "C" NOT NULL,
        checkpoint_ns text COLLATE "C" NOT NULL DEFAULT '',
        checkpoint_id text COLLATE "C" NOT NULL,
        parent_checkpoint_id text COLLATE "C",
        checkpoint jsonb NOT NULL,
        metadata jsonb NOT NULL DEFAULT '{}',
        PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)
    )
    """,
    # adelete_for_runs (double-texting rollback) looks checkpoints up by run across all threads.
    """
    CREATE INDEX checkpoints_run_id_idx ON checkpoints ((metadata ->> 'run_id'))
        WHERE (metadata ->> 'run_id') IS NOT NULL
    """,
    """
    CREATE TABLE checkpoint_blobs (
        thread_id text COLLATE "C" NOT NULL,
        checkpoint_ns text COLLATE "C" NOT NULL DEFAULT '',
        channel text COLLATE "C" NOT NULL,
        version text COLLATE "C" NOT NULL,
        type text NOT NULL,
        blob bytea,
        PRIMARY KEY (thread_id, checkpoint_ns, channel, version)
    )
    """,
    # run_id tags the writes a run made, including those against a checkpoint of an earlier run
    # (the first superstep of a run writes against the checkpoint it started from): rolling the run
    # back must remove them too, or the next run would replay them.
    """
    CREATE TABLE checkpoint_writes (
        thread_id text COLLATE "C" NOT NULL,
        checkpoint_ns text COLLATE "C" NOT NULL DEFAULT '',
        checkpoint_id text COLLATE "C" NOT NULL,
        task_id text COLLATE "C" NOT NULL,
        idx integer NOT NULL,
        channel text COLLATE "C" NOT NULL,
        type text,
        blob bytea NOT NULL,
        task_path text COLLATE "C" NOT NULL DEFAULT '',
        run_id text COLLATE "C",
        PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
    )
    """,
    """
    CREATE INDEX checkpoint_writes_run_id_idx ON checkpoint_writes (run_id)
        WHERE run_id IS NOT NULL
    """,
    # Message lists make blobs of tens of kB, all above the TOAST threshold: lz4 compresses them
    # several times faster than the default pglz, to a similar size (bench/bench_checkpointer.py
    # put: 1.5 -> 1.1 ms on 50-step threads). Only where the server was built with lz4.
    """
    DO $$
    BEGIN
        IF EXISTS (SELECT 1 FROM pg_settings
                    WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)) THEN
            ALTER TABLE checkpoint_blobs ALTER COLUMN blob SET COMPRESSION lz4;
            ALTER TABLE checkpoint_writes ALTER COLUMN blob SET COMPRESSION lz4;
        END IF;
    END
    $$
    """,
]

CHECKPOINT_DROP: list[str] = [
    "DROP TABLE IF EXISTS checkpoint_writes",
    "DROP TABLE IF EXISTS checkpoint_blobs",
    "DROP TABLE IF EXISTS checkpoints",
]

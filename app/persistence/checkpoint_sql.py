"""SQL text of the asyncpg checkpointer, one statement per operation.

Each operation is a single statement so it costs one round trip and runs atomically in its own
implicit transaction; the data-modifying CTEs of one statement all see the same snapshot, which is
what makes `PRUNE_KEEP_LATEST` safe next to a run that is still saving checkpoints.
"""

from __future__ import annotations

from functools import lru_cache

# A checkpoint row with its channel values and pending writes, so a read is one query. The values
# come from the blob rows at the versions the checkpoint names, each fetched by primary key: the
# `LIMIT 1` keeps the planner from hash-joining all the thread's blobs instead, which grows with the
# thread. "empty" marks a channel that had a version but no value. Writes come sorted as
# `writes_sort_key` wants (the columns are COLLATE "C").
_SELECT_TUPLES = """
SELECT c.thread_id, c.checkpoint_ns, c.checkpoint_id, c.parent_checkpoint_id,
       c.checkpoint, c.metadata,
       (SELECT array_agg((v.channel, b.type, b.blob))
          FROM jsonb_each_text(c.checkpoint -> 'channel_versions') AS v(channel, version)
          CROSS JOIN LATERAL (
                SELECT bl.type, bl.blob FROM checkpoint_blobs bl
                 WHERE bl.thread_id = c.thread_id AND bl.checkpoint_ns = c.checkpoint_ns
                   AND bl.channel = v.channel AND bl.version = v.version
                 LIMIT 1) AS b
         WHERE b.type <> 'empty') AS blobs,
       (SELECT array_agg((w.task_id, w.channel, w.type, w.blob)
                         ORDER BY w.task_path, w.task_id, w.idx)
          FROM checkpoint_writes w
         WHERE w.thread_id = c.thread_id AND w.checkpoint_ns = c.checkpoint_ns
           AND w.checkpoint_id = c.checkpoint_id) AS writes
FROM (SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata
        FROM checkpoints
       WHERE {where}
       ORDER BY checkpoint_id DESC{limit}) AS c
ORDER BY c.checkpoint_id DESC
"""


@lru_cache(maxsize=64)
def select_tuples(
    *,
    thread: bool,
    ns: bool,
    checkpoint_id: bool,
    metadata: bool,
    before: bool,
    limit: bool,
) -> str:
    """The read query for a combination of filters; parameters follow in the order of the flags.

    The selection is applied before the blobs and writes are gathered, so a `LIMIT` bounds that
    work too. The text is cached so asyncpg's per-connection statement cache hits.
    """
    conds: list[str] = []
    n = 0

    def param() -> str:
        nonlocal n
        n += 1
        return f"${n}"

    if thread:
        conds.append(f"thread_id = {param()}")
    if ns:
        conds.append(f"checkpoint_ns = {param()}")
    if checkpoint_id:
        conds.append(f"checkpoint_id = {param()}")
    if metadata:
        conds.append(f"metadata @> {param()}::jsonb")
    if before:
        conds.append(f"checkpoint_id < {param()}")
    return _SELECT_TUPLES.format(
        where=" AND ".join(conds) or "true",
        limit=f" LIMIT {param()}" if limit else "",
    )


# Blobs and checkpoint row in one statement. Blobs are immutable per version (versions carry a
# random suffix, so two forks never share one), hence DO NOTHING; the checkpoint row is replaced
# if LangGraph saves the same checkpoint id again.
PUT_CHECKPOINT = """
WITH blobs AS (
    INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
    SELECT $1, $2, u.channel, u.version, u.type, u.blob
      FROM unnest($7::text[], $8::text[], $9::text[], $10::bytea[])
           AS u(channel, version, type, blob)
    ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO NOTHING
)
INSERT INTO checkpoints
    (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata)
VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb)
ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id)
DO UPDATE SET checkpoint = EXCLUDED.checkpoint, metadata = EXCLUDED.metadata
"""

_PUT_WRITES = """
INSERT INTO checkpoint_writes
    (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, run_id,
     idx, channel, type, blob)
SELECT $1, $2, $3, $4, $5, $6, u.idx, u.channel, u.type, u.blob
  FROM unnest($7::int[], $8::text[], $9::text[], $10::bytea[]) AS u(idx, channel, type, blob)
ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
"""

# A retried task re-saves the same regular writes: the first copy stands. Special writes (error,
# interrupt, scheduled, resume) have fixed negative indexes and the newest one must win.
_KEEP_FIRST = "DO NOTHING"
_KEEP_LAST = "DO UPDATE SET channel = EXCLUDED.channel, type = EXCLUDED.type, blob = EXCLUDED.blob"
INSERT_WRITES = _PUT_WRITES + _KEEP_FIRST
UPSERT_WRITES = _PUT_WRITES + _KEEP_LAST

# The fenced save (`app.persistence.fenced_checkpointer`): any number of checkpoints (with their
# blobs) and of task writes in one statement, made only while the run ($1) is still 'running' at
# the writer's attempt ($2), checked within the statement, which returns whether the check held.
# Each array group below is one of the statements above, flattened over the batch. Every
# data-modifying CTE runs whether or not the outer query reads it, so each INSERT carries the
# check. FOR SHARE keeps it true until commit: a claim bumping the attempt waits for a save in
# flight, and a save arriving after the claim re-reads the bumped row (READ COMMITTED rechecks
# locked rows) and writes nothing. The caller leaves no key twice in one group, nor in both
# write groups: ON CONFLICT DO UPDATE cannot touch a row twice in one statement.
SAVE_FENCED = """
WITH fence AS MATERIALIZED (
    SELECT 1 FROM runs
     WHERE run_id = $1::uuid AND status = 'running' AND attempt = $2::int
       FOR SHARE
),
blobs AS (
    INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
    SELECT * FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bytea[])
     WHERE EXISTS (SELECT 1 FROM fence)
    ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO NOTHING
),
saved AS (
    INSERT INTO checkpoints
        (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata)
    SELECT u.thread_id, u.ns, u.id, u.parent, u.checkpoint::jsonb, u.metadata::jsonb
      FROM unnest($9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[])
           AS u(thread_id, ns, id, parent, checkpoint, metadata)
     WHERE EXISTS (SELECT 1 FROM fence)
    ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id)
    DO UPDATE SET checkpoint = EXCLUDED.checkpoint, metadata = EXCLUDED.metadata
),
kept AS (
    INSERT INTO checkpoint_writes
        (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, run_id,
         idx, channel, type, blob)
    SELECT * FROM unnest($15::text[], $16::text[], $17::text[], $18::text[], $19::text[],
                         $20::text[], $21::int[], $22::text[], $23::text[], $24::bytea[])
     WHERE EXISTS (SELECT 1 FROM fence)
    ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) DO NOTHING
),
replaced AS (
    INSERT INTO checkpoint_writes
        (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, run_id,
         idx, channel, type, blob)
    SELECT * FROM unnest($25::text[], $26::text[], $27::text[], $28::text[], $29::text[],
                         $30::text[], $31::int[], $32::text[], $33::text[], $34::bytea[])
     WHERE EXISTS (SELECT 1 FROM fence)
    ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
    DO UPDATE SET channel = EXCLUDED.channel, type = EXCLUDED.type, blob = EXCLUDED.blob
)
SELECT EXISTS (SELECT 1 FROM fence)
"""

DELETE_THREADS = """
WITH c AS (DELETE FROM checkpoints WHERE thread_id = ANY($1::text[])),
     b AS (DELETE FROM checkpoint_blobs WHERE thread_id = ANY($1::text[]))
DELETE FROM checkpoint_writes WHERE thread_id = ANY($1::text[])
"""

# A run's checkpoints, the writes against them and the writes the run made elsewhere, and the
# blobs that only the deleted checkpoints used (the other checkpoints are looked up excluding the
# deleted ones, since every part of the statement still sees them).
DELETE_FOR_RUNS = """
WITH gone AS (
    DELETE FROM checkpoints
     WHERE (metadata ->> 'run_id') = ANY($1::text[])
    RETURNING thread_id, checkpoint_ns, checkpoint_id, checkpoint -> 'channel_versions' AS versions
),
writes AS (
    DELETE FROM checkpoint_writes w
     USING (SELECT x.thread_id, x.checkpoint_ns, x.checkpoint_id, x.task_id, x.idx
              FROM checkpoint_writes x
              JOIN gone g ON x.thread_id = g.thread_id AND x.checkpoint_ns = g.checkpoint_ns
                         AND x.checkpoint_id = g.checkpoint_id
            UNION
            SELECT thread_id, checkpoint_ns, checkpoint_id, task_id, idx
              FROM checkpoint_writes WHERE run_id = ANY($1::text[])) d
     WHERE w.thread_id = d.thread_id AND w.checkpoint_ns = d.checkpoint_ns
       AND w.checkpoint_id = d.checkpoint_id AND w.task_id = d.task_id AND w.idx = d.idx
)
DELETE FROM checkpoint_blobs b
 USING (SELECT DISTINCT g.thread_id, g.checkpoint_ns, v.key AS channel, v.value AS version
          FROM gone g, jsonb_each_text(g.versions) v) f
 WHERE b.thread_id = f.thread_id AND b.checkpoint_ns = f.checkpoint_ns
   AND b.channel = f.channel AND b.version = f.version
   AND NOT EXISTS (
       SELECT 1 FROM checkpoints k
        WHERE k.thread_id = f.thread_id AND k.checkpoint_ns = f.checkpoint_ns
          AND k.checkpoint -> 'channel_versions' ->> f.channel = f.version
          AND ((k.metadata ->> 'run_id') IS NULL
               OR NOT (k.metadata ->> 'run_id') = ANY($1::text[])))
"""

COPY_THREAD = """
WITH c AS (
    INSERT INTO checkpoints
        (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata)
    SELECT $2, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata
      FROM checkpoints WHERE thread_id = $1
    ON CONFLICT DO NOTHING
),
b AS (
    INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
    SELECT $2, checkpoint_ns, channel, version, type, blob
      FROM checkpoint_blobs WHERE thread_id = $1
    ON CONFLICT DO NOTHING
)
INSERT INTO checkpoint_writes
    (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, run_id, idx, channel, type, blob)
SELECT $2, checkpoint_ns, checkpoint_id, task_id, task_path, run_id, idx, channel, type, blob
  FROM checkpoint_writes WHERE thread_id = $1
ON CONFLICT DO NOTHING
"""

# keep_latest rebuilds a DeltaChannel from the writes of the checkpoints it would delete.
DELTA_THREADS = """
SELECT DISTINCT thread_id FROM checkpoints
 WHERE thread_id = ANY($1::text[]) AND metadata ? 'counters_since_delta_snapshot'
 ORDER BY thread_id
"""

# Keeps the newest checkpoint of each namespace, except a finished subgraph call: a namespace
# with a task id ("node:task") whose run started from a root checkpoint that is saved but no longer
# the newest is dropped whole. Writes go by the deleted checkpoints (writes of a checkpoint still
# being saved by a run can commit before it), blobs by what the kept checkpoints still reference.
# Kept checkpoints lose their parent link, which would point at a deleted row.
PRUNE_KEEP_LATEST = """
WITH heads AS (
    SELECT DISTINCT ON (thread_id, checkpoint_ns)
           thread_id, checkpoint_ns, checkpoint_id, checkpoint,
           metadata -> 'parents' ->> '' AS root
      FROM checkpoints
     WHERE thread_id = ANY($1::text[])
     ORDER BY thread_id, checkpoint_ns, checkpoint_id DESC
),
kept AS (
    SELECT h.thread_id, h.checkpoint_ns, h.checkpoint_id, h.checkpoint FROM heads h
     WHERE NOT (
           strpos(h.checkpoint_ns, ':') > 0
           AND EXISTS (SELECT 1 FROM checkpoints r
                        WHERE r.thread_id = h.thread_id AND r.checkpoint_ns = ''
                          AND r.checkpoint_id = h.root)
           AND NOT EXISTS (SELECT 1 FROM heads t
                            WHERE t.thread_id = h.thread_id AND t.checkpoint_ns = ''
                              AND t.checkpoint_id = h.root))
),
gone AS (
    DELETE FROM checkpoints c
     WHERE c.thread_id = ANY($1::text[])
       AND NOT EXISTS (SELECT 1 FROM kept k
                        WHERE k.thread_id = c.thread_id AND k.checkpoint_ns = c.checkpoint_ns
                          AND k.checkpoint_id = c.checkpoint_id)
    RETURNING c.thread_id, c.checkpoint_ns, c.checkpoint_id
),
writes AS (
    DELETE FROM checkpoint_writes w
     USING gone g
     WHERE w.thread_id = g.thread_id AND w.checkpoint_ns = g.checkpoint_ns
       AND w.checkpoint_id = g.checkpoint_id
),
blobs AS (
    DELETE FROM checkpoint_blobs b
     WHERE b.thread_id = ANY($1::text[])
       AND NOT EXISTS (SELECT 1 FROM kept k
                        WHERE k.thread_id = b.thread_id AND k.checkpoint_ns = b.checkpoint_ns
                          AND k.checkpoint -> 'channel_versions' ->> b.channel = b.version)
)
UPDATE checkpoints c SET parent_checkpoint_id = NULL
  FROM kept k
 WHERE c.thread_id = k.thread_id AND c.checkpoint_ns = k.checkpoint_ns
   AND c.checkpoint_id = k.checkpoint_id AND c.parent_checkpoint_id IS NOT NULL
"""

# DeltaChannel history in one query: walk the parent chain from the target's parent, carrying the
# channels still looking for a seed (a stored value); a channel drops out at the first ancestor
# holding a non-empty blob for it, and the walk ends when none is left. Returns each visited
# ancestor's writes to the channels it was still walking for ('w', oldest ancestor first, then in
# `writes_sort_key` order) and the seeds found ('s').
_DELTA_HISTORY = """
WITH RECURSIVE chain AS (
    SELECT p.checkpoint_id, p.parent_checkpoint_id, p.checkpoint -> 'channel_versions' AS versions,
           $4::text[] AS remaining, 1 AS depth
      FROM (SELECT parent_checkpoint_id FROM checkpoints
             WHERE thread_id = $1 AND checkpoint_ns = $2 {target}) AS t
      JOIN checkpoints p ON p.thread_id = $1 AND p.checkpoint_ns = $2
                        AND p.checkpoint_id = t.parent_checkpoint_id
    UNION ALL
    SELECT p.checkpoint_id, p.parent_checkpoint_id, p.checkpoint -> 'channel_versions',
           n.remaining, c.depth + 1
      FROM chain c
     CROSS JOIN LATERAL (
           SELECT ARRAY(SELECT r FROM unnest(c.remaining) AS r
                         WHERE NOT EXISTS (
                               SELECT 1 FROM checkpoint_blobs b
                                WHERE b.thread_id = $1 AND b.checkpoint_ns = $2
                                  AND b.channel = r AND b.version = c.versions ->> r
                                  AND b.type <> 'empty')) AS remaining) AS n
      JOIN checkpoints p ON p.thread_id = $1 AND p.checkpoint_ns = $2
                        AND p.checkpoint_id = c.parent_checkpoint_id
     WHERE cardinality(n.remaining) > 0
)
SELECT 'w' AS kind, c.depth, w.channel, w.task_id, w.type, w.blob, w.task_path, w.idx
  FROM chain c
  JOIN checkpoint_writes w
    ON w.thread_id = $1 AND w.checkpoint_ns = $2 AND w.checkpoint_id = c.checkpoint_id
   AND w.channel = ANY(c.remaining)
UNION ALL
SELECT 's', c.depth, b.channel, NULL, b.type, b.blob, NULL, NULL
  FROM chain c
  JOIN checkpoint_blobs b
    ON b.thread_id = $1 AND b.checkpoint_ns = $2 AND b.channel = ANY(c.remaining)
   AND b.version = c.versions ->> b.channel AND b.type <> 'empty'
ORDER BY depth DESC, task_path, task_id, idx
"""
DELTA_HISTORY_AT = _DELTA_HISTORY.format(target="AND checkpoint_id = $3")
DELTA_HISTORY_LATEST = _DELTA_HISTORY.format(
    target="AND $3::text IS NULL ORDER BY checkpoint_id DESC LIMIT 1"
)

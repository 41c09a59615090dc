"""How many row versions the run queue's calls write (migration 0015), read from Postgres's own
per-transaction counters (`pg_stat_xact_user_tables`): a row written and then rewritten in the
same call is a second version with an entry in each of its table's indexes, the cost these calls
were rid of. The decisions themselves (what is claimed, what stays pending, what a stateless end
deletes) are tested through the services in `test_local_runs.py` and `test_services.py`."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from sqlalchemy.orm import configure_mappers

from app.db import run_queue
from app.services.common import utcnow
from tests.conftest import EngineUrls, migrated_pool

_COUNTS = """
SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_xact_user_tables
 WHERE relname IN ('threads', 'runs')
"""


async def _writes(conn: asyncpg.Connection) -> dict[str, tuple[int, int, int]]:
    """(inserts, updates, deletes) per table, so far in this transaction."""
    return {r["relname"]: tuple(r[1:]) for r in await conn.fetch(_COUNTS)}  # type: ignore[misc]


def _delta(
    after: dict[str, tuple[int, int, int]], before: dict[str, tuple[int, int, int]]
) -> dict[str, tuple[int, ...]]:
    return {
        t: tuple(a - b for a, b in zip(after[t], before.get(t, (0, 0, 0)), strict=True))
        for t in after
    }


async def _create(
    conn: asyncpg.Connection, assistant: uuid.UUID, thread: uuid.UUID, *, new: bool, **kw: Any
) -> run_queue.RunCreation:
    return await run_queue.create_run(
        conn,
        run_id=uuid.uuid4(),
        thread_id=thread,
        assistant_id=assistant,
        graphs=["echo"],
        create_thread=new,
        thread_metadata={},
        now=utcnow(),
        ttl={},
        reject=False,
        metadata={},
        kwargs={"input": {"messages": ["hi"]}},
        multitask_strategy="enqueue",
        webhook=None,
        after_seconds=0.0,
        **kw,
    )


async def test_a_run_claimed_as_created_and_its_stateless_end_write_each_row_once(
    engines: EngineUrls,
) -> None:
    configure_mappers()  # the rows come back as `Run` models, outside any session here
    async with migrated_pool(engines.database_uri, prefix="lgql_rqw") as pool:
        async with pool.acquire() as conn:
            assistant = uuid.uuid4()
            await conn.execute(
                "INSERT INTO assistants (assistant_id, graph_id, name) VALUES ($1, 'echo', 'e')",
                assistant,
            )
            existing = uuid.uuid4()
            await conn.execute(
                "INSERT INTO threads (thread_id, metadata, status) VALUES ($1, '{}', 'idle')",
                existing,
            )
            # A new (stateless) thread: created with its run, claimed, in one insert each.
            async with conn.transaction():
                before = await _writes(conn)
                made = await _create(conn, assistant, uuid.uuid4(), new=True, claim_for="w:1")
                assert made.claimed and made.run is not None and made.thread_fresh
                assert (made.run.status, made.run.attempt, made.run.worker_id) == (
                    "running",
                    1,
                    "w:1",
                )
                assert _delta(await _writes(conn), before) == {
                    "threads": (1, 0, 0),
                    "runs": (1, 0, 0),
                }
                run = made.run
                # Its end deletes run and thread, and updates neither first.
                before = await _writes(conn)
                ended = await run_queue.finish(
                    conn,
                    run.run_id,
                    run.attempt,
                    status="success",
                    output={"messages": ["hi"]},
                    error=None,
                    values={"messages": ["hi"]},
                    interrupts=None,
                    waiting=False,
                    has_state=True,
                    delete_thread=True,
                )
                assert ended is not None
                done, following = ended
                assert (done.run_id, done.status, done.output, following) == (
                    run.run_id,
                    "success",
                    {"messages": ["hi"]},
                    None,
                )
                assert done.ended_at is not None and done.worker_id is None
                assert _delta(await _writes(conn), before) == {
                    "threads": (0, 0, 1),
                    "runs": (0, 0, 1),
                }
            assert await conn.fetchval("SELECT count(*) FROM runs") == 0

            # An existing thread: the run is inserted claimed; the thread updated once (busy).
            async with conn.transaction():
                before = await _writes(conn)
                made = await _create(conn, assistant, existing, new=False, claim_for="w:1")
                assert made.claimed and made.run is not None
                assert _delta(await _writes(conn), before) == {
                    "threads": (0, 1, 0),
                    "runs": (1, 0, 0),
                }
                # A second one on the now busy thread stays pending, unclaimed.
                queued = await _create(conn, assistant, existing, new=False, claim_for="w:1")
                assert not queued.claimed and queued.run is not None
                assert (queued.run.status, queued.run.attempt, queued.run.worker_id) == (
                    "pending",
                    0,
                    None,
                )
                assert queued.active_run_id == made.run.run_id

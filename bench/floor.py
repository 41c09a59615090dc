"""The floor (run as a child process by `drivers.floor_process`): the same fixture graphs run in-process, no server, with LangGraph's own
`AsyncPostgresSaver` (langgraph-checkpoint-postgres) on a scratch database of the same Postgres.

It runs in a child process of its own (`python bench/floor.py DSN`), driven over its stdin/stdout
with one JSON object a line, so that its CPU time and RSS are the graph's and the saver's alone,
measured like a server's. Each request is timed inside the child:

- `{"op": "new_thread_wait", "graph": g}` / `stateless_wait`: `graph.ainvoke` on a new thread id
  (the floor has no stateless mode and deletes nothing: both are a run on a fresh thread);
- `{"op": "stream", "graph": g}`: `graph.astream(..., stream_mode="custom")`, ms to the first and
  to the 100th event;
- `{"op": "background", "graph": g, "threads": [[id, …], …]}`: one asyncio task per list, each
  running `ainvoke` on its threads one after the other, all tasks at once.

The saver sits on a psycopg `AsyncConnectionPool` of 10 connections (lgql's default pool size per
process) opened beforehand, with the settings the library documents (`autocommit`,
`prepare_threshold=0`, `dict_row`); the default durability (`async`) applies.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from workload import INPUTS, STREAM_EVENTS, ms_since

AGENTS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "graphs" / "agents"
POOL_SIZE = 10


# ---- the child ---------------------------------------------------------------------------------


def _load(graph: str, checkpointer: Any) -> Any:
    spec = importlib.util.spec_from_file_location(f"floor_{graph}", AGENTS / f"{graph}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.graph.builder.compile(checkpointer=checkpointer)


async def child(dsn: str) -> None:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    pool = AsyncConnectionPool(
        dsn,
        min_size=POOL_SIZE,
        max_size=POOL_SIZE,
        open=False,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
    )
    await pool.open(wait=True)
    saver = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
    await saver.setup()
    graphs = {g: _load(g, saver) for g in INPUTS}

    def config() -> dict[str, Any]:
        return {"configurable": {"thread_id": str(uuid.uuid4())}}

    async def invoke(graph: str, thread_id: str | None = None) -> None:
        cfg = config() if thread_id is None else {"configurable": {"thread_id": thread_id}}
        await graphs[graph].ainvoke(INPUTS[graph], cfg)

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout

    def reply(obj: dict[str, Any]) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    reply({"ready": True, "pid": os.getpid()})
    try:
        while line := await reader.readline():
            req = json.loads(line)
            op, graph = req["op"], req.get("graph", "")
            if op in ("new_thread_wait", "stateless_wait"):
                t0 = time.perf_counter()
                await invoke(graph)
                reply({"ms": ms_since(t0)})
            elif op == "stream":
                first = last = 0.0
                n = 0
                t0 = time.perf_counter()
                async for _ in graphs[graph].astream(INPUTS[graph], config(), stream_mode="custom"):
                    n += 1
                    if n == 1:
                        first = ms_since(t0)
                    if n == STREAM_EVENTS:
                        last = ms_since(t0)
                reply({"first": first, "last": last, "events": n})
            elif op == "background":

                async def client(name: str, ids: list[str]) -> None:
                    for thread_id in ids:
                        await invoke(name, thread_id)

                await asyncio.gather(*(client(graph, ids) for ids in req["threads"]))
                reply({"ok": True})
            elif op == "quit":
                break
    finally:
        await pool.close()


if __name__ == "__main__":
    asyncio.run(child(sys.argv[1]))

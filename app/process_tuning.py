"""Process-wide settings that make every lgql process cheaper to run: the event loop and the
garbage collector. Measured with `bench/bench_runs.py` (see the README's performance section).

- uvloop: its transports write and read sockets in C; a run is dozens of Postgres and Redis round
  trips, and the stdlib loop's socket sends were a quarter of a worker's samples.
- GC: after start-up (graphs imported, services open) the long-lived objects are frozen, so the
  collector stops scanning them again and again; and the young-generation threshold is raised,
  since a run allocates thousands of short-lived objects (rows, events, dicts) that reference
  counting frees anyway.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import Callable

from app.memory import malloc_trim

log = logging.getLogger("lgql.process")

#: gen0 threshold: CPython's default is 700 allocations between young collections.
GC_THRESHOLDS = (50_000, 20, 100)


def _enabled(name: str) -> bool:
    """`LGQL_UVLOOP` / `LGQL_GC_TUNING`: on unless set to 0/false/no/off (for comparisons)."""
    return os.environ.get(name, "1").strip().lower() not in ("0", "false", "no", "off")


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's loop where it is installed (not on Windows) and not turned off, else the
    stdlib's."""
    if not _enabled("LGQL_UVLOOP"):
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run(main: Callable[[], object]) -> None:
    """`asyncio.run(main())` on the loop of `event_loop_factory`."""
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(main())  # type: ignore[arg-type]


def tune_gc() -> None:
    """Raise the collector's thresholds (call once, early)."""
    if _enabled("LGQL_GC_TUNING"):
        gc.set_threshold(*GC_THRESHOLDS)


def freeze_startup_objects() -> None:
    """Move everything alive now out of the collector's sight (call once start-up is done), and
    give back what start-up freed: imports, graph compilation and migrations leave several MiB
    free inside glibc's heap (app.memory), which stayed the process's resident size."""
    if not _enabled("LGQL_GC_TUNING"):
        return
    gc.collect()
    trim = malloc_trim()
    if trim is not None:
        trim(0)  # before serving: nothing waits on it yet
    gc.freeze()
    log.debug("froze %d start-up objects", gc.get_freeze_count())

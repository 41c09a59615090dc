"""Giving memory back to the system after bursts of WebSocket connections and large frames.

Measured with `bench/bench_sockets.py`: after 500 sockets opened and closed, the API process kept
about 30 MiB more than at rest, and 13 MiB more after a second storm, although every Python
object of those connections had been freed (tracemalloc showed under 1 MiB left). The memory was
free inside glibc's heap but not returned: glibc gives freed memory back only from the top of
the heap, and a burst of small allocations (connection state, buffers, tasks) leaves it
fragmented; a large frame also raises glibc's mmap threshold, so later large buffers land in the
heap too. `malloc_trim(0)` returns the free pages of the whole heap. It runs once a burst is over
(a short quiet period after the last connection closes or the last large frame), at most every
few seconds, in a thread (it walks the heap; the event loop must not wait for it). Where the C
library is not glibc it does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import time
from collections.abc import Callable

__all__ = ["MemoryGiveBack"]

log = logging.getLogger("lgql.memory")


def malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None where the C library is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to call
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class MemoryGiveBack:
    """`soon()` after something that left memory free (a closed connection, a large frame); the
    trim runs `quiet_seconds` after the last call, and at most once per `min_interval`."""

    def __init__(self, *, quiet_seconds: float = 0.5, min_interval: float = 2.0) -> None:
        self.quiet_seconds = quiet_seconds
        self.min_interval = min_interval
        self.trims = 0
        self._trim = malloc_trim()
        self._due = 0.0
        self._last = -min_interval
        self._task: asyncio.Task[None] | None = None

    def soon(self) -> None:
        if self._trim is None:
            return
        self._due = time.monotonic() + self.quiet_seconds
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            # A debounce: each `soon()` moves the deadline while this sleeps.
            while (wait := max(self._due, self._last + self.min_interval) - time.monotonic()) > 0:  # noqa: ASYNC110
                await asyncio.sleep(wait)
            # Dead connections' reference cycles first (the GC thresholds are raised, see
            # app.process_tuning): their memory must be free before it can be returned.
            gc.collect()
            assert self._trim is not None
            with contextlib.suppress(OSError):
                await asyncio.to_thread(self._trim, 0)
            self._last = time.monotonic()
            self.trims += 1
        except Exception:  # never worth failing for: the memory stays with the process
            log.debug("malloc_trim failed", exc_info=True)
        finally:
            self._task = None

"""The workload every column runs: the fixture graphs' inputs and a timing helper (kept apart
from the clients so the floor's process imports nothing it does not need)."""

from __future__ import annotations

import time
from typing import Any

INPUTS: dict[str, dict[str, Any]] = {
    "echo": {"messages": [{"role": "user", "content": "hello"}]},  # one node
    "steps": {"count": 0},  # five nodes, each adding one
    "stream100": {},  # one node writing 100 custom events
}
STREAM_EVENTS = 100  # custom events `stream100` emits


def ms_since(t0: float) -> float:
    """Milliseconds since `t0` (a `time.perf_counter()` reading)."""
    return (time.perf_counter() - t0) * 1000

"""The MCP and A2A SDKs are imported by the first request that needs them, not when an API
process starts (they cost ~30 MiB of memory in every process; tests/doors/test_mcp.py and
tests/doors/test_a2a.py prove the doors themselves)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import contextlib, sys
from app.server import create_app
from app.settings import Settings
create_app(Settings(), lambda: contextlib.nullcontext(None))
loaded = sorted(m for m in ("mcp", "a2a", "app.mcp.door", "app.a2a.door") if m in sys.modules)
print(",".join(loaded) or "none")
"""


def test_an_api_process_starts_without_the_mcp_and_a2a_sdks() -> None:
    probe = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    assert probe.stdout.strip().splitlines()[-1] == "none", probe.stderr

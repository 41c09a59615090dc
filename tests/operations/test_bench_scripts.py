"""The benchmark scripts in `bench/` still start: each imports what it uses from `app` (a moved
helper broke two of them unnoticed) and answers `--help`. What they measure is run by hand."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
# The scripts run as programs with options (floor.py is a child process the runs bench drives).
SCRIPTS = sorted(
    p.name
    for p in BENCH.glob("*.py")
    if "ArgumentParser(" in (text := p.read_text()) and '__name__ == "__main__"' in text
)


def test_every_argparse_script_is_checked() -> None:
    assert {"bench_runs.py", "bench_checkpointer.py", "bench_store.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
async def test_bench_script_starts(script: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(BENCH / script),
        "--help",
        cwd=BENCH.parent,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    assert out.decode().startswith("usage: "), out.decode()

"""Run the `graphql-http` GraphQL-over-HTTP audit (Node) against a live endpoint.

Import `run_graphql_http_audit` from any test that has a server listening. Node and npm are
required: a missing Node is an error, never a skip, because the audit is the bar for the
HTTP transport.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

CONFORMANCE_DIR = Path(__file__).resolve().parent
AUDIT_SCRIPT = CONFORMANCE_DIR / "audit.mjs"
# graphql-http 1.23.1 has 61 server audits; a different count means the pin moved.
EXPECTED_AUDIT_COUNT = 61


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(
            f"`{tool}` is not on PATH; the graphql-http audit needs Node.js 18+ and npm"
        )
    return path


def ensure_node_modules(timeout: float = 300.0) -> None:
    """Install the pinned packages (`npm ci`) unless every one of them is already there."""
    wanted = json.loads((CONFORMANCE_DIR / "package.json").read_text())["dependencies"]
    modules = CONFORMANCE_DIR / "node_modules"
    if all((modules / name / "package.json").exists() for name in wanted):
        return
    npm = _require("npm")
    proc = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=CONFORMANCE_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"npm ci failed in {CONFORMANCE_DIR}:\n{proc.stdout}\n{proc.stderr}")


def run_graphql_http_audit(url: str, *, timeout: float = 120.0) -> list[dict[str, Any]]:
    """Audit the GraphQL endpoint at `url`; one dict per audit.

    Each dict has `id` (stable 4-character audit id), `name` (starts with MUST/SHOULD/MAY) and
    `status` (`ok`, `notice`, `warn` or `error`); the others also carry `reason` and
    `response` (`status`, `contentType`, first 2 kB of `body`).
    """
    node = _require("node")
    ensure_node_modules()
    proc = subprocess.run(
        [node, str(AUDIT_SCRIPT), url],
        cwd=CONFORMANCE_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"audit.mjs failed ({proc.returncode}):\n{proc.stderr}")
    results: list[dict[str, Any]] = json.loads(proc.stdout)
    return results


def summarize(results: list[dict[str, Any]]) -> dict[str, int]:
    """Count results per status, e.g. `{"ok": 61}`."""
    counts: dict[str, int] = {}
    for result in results:
        counts[result["status"]] = counts.get(result["status"], 0) + 1
    return counts


def not_ok(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The results that are not `ok`, for assertion messages."""
    return [r for r in results if r["status"] != "ok"]

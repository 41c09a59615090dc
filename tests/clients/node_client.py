"""Run a subscription through `stream_clients.mjs`: a real npm client per transport.

`graphql-ws` (graphql-transport-ws, npm `graphql-ws` + `ws`), `graphql-sse` (npm `graphql-sse`,
distinct connections) or `multipart` (fetch + our part parser). The npm packages are the pinned
ones of `tests/conformance/` (`npm ci` there when `node_modules` is missing). Node and npm are
required: a missing Node is an error, never a skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conformance.audit import ensure_node_modules

SCRIPT = Path(__file__).resolve().parent / "stream_clients.mjs"
TRANSPORTS = ("graphql-ws", "graphql-sse", "multipart")
# Not one of the transports every stream test runs over: lgql refuses it (test_graphql_spec.py).
SSE_SINGLE_CONNECTION = "graphql-sse-single"


class NodeClientError(RuntimeError):
    """The client exited non-zero (transport failure or a subscription error)."""


@dataclass
class NodeRun:
    results: list[dict[str, Any]]  # every execution result, in order: {"data": …, "errors"?: …}
    meta: dict[str, Any] = field(default_factory=dict)  # with meta=True: wsPings, heartbeats, …

    def field(self, name: str) -> list[dict[str, Any]]:
        """`data[name]` of every result; fails on a result with errors."""
        out = []
        for result in self.results:
            assert not result.get("errors"), result
            out.append(result["data"][name])
        return out


def node_executable() -> str:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("`node` is not on PATH; the transport tests need Node.js 18+ and npm")
    return node


async def run_node_client(
    transport: str,
    url: str,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    limit: int | None = None,
    meta: bool = False,
    hang_guard: float = 180.0,
) -> NodeRun:
    """Subscribe with the npm client of `transport` at `url` (http://…/graphql) and return its
    results once the server completes the subscription (or after `limit` results).

    `hang_guard` (seconds) only guards against hangs; it is not a performance bound.
    """
    if transport not in (*TRANSPORTS, SSE_SINGLE_CONNECTION):
        raise ValueError(f"unknown transport {transport!r}")
    node = node_executable()
    await asyncio.to_thread(ensure_node_modules)
    args = [node, str(SCRIPT), transport, url]
    if limit is not None:
        args += ["--limit", str(limit)]
    if meta:
        args.append("--meta")
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    request = json.dumps({"query": query, "variables": variables or {}}).encode()
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(request), hang_guard)
    except (TimeoutError, asyncio.CancelledError):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    lines = [json.loads(line) for line in stdout.decode().splitlines() if line.strip()]
    run_meta: dict[str, Any] = {}
    if lines and "_meta" in lines[-1]:
        run_meta = lines.pop()["_meta"]
    if proc.returncode != 0:
        raise NodeClientError(
            f"{transport} client exited {proc.returncode}: {stderr.decode().strip()}"
            f" (after {len(lines)} results, meta {run_meta})"
        )
    return NodeRun(results=lines, meta=run_meta)


async def run_node_script(script: Path, *args: str, hang_guard: float = 240.0) -> Any:
    """Run a client script under Node with the pinned npm packages; what it printed, as JSON
    (`hang_guard` only guards against hangs). A non-zero exit fails with its stderr."""
    node = node_executable()
    await asyncio.to_thread(ensure_node_modules)
    proc = await asyncio.create_subprocess_exec(
        node,
        str(script),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), hang_guard)
    except (TimeoutError, asyncio.CancelledError):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, stderr.decode()
    return json.loads(stdout)

"""A throwaway lgql project on disk and an `lgql` command run on it as a real process, for the
tests of the CLI's behaviour (hot reload, fail-fast start-up, no-worker warnings, origins).

    project = DevProject.create(tmp_path)            # langgraph.json, agent.py, helper.py, .env
    async with LgqlCommand.start(["dev", "--port", str(port)], cwd=project.root) as lgql:
        await lgql.wait_for_log("GraphiQL:")

The graph `agent` answers `{"version": VERSION of helper.py, "env": $FOO}`; given `hold` (a file
path) in its input, its node waits until that file exists, so a test holds a run open as long
as it needs without sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.conftest import ROOT

LGQL = [sys.executable, "-m", "lgql"]

#: Variables of the test process that must not reach the child unless a test sets them.
_SCRUB = (
    "DATABASE_URI",
    "DATABASE_URL",
    "POSTGRES_URI",
    "REDIS_URI",
    "REDIS_URL",
    "REDIS_KEY_PREFIX",
    "LGQL_CONFIG",
    "LGQL_PORT",
    "LGQL_HOST",
    "LGQL_DATA_DIR",
    "LGQL_ALLOWED_ORIGINS",
    "LGQL_CORS_ALLOW_ORIGINS",
)

AGENT = """\
import os
import time
from typing import TypedDict

from langgraph.graph import END, START, StateGraph

from helper import VERSION


class State(TypedDict, total=False):
    hold: str
    version: str
    env: str


def answer(state: State) -> State:
    hold = state.get("hold")
    deadline = time.monotonic() + 120
    while hold and not os.path.exists(hold) and time.monotonic() < deadline:
        time.sleep(0.05)
    return {"version": VERSION, "env": os.environ.get("FOO", "")}


builder = StateGraph(State)
builder.add_node("answer", answer)
builder.add_edge(START, "answer")
builder.add_edge("answer", END)
graph = builder.compile()
"""


@dataclass
class DevProject:
    root: Path

    @classmethod
    def create(cls, root: Path, *, version: str = "v1", env: str = "one") -> DevProject:
        root.mkdir(parents=True, exist_ok=True)
        project = cls(root)
        project.write("agent.py", AGENT)
        project.set_version(version)
        project.write(".env", f"FOO={env}\n")
        project.write_config({"agent": "./agent.py:graph"})
        return project

    @property
    def config(self) -> Path:
        return self.root / "langgraph.json"

    def write(self, name: str, text: str) -> None:
        # Written whole and renamed into place, as editors save: a watcher sees one change.
        path = self.root / name
        temp = path.with_name(f".{path.name}.tmp")
        temp.write_text(text)
        temp.replace(path)

    def set_version(self, version: str, *, extra: str = "") -> None:
        self.write("helper.py", f"VERSION = {version!r}\n{extra}")

    def write_config(self, graphs: dict[str, str], **more: Any) -> None:
        self.write("langgraph.json", json.dumps({"graphs": graphs, "env": ".env", **more}))


def child_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env["PYTHONPATH"] = str(ROOT)
    env["LOG_LEVEL"] = "INFO"
    env["LGQL_DB_POOL_SIZE"] = "3"
    env.update(overrides)
    return env


class LgqlCommand:
    """`python -m lgql <args>` in a session of its own, its stderr+stdout in a log file."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc = proc
        self.log = log

    @classmethod
    def start(cls, args: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> LgqlCommand:
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*LGQL, *args],
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return cls(proc, log)

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    async def wait_for_log(self, pattern: str, *, after: int = 0, deadline: float = 120) -> int:
        """Wait until the log (past offset `after`) matches `pattern`; returns the offset just
        past the match. Fails at once if the process exits first."""
        regex = re.compile(pattern)
        until = time.monotonic() + deadline
        while True:
            text = self.text()
            found = regex.search(text, after)
            if found:
                return found.end()
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"lgql exited ({self.proc.returncode}) before logging {pattern!r}:\n{text}"
                )
            if time.monotonic() > until:
                raise AssertionError(f"no {pattern!r} in the log within {deadline}s:\n{text}")
            await asyncio.sleep(0.1)

    async def wait_exit(self, deadline: float = 120) -> int:
        until = time.monotonic() + deadline
        while self.proc.poll() is None:
            if time.monotonic() > until:
                raise AssertionError(f"lgql still running after {deadline}s:\n{self.text()}")
            await asyncio.sleep(0.05)
        return self.proc.returncode

    async def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                await self.wait_exit(deadline=60)
            except AssertionError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                await self.wait_exit(deadline=10)

    async def __aenter__(self) -> LgqlCommand:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
        if exc is not None:
            print(f"--- lgql log ({self.log}) ---\n{self.text()[-6000:]}")

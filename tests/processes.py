"""Start and stop real lgql processes for tests: API servers (`lgql serve`) and workers (`lgql worker`).

    async with LgqlCluster(database_uri, redis_uri, apis=2, workers=2) as cluster:
        client = cluster.client(0)            # a GraphQLClient on the first API
        cluster.kill_worker(0)                # SIGKILL (or any signal) to one worker
        cluster.start_worker()                # one more, once it reports a heartbeat

The cluster migrates its database (`app.db.migrate.upgrade`), uses a Redis key prefix of its own
(arq queue included) and deletes those keys at the end. Every process runs in a session of its own
(`start_new_session=True`) and writes its stderr to a log file; when the `async with` block fails,
the tail of every log is printed (pytest shows it with the failure); set LGQL_TEST_KEEP_LOGS=1 to
keep the logs of passing tests too. Whatever happens, every process
the cluster started is stopped in `__aexit__`: SIGTERM, then SIGKILL to its process group.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import IO, TypeVar

import httpx
import redis.asyncio as aioredis

from app.db.migrate import upgrade
from tests.conftest import FIXTURE_GRAPHS, ROOT, GraphQLClient, free_port
from workers.heartbeat import heartbeat_key

LGQL = [sys.executable, "-m", "lgql"]

# Fast crash detection for tests; a test overrides any of these with `env_overrides`.
DEFAULT_ENV = {
    "LGQL_RUN_LEASE_SECONDS": "2",
    "LGQL_SWEEP_INTERVAL_SECONDS": "0.5",
    "BG_JOB_SHUTDOWN_GRACE_PERIOD_SECS": "10",
    "LOG_LEVEL": "INFO",
    # Four processes and the test's own servers share the machine's 100 Postgres connections.
    "LGQL_DB_POOL_SIZE": "4",
}
# Variables of the parent that must not leak into the children.
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
)
START_TIMEOUT = 60.0
T = TypeVar("T")
WORKER_SETTLE_SECONDS = 8.0


class ProcessStartError(RuntimeError):
    """A process exited or never became ready; the message holds the tail of its log."""


class LgqlProcess:
    """One child process: its Popen, role, and log file."""

    def __init__(self, role: str, index: int, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.role = role
        self.index = index
        self.proc = proc
        self.log = log

    @property
    def name(self) -> str:
        return f"{self.role}-{self.index} (pid {self.proc.pid})"

    def tail(self, lines: int = 60) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def _kill(proc: subprocess.Popen[bytes], sig: int) -> subprocess.Popen[bytes]:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        if sig == signal.SIGKILL:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    return proc


class LgqlCluster:
    """`apis` API processes and `workers` worker processes on one Postgres database and Redis."""

    def __init__(
        self,
        database_uri: str,
        redis_uri: str,
        *,
        apis: int = 2,
        workers: int = 2,
        env_overrides: dict[str, str] | None = None,
        config: Path = FIXTURE_GRAPHS,
        redis_prefix: str | None = None,
        log_dir: Path | None = None,
        keep_logs: bool = False,
    ) -> None:
        self.database_uri = database_uri
        self.redis_uri = redis_uri
        self.n_apis = apis
        self.n_workers = workers
        self.config = config
        self.redis_prefix = redis_prefix or f"lgql_test_{uuid.uuid4().hex[:12]}"
        self._own_log_dir = log_dir is None
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="lgql-cluster-"))
        self.keep_logs = keep_logs or bool(os.environ.get("LGQL_TEST_KEEP_LOGS"))
        self.env = self._base_env(env_overrides or {})
        self.api_procs: list[LgqlProcess] = []
        self.worker_procs: list[LgqlProcess] = []
        self.api_urls: list[str] = []
        self._clients: list[GraphQLClient] = []
        self._log_files: list[IO[bytes]] = []
        self._redis: aioredis.Redis | None = None

    # ---- public surface -------------------------------------------------------------------

    @property
    def workers(self) -> list[subprocess.Popen[bytes]]:
        return [w.proc for w in self.worker_procs]

    @property
    def apis(self) -> list[subprocess.Popen[bytes]]:
        return [a.proc for a in self.api_procs]

    @property
    def graphql_urls(self) -> list[str]:
        return [f"{url}/graphql" for url in self.api_urls]

    def client(self, index: int = 0) -> GraphQLClient:
        """A GraphQL client on API `index` (modulo the number of APIs), closed with the cluster."""
        client = GraphQLClient(self.graphql_urls[index % len(self.api_urls)])
        self._clients.append(client)
        return client

    def live_workers(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.workers if p.poll() is None]

    def worker_index(self, pid: int) -> int | None:
        for i, w in enumerate(self.worker_procs):
            if w.proc.pid == pid:
                return i
        return None

    async def start_worker(self, env_overrides: dict[str, str] | None = None) -> int:
        """Start one more worker and wait for its heartbeat; returns its index in `workers`."""
        process = self._spawn_worker(env_overrides)
        await self._wait_worker_ready(process)
        return process.index

    async def start_api(self, env_overrides: dict[str, str] | None = None) -> str:
        """Start one more API process and wait for its /ok; returns its base URL."""
        process, url = self._spawn_api(env_overrides)
        await self._wait_ok(process, url)
        self.api_urls.append(url)
        return url

    def kill_worker(self, index: int, sig: int = signal.SIGKILL) -> subprocess.Popen[bytes]:
        """Send `sig` to worker `index`. SIGKILL also reaches its process group and is reaped."""
        return _kill(self.worker_procs[index].proc, sig)

    def kill_api(self, index: int, sig: int = signal.SIGKILL) -> subprocess.Popen[bytes]:
        """Send `sig` to API process `index`, as `kill_worker` does."""
        return _kill(self.api_procs[index].proc, sig)

    async def wait_exit(self, proc: subprocess.Popen[bytes], seconds: float) -> int | None:
        """The exit code of `proc`, or None if it is still running after `seconds`."""
        try:
            return await asyncio.to_thread(proc.wait, seconds)
        except subprocess.TimeoutExpired:
            return None

    def logs(self, lines: int = 60) -> str:
        parts = []
        for p in [*self.api_procs, *self.worker_procs]:
            state = "running" if p.proc.poll() is None else f"exit {p.proc.returncode}"
            parts.append(f"----- {p.name}, {state}, {p.log} -----\n{p.tail(lines)}")
        return "\n".join(parts)

    # ---- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> LgqlCluster:
        try:
            await upgrade(self.database_uri)
            self._redis = aioredis.from_url(self.redis_uri)
            # Start them all at once: each start-up imports the graphs (~1 s of CPU).
            apis = [self._spawn_api(None) for _ in range(self.n_apis)]
            workers = [self._spawn_worker(None) for _ in range(self.n_workers)]
            await asyncio.gather(
                *(self._wait_ok(process, url) for process, url in apis),
                *(self._wait_worker_ready(process) for process in workers),
            )
            self.api_urls.extend(url for _, url in apis)
        except BaseException as exc:
            await self.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        failed = exc_type is not None
        try:
            if failed:
                print(f"\n===== lgql cluster logs ({self.log_dir}) =====\n{self.logs()}")
            for client in self._clients:
                with contextlib.suppress(Exception):
                    await client.close()
        finally:
            await asyncio.to_thread(self._stop_all)
            for f in self._log_files:
                with contextlib.suppress(OSError):
                    f.close()
            await self._clean_redis()
            if self._own_log_dir and not (self.keep_logs or failed):
                shutil.rmtree(self.log_dir, ignore_errors=True)

    # ---- internals -----------------------------------------------------------------------

    def _base_env(self, overrides: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
        env.update(DEFAULT_ENV)
        env.update(
            {
                "DATABASE_URI": self.database_uri,
                "REDIS_URI": self.redis_uri,
                "REDIS_KEY_PREFIX": self.redis_prefix,
                "LGQL_CONFIG": str(self.config),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(overrides)
        return env

    def _spawn_api(self, env_overrides: dict[str, str] | None) -> tuple[LgqlProcess, str]:
        port = free_port()
        process = self._spawn(
            "api",
            len(self.api_procs),
            [*LGQL, "serve", "--port", str(port)],
            {**self.env, **(env_overrides or {})},
        )
        self.api_procs.append(process)
        return process, f"http://127.0.0.1:{port}"

    def _spawn_worker(self, env_overrides: dict[str, str] | None) -> LgqlProcess:
        process = self._spawn(
            "worker",
            len(self.worker_procs),
            [*LGQL, "worker"],
            {**self.env, **(env_overrides or {})},
        )
        self.worker_procs.append(process)
        return process

    def _spawn(self, role: str, index: int, args: list[str], env: dict[str, str]) -> LgqlProcess:
        log = self.log_dir / f"{role}-{index}.log"
        f = log.open("ab")
        self._log_files.append(f)
        proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return LgqlProcess(role, index, proc, log)

    async def _wait_ok(self, process: LgqlProcess, url: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        async with httpx.AsyncClient(timeout=5) as http:
            while True:
                if process.proc.poll() is not None:
                    raise ProcessStartError(f"{process.name} exited early:\n{process.tail()}")
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"{url}/ok")).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise ProcessStartError(f"{process.name} never answered /ok:\n{process.tail()}")
                await asyncio.sleep(0.1)

    async def _wait_worker_ready(self, process: LgqlProcess) -> None:
        """Ready once its own heartbeat key exists, or once it has stayed up
        `WORKER_SETTLE_SECONDS`: the heartbeat is an arq cron job on the shared queue, so another,
        idle worker may run this one's first heartbeat and leave its key unset for a while. Tests
        never depend on the exact moment a worker is ready, only on it being alive."""
        assert self._redis is not None
        key = heartbeat_key(self.redis_prefix, f"{socket.gethostname()}:{process.proc.pid}")
        spawned = time.monotonic()
        while True:
            if process.proc.poll() is not None:
                raise ProcessStartError(f"{process.name} exited early:\n{process.tail()}")
            if await self._redis.exists(key):
                return
            if time.monotonic() - spawned > WORKER_SETTLE_SECONDS:
                return
            await asyncio.sleep(0.1)

    def _stop_all(self) -> None:
        procs = [p.proc for p in [*self.api_procs, *self.worker_procs]]
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        for proc in procs:
            # Its whole session: anything it started dies with it (the group id is its pid).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)

    async def _clean_redis(self) -> None:
        if self._redis is None:
            return
        try:
            keys = [
                k async for k in self._redis.scan_iter(match=f"{self.redis_prefix}*", count=1000)
            ]
            if keys:
                await self._redis.delete(*keys)
        except Exception:  # cleaning up must not hide the test's own failure
            pass
        finally:
            await self._redis.aclose()
            self._redis = None


def read_marker(path: Path) -> list[tuple[str, str, int]]:
    """The `(event, node, pid)` lines the `crashy` fixture graph wrote to `path`."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:
            out.append((parts[0], parts[1], int(parts[2])))
    return out


def count_events(marks: list[tuple[str, str, int]], event: str, node: str) -> int:
    return sum(1 for e, n, _ in marks if e == event and n == node)


async def poll_until(
    probe: Callable[[], Awaitable[T | None]],
    *,
    deadline: float,
    what: str,
    interval: float = 0.2,
    cluster: LgqlCluster | None = None,
) -> T:
    """Call `probe` until it returns something other than None; fail after `deadline` seconds
    (a guard against hangs, never a measurement), naming `what` and a cluster's dead processes."""
    end = time.monotonic() + deadline
    while True:
        value = await probe()
        if value is not None:
            return value
        if time.monotonic() > end:
            dead = ""
            if cluster is not None:
                dead = ", ".join(
                    f"{p.name} exit {p.proc.returncode}"
                    for p in [*cluster.api_procs, *cluster.worker_procs]
                    if p.proc.poll() is not None
                )
            raise AssertionError(
                f"gave up after {deadline:.0f} s waiting for {what}; exited: {dead}"
            )
        await asyncio.sleep(interval)

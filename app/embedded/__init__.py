"""The embedded engines of `lgql dev`: a real PostgreSQL and a real Valkey as child processes.

Used when neither DATABASE_URI nor REDIS_URI is set. Data lives under one folder (`.lgql/` by
default): `postgres/` (the cluster), `valkey/` (append-only file), `logs/`, and `engines.lock`,
which keeps a second `lgql dev` off the same data while the first runs.

Crash safety: the children are told to die with us (Linux), and a start after a SIGKILLed run
stops whatever that run left behind in the same folder before starting afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from ._common import EngineError, log
from .postgres import PostgresEngine
from .valkey import ValkeyEngine

__all__ = ["EmbeddedEngines", "EngineError", "EngineUrls"]


@dataclass(frozen=True)
class EngineUrls:
    database_uri: str
    redis_uri: str


class EmbeddedEngines:
    """Start with `await engines.start()` (or `async with`), stop with `await engines.stop()`."""

    def __init__(self, data_dir: Path, *, die_with_parent: bool = True) -> None:
        # Resolved: strays are recognised by their working directory, which the kernel reports
        # with symlinks resolved.
        self.data_dir = Path(data_dir).resolve()
        logs = self.data_dir / "logs"
        self.postgres = PostgresEngine(
            self.data_dir / "postgres", logs / "postgres.log", die_with_parent
        )
        self.valkey = ValkeyEngine(self.data_dir / "valkey", logs / "valkey.log", die_with_parent)
        self._urls: EngineUrls | None = None
        self._lock_fd: int | None = None
        self._guard = asyncio.Lock()

    @property
    def urls(self) -> EngineUrls | None:
        return self._urls

    async def start(self) -> EngineUrls:
        async with self._guard:
            if self._urls is not None:
                return self._urls
            began = time.perf_counter()
            await asyncio.to_thread(self._lock)
            try:
                results = await asyncio.gather(
                    self.postgres.start(), self.valkey.start(), return_exceptions=True
                )
                for result in results:
                    if isinstance(result, BaseException):
                        raise result
            except BaseException as err:
                await self._shutdown()
                if isinstance(err, Exception) and not isinstance(err, EngineError):
                    raise EngineError(f"embedded engines failed to start: {err!r}") from err
                raise
            self._urls = EngineUrls(self.postgres.uri(), self.valkey.uri())
            log.info(
                "embedded engines ready in %.2f s (data in %s)",
                time.perf_counter() - began,
                self.data_dir,
            )
            return self._urls

    async def stop(self) -> None:
        async with self._guard:
            await self._shutdown()

    async def __aenter__(self) -> EngineUrls:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _shutdown(self) -> None:
        self._urls = None
        results = await asyncio.gather(
            self.postgres.stop(), self.valkey.stop(), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                log.error("stopping an embedded engine failed: %r", result)
        self._unlock()

    def _lock(self) -> None:
        if self._lock_fd is not None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ignore = self.data_dir / ".gitignore"
        if not ignore.exists():  # .lgql/ sits in the project folder; keep it out of commits
            ignore.write_text("# created by lgql dev\n*\n")
        path = self.data_dir / "engines.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            # flock dies with its holder, so a SIGKILLed lgql never leaves the folder locked.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise EngineError(
                f"{self.data_dir} is in use by another lgql dev (pid {holder}); stop it, "
                "or set LGQL_DATA_DIR to another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _unlock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

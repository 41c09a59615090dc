"""Counting TCP proxies for the benchmarks: round trips per process, on the wire.

`WireProxy(kind="postgres")` sits between one client process and Postgres and counts, client to
server, the frontend messages that run a statement — simple `Query` ('Q') and extended-protocol
`Execute` ('E') — and, server to client, the `ReadyForQuery` messages ('Z') that report the
connection idle again ('I'): one per transaction ended (an explicit COMMIT/ROLLBACK or an implicit
single-statement transaction). It answers an SSL or GSS encryption request itself with 'N' so the
stream stays readable (the client then goes on in clear, as `sslmode=prefer` does).

`WireProxy(kind="redis")` sits in front of Redis and counts RESP commands: top-level arrays
(`*N`) from client to server, pipelined ones included (bulk strings are skipped by length, so a
`*` inside a value is not a command).

One proxy per client process gives a per-process split without asking the kernel who owns a
socket. Bytes are forwarded as they arrive; counting costs the proxy CPU, not the client's, but it
adds a hop of latency: time without the proxies, count with them.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104


@dataclass
class Counts:
    statements: int = 0  # Postgres 'Q' + 'E'
    transactions: int = 0  # Postgres ReadyForQuery(idle)
    commands: int = 0  # Redis commands
    connections: int = 0

    def minus(self, other: Counts) -> Counts:
        return Counts(
            self.statements - other.statements,
            self.transactions - other.transactions,
            self.commands - other.commands,
            self.connections - other.connections,
        )

    def copy(self) -> Counts:
        return Counts(self.statements, self.transactions, self.commands, self.connections)


class _PgFrontend:
    """Client → server after the startup packet: type + int32 length messages."""

    def __init__(self, counts: Counts) -> None:
        self.counts = counts
        self.buf = bytearray()
        self.skip = 0

    def feed(self, data: bytes) -> None:
        self.buf += data
        while True:
            if self.skip:
                n = min(self.skip, len(self.buf))
                del self.buf[:n]
                self.skip -= n
                if self.skip:
                    return
            if len(self.buf) < 5:
                return
            kind = self.buf[0]
            (length,) = struct.unpack("!i", self.buf[1:5])
            if kind in (0x51, 0x45):  # 'Q', 'E'
                self.counts.statements += 1
            self.skip = length + 1


class _PgBackend:
    """Server → client: type + int32 length messages; counts ReadyForQuery('I')."""

    def __init__(self, counts: Counts) -> None:
        self.counts = counts
        self.buf = bytearray()
        self.skip = 0
        self.ready = False  # the first ReadyForQuery ends the start-up, not a transaction

    def feed(self, data: bytes) -> None:
        self.buf += data
        while True:
            if self.skip:
                n = min(self.skip, len(self.buf))
                del self.buf[:n]
                self.skip -= n
                if self.skip:
                    return
            if len(self.buf) < 6:
                return
            kind = self.buf[0]
            (length,) = struct.unpack("!i", self.buf[1:5])
            if kind == 0x5A and self.buf[5] == 0x49:  # 'Z', status 'I'
                if self.ready:
                    self.counts.transactions += 1
                self.ready = True
            self.skip = length + 1


class _Resp:
    """Client → server RESP: `*N\\r\\n` then N bulk strings `$len\\r\\n<data>\\r\\n`."""

    def __init__(self, counts: Counts) -> None:
        self.counts = counts
        self.buf = bytearray()
        self.skip = 0
        self.elements = 0  # bulk strings still to read in the current command

    def feed(self, data: bytes) -> None:
        self.buf += data
        while True:
            if self.skip:
                n = min(self.skip, len(self.buf))
                del self.buf[:n]
                self.skip -= n
                if self.skip:
                    return
            end = self.buf.find(b"\r\n")
            if end < 0:
                return
            line = bytes(self.buf[:end])
            del self.buf[: end + 2]
            if not line:
                continue
            if self.elements:
                self.elements -= 1
                if line[:1] == b"$":
                    size = int(line[1:])
                    self.skip = size + 2 if size >= 0 else 0
            elif line[:1] == b"*":
                self.counts.commands += 1
                self.elements = max(0, int(line[1:]))
            else:  # inline command
                self.counts.commands += 1


@dataclass
class WireProxy:
    """A listening proxy on 127.0.0.1 (a free port) forwarding to `target_host:target_port`."""

    kind: str  # "postgres" | "redis"
    target_host: str
    target_port: int
    counts: Counts = field(default_factory=Counts)
    port: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> WireProxy:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    def snapshot(self) -> Counts:
        return self.counts.copy()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.counts.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.close()
            self._tasks.discard(task)
            return
        try:
            if self.kind == "postgres":
                front = _PgFrontend(self.counts)
                back = _PgBackend(self.counts)
                await asyncio.gather(
                    self._pump_front(reader, writer, up_writer, front),
                    self._pump(up_reader, writer, back.feed),
                )
            else:
                resp = _Resp(self.counts)
                await asyncio.gather(
                    self._pump(reader, up_writer, resp.feed),
                    self._pump(up_reader, writer, None),
                )
        except (asyncio.CancelledError, ConnectionError):
            pass
        finally:
            for w in (writer, up_writer):
                with contextlib.suppress(Exception):
                    w.close()
            self._tasks.discard(task)

    @staticmethod
    async def _pump(
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        feed: Callable[[bytes], None] | None,
    ) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                if feed is not None:
                    feed(data)
                await dst.drain()
        finally:
            with contextlib.suppress(Exception):
                dst.close()

    @staticmethod
    async def _pump_front(
        src: asyncio.StreamReader,
        client: asyncio.StreamWriter,
        dst: asyncio.StreamWriter,
        front: _PgFrontend,
    ) -> None:
        try:
            while True:  # encryption requests (answered 'N' here), then the startup packet
                head = await src.readexactly(8)
                length, code = struct.unpack("!ii", head)
                rest = await src.readexactly(length - 8)
                if code in (SSL_REQUEST, GSSENC_REQUEST):
                    client.write(b"N")
                    await client.drain()
                    continue
                dst.write(head + rest)
                await dst.drain()
                break
            while data := await src.read(65536):
                dst.write(data)
                front.feed(data)
                await dst.drain()
        except asyncio.IncompleteReadError:
            pass
        finally:
            with contextlib.suppress(Exception):
                dst.close()


def with_address(uri: str, host: str, port: int) -> str:
    """`uri` with its host and port replaced (user, database and query kept)."""
    parts = urlsplit(uri)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{host}:{port}" if userinfo else f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def address_of(uri: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(uri)
    return parts.hostname or "127.0.0.1", parts.port or default_port

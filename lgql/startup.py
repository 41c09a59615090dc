"""What the `lgql` commands check before they serve, so a mistake is one `lgql:` line that says
what to fix, never a traceback: the port, the Postgres database and credentials, Redis."""

from __future__ import annotations

import errno
import socket
from urllib.parse import urlsplit

import asyncpg
import redis.exceptions

from app.db.engine import asyncpg_url
from app.messaging.redis_client import redis_client

#: How long a start-up check waits for Postgres or Redis to answer.
CHECK_TIMEOUT_SECONDS = 10.0


class StartupError(RuntimeError):
    """Something lgql cannot start with; the message is the one line to print."""


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything else starts. Raises StartupError."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror} (--host)") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(
                f"port {port} on {host} is already in use: stop what listens there, "
                f"or pick another port with --port"
            ) from None
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def _where(url: str) -> str:
    """host:port/path of a URL, without its credentials."""
    parts = urlsplit(url)
    try:
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # several hosts: redis+sentinel://h1:p1,h2:p2/service
        return parts.netloc.rpartition("@")[2] + parts.path
    return f"{host}{port}{parts.path}"


def _user(url: str) -> str:
    return urlsplit(url).username or "(default)"


def postgres_problem(exc: BaseException, database_uri: str) -> str | None:
    """One line for a Postgres connection failure (looking through wrapped errors), or None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, asyncpg.InvalidCatalogNameError):
            name = urlsplit(database_uri).path.lstrip("/") or "(default)"
            return (
                f"Postgres database {name!r} does not exist on {_where(database_uri)}: "
                f"create it (createdb {name}) or fix DATABASE_URI"
            )
        if isinstance(current, asyncpg.InvalidAuthorizationSpecificationError):
            return (
                f"Postgres at {_where(database_uri)} refused user {_user(database_uri)!r}: "
                f"{current} (check the user and password in DATABASE_URI)"
            )
        if isinstance(current, OSError | asyncpg.PostgresConnectionError | TimeoutError):
            reason = getattr(current, "strerror", None) or str(current) or type(current).__name__
            return f"cannot reach Postgres at {_where(database_uri)}: {reason} (DATABASE_URI)"
        current = current.__cause__ or current.__context__
    return None


def redis_problem(exc: BaseException, redis_uri: str) -> str | None:
    """One line for a Redis connection failure, or None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, redis.exceptions.AuthenticationError) or (
            isinstance(current, redis.exceptions.ResponseError)
            and str(current).startswith(("NOAUTH", "WRONGPASS"))
        ):
            return f"Redis at {_where(redis_uri)} refused the credentials of REDIS_URI: {current}"
        if isinstance(current, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
            return f"cannot reach Redis at {_where(redis_uri)}: {current} (REDIS_URI)"
        current = current.__cause__ or current.__context__
    return None


async def check_postgres(database_uri: str) -> None:
    """Connect once. Raises StartupError with one line when that fails."""
    try:
        conn = await asyncpg.connect(asyncpg_url(database_uri), timeout=CHECK_TIMEOUT_SECONDS)
    except Exception as exc:
        problem = postgres_problem(exc, database_uri)
        if problem is None:
            problem = f"cannot connect to Postgres at {_where(database_uri)}: {exc}"
        raise StartupError(problem) from None
    await conn.close()


async def check_redis(redis_uri: str) -> None:
    """PING once. Raises StartupError with one line when that fails."""
    client = redis_client(
        redis_uri,
        socket_connect_timeout=CHECK_TIMEOUT_SECONDS,
        socket_timeout=CHECK_TIMEOUT_SECONDS,
    )
    try:
        await client.ping()
    except Exception as exc:
        problem = redis_problem(exc, redis_uri)
        if problem is None:
            problem = f"cannot use Redis at {_where(redis_uri)}: {type(exc).__name__}: {exc}"
        raise StartupError(problem) from None
    finally:
        await client.aclose()

"""What is whose: which errors are infrastructure faults, and which are a graph's own.

An infrastructure fault is the world blinking under lgql — a Postgres connection lost, terminated
by an administrator (`pg_terminate_backend`), refused during a restart or failover, a pooled
connection left in a broken protocol state, Redis gone — never something the graph did. A run hit
by one is handed back and retried from its last checkpoint on a fresh connection (counting against
its retry budget, `BG_JOB_MAX_RETRIES`); anything else a graph raises ends its run `ERROR`.

The type list below is the only place that says which exceptions are which. Everything that
decides (the runner, the fenced checkpointer, the store a graph is given, the worker's loops)
asks `is_infrastructure_fault`.

Telling lgql's faults from a graph's: a node may run SQL of its own (its own pool, its own
database) and get a `ConnectionDoesNotExistError` there; that error is the graph's, as any other
exception from its code. So while a graph runs, only errors raised by lgql's own statements count:
the checkpointer and the store lgql hands the graph convert them into `InfrastructureFault`
(`lgql_statement` / `mark`) at the point where lgql's code called the database, and the runner
retries only those. Outside the graph (claim, lease, end, stream set-up) every statement is lgql's,
so `is_infrastructure_fault` decides directly.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Iterator
from typing import Literal

import asyncpg
import redis.exceptions
import sqlalchemy.exc

#: Postgres errors that say the connection (or the server behind it) is gone or refusing us,
#: not that a statement was wrong: class 08 (connection exception: lost, refused, failed),
#: 57P01 admin shutdown (`pg_terminate_backend`, a fast shutdown), 57P02 crash shutdown,
#: 57P03 cannot connect now (starting up, recovering, failing over), 53300 too many connections.
_POSTGRES_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # 08xxx: ConnectionDoesNotExist, ConnectionFailure, ...
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)

#: asyncpg's client-side errors that mean the connection itself is unusable. `InterfaceError`
#: and `InternalClientError` also cover misuse (bad arguments, a closed pool at shutdown), so
#: only these messages count: "connection is closed", "another operation is in progress" and
#: "cannot switch to state N" (a connection reused after an operation on it was cut off).
_BROKEN_CONNECTION_MESSAGES = (
    "connection is closed",
    "connection was closed",
    "another operation is in progress",
    "cannot switch to state",
    "not connected",
    'protocol is in the "failed" state',
)

#: Redis unreachable, restarting (LOADING), failing over (a replica refusing writes: READONLY,
#: TRYAGAIN), or a socket that timed out or broke.
_REDIS_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,  # includes BusyLoadingError
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.TryAgainError,
)

#: Socket errors that mean the peer is gone or unreachable. Other OS errors (a missing file, a
#: permission) are bugs or configuration, not an outage.
_NETWORK_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EPIPE,
        errno.ENOTCONN,
        errno.ESHUTDOWN,
        errno.ENETDOWN,
        errno.ENETUNREACH,
        errno.EHOSTDOWN,
        errno.EHOSTUNREACH,
    }
)


class InfrastructureFault(Exception):
    """An infrastructure fault raised by one of lgql's own statements while a graph ran (its
    cause is the original error). The runner hands the attempt back instead of ending the run
    `ERROR`; a graph that catches it and goes on is free to."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.__cause__ = cause


def is_infrastructure_fault(exc: BaseException) -> bool:
    """True when `exc` says Postgres or Redis is unreachable or the connection broke (see the
    module's lists); False for everything else, such as SQL errors, constraint violations,
    serialization failures, `LostOwnership`, a graph's own exceptions, and cancellation."""
    if isinstance(exc, InfrastructureFault):
        return True
    if isinstance(exc, _POSTGRES_CONNECTION_ERRORS + _REDIS_CONNECTION_ERRORS):
        return True
    if isinstance(exc, asyncpg.InterfaceError | asyncpg.InternalClientError):
        message = str(exc)
        return any(part in message for part in _BROKEN_CONNECTION_MESSAGES)
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        # SQLAlchemy wraps the driver's error; it has already invalidated the connection when it
        # saw a disconnect.
        orig = exc.orig
        cause = getattr(orig, "__cause__", None) or orig
        return exc.connection_invalidated or (
            isinstance(cause, BaseException) and is_infrastructure_fault(cause)
        )
    return _is_network_error(exc)


def _is_network_error(exc: BaseException) -> bool:
    """Sockets: refused, reset, broken pipe, unreachable host or network, a name that does not
    resolve. Timeouts are not: a slow statement is not a lost connection."""
    if isinstance(exc, ConnectionError | socket.gaierror):
        return True
    if not isinstance(exc, OSError) or isinstance(exc, TimeoutError):
        return False
    if exc.errno in _NETWORK_ERRNOS:
        return True
    # asyncio's create_connection, every address of a host refused: "Multiple exceptions: ..."
    # with no errno of its own.
    return exc.errno is None and str(exc).startswith("Multiple exceptions")


Dependency = Literal["postgres", "redis", "network"]


def infrastructure_fault(exc: BaseException) -> Dependency | None:
    """Which dependency an infrastructure fault is about (for the API's `SERVICE_UNAVAILABLE`
    answers), or None when `exc` is not one. Follows explicit chains (`raise ... from`), so a
    fault wrapped by lgql's own code (`InfrastructureFault`, SQLAlchemy) is still seen."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if not isinstance(current, InfrastructureFault) and is_infrastructure_fault(current):
            if isinstance(current, _REDIS_CONNECTION_ERRORS):
                return "redis"
            if isinstance(current, OSError) and not isinstance(
                current, asyncpg.PostgresError | sqlalchemy.exc.DBAPIError
            ):
                return "network"
            return "postgres"
        current = current.__cause__
    return None


def mark(exc: BaseException) -> BaseException:
    """`exc` as lgql's own infrastructure fault when it is one, else unchanged."""
    if isinstance(exc, InfrastructureFault) or not is_infrastructure_fault(exc):
        return exc
    return InfrastructureFault(exc)


@contextlib.contextmanager
def lgql_statement() -> Iterator[None]:
    """Around lgql's own database calls made inside a graph's run: an infrastructure fault
    leaves as `InfrastructureFault`, so the runner can tell it from the graph's own errors."""
    try:
        yield
    except Exception as exc:
        marked = mark(exc)
        if marked is exc:
            raise
        raise marked from exc

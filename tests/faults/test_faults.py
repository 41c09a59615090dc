"""`app.faults`: which errors are infrastructure faults, and lgql's own statements inside a graph
(the fenced checkpointer, the store) reporting theirs as `InfrastructureFault` while anything
else they raise, and the graph's own errors, pass unchanged."""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import Any

import asyncpg
import pytest
import redis.exceptions
from langgraph.store.base import GetOp

from app.faults import InfrastructureFault, infrastructure_fault, is_infrastructure_fault
from app.persistence import checkpoint_sql as sql
from app.persistence.checkpointer import LostOwnership, PostgresCheckpointer
from app.persistence.fenced_checkpointer import FencedCheckpointer
from app.runtime.executor import FaultMarkingStore

RUN_ID = "01a233d0-c084-774f-a681-8e794ef98e1f"

FAULTS = [
    asyncpg.ConnectionDoesNotExistError(
        "connection was closed in the middle of operation: terminating connection due to "
        "administrator command"
    ),
    asyncpg.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.CannotConnectNowError("the database system is starting up"),
    asyncpg.CrashShutdownError("crash"),
    asyncpg.ConnectionFailureError("failure"),
    asyncpg.TooManyConnectionsError("sorry, too many clients already"),
    asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress"),
    asyncpg.InterfaceError("cannot perform operation: connection is closed"),
    redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379."),
    redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"),
    redis.exceptions.TimeoutError("Timeout reading from socket"),
    ConnectionRefusedError(111, "Connection refused"),
    ConnectionResetError(104, "Connection reset by peer"),
    BrokenPipeError(32, "Broken pipe"),
    OSError(errno.EHOSTUNREACH, "No route to host"),
    OSError("Multiple exceptions: [Errno 111] Connect call failed ('127.0.0.1', 5432)"),
    socket.gaierror(-2, "Name or service not known"),
    redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
]
NOT_FAULTS = [
    ValueError("a graph's own"),
    asyncpg.UniqueViolationError("duplicate key"),
    asyncpg.SerializationError("could not serialize access"),
    asyncpg.QueryCanceledError("canceling statement due to statement timeout"),
    asyncpg.InterfaceError("the server expects 2 arguments for this query, 1 was passed"),
    redis.exceptions.ResponseError("WRONGTYPE"),
    TimeoutError(),
    LostOwnership(RUN_ID, 1),
    asyncio.CancelledError(),
    # Bugs or configuration, not an outage (an API answer would be a 503 otherwise).
    FileNotFoundError(errno.ENOENT, "No such file or directory"),
    PermissionError(errno.EACCES, "Permission denied"),
]


@pytest.mark.parametrize("exc", FAULTS, ids=lambda e: type(e).__name__)
def test_infrastructure_faults(exc: BaseException) -> None:
    assert is_infrastructure_fault(exc)
    assert infrastructure_fault(exc) in ("postgres", "redis", "network")
    assert is_infrastructure_fault(InfrastructureFault(exc))


@pytest.mark.parametrize("exc", NOT_FAULTS, ids=lambda e: type(e).__name__)
def test_not_infrastructure_faults(exc: BaseException) -> None:
    assert not is_infrastructure_fault(exc)
    assert infrastructure_fault(exc) is None


def test_dependency_named() -> None:
    assert infrastructure_fault(asyncpg.AdminShutdownError("x")) == "postgres"
    assert infrastructure_fault(redis.exceptions.ConnectionError("x")) == "redis"
    assert infrastructure_fault(ConnectionRefusedError()) == "network"
    wrapped = InfrastructureFault(asyncpg.ConnectionDoesNotExistError("x"))
    assert infrastructure_fault(wrapped) == "postgres"


class _FailingPool:
    """Stands in for the asyncpg pool: every statement raises `error`."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.expired = 0

    async def fetchval(self, *args: Any) -> Any:
        raise self.error

    async def expire_connections(self) -> None:
        self.expired += 1


def _fenced(pool: _FailingPool) -> FencedCheckpointer:
    base = PostgresCheckpointer(pool)  # type: ignore[arg-type]
    return FencedCheckpointer(base, RUN_ID, 1, write_behind=True)


async def _save_and_flush(fenced: FencedCheckpointer) -> None:
    no_writes: list[Any] = ["t", "", "c", "task", "path", RUN_ID, [], [], [], []]
    await fenced._save(sql.UPSERT_WRITES, no_writes)
    await fenced.flush()


async def test_checkpointer_save_reports_a_lost_connection_as_lgqls_fault() -> None:
    lost = asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
    pool = _FailingPool(lost)
    with pytest.raises(InfrastructureFault) as raised:
        await _save_and_flush(_fenced(pool))
    assert raised.value.__cause__ is lost
    assert pool.expired == 1  # broken connections leave the pool


async def test_checkpointer_save_passes_other_errors_unchanged() -> None:
    pool = _FailingPool(asyncpg.UniqueViolationError("duplicate key"))
    with pytest.raises(asyncpg.UniqueViolationError):
        await _save_and_flush(_fenced(pool))
    assert pool.expired == 0


class _FailingStore(FaultMarkingStore):
    def __init__(self, error: BaseException) -> None:
        class Backend:
            supports_ttl = False

            async def abatch(self, ops: Any) -> Any:
                raise error

            def batch(self, ops: Any) -> Any:
                raise error

        super().__init__(Backend())  # type: ignore[arg-type]


async def test_store_reports_a_lost_connection_as_lgqls_fault() -> None:
    store = _FailingStore(asyncpg.AdminShutdownError("terminating connection"))
    with pytest.raises(InfrastructureFault):
        await store.abatch([GetOp(("ns",), "k")])
    with pytest.raises(ValueError):
        await _FailingStore(ValueError("bad")).abatch([GetOp(("ns",), "k")])

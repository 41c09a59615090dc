"""Errors a client can cause, each with the code it is reported under (`extensions.code` in GraphQL).

Services raise these; the transport maps `code` to its own form and never shows anything else of an
unexpected exception.
"""

from __future__ import annotations

from typing import Any, ClassVar

from app.faults import infrastructure_fault


class ServiceError(Exception):
    code: ClassVar[str] = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(ServiceError):
    code = "NOT_FOUND"


class Conflict(ServiceError):
    code = "CONFLICT"


class BadUserInput(ServiceError):
    code = "BAD_USER_INPUT"


class Unauthenticated(ServiceError):
    code = "UNAUTHENTICATED"


class Forbidden(ServiceError):
    code = "FORBIDDEN"


class ServiceUnavailable(ServiceError):
    """Postgres or Redis cannot be reached (`app.faults` says which errors mean that): the
    request may succeed if retried later; HTTP answers it 503 with `Retry-After`."""

    code = "SERVICE_UNAVAILABLE"


#: The HTTP status each code is answered with by the HTTP APIs (LangGraph's REST API, auth
#: rejections); any other code is a 500.
HTTP_STATUS = {
    "BAD_USER_INPUT": 422,
    "UNAUTHENTICATED": 401,
    "FORBIDDEN": 403,
    "NOT_FOUND": 404,
    "CONFLICT": 409,
    "SERVICE_UNAVAILABLE": 503,
}


def http_status(code: str) -> int:
    return HTTP_STATUS.get(code, 500)


#: Seconds a client is asked to wait before retrying a SERVICE_UNAVAILABLE (`Retry-After`).
RETRY_AFTER_SECONDS = 2

_UNAVAILABLE_MESSAGES = {
    "postgres": "The database is unavailable; retry later.",
    "redis": "The event store (Redis) is unavailable; retry later.",
    "network": "A backing service is unreachable; retry later.",
}


def unavailable(exc: BaseException) -> ServiceUnavailable | None:
    """`exc` as a ServiceUnavailable when it is an infrastructure fault (`app.faults`), else
    None. The message names the dependency, never the driver's text."""
    if isinstance(exc, ServiceUnavailable):
        return exc
    dependency = infrastructure_fault(exc)
    if dependency is None:
        return None
    return ServiceUnavailable(_UNAVAILABLE_MESSAGES[dependency], retryAfter=RETRY_AFTER_SECONDS)

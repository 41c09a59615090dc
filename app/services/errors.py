"""Errors a client can cause, each with the code it is reported under (`extensions.code` in GraphQL).

Services raise these; the transport maps `code` to its own form and never shows anything else of an
unexpected exception.
"""

from __future__ import annotations

from typing import Any, ClassVar


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

"""Why a run (or one of its graph's tasks) failed, as LangGraph Server reports it: the
exception's type and message, `{"error": <type>, "message": <message>}` in JSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True, frozen=True)
class RunError:
    type: str
    message: str

    @classmethod
    def of(cls, exc: BaseException) -> RunError:
        return cls(type(exc).__name__, str(exc))

    @classmethod
    def from_json(cls, data: Any) -> RunError | None:
        """The error stored on a run row or carried in a notice (None: no error)."""
        if not data:
            return None
        if isinstance(data, dict):
            return cls(str(data.get("error", "Error")), str(data.get("message", "")))
        return cls("Error", str(data))

    def to_json(self) -> dict[str, str]:
        return {"error": self.type, "message": self.message}

    def __str__(self) -> str:
        return f"{self.type}: {self.message}" if self.message else self.type

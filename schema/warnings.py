"""`extensions.warnings` of a response: what a resolver wants the client to know without it being
an error (the operation worked), e.g. `runAndWait` while no worker is alive (`NO_LIVE_WORKER`).

Resolvers append `{"code", "message", ...}` dicts to `info.context.warnings`; this extension moves
them into the result. Each operation starts with an empty list (a WebSocket connection shares one
context among its operations).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from strawberry.extensions.base_extension import SchemaExtension


class ResponseWarnings(SchemaExtension):
    def on_execute(self) -> Iterator[None]:
        context = self.execution_context.context
        if hasattr(context, "warnings"):
            context.warnings = []
        yield

    def get_results(self) -> dict[str, Any]:
        warnings = getattr(self.execution_context.context, "warnings", None)
        return {"warnings": list(warnings)} if warnings else {}

"""Per-request context: the services, the request, and this request's DataLoaders."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import strawberry
from strawberry.dataloader import DataLoader

from app.services.assistants import AssistantRecord
from app.services.container import Services
from app.services.threads import ThreadRecord


class Loaders:
    """Batch the lookups of nested fields (`run.thread`, `run.assistant`) within one request;
    never shared between requests, so nothing is cached across users or time."""

    def __init__(self, services: Services) -> None:
        self._services = services

    @cached_property
    def thread(self) -> DataLoader[str, ThreadRecord | None]:
        return DataLoader(load_fn=self._services.threads.get_many)

    @cached_property
    def assistant(self) -> DataLoader[str, AssistantRecord | None]:
        return DataLoader(load_fn=self._services.assistants.get_many)


@dataclass
class Context:
    services: Services
    request: Any
    response: Any = None
    # A WebSocket client's `connection_init` payload (Strawberry fills it in): its credentials.
    connection_params: Any = None
    loaders: Loaders = field(init=False)
    # What the response's `extensions.warnings` tells the client (schema/warnings.py).
    warnings: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.loaders = Loaders(self.services)


def services(info: strawberry.Info[Context, Any]) -> Services:
    return info.context.services

"""Per-request context: the services and the request the operation came with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import strawberry

from app.services.container import Services


@dataclass
class Context:
    services: Services
    request: Any
    response: Any = None


def services(info: strawberry.Info[Context, Any]) -> Services:
    return info.context.services

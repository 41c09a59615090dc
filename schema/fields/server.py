"""Root fields about the server itself (`ServerQueries`)."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import strawberry

from app import __version__
from schema.context import Context, services
from schema.types.server_info import GraphInfo, ServerInfo

Info = strawberry.Info[Context, Any]


@strawberry.type
class ServerQueries:
    @strawberry.field(description="This server's version and graphs, its workers and its queue.")
    def server_info(self, info: Info) -> ServerInfo:
        return ServerInfo(
            version=__version__,
            langgraph_version=version("langgraph"),
            graphs=[GraphInfo.from_summary(g) for g in services(info).system.graph_summaries()],
        )

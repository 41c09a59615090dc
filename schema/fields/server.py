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
    @strawberry.field(description="This server's version and graphs.")
    def server_info(self, info: Info) -> ServerInfo:
        graphs = services(info).graphs
        return ServerInfo(
            version=__version__,
            langgraph_version=version("langgraph"),
            graphs=[
                GraphInfo(
                    graph_id=g,
                    description=graphs.info(g).description,
                    default_assistant_id=strawberry.ID(
                        str(services(info).assistants.resolve_id(g))
                    ),
                )
                for g in graphs.graph_ids
            ],
        )

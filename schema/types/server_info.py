"""`ServerInfo`: what this server is and serves."""

from __future__ import annotations

import strawberry


@strawberry.type(description="A graph declared in langgraph.json.")
class GraphInfo:
    graph_id: str
    description: str | None
    default_assistant_id: strawberry.ID = strawberry.field(
        description="The id of the assistant created for this graph at start-up (as LangGraph Server's)."
    )


@strawberry.type(description="The server's version and graphs.")
class ServerInfo:
    version: str
    langgraph_version: str
    graphs: list[GraphInfo]

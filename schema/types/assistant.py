"""`Assistant`: a versioned configuration of a graph; its inputs, filters and connection."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import strawberry

from app.services.assistants import AssistantFilter as ServiceAssistantFilter
from app.services.assistants import AssistantRecord, AssistantVersionRecord
from schema.context import Context, services
from schema.pagination import Connection, connection, page_request
from schema.scalars import JSON
from schema.types.common import IfExists
from schema.types.node import Node

Info = strawberry.Info[Context, Any]


@strawberry.enum(description="Fields assistants can be sorted by.")
class AssistantSortBy(enum.Enum):
    CREATED_AT = "created_at"
    UPDATED_AT = "updated_at"
    ASSISTANT_ID = "assistant_id"
    NAME = "name"
    GRAPH_ID = "graph_id"


@strawberry.type(description="One saved version of an assistant.")
class AssistantVersion:
    assistant_id: strawberry.ID
    version: int
    graph_id: str
    name: str
    description: str | None
    config: JSON
    context: JSON
    metadata: JSON
    created_at: datetime

    @classmethod
    def from_record(cls, row: AssistantVersionRecord) -> AssistantVersion:
        return cls(
            assistant_id=strawberry.ID(str(row.assistant_id)),
            version=row.version,
            graph_id=row.graph_id,
            name=row.name,
            description=row.description,
            config=row.config,
            context=row.context,
            metadata=row.metadata_,
            created_at=row.created_at,
        )


@strawberry.type(description="A drawing of the graph: nodes and edges as JSON, and Mermaid text.")
class AssistantGraph:
    nodes: JSON = strawberry.field(
        description="Nodes as LangGraph's `get_graph().to_json()` gives them."
    )
    edges: JSON = strawberry.field(
        description="Edges as LangGraph's `get_graph().to_json()` gives them."
    )
    mermaid: str = strawberry.field(description="The same graph as a Mermaid flowchart.")


@strawberry.type(
    description="JSON schemas of the graph's input, output, state, config and context."
)
class AssistantSchemas:
    graph_id: str
    input_schema: JSON | None
    output_schema: JSON | None
    state_schema: JSON | None
    config_schema: JSON | None
    context_schema: JSON | None

    @classmethod
    def from_dict(cls, graph_id: str, data: dict[str, Any]) -> AssistantSchemas:
        return cls(
            graph_id=data.get("graph_id") or graph_id,
            input_schema=data.get("input_schema"),
            output_schema=data.get("output_schema"),
            state_schema=data.get("state_schema"),
            config_schema=data.get("config_schema"),
            context_schema=data.get("context_schema"),
        )


@strawberry.type(description="A subgraph of the assistant's graph, by namespace, with its schemas.")
class Subgraph:
    namespace: str
    schemas: AssistantSchemas


@strawberry.type(
    description="An assistant: a graph (from langgraph.json) with a saved config, context and metadata. "
    "Every update makes a new version."
)
class Assistant(Node):
    id: strawberry.ID = strawberry.field(description="The assistant id (a UUID).")
    graph_id: str = strawberry.field(description="The graph id from langgraph.json.")
    name: str
    description: str | None
    config: JSON = strawberry.field(
        description="Run config: `tags`, `recursion_limit`, `configurable`."
    )
    context: JSON = strawberry.field(description="Static runtime context given to the graph.")
    metadata: JSON
    version: int = strawberry.field(description="The current version number.")
    created_at: datetime
    updated_at: datetime
    _record: strawberry.Private[AssistantRecord]

    @classmethod
    def from_record(cls, row: AssistantRecord) -> Assistant:
        return cls(
            id=strawberry.ID(str(row.assistant_id)),
            graph_id=row.graph_id,
            name=row.name,
            description=row.description,
            config=row.config,
            context=row.context,
            metadata=row.metadata_,
            version=row.version,
            created_at=row.created_at,
            updated_at=row.updated_at,
            _record=row,
        )

    @strawberry.field(description="Saved versions, newest first.")
    async def versions(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        metadata: JSON | None = None,
    ) -> Connection[AssistantVersion]:
        svc = services(info).assistants
        aid = self._record.assistant_id
        page = await svc.versions(aid, page_request(first, after), metadata=metadata)
        return connection(
            page, AssistantVersion.from_record, lambda: svc.count_versions(aid, metadata)
        )

    @strawberry.field(
        description="The graph's nodes and edges. `xray` includes subgraphs; `xrayDepth` limits how deep."
    )
    async def graph(
        self, info: Info, xray: bool = False, xray_depth: int | None = None
    ) -> AssistantGraph:
        svc = services(info).assistants
        level: bool | int = xray_depth if xray_depth is not None else xray
        drawn = await svc.graph(self._record, xray=level)
        mermaid = await svc.mermaid(self._record, xray=level)
        return AssistantGraph(
            nodes=drawn.get("nodes", []), edges=drawn.get("edges", []), mermaid=mermaid
        )

    @strawberry.field(
        description="JSON schemas of the graph (input, output, state, config, context)."
    )
    async def schemas(self, info: Info) -> AssistantSchemas:
        data = await services(info).assistants.schemas(self._record)
        return AssistantSchemas.from_dict(self.graph_id, data)

    @strawberry.field(
        description="Subgraphs, optionally only under `namespace`, optionally recursively."
    )
    async def subgraphs(
        self, info: Info, namespace: str | None = None, recurse: bool = False
    ) -> list[Subgraph]:
        found = await services(info).assistants.subgraphs(
            self._record, namespace=namespace, recurse=recurse
        )
        return [
            Subgraph(namespace=ns, schemas=AssistantSchemas.from_dict(self.graph_id, data))
            for ns, data in found.items()
        ]


@strawberry.input(description="Which assistants to list; all given conditions must hold.")
class AssistantFilter:
    graph_id: str | None = None
    name: str | None = strawberry.field(
        default=None, description="Case-insensitive substring of the name."
    )
    metadata: JSON | None = strawberry.field(
        default=None, description="Metadata containing these keys/values."
    )

    def to_service(self) -> ServiceAssistantFilter:
        return ServiceAssistantFilter(
            graph_id=self.graph_id, name=self.name, metadata=self.metadata
        )


@strawberry.input(description="A new assistant.")
class CreateAssistantInput:
    graph_id: str = strawberry.field(description="A graph id from langgraph.json.")
    assistant_id: strawberry.ID | None = strawberry.field(
        default=None, description="A UUID; generated when absent."
    )
    config: JSON | None = None
    context: JSON | None = None
    metadata: JSON | None = None
    name: str | None = strawberry.field(default=None, description='Defaults to "Untitled".')
    description: str | None = None
    if_exists: IfExists = IfExists.RAISE
    idempotency_key: str | None = strawberry.field(
        default=None,
        description="Names this request (at most 255 characters) so a retry after an ambiguous "
        "failure (a timeout, a lost connection, SERVICE_UNAVAILABLE) never creates a second assistant: "
        "a repeat with the same key and input returns the assistant the first request made; the same "
        "key with a different input is a CONFLICT. Keys are kept 24 hours, per user.",
    )


@strawberry.input(description="Changes to an assistant; absent fields stay as they are.")
class UpdateAssistantInput:
    graph_id: str | None = None
    config: JSON | None = strawberry.field(default=None, description="Replaces the config.")
    context: JSON | None = strawberry.field(default=None, description="Replaces the context.")
    metadata: JSON | None = strawberry.field(default=None, description="Merged into the metadata.")
    name: str | None = None
    description: strawberry.Maybe[str | None] = strawberry.field(
        default=None, description="The new description; null clears it."
    )


AssistantConnection = Connection[Assistant]

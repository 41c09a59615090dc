"""Assistants: versioned configurations of a graph, as on LangGraph Server."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, cast

from langchain_core.runnables import RunnableConfig

from app.auth.context import Authorization, is_visible, require_visible
from app.db import assistants as db
from app.db.engine import Database, driver_connection
from app.db.models import Assistant as AssistantRecord
from app.db.models import AssistantVersion as AssistantVersionRecord
from app.db.pagination import Listing
from app.errors import BadUserInput, Conflict, NotFound
from app.pagination import Page, PageRequest, SortOrder
from app.runtime.graphs import GraphRegistry, GraphVisualizationError, default_assistant_id
from app.services.common import (
    UNSET,
    IfExists,
    JsonValue,
    Unset,
    merge_metadata,
    new_id,
    parse_uuid,
    require_object,
    utcnow,
)
from app.services.idempotency import IdempotencyKey, maybe_sweep

__all__ = ["AssistantRecord", "AssistantService", "AssistantVersionRecord"]

SORT_COLUMNS = {
    "created_at": AssistantRecord.created_at,
    "updated_at": AssistantRecord.updated_at,
    "assistant_id": AssistantRecord.assistant_id,
    "name": AssistantRecord.name,
    "graph_id": AssistantRecord.graph_id,
}
_ASSISTANTS = Listing(AssistantRecord.assistant_id, SORT_COLUMNS)
_VERSIONS = Listing(
    AssistantVersionRecord.assistant_id, {"version": AssistantVersionRecord.version}
)


@dataclass(frozen=True)
class AssistantFilter:
    graph_id: str | None = None
    name: str | None = None
    metadata: JsonValue = None


def _config_and_context(
    config: dict[str, Any] | None, context: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """LangGraph mirrors `config.configurable` and `context` into each other; giving both is an error."""
    config = dict(require_object(config, "config") or {})
    context = dict(require_object(context, "context") or {})
    configurable = config.get("configurable")
    if configurable is not None and not isinstance(configurable, dict):
        raise BadUserInput("`config.configurable` must be a JSON object", field="config")
    if configurable and context:
        raise BadUserInput(
            "Cannot specify both configurable and context. Prefer setting context alone.",
            field="context",
        )
    if configurable:
        context = dict(configurable)
    elif context:
        config["configurable"] = dict(context)
    return config, context


class AssistantService:
    def __init__(
        self, db: Database, graphs: GraphRegistry, auth: Authorization | None = None
    ) -> None:
        self._db = db
        self._graphs = graphs
        self._auth = auth or Authorization(None)

    @property
    def system_ids(self) -> frozenset[uuid.UUID]:
        """The ids of the graphs' own assistants (LangGraph's system assistants)."""
        return frozenset(default_assistant_id(g) for g in self._graphs.graph_ids)

    def serves(self, graph_id: str) -> bool:
        """Whether this server serves `graph_id` (an assistant of another graph is hidden)."""
        return graph_id in self._graphs

    def served_graphs(self) -> list[str]:
        """The graphs this server serves (`serves`), as a list."""
        return list(self._graphs.graph_ids)

    def _check_graph(self, graph_id: str) -> None:
        if graph_id not in self._graphs.graph_ids:
            raise NotFound(f"Graph '{graph_id}' not found", graph_id=graph_id)

    def resolve_id(self, id_or_graph: str) -> uuid.UUID:
        """An assistant id, or a graph id standing for that graph's default assistant."""
        if id_or_graph in self._graphs:
            return default_assistant_id(id_or_graph)
        try:
            return uuid.UUID(str(id_or_graph))
        except ValueError:
            raise NotFound(
                f"'{id_or_graph}' is neither an assistant id nor a graph id of this server",
                assistant_id=str(id_or_graph),
            ) from None

    async def create(
        self,
        *,
        graph_id: str,
        assistant_id: str | None = None,
        config: JsonValue = None,
        context: JsonValue = None,
        metadata: JsonValue = None,
        name: str | None = None,
        description: str | None = None,
        if_exists: IfExists = IfExists.RAISE,
        idempotency_key: str | None = None,
    ) -> AssistantRecord:
        """Create version 1. Raises NotFound (graph), Conflict (id taken, `RAISE`; an idempotency
        key used before for another request, or whose assistant is gone), BadUserInput. With
        `idempotency_key`, a repeat of an earlier request returns the assistant it made."""
        key = IdempotencyKey.of(
            "assistant",
            idempotency_key,
            owner=self._auth.identity(),
            request={
                "graph_id": graph_id,
                "assistant_id": assistant_id,
                "config": config,
                "context": context,
                "metadata": metadata,
                "name": name,
                "description": description,
                "if_exists": if_exists.value,
            },
        )
        if key is not None:
            maybe_sweep(self._db.pool)  # expired keys go where keys are used
        self._check_graph(graph_id)
        aid = parse_uuid(assistant_id, "assistant") if assistant_id else new_id()
        config, context = _config_and_context(config, context)
        fields = {
            "assistant_id": aid,
            "graph_id": graph_id,
            "name": name or "Untitled",
            "description": description,
            "config": config,
            "context": context,
            "metadata": dict(require_object(metadata, "metadata") or {}),
        }
        value = {**fields, "if_exists": if_exists.value}
        flt = await self._auth.check("assistants", "create", value)
        fields["metadata"] = require_object(value.get("metadata"), "metadata") or {}
        earlier: uuid.UUID | None = None
        async with self._db.sessions.begin() as session:
            if key is not None:
                # The key first, in the transaction that writes the assistant.
                earlier = await key.claim(await driver_connection(session), aid)
            if earlier is None:
                created = await db.insert_if_absent(session, fields, utcnow())
                if created is not None:
                    return created
                if if_exists is IfExists.DO_NOTHING:
                    existing = await db.get(session, aid, self._graphs.graph_ids)
                    if existing is not None and is_visible(flt, existing.metadata_):
                        return existing
                # Raised inside the transaction: an idempotency key is rolled back with it.
                raise Conflict(f"Assistant {aid} already exists", assistant_id=str(aid))
        assert key is not None and earlier is not None
        try:
            return await self.get(earlier)
        except NotFound:
            raise key.gone(earlier) from None

    async def ensure_default_assistants(self) -> None:
        """One system assistant per graph, with LangGraph's deterministic id; idempotent."""
        for graph_id in self._graphs.graph_ids:
            info = self._graphs.info(graph_id)
            fields = {
                "assistant_id": default_assistant_id(graph_id),
                "graph_id": graph_id,
                "name": info.name,
                "description": info.description,
                "config": {},
                "context": {},
                "metadata": {"created_by": "system"},
            }
            async with self._db.sessions.begin() as session:
                if await db.insert_if_absent(session, fields, utcnow()) is None:
                    # As LangGraph Server: a renamed or re-described graph updates its assistant.
                    await db.refresh_system_assistant(
                        session,
                        default_assistant_id(graph_id),
                        name=info.name,
                        description=info.description,
                    )

    async def get(self, assistant_id: str | uuid.UUID) -> AssistantRecord:
        """The assistant, if the current user may read it. Raises NotFound."""
        aid = assistant_id if isinstance(assistant_id, uuid.UUID) else self.resolve_id(assistant_id)
        flt = await self._auth.check("assistants", "read", {"assistant_id": str(aid)})
        async with self._db.sessions() as session:
            found = await db.get(session, aid, self._graphs.graph_ids)
        if found is None:
            raise NotFound(f"Assistant {aid} not found", assistant_id=str(aid))
        require_visible(flt, found.metadata_, _not_found(aid))
        return found

    async def get_many(self, assistant_ids: list[str]) -> list[AssistantRecord | None]:
        """Assistants by id, in the order asked (None where absent): one query for many."""
        ids = [parse_uuid(a, "assistant") for a in assistant_ids]
        filters = [
            await self._auth.check("assistants", "read", {"assistant_id": str(i)}) for i in ids
        ]
        async with self._db.sessions() as session:
            result = await session.execute(
                db.search(self._graphs.graph_ids).where(AssistantRecord.assistant_id.in_(ids))  # type: ignore[attr-defined]
            )
            found = {row.assistant_id: row for row in result.scalars()}
        return [
            row if (row := found.get(i)) and is_visible(f, row.metadata_) else None
            for i, f in zip(ids, filters, strict=True)
        ]

    async def update(
        self,
        assistant_id: str,
        *,
        graph_id: str | None = None,
        config: JsonValue = None,
        context: JsonValue = None,
        metadata: JsonValue = None,
        name: str | None = None,
        description: str | Unset | None = UNSET,
    ) -> AssistantRecord:
        """Append a new version with the given changes (metadata merged, others replaced)."""
        aid = self.resolve_id(assistant_id)
        if graph_id is not None:
            self._check_graph(graph_id)
        value: dict[str, Any] = {
            "assistant_id": str(aid),
            "graph_id": graph_id,
            "config": config,
            "context": context,
            "metadata": require_object(metadata, "metadata"),
            "name": name,
        }
        flt = await self._auth.check("assistants", "update", value)
        patch_metadata = require_object(value.get("metadata"), "metadata")
        async with self._db.sessions.begin() as session:
            current = await db.get_for_update(session, aid, self._graphs.graph_ids)
            if current is None:
                raise NotFound(f"Assistant {aid} not found", assistant_id=str(aid))
            require_visible(flt, current.metadata_, _not_found(aid))
            fields = db.version_fields(current)
            if config is not None or context is not None:
                new_config, new_context = _config_and_context(
                    config if config is not None else _without_configurable(current.config),
                    context,
                )
                fields["config"], fields["context"] = new_config, new_context
            if graph_id is not None:
                fields["graph_id"] = graph_id
            if name is not None:
                fields["name"] = name
            if not isinstance(description, Unset):
                fields["description"] = description
            fields["metadata"] = merge_metadata(current.metadata_, patch_metadata)
            return await db.add_version(session, aid, fields, utcnow())

    async def set_latest_version(self, assistant_id: str, version: int) -> AssistantRecord:
        aid = self.resolve_id(assistant_id)
        flt = await self._auth.check(
            "assistants", "update", {"assistant_id": str(aid), "version": version}
        )
        async with self._db.sessions.begin() as session:
            current = await db.get_for_update(session, aid, self._graphs.graph_ids)
            if current is None:
                raise NotFound(f"Assistant {aid} not found", assistant_id=str(aid))
            require_visible(flt, current.metadata_, _not_found(aid))
            row = await db.get_version(session, aid, version)
            if row is None:
                raise NotFound(f"Assistant {aid} has no version {version}", version=version)
            return await db.set_latest(session, row, utcnow())

    async def delete(self, assistant_id: str) -> uuid.UUID:
        aid = self.resolve_id(assistant_id)
        flt = await self._auth.check("assistants", "delete", {"assistant_id": str(aid)})
        async with self._db.sessions.begin() as session:
            current = await db.get_for_update(session, aid, self._graphs.graph_ids)
            if current is not None:
                require_visible(flt, current.metadata_, _not_found(aid))
            if not await db.delete_one(session, aid, self._graphs.graph_ids):
                raise NotFound(f"Assistant {aid} not found", assistant_id=str(aid))
        return aid

    async def search(
        self,
        filter: AssistantFilter,
        page: PageRequest,
        *,
        sort_by: str = "created_at",
        order: SortOrder = SortOrder.DESC,
    ) -> Page[AssistantRecord]:
        stmt = await self._search_stmt(filter)
        return await _ASSISTANTS.page(self._db.sessions, stmt, page, sort_by=sort_by, order=order)

    async def count(self, filter: AssistantFilter) -> int:
        return await _ASSISTANTS.count(self._db.sessions, await self._search_stmt(filter))

    async def _search_stmt(self, filter: AssistantFilter) -> Any:
        metadata = require_object(filter.metadata, "metadata")
        flt = await self._auth.check(
            "assistants",
            "search",
            {"graph_id": filter.graph_id, "name": filter.name, "metadata": metadata},
        )
        stmt = db.search(
            self._graphs.graph_ids, graph_id=filter.graph_id, name=filter.name, metadata=metadata
        )
        return stmt if flt is None else stmt.where(flt.to_sql(AssistantRecord.metadata_))

    async def versions(
        self, assistant_id: uuid.UUID, page: PageRequest, *, metadata: JsonValue = None
    ) -> Page[AssistantVersionRecord]:
        stmt = db.versions(assistant_id, require_object(metadata, "metadata"))
        return await _VERSIONS.page(self._db.sessions, stmt, page, sort_by="version")

    async def count_versions(
        self, assistant_id: uuid.UUID, metadata: dict[str, Any] | None = None
    ) -> int:
        stmt = db.versions(assistant_id, require_object(metadata, "metadata"))
        return await _VERSIONS.count(self._db.sessions, stmt)

    # --- graph introspection -------------------------------------------------------------------

    @staticmethod
    def graph_config(assistant: AssistantRecord) -> RunnableConfig:
        """The config a factory graph is built with for this assistant."""
        config: dict[str, Any] = dict(assistant.config)
        config["configurable"] = {
            **(config.get("configurable") or {}),
            "assistant_id": str(assistant.assistant_id),
            "graph_id": assistant.graph_id,
        }
        return cast(RunnableConfig, config)

    async def graph(self, assistant: AssistantRecord, *, xray: bool | int) -> dict[str, Any]:
        _check_xray(xray)
        try:
            return await self._graphs.draw(
                assistant.graph_id, self.graph_config(assistant), xray=xray
            )
        except GraphVisualizationError as exc:
            raise BadUserInput(str(exc), argument="xray") from exc

    async def mermaid(self, assistant: AssistantRecord, *, xray: bool | int) -> str:
        _check_xray(xray)
        try:
            return await self._graphs.mermaid(
                assistant.graph_id, self.graph_config(assistant), xray=xray
            )
        except GraphVisualizationError as exc:
            raise BadUserInput(str(exc), argument="xray") from exc

    async def schemas(self, assistant: AssistantRecord) -> dict[str, Any]:
        return await self._graphs.schemas(assistant.graph_id, self.graph_config(assistant))

    async def subgraphs(
        self, assistant: AssistantRecord, *, namespace: str | None, recurse: bool
    ) -> dict[str, dict[str, Any]]:
        return await self._graphs.subgraphs(
            assistant.graph_id, self.graph_config(assistant), namespace=namespace, recurse=recurse
        )


def _not_found(assistant_id: uuid.UUID) -> NotFound:
    return NotFound(f"Assistant {assistant_id} not found", assistant_id=str(assistant_id))


def _without_configurable(config: dict[str, Any]) -> dict[str, Any]:
    # When only `context` is updated, the old configurable mirror must not conflict with it.
    return {k: v for k, v in config.items() if k != "configurable"}


def _check_xray(xray: bool | int) -> None:
    if not isinstance(xray, bool) and xray <= 0:
        raise BadUserInput("`xray` must be true, false or a positive depth", argument="xray")

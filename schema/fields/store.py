"""Root fields of the long-term memory store (`StoreQueries`, `StoreMutations`)."""

from __future__ import annotations

from typing import Annotated, Any

import strawberry

from app.services.common import UNSET
from schema.context import Context, services
from schema.scalars import JSON
from schema.types.store import PutStoreItemInput, StoreItem

Info = strawberry.Info[Context, Any]

_NAMESPACE = "The item's namespace: its labels, in order."
_REFRESH = (
    "Whether reading restarts the TTL of what is returned; absent: `store.ttl.refresh_on_read` "
    "(true by default)."
)


@strawberry.type
class StoreQueries:
    @strawberry.field(description="A store item, or null when there is none (or it expired).")
    async def store_item(
        self,
        info: Info,
        namespace: Annotated[list[str], strawberry.argument(description=_NAMESPACE)],
        key: Annotated[str, strawberry.argument(description="The item's key.")],
        refresh_ttl: Annotated[bool | None, strawberry.argument(description=_REFRESH)] = None,
    ) -> StoreItem | None:
        item = await services(info).store.get_item(namespace, key, refresh_ttl=refresh_ttl)
        return StoreItem.from_item(item) if item is not None else None

    @strawberry.field(
        description="Store items under a namespace prefix matching `filter`, newest first; with "
        "`query`, most similar first (semantic search, needs `store.index` in langgraph.json)."
    )
    async def store_search(
        self,
        info: Info,
        namespace_prefix: Annotated[
            list[str],
            strawberry.argument(
                description="Labels the namespaces start with; [] searches the whole store."
            ),
        ],
        filter: Annotated[
            JSON | None,
            strawberry.argument(
                description='Conditions on value fields, all must hold: {"kind": "note"} (equal), '
                '{"n": {"$gt": 3}} with $eq, $ne, $gt, $gte, $lt, $lte, {"a": {"b": 1}} (nested).',
            ),
        ] = None,
        query: Annotated[
            str | None,
            strawberry.argument(description="Natural-language query for semantic search."),
        ] = None,
        limit: Annotated[int, strawberry.argument(description="At most this many items.")] = 10,
        offset: Annotated[int, strawberry.argument(description="Items to skip first.")] = 0,
        refresh_ttl: Annotated[bool | None, strawberry.argument(description=_REFRESH)] = None,
    ) -> list[StoreItem]:
        items = await services(info).store.search_items(
            namespace_prefix,
            filter=filter,
            query=query,
            limit=limit,
            offset=offset,
            refresh_ttl=refresh_ttl,
        )
        return [StoreItem.from_item(i) for i in items]

    @strawberry.field(description="The distinct namespaces of the store's items, sorted.")
    async def store_namespaces(
        self,
        info: Info,
        prefix: Annotated[
            list[str] | None,
            strawberry.argument(
                description='Labels the namespaces start with; "*" matches any label.'
            ),
        ] = None,
        suffix: Annotated[
            list[str] | None,
            strawberry.argument(
                description='Labels the namespaces end with; "*" matches any label.'
            ),
        ] = None,
        max_depth: Annotated[
            int | None,
            strawberry.argument(description="Cut namespaces to their first labels (deduplicated)."),
        ] = None,
        limit: Annotated[int, strawberry.argument(description="At most this many.")] = 100,
        offset: Annotated[int, strawberry.argument(description="Namespaces to skip first.")] = 0,
    ) -> list[list[str]]:
        found = await services(info).store.list_namespaces(
            prefix=prefix, suffix=suffix, max_depth=max_depth, limit=limit, offset=offset
        )
        return [list(ns) for ns in found]


@strawberry.type
class StoreMutations:
    @strawberry.mutation(description="Create or replace a store item; returns it as stored.")
    async def put_store_item(self, info: Info, input: PutStoreItemInput) -> StoreItem:
        item = await services(info).store.put_item(
            input.namespace,
            input.key,
            input.value,
            index=input.index,
            ttl=input.ttl.value if input.ttl is not None else UNSET,
        )
        return StoreItem.from_item(item)

    @strawberry.mutation(description="Delete a store item; true when there was one.")
    async def delete_store_item(
        self,
        info: Info,
        namespace: Annotated[list[str], strawberry.argument(description=_NAMESPACE)],
        key: Annotated[str, strawberry.argument(description="The item's key.")],
    ) -> bool:
        return await services(info).store.delete_item(namespace, key)

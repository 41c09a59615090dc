"""`StoreItem`: an item of the long-term memory store that graphs share across threads."""

from __future__ import annotations

from datetime import datetime

import strawberry
from langgraph.store.base import Item, SearchItem

from schema.scalars import JSON


@strawberry.type(
    description="An item of the long-term memory store: a JSON object under a namespace and a "
    "key, shared by every thread (graphs reach it as `store` / `Runtime.store`)."
)
class StoreItem:
    namespace: list[str] = strawberry.field(
        description='The path of labels the item is filed under, e.g. ["memories", "user-1"].'
    )
    key: str = strawberry.field(description="The item's key, unique within its namespace.")
    value: JSON = strawberry.field(description="The stored JSON object.")
    created_at: datetime = strawberry.field(description="When the item was first written.")
    updated_at: datetime = strawberry.field(description="When the item was last written.")
    score: float | None = strawberry.field(
        description="Cosine similarity to the `query` of a semantic `storeSearch` (higher is "
        "closer); null elsewhere, and for items that have no embedding."
    )

    @classmethod
    def from_item(cls, item: Item) -> StoreItem:
        return cls(
            namespace=list(item.namespace),
            key=item.key,
            value=item.value,
            created_at=item.created_at,
            updated_at=item.updated_at,
            score=item.score if isinstance(item, SearchItem) else None,
        )


@strawberry.input(description="An item to create or replace in the store.")
class PutStoreItemInput:
    namespace: list[str] = strawberry.field(
        description='Where to file the item: non-empty labels without ".", the first not '
        '"langgraph".'
    )
    key: str = strawberry.field(description="The item's key within the namespace.")
    value: JSON = strawberry.field(description="A JSON object; replaces any previous value.")
    index: JSON | None = strawberry.field(
        default=None,
        description="What semantic search embeds: null for `store.index.fields` of "
        'langgraph.json, false for nothing, or a list of field paths (e.g. ["text", '
        '"notes[*].body"]). Ignored without `store.index`.',
    )
    ttl: strawberry.Maybe[float | None] = strawberry.field(
        description="Minutes until the item expires, counted again at each write (and read, "
        "unless `refreshTtl: false`). Absent: `store.ttl.default_ttl`; null: never expires."
    )

"""Relay connections: one generic `Connection`/`Edge` pair for every list."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import strawberry

from app.pagination import Page, PageRequest
from app.settings import get_settings

NodeT = TypeVar("NodeT")


@strawberry.type(description="Where a page sits in its list (Relay).")
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type(description="A node and the opaque cursor to continue after it.")
class Edge(Generic[NodeT]):
    cursor: str
    node: NodeT


@strawberry.type(description="A page of a list (Relay connection) with the total count of matches.")
class Connection(Generic[NodeT]):
    edges: list[Edge[NodeT]]
    page_info: PageInfo
    _count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(description="How many items match the filter, across all pages.")
    async def total_count(self) -> int:
        return await self._count()

    @strawberry.field(description="The nodes of this page, without cursors.")
    def nodes(self) -> list[NodeT]:
        return [edge.node for edge in self.edges]


def page_request(first: int | None, after: str | None) -> PageRequest:
    settings = get_settings()
    return PageRequest.checked(
        first, after, default=min(20, settings.max_page_size), maximum=settings.max_page_size
    )


def connection(
    page: Page[Any], to_node: Callable[[Any], NodeT], count: Callable[[], Awaitable[int]]
) -> Connection[NodeT]:
    edges = [
        Edge(cursor=c, node=to_node(item)) for item, c in zip(page.items, page.cursors, strict=True)
    ]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=page.has_next_page,
            has_previous_page=page.has_previous_page,
            start_cursor=page.cursors[0] if page.cursors else None,
            end_cursor=page.cursors[-1] if page.cursors else None,
        ),
        _count=count,
    )

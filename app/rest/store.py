"""`/store`: LangGraph Server's long-term memory routes over `StoreService`."""

from __future__ import annotations

from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import Response

from app.rest.http import (
    Body,
    HTTPError,
    RestRoute,
    body,
    json_response,
    no_content,
    query_bool,
    services,
)
from app.services.common import UNSET


class StorePutRequest(Body):
    namespace: list[str]
    key: str
    value: dict[str, Any]
    index: Literal[False] | list[str] | None = None
    ttl: float | None = None


class StoreDeleteRequest(Body):
    namespace: list[str] = []
    key: str


class StoreSearchRequest(Body):
    namespace_prefix: list[str] | None = None
    filter: dict[str, Any] | None = None
    limit: int = 10
    offset: int = 0
    query: str | None = None
    refresh_ttl: bool | None = None


class StoreListNamespacesRequest(Body):
    prefix: list[str] | None = None
    suffix: list[str] | None = None
    max_depth: int | None = None
    limit: int = 100
    offset: int = 0


def _limit(request: Request, limit: int) -> int:
    """LangGraph's page sizes, cut to `LGQL_MAX_PAGE_SIZE` (the store refuses larger)."""
    return min(limit, services(request).store.max_page_size)


async def put_item(request: Request) -> Response:
    req = await body(request, StorePutRequest)
    await services(request).store.put_item(
        req.namespace,
        req.key,
        req.value,
        index=req.index,
        # Absent: the store's default TTL; null: never expires.
        ttl=req.ttl if "ttl" in req.model_fields_set else UNSET,
    )
    return no_content()


async def get_item(request: Request) -> Response:
    key = request.query_params.get("key")
    if not key:
        raise HTTPError(400, "Key is required")
    raw = request.query_params.get("namespace", "")
    namespace = raw.split(".") if raw else []
    refresh = request.query_params.get("refresh_ttl")
    item = await services(request).store.get_item(
        namespace, key, refresh_ttl=None if refresh is None else query_bool(request, "refresh_ttl")
    )
    return json_response(None if item is None else item.dict())


async def delete_item(request: Request) -> Response:
    req = await body(request, StoreDeleteRequest)
    await services(request).store.delete_item(req.namespace, req.key)
    return no_content()


async def search_items(request: Request) -> Response:
    req = await body(request, StoreSearchRequest)
    items = await services(request).store.search_items(
        req.namespace_prefix or [],
        filter=req.filter,
        query=req.query,
        limit=_limit(request, req.limit),
        offset=req.offset,
        refresh_ttl=req.refresh_ttl,
    )
    return json_response({"items": [i.dict() for i in items]})


async def list_namespaces(request: Request) -> Response:
    req = await body(request, StoreListNamespacesRequest)
    found = await services(request).store.list_namespaces(
        prefix=req.prefix or None,
        suffix=req.suffix or None,
        max_depth=req.max_depth,
        limit=_limit(request, req.limit),
        offset=req.offset,
    )
    return json_response({"namespaces": [list(ns) for ns in found]})


ROUTES = [
    RestRoute("/store/items", put_item, methods=["PUT"]),
    RestRoute("/store/items", get_item, methods=["GET"]),
    RestRoute("/store/items", delete_item, methods=["DELETE"]),
    RestRoute("/store/items/search", search_items, methods=["POST"]),
    RestRoute("/store/namespaces", list_namespaces, methods=["POST"]),
]

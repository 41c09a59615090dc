"""The long-term memory store as clients see it: checked input, then the graphs' own store.

The same `PostgresStore` is injected into every graph run (`backend`), so what a client puts here a
graph reads, and the other way round. Input is checked as LangGraph's store API checks it, and
every problem is a `BadUserInput` raised before anything is written.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from langgraph.store.base import (
    NOT_PROVIDED,
    InvalidNamespaceError,
    Item,
    SearchItem,
    _validate_namespace,
    _validate_namespace_labels,
)

from app.auth.context import Authorization, is_visible
from app.auth.filters import AuthFilter, AuthFilterError
from app.auth.handlers import AuthHandlerError
from app.errors import BadUserInput, Conflict
from app.persistence.store import PostgresStore
from app.persistence.store_sql import FilterError
from app.services.common import UNSET, Unset, require_object
from app.settings import get_settings


def _namespace(labels: Sequence[str], field: str, *, empty_ok: bool = False) -> tuple[str, ...]:
    namespace = tuple(labels)
    try:
        if namespace or not empty_ok:
            if not namespace:
                raise InvalidNamespaceError("Namespace cannot be empty.")
            _validate_namespace_labels(namespace)
    except InvalidNamespaceError as exc:
        raise BadUserInput(f"`{field}`: {exc}", field=field) from None
    return namespace


def _pattern(labels: Sequence[str] | None, field: str) -> tuple[str, ...] | None:
    """A prefix or suffix of `storeNamespaces`: labels, where `*` matches any one label."""
    if labels is None:
        return None
    return _namespace(labels, field, empty_ok=True)


def _key(key: str) -> str:
    if not key:
        raise BadUserInput("`key` cannot be empty", field="key")
    return key


class StoreService:
    def __init__(
        self,
        backend: PostgresStore,
        *,
        max_page_size: int | None = None,
        auth: Authorization | None = None,
    ) -> None:
        self.backend = backend
        self.auth = auth or Authorization(None)
        self.max_page_size = (
            max_page_size if max_page_size is not None else get_settings().max_page_size
        )

    def _page(self, limit: int, offset: int) -> None:
        if not 1 <= limit <= self.max_page_size:
            raise BadUserInput(
                f"`limit` must be between 1 and {self.max_page_size}, got {limit}", field="limit"
            )
        if offset < 0:
            raise BadUserInput(f"`offset` cannot be negative, got {offset}", field="offset")

    async def get_item(
        self, namespace: Sequence[str], key: str, *, refresh_ttl: bool | None = None
    ) -> Item | None:
        """The item, or None when there is none (or it has expired, or the caller's auth filter
        hides it)."""
        ns = _namespace(namespace, "namespace")
        key = _key(key)
        value: dict[str, Any] = {"namespace": ns, "key": key}
        flt = await self.auth.check("store", "get", value)
        ns = _namespace(value["namespace"], "namespace")
        item = await self.backend.aget(ns, key, refresh_ttl=refresh_ttl)
        if item is not None and not is_visible(flt, item.value):
            return None
        return item

    async def search_items(
        self,
        namespace_prefix: Sequence[str],
        *,
        filter: Any = None,
        query: str | None = None,
        limit: int = 10,
        offset: int = 0,
        refresh_ttl: bool | None = None,
    ) -> list[SearchItem]:
        """Items under the prefix (all with an empty one) matching `filter`: newest first, or
        most similar to `query` first (semantic search, needs `store.index`)."""
        prefix = _namespace(namespace_prefix, "namespacePrefix", empty_ok=True)
        flt = require_object(filter, "filter")
        self._page(limit, offset)
        value: dict[str, Any] = {
            "namespace": prefix,
            "filter": flt,
            "limit": limit,
            "offset": offset,
            "query": query,
        }
        auth_filter = await self.auth.check("store", "search", value)
        prefix = _namespace(value["namespace"], "namespacePrefix", empty_ok=True)
        if auth_filter is not None:
            try:
                # The handler's conditions are ANDed into the client's (LangGraph's `$and`).
                flt = {**(flt or {}), **_store_filter(auth_filter, flt or {})}
            except AuthFilterError as exc:
                raise AuthHandlerError(str(exc)) from exc
        if query is not None and self.backend.index is None:
            raise BadUserInput(
                "`query` needs semantic search, which is off: configure store.index "
                "(dims, embed) in langgraph.json",
                field="query",
            )
        try:
            return await self.backend.asearch(
                prefix,
                query=query or None,
                filter=flt,
                limit=limit,
                offset=offset,
                refresh_ttl=refresh_ttl,
            )
        except FilterError as exc:
            raise BadUserInput(f"`filter`: {exc}", field="filter") from None

    async def list_namespaces(
        self,
        *,
        prefix: Sequence[str] | None = None,
        suffix: Sequence[str] | None = None,
        max_depth: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[tuple[str, ...]]:
        """Distinct namespaces of live items, sorted, cut to `max_depth` labels."""
        match_prefix = _pattern(prefix, "prefix")
        match_suffix = _pattern(suffix, "suffix")
        value: dict[str, Any] = {
            "namespace": match_prefix,
            "suffix": match_suffix,
            "max_depth": max_depth,
            "limit": limit,
            "offset": offset,
        }
        await self.auth.check("store", "list_namespaces", value)
        match_prefix = _pattern(value["namespace"], "prefix")
        match_suffix = _pattern(value["suffix"], "suffix")
        if max_depth is not None and max_depth < 1:
            raise BadUserInput(f"`maxDepth` must be at least 1, got {max_depth}", field="maxDepth")
        self._page(limit, offset)
        return await self.backend.alist_namespaces(
            prefix=match_prefix,
            suffix=match_suffix,
            max_depth=max_depth,
            limit=limit,
            offset=offset,
        )

    async def put_item(
        self,
        namespace: Sequence[str],
        key: str,
        value: Any,
        *,
        index: Any = None,
        ttl: float | Unset | None = UNSET,
    ) -> Item:
        """Create or replace an item. `index`: None for the configured fields, False not to
        embed it, or the field paths to embed. `ttl` in minutes; not given means
        `store.ttl.default_ttl`, None means never expires."""
        ns = _namespace(namespace, "namespace")
        key = _key(key)
        data = require_object(value, "value", optional=False)
        assert data is not None
        request: dict[str, Any] = {
            "namespace": ns,
            "key": key,
            "value": data,
            "index": index,
            "ttl": None if isinstance(ttl, Unset) else ttl,
        }
        await self.auth.check("store", "put", request)
        ns = _namespace(request["namespace"], "namespace")
        try:
            _validate_namespace(ns)
        except InvalidNamespaceError as exc:
            raise BadUserInput(f"`namespace`: {exc}", field="namespace") from None
        if not (
            index is None
            or index is False
            or (isinstance(index, list) and all(isinstance(f, str) and f for f in index))
        ):
            raise BadUserInput(
                '`index` must be false or a list of field paths (e.g. ["text", "tags[*]"])',
                field="index",
            )
        if not isinstance(ttl, Unset) and ttl is not None and not (math.isfinite(ttl) and ttl > 0):
            raise BadUserInput(
                f"`ttl` must be a positive number of minutes, got {ttl}", field="ttl"
            )
        await self.backend.aput(
            ns, key, data, index=index, ttl=NOT_PROVIDED if isinstance(ttl, Unset) else ttl
        )
        item = await self.backend.aget(ns, key, refresh_ttl=False)
        if item is None:  # deleted by someone else in between
            raise Conflict("the item was deleted while being written; put it again", key=key)
        return item

    async def delete_item(self, namespace: Sequence[str], key: str) -> bool:
        """Delete an item; whether there was one."""
        ns = _namespace(namespace, "namespace")
        key = _key(key)
        value: dict[str, Any] = {"namespace": ns, "key": key}
        await self.auth.check("store", "delete", value)
        return await self.backend.adelete_item(_namespace(value["namespace"], "namespace"), key)


def _store_filter(auth_filter: AuthFilter, client: dict[str, Any]) -> dict[str, Any]:
    """The handler's filter in the store's filter language, ANDed with the client's condition
    on the same field (so a client cannot widen it)."""
    merged: dict[str, Any] = {}
    for key, expected in auth_filter.equalities().items():
        theirs = client.get(key)
        ops = (
            theirs
            if isinstance(theirs, dict) and all(str(k).startswith("$") for k in theirs)
            else {}
        )
        if ops and ops.get("$eq", expected) == expected:
            merged[key] = {**ops, "$eq": expected}
        elif key not in client or (not ops and theirs == expected):
            merged[key] = {"$eq": expected}
        else:  # the client asks for another value: both cannot hold
            merged[key] = {"$eq": expected, "$ne": expected}
    return merged

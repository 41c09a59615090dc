"""`/threads`: LangGraph Server's thread routes (threads, their state and history) over
`ThreadService`. The thread stream and runs are `app.rest.runs`'."""

from __future__ import annotations

import re
from typing import Any, Literal, get_args

from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response

from app.pagination import SortOrder
from app.rest.http import (
    Body,
    HTTPError,
    PageBody,
    RestRoute,
    body,
    error_response,
    json_response,
    no_content,
    page_request,
    pagination_headers,
    project,
    query_bool,
    query_int,
    services,
)
from app.services.common import UNSET, IfExists, Unset
from app.services.thread_ttl import ThreadTTL, expires_at, ttl_of
from app.services.threads import StateWrite, ThreadFilter, ThreadRecord

ThreadField = Literal[
    "thread_id",
    "created_at",
    "updated_at",
    "state_updated_at",
    "metadata",
    "config",
    "status",
    "values",
    "interrupts",
]
ThreadStatus = Literal["idle", "busy", "interrupted", "error"]


class ThreadTTLBody(Body):
    strategy: Literal["delete", "keep_latest"] = "delete"
    ttl: float


class ThreadSuperstepUpdate(Body):
    values: Any = None
    command: dict[str, Any] | None = None
    as_node: str


class ThreadSuperstep(Body):
    updates: list[ThreadSuperstepUpdate] = Field(min_length=1)


class ThreadCreate(Body):
    thread_id: str | None = None
    metadata: dict[str, Any] | None = None
    if_exists: Literal["raise", "do_nothing"] = "raise"
    ttl: ThreadTTLBody | None = None
    supersteps: list[ThreadSuperstep] | None = None


class ThreadPatch(Body):
    metadata: dict[str, Any] | None = None
    ttl: ThreadTTLBody | None = None


class ThreadCountRequest(Body):
    metadata: dict[str, Any] | None = None
    values: dict[str, Any] | None = None
    status: ThreadStatus | None = None


class ThreadSearchRequest(ThreadCountRequest, PageBody):
    ids: list[str] | None = None
    sort_by: (
        Literal["thread_id", "status", "created_at", "updated_at", "state_updated_at"] | None
    ) = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[ThreadField] | None = None
    extract: dict[str, str] | None = None


class ThreadPruneRequest(Body):
    thread_ids: list[str]
    strategy: Literal["delete", "keep_latest"] = "delete"


class CheckpointConfig(Body):
    thread_id: str | None = None
    checkpoint_ns: str | None = None
    checkpoint_id: str | None = None
    checkpoint_map: dict[str, Any] | None = None


class ThreadStateCheckpointRequest(Body):
    checkpoint: CheckpointConfig
    subgraphs: bool = False
    select: list[str] | None = None


class ThreadStateUpdate(Body):
    values: Any = None
    checkpoint: CheckpointConfig | None = None
    checkpoint_id: str | None = None
    as_node: str | None = None


class ThreadStateSearch(Body):
    limit: int = 1
    # The SDK sends a checkpoint id or a whole CheckpointConfig.
    before: str | CheckpointConfig | None = None
    metadata: dict[str, Any] | None = None
    checkpoint: CheckpointConfig | None = None
    select: list[str] | None = None


#: Where a search's `extract` paths may start, and how many it may have (LangGraph's limits).
EXTRACTABLE = ("values", "metadata", "config", "interrupts")
MAX_EXTRACT_PATHS = 10
_ALIAS = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: One step of a path: `.key` or `[index]`.
_STEP = re.compile(r"\.([^.\[\]]+)|\[(-?\d+)\]")


def _path(path: str) -> list[str | int] | None:
    """`values.messages[-1].content` as [values, messages, -1, content]; None if malformed."""
    root = re.match(r"[^.\[\]]+", path)
    if root is None:
        return None
    steps: list[str | int] = [root.group()]
    at = root.end()
    while at < len(path):
        step = _STEP.match(path, at)
        if step is None:
            return None
        steps.append(step.group(1) if step.group(1) is not None else int(step.group(2)))
        at = step.end()
    return steps


def checked_extract(extract: dict[str, str]) -> dict[str, list[str | int]]:
    """A search's `extract` (alias → path), each path parsed. 422 when it does not fit."""
    if len(extract) > MAX_EXTRACT_PATHS:
        raise HTTPError(422, f"At most {MAX_EXTRACT_PATHS} extract paths, got {len(extract)}")
    reserved = sorted(set(extract) & set(get_args(ThreadField)))
    if reserved:
        raise HTTPError(422, f"Extract keys cannot use reserved field names: {reserved}")
    parsed: dict[str, list[str | int]] = {}
    for alias, path in extract.items():
        if not _ALIAS.fullmatch(alias):
            raise HTTPError(
                422, f"Extract key '{alias}' must be an identifier (letters, digits, underscores)"
            )
        steps = _path(path)
        if steps is None or steps[0] not in EXTRACTABLE:
            raise HTTPError(
                422, f"Extract path '{path}' must start with one of: {', '.join(EXTRACTABLE)}"
            )
        parsed[alias] = steps
    return parsed


def extracted(thread: dict[str, Any], steps: list[str | int]) -> Any:
    """The value at `steps` in `thread`, or None where the path leads nowhere."""
    current: Any = thread
    for step in steps:
        if isinstance(step, int):
            if not isinstance(current, list) or not -len(current) <= step < len(current):
                return None
            current = current[step]
        elif isinstance(current, dict):
            current = current.get(step)
        else:
            return None
    return current


def state_select(state: dict[str, Any], select: list[str]) -> dict[str, Any]:
    """The `select`ed fields of a state; `values.<key>` keeps that key of its values only."""
    if not select:
        return state
    chosen: dict[str, Any] = {}
    for field in select:
        if field.startswith("values."):
            values = state.get("values")
            key = field.removeprefix("values.")
            if isinstance(values, dict) and key in values:
                kept = chosen.setdefault("values", {})
                if isinstance(kept, dict):
                    kept[key] = values[key]
            else:
                chosen.setdefault("values", {})
        elif field in state:
            chosen[field] = state[field]
        else:
            raise HTTPError(422, f"Invalid select field: {field!r}")
    return chosen


def thread_json(t: ThreadRecord, *, include_ttl: bool = False) -> dict[str, Any]:
    """A thread as LangGraph's `Thread` (`ttl` only when asked for, as `?include=ttl`)."""
    found: dict[str, Any] = {
        "thread_id": str(t.thread_id),
        "created_at": t.created_at,
        "updated_at": t.updated_at,
        "state_updated_at": t.state_updated_at,
        "metadata": t.metadata_,
        "config": t.config,
        "status": t.status,
        "values": t.values,
        "interrupts": t.interrupts,
    }
    if include_ttl:
        ttl = ttl_of(t)
        found["ttl"] = (
            {
                "strategy": ttl.strategy.value,
                "ttl_minutes": ttl.minutes,
                "expires_at": expires_at(t),
            }
            if ttl
            else None
        )
    return found


def _ttl(ttl: ThreadTTLBody | None) -> ThreadTTL | None:
    return ThreadTTL.checked(ttl.ttl, ttl.strategy) if ttl else None


def _id(request: Request) -> str:
    return str(request.path_params["thread_id"])


async def create_thread(request: Request) -> Response:
    req = await body(request, ThreadCreate)
    threads = services(request).threads
    seeded = await threads.create_seeded(
        [
            [StateWrite(as_node=u.as_node, values=u.values, command=u.command) for u in s.updates]
            for s in req.supersteps or ()
        ],
        thread_id=req.thread_id,
        metadata=req.metadata,
        if_exists=IfExists(req.if_exists),
        ttl=_ttl(req.ttl),
    )
    if seeded.problem is not None:
        # As LangGraph Server: the thread stays, and the answer says what went wrong.
        return error_response(201, seeded.problem.message)
    return json_response(thread_json(seeded.thread))


async def get_thread(request: Request) -> Response:
    include = {f.strip() for f in request.query_params.get("include", "").split(",")}
    thread = await services(request).threads.get(_id(request))
    return json_response(thread_json(thread, include_ttl="ttl" in include))


async def patch_thread(request: Request) -> Response:
    req = await body(request, ThreadPatch)
    ttl: ThreadTTL | Unset | None = _ttl(req.ttl) if "ttl" in req.model_fields_set else UNSET
    updated = await services(request).threads.update(_id(request), metadata=req.metadata, ttl=ttl)
    if request.headers.get("prefer") == "return=minimal":
        return no_content()
    return json_response(thread_json(updated))


async def delete_thread(request: Request) -> Response:
    await services(request).threads.delete(_id(request))
    return no_content()


def _filter(req: ThreadCountRequest, ids: list[str] | None = None) -> ThreadFilter:
    return ThreadFilter(ids=ids, metadata=req.metadata, values=req.values, status=req.status)


async def search_threads(request: Request) -> Response:
    req = await body(request, ThreadSearchRequest)
    page_req = page_request(request, req.limit, req.offset)
    page = await services(request).threads.search(
        _filter(req, req.ids),
        page_req,
        sort_by=req.sort_by or "created_at",
        order=SortOrder(req.sort_order or "desc"),
    )
    paths = checked_extract(req.extract) if req.extract else {}
    items = []
    for t in page.items:
        whole = thread_json(t)
        item = project(whole, list(req.select or ()))
        if paths:
            item["extracted"] = {alias: extracted(whole, p) for alias, p in paths.items()}
        items.append(item)
    return json_response(items, headers=pagination_headers(page, page_req))


async def count_threads(request: Request) -> Response:
    req = await body(request, ThreadCountRequest)
    return json_response(await services(request).threads.count(_filter(req)))


async def copy_thread(request: Request) -> Response:
    return json_response(thread_json(await services(request).threads.copy(_id(request))))


async def prune_threads(request: Request) -> Response:
    req = await body(request, ThreadPruneRequest)
    pruned = await services(request).threads.prune(req.thread_ids, strategy=req.strategy)
    return json_response({"pruned_count": pruned})


async def get_state(request: Request) -> Response:
    threads = services(request).threads
    thread = await threads.get(_id(request))
    state = await threads.state(
        thread,
        checkpoint_id=request.path_params.get("checkpoint_id"),
        subgraphs=query_bool(request, "subgraphs"),
    )
    return json_response(state_select(state, request.query_params.getlist("select")))


async def get_state_at_checkpoint(request: Request) -> Response:
    req = await body(request, ThreadStateCheckpointRequest)
    threads = services(request).threads
    thread = await threads.get(_id(request))
    state = await threads.state(
        thread,
        checkpoint_id=req.checkpoint.checkpoint_id,
        checkpoint_ns=req.checkpoint.checkpoint_ns or "",
        checkpoint_map=req.checkpoint.checkpoint_map,
        subgraphs=req.subgraphs,
    )
    return json_response(state_select(state, req.select or []))


async def update_state(request: Request) -> Response:
    req = await body(request, ThreadStateUpdate)
    # LangGraph Server lays `checkpoint` over `checkpoint_id`.
    chosen = req.checkpoint or CheckpointConfig()
    result = await services(request).threads.update_state(
        _id(request),
        values=req.values,
        as_node=req.as_node,
        checkpoint_id=chosen.checkpoint_id or req.checkpoint_id,
        checkpoint_ns=chosen.checkpoint_ns or "",
        checkpoint_map=chosen.checkpoint_map,
    )
    return json_response(result)


async def _history(
    request: Request,
    *,
    limit: int,
    before: str | None,
    metadata: dict[str, Any] | None = None,
    checkpoint_ns: str = "",
    select: list[str] | None = None,
) -> Response:
    threads = services(request).threads
    thread = await threads.get(_id(request))
    states = await threads.history(
        thread, limit=limit, before=before, metadata=metadata, checkpoint_ns=checkpoint_ns
    )
    return json_response([state_select(s, select or []) for s in states])


async def get_history(request: Request) -> Response:
    limit = query_int(request, "limit", 1)
    assert limit is not None
    return await _history(
        request,
        limit=limit,
        before=request.query_params.get("before"),
        select=request.query_params.getlist("select"),
    )


async def post_history(request: Request) -> Response:
    req = await body(request, ThreadStateSearch)
    before = req.before.checkpoint_id if isinstance(req.before, CheckpointConfig) else req.before
    if req.limit < 1:
        raise HTTPError(422, "`limit` must be at least 1")
    return await _history(
        request,
        limit=req.limit,
        before=before,
        metadata=req.metadata,
        checkpoint_ns=(req.checkpoint.checkpoint_ns or "") if req.checkpoint else "",
        select=req.select,
    )


ROUTES = [
    RestRoute("/threads", create_thread, methods=["POST"]),
    RestRoute("/threads/search", search_threads, methods=["POST"]),
    RestRoute("/threads/count", count_threads, methods=["POST"]),
    RestRoute("/threads/prune", prune_threads, methods=["POST"]),
    RestRoute("/threads/{thread_id}", get_thread, methods=["GET"]),
    RestRoute("/threads/{thread_id}", patch_thread, methods=["PATCH"]),
    RestRoute("/threads/{thread_id}", delete_thread, methods=["DELETE"]),
    RestRoute("/threads/{thread_id}/copy", copy_thread, methods=["POST"]),
    RestRoute("/threads/{thread_id}/state", get_state, methods=["GET"]),
    RestRoute("/threads/{thread_id}/state", update_state, methods=["POST"]),
    RestRoute("/threads/{thread_id}/state/checkpoint", get_state_at_checkpoint, methods=["POST"]),
    RestRoute("/threads/{thread_id}/state/{checkpoint_id}", get_state, methods=["GET"]),
    RestRoute("/threads/{thread_id}/history", get_history, methods=["GET"]),
    RestRoute("/threads/{thread_id}/history", post_history, methods=["POST"]),
]

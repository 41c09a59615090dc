"""`/assistants`: LangGraph Server's assistant routes over `AssistantService`."""

from __future__ import annotations

from typing import Any, Literal

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
    json_response,
    no_content,
    page_request,
    pagination_headers,
    parse,
    project,
    query_bool,
    services,
)
from app.services.assistants import AssistantFilter, AssistantRecord, AssistantVersionRecord
from app.services.common import UNSET, IfExists

AssistantField = Literal[
    "assistant_id",
    "graph_id",
    "name",
    "description",
    "config",
    "context",
    "created_at",
    "updated_at",
    "metadata",
    "version",
]


class AssistantCreate(Body):
    graph_id: str
    assistant_id: str | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    if_exists: Literal["raise", "do_nothing"] = "raise"
    name: str | None = None
    description: str | None = None


class AssistantPatch(Body):
    graph_id: str | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    name: str | None = None
    description: str | None = None


class AssistantCountRequest(Body):
    metadata: dict[str, Any] | None = None
    graph_id: str | None = None
    name: str | None = None


class AssistantSearchRequest(AssistantCountRequest, PageBody):
    sort_by: Literal["assistant_id", "created_at", "updated_at", "name", "graph_id"] | None = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[AssistantField] | None = None


class AssistantVersionsSearchRequest(PageBody):
    metadata: dict[str, Any] | None = None


class AssistantVersionChange(Body):
    version: int = Field(ge=1)


def assistant_json(a: AssistantRecord | AssistantVersionRecord) -> dict[str, Any]:
    """An assistant (or one of its versions) as LangGraph's `Assistant`."""
    return {
        "assistant_id": str(a.assistant_id),
        "graph_id": a.graph_id,
        "config": a.config,
        "context": a.context,
        "created_at": a.created_at,
        "updated_at": getattr(a, "updated_at", a.created_at),
        "metadata": a.metadata_,
        "version": a.version,
        "name": a.name,
        "description": a.description,
    }


def _id(request: Request) -> str:
    return str(request.path_params["assistant_id"])


async def create_assistant(request: Request) -> Response:
    req = await body(request, AssistantCreate)
    created = await services(request).assistants.create(
        graph_id=req.graph_id,
        assistant_id=req.assistant_id,
        config=req.config,
        context=req.context,
        metadata=req.metadata,
        name=req.name,
        description=req.description,
        if_exists=IfExists(req.if_exists),
    )
    return json_response(assistant_json(created))


async def get_assistant(request: Request) -> Response:
    return json_response(assistant_json(await services(request).assistants.get(_id(request))))


async def patch_assistant(request: Request) -> Response:
    req = await body(request, AssistantPatch)
    updated = await services(request).assistants.update(
        _id(request),
        graph_id=req.graph_id,
        config=req.config,
        context=req.context,
        metadata=req.metadata,
        name=req.name,
        description=req.description if "description" in req.model_fields_set else UNSET,
    )
    return json_response(assistant_json(updated))


async def delete_assistant(request: Request) -> Response:
    svc = services(request)
    aid = await svc.assistants.delete(_id(request))
    if query_bool(request, "delete_threads"):
        await svc.threads.delete_of_assistant(aid)
    return no_content()


async def search_assistants(request: Request) -> Response:
    req = await body(request, AssistantSearchRequest)
    page_req = page_request(request, req.limit, req.offset)
    page = await services(request).assistants.search(
        AssistantFilter(graph_id=req.graph_id, name=req.name, metadata=req.metadata),
        page_req,
        sort_by=req.sort_by or "created_at",
        order=SortOrder(req.sort_order or "desc"),
    )
    items = [project(assistant_json(a), list(req.select or ())) for a in page.items]
    return json_response(items, headers=pagination_headers(page, page_req))


async def count_assistants(request: Request) -> Response:
    req = await body(request, AssistantCountRequest)
    flt = AssistantFilter(graph_id=req.graph_id, name=req.name, metadata=req.metadata)
    return json_response(await services(request).assistants.count(flt))


def _xray(request: Request) -> bool | int:
    raw = request.query_params.get("xray", "false").lower()
    if raw in ("true", "false"):
        return raw == "true"
    try:
        depth = int(raw)
    except ValueError:
        raise HTTPError(422, "`xray` must be true, false or a positive depth") from None
    if depth <= 0:
        raise HTTPError(422, "`xray` must be true, false or a positive depth")
    return depth


async def get_graph(request: Request) -> Response:
    svc = services(request).assistants
    assistant = await svc.get(_id(request))
    return json_response(await svc.graph(assistant, xray=_xray(request)))


async def get_schemas(request: Request) -> Response:
    svc = services(request).assistants
    return json_response(await svc.schemas(await svc.get(_id(request))))


async def get_subgraphs(request: Request) -> Response:
    svc = services(request).assistants
    assistant = await svc.get(_id(request))
    namespace = request.path_params.get("namespace")
    found = await svc.subgraphs(
        assistant, namespace=namespace, recurse=query_bool(request, "recurse")
    )
    return json_response(found)


async def list_versions(request: Request) -> Response:
    req = await body(request, AssistantVersionsSearchRequest)
    svc = services(request).assistants
    assistant = await svc.get(_id(request))
    page_req = page_request(request, req.limit, req.offset)
    page = await svc.versions(assistant.assistant_id, page_req, metadata=req.metadata)
    return json_response(
        [assistant_json(v) for v in page.items], headers=pagination_headers(page, page_req)
    )


async def set_latest(request: Request) -> Response:
    # The SDK sends `{"version": n}` in the body (the openapi says a query parameter; both work).
    raw = request.query_params.get("version")
    if raw is not None:
        req = parse(AssistantVersionChange, {"version": raw})
    else:
        req = await body(request, AssistantVersionChange)
    updated = await services(request).assistants.set_latest_version(_id(request), req.version)
    return json_response(assistant_json(updated))


ROUTES = [
    RestRoute("/assistants", create_assistant, methods=["POST"]),
    RestRoute("/assistants/search", search_assistants, methods=["POST"]),
    RestRoute("/assistants/count", count_assistants, methods=["POST"]),
    RestRoute("/assistants/{assistant_id}", get_assistant, methods=["GET"]),
    RestRoute("/assistants/{assistant_id}", patch_assistant, methods=["PATCH"]),
    RestRoute("/assistants/{assistant_id}", delete_assistant, methods=["DELETE"]),
    RestRoute("/assistants/{assistant_id}/graph", get_graph, methods=["GET"]),
    RestRoute("/assistants/{assistant_id}/schemas", get_schemas, methods=["GET"]),
    RestRoute("/assistants/{assistant_id}/subgraphs", get_subgraphs, methods=["GET"]),
    RestRoute("/assistants/{assistant_id}/subgraphs/{namespace}", get_subgraphs, methods=["GET"]),
    RestRoute("/assistants/{assistant_id}/versions", list_versions, methods=["POST"]),
    RestRoute("/assistants/{assistant_id}/latest", set_latest, methods=["POST"]),
]

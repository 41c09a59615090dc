"""`/runs/crons` and `/threads/{id}/runs/crons`: LangGraph Server's cron routes over
`CronService`."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

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
    project,
    services,
)
from app.services.common import UNSET
from app.services.cron_request import PAYLOAD_KEYS
from app.services.crons import CronFilter, CronRecord

CronField = Literal[
    "cron_id",
    "assistant_id",
    "thread_id",
    "on_run_completed",
    "end_time",
    "schedule",
    "timezone",
    "created_at",
    "updated_at",
    "user_id",
    "payload",
    "next_run_date",
    "metadata",
    "enabled",
]
StreamMode = Literal[
    "values",
    "messages",
    "messages-tuple",
    "tasks",
    "checkpoints",
    "updates",
    "events",
    "debug",
    "custom",
]

#: The body fields that are the options of the cron's runs (its `payload`), not the cron's own
#: (its assistant and metadata are the cron's fields).
RUN_OPTIONS = PAYLOAD_KEYS - {"assistant_id", "metadata"}


class CronRunOptions(Body):
    input: dict[str, Any] | list[Any] | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    webhook: str | None = None
    interrupt_before: Literal["*"] | list[str] | None = None
    interrupt_after: Literal["*"] | list[str] | None = None
    stream_mode: list[StreamMode] | StreamMode | None = None
    stream_subgraphs: bool | None = None
    stream_resumable: bool | None = None
    durability: Literal["sync", "async", "exit"] | None = None

    def payload(self) -> dict[str, Any]:
        """The run options given, keyed as LangGraph's run-create body."""
        given = self.model_dump(include=set(RUN_OPTIONS), exclude_none=True)
        if isinstance(given.get("stream_mode"), str):
            given["stream_mode"] = [given["stream_mode"]]
        return given


class CronCreate(CronRunOptions):
    schedule: str
    assistant_id: str
    timezone: str | None = None
    end_time: datetime | None = None
    metadata: dict[str, Any] | None = None
    enabled: bool = True
    on_run_completed: Literal["delete", "keep"] | None = None


class ThreadCronCreate(CronRunOptions):
    schedule: str
    assistant_id: str
    timezone: str | None = None
    end_time: datetime | None = None
    metadata: dict[str, Any] | None = None
    enabled: bool = True
    multitask_strategy: Literal["reject", "rollback", "interrupt", "enqueue"] | None = None


class CronPatch(CronRunOptions):
    schedule: str | None = None
    timezone: str | None = None
    end_time: datetime | None = None
    metadata: dict[str, Any] | None = None
    on_run_completed: Literal["delete", "keep"] | None = None
    enabled: bool | None = None


class CronCountRequest(Body):
    assistant_id: str | None = None
    thread_id: str | None = None
    metadata: dict[str, Any] | None = None


class CronSearch(CronCountRequest, PageBody):
    enabled: bool | None = None
    sort_by: (
        Literal[
            "cron_id",
            "assistant_id",
            "thread_id",
            "next_run_date",
            "end_time",
            "created_at",
            "updated_at",
        ]
        | None
    ) = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[CronField] | None = None


def cron_json(c: CronRecord) -> dict[str, Any]:
    """A cron as LangGraph's `Cron`."""
    return {
        "cron_id": str(c.cron_id),
        "assistant_id": str(c.assistant_id),
        "thread_id": str(c.thread_id) if c.thread_id else None,
        "on_run_completed": c.on_run_completed,
        "end_time": c.end_time,
        "schedule": c.schedule,
        "timezone": c.timezone,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
        "user_id": c.user_id,
        "payload": c.payload,
        "next_run_date": c.next_run_at,
        "metadata": c.metadata_,
        "enabled": c.enabled,
    }


async def create_cron(request: Request) -> Response:
    req = await body(request, CronCreate)
    created = await services(request).crons.create(
        assistant_id=req.assistant_id,
        schedule=req.schedule,
        payload=req.payload(),
        timezone=req.timezone,
        end_time=req.end_time,
        enabled=req.enabled,
        metadata=req.metadata,
        on_run_completed=req.on_run_completed,
    )
    return json_response(cron_json(created))


async def create_thread_cron(request: Request) -> Response:
    req = await body(request, ThreadCronCreate)
    payload = req.payload()
    if req.multitask_strategy is not None:
        payload["multitask_strategy"] = req.multitask_strategy
    created = await services(request).crons.create(
        assistant_id=req.assistant_id,
        schedule=req.schedule,
        payload=payload,
        thread_id=str(request.path_params["thread_id"]),
        timezone=req.timezone,
        end_time=req.end_time,
        enabled=req.enabled,
        metadata=req.metadata,
    )
    return json_response(cron_json(created))


async def get_cron(request: Request) -> Response:
    return json_response(cron_json(await services(request).crons.get(_id(request))))


async def patch_cron(request: Request) -> Response:
    req = await body(request, CronPatch)
    if not req.model_fields_set:
        raise HTTPError(400, "Request body cannot be empty")
    updated = await services(request).crons.update(
        _id(request),
        schedule=req.schedule,
        timezone=req.timezone,
        # An explicit null clears the end time; an absent key leaves it.
        end_time=req.end_time if "end_time" in req.model_fields_set else UNSET,
        enabled=req.enabled,
        metadata=req.metadata,
        on_run_completed=req.on_run_completed,
        payload=req.payload(),
    )
    return json_response(cron_json(updated))


async def delete_cron(request: Request) -> Response:
    await services(request).crons.delete(_id(request))
    return no_content()


def _filter(req: CronCountRequest, enabled: bool | None = None) -> CronFilter:
    return CronFilter(
        assistant_id=req.assistant_id,
        thread_id=req.thread_id,
        enabled=enabled,
        metadata=req.metadata,
    )


async def search_crons(request: Request) -> Response:
    req = await body(request, CronSearch)
    page_req = page_request(request, req.limit, req.offset)
    sort_by = req.sort_by or "created_at"
    page = await services(request).crons.search(
        _filter(req, req.enabled),
        page_req,
        sort_by="next_run_at" if sort_by == "next_run_date" else sort_by,
        order=SortOrder(req.sort_order or "desc"),
    )
    items = [project(cron_json(c), list(req.select or ())) for c in page.items]
    return json_response(items, headers=pagination_headers(page, page_req))


async def count_crons(request: Request) -> Response:
    req = await body(request, CronCountRequest)
    return json_response(await services(request).crons.count(_filter(req)))


def _id(request: Request) -> str:
    return str(request.path_params["cron_id"])


ROUTES = [
    RestRoute("/runs/crons", create_cron, methods=["POST"]),
    RestRoute("/runs/crons/search", search_crons, methods=["POST"]),
    RestRoute("/runs/crons/count", count_crons, methods=["POST"]),
    RestRoute("/runs/crons/{cron_id}", get_cron, methods=["GET"]),
    RestRoute("/runs/crons/{cron_id}", patch_cron, methods=["PATCH"]),
    RestRoute("/runs/crons/{cron_id}", delete_cron, methods=["DELETE"]),
    RestRoute("/threads/{thread_id}/runs/crons", create_thread_cron, methods=["POST"]),
]

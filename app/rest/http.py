"""The plumbing every LangGraph REST route shares: its services, its body, its answers, its errors.

How to write a route (app/rest/assistants.py is a full example)::

    from app.rest.http import Body, RestRoute, body, json_response, query_bool, services

    class ThingCreate(Body):              # named after the reference's schema
        name: str
        metadata: dict[str, Any] | None = None

    async def create_thing(request: Request) -> Response:
        req = await body(request, ThingCreate)      # 422 {"detail": ...} when it does not fit
        thing = await services(request).things.create(name=req.name)
        return json_response(thing_json(thing))

    ROUTES = [RestRoute("/things", create_thing, methods=["POST"])]

and list the module in `app/rest/__init__.py` (`MODULES`).

- `RestRoute` is a Starlette `Route` whose endpoint answers every `ServiceError` (`app.errors`)
  as LangGraph Server does: `{"detail": message}` with the status of `http_status(code)`
  (NOT_FOUND 404, CONFLICT 409, BAD_USER_INPUT 422, UNAUTHENTICATED 401, FORBIDDEN 403,
  SERVICE_UNAVAILABLE 503 + `Retry-After`), and Postgres or Redis faults as 503 too
  (`app.errors.unavailable`); anything else is a logged 500 that shows nothing of itself.
  Raise `HTTPError(status, detail)` for a status a service error does not carry (400, 413...).
- Auth needs nothing from a route: `app.auth.middleware` authenticates every request and sets
  its user (`acting_as`) around the whole response, so every service call in the route (and in a
  streamed body) runs the `langgraph.json` handlers for the same `(resource, action)` pairs as
  GraphQL. `current_user(request)` gives the user when a route must see it.
- langgraph.json's `http.disable_assistants|threads|runs|store|event_streaming` turn routes off
  (404) by their path (`off_switches`), as LangGraph Server groups them.
- A streaming route (SSE) returns its `StreamingResponse` from the endpoint: errors raised
  before it is returned are answered as above; once streaming, the route reports its own.
- Answers go out through `json_response` (orjson, as GraphQL and the stores encode: datetimes as
  ISO 8601, UUIDs as strings; integers orjson cannot write fall back to the standard encoder).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import date, datetime
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from app.auth.handlers import User
from app.auth.middleware import USER_SCOPE_KEY
from app.errors import RETRY_AFTER_SECONDS, ServiceError, http_status, unavailable
from app.pagination import Page, PageRequest
from app.services.container import Services
from app.storable import NUL_MESSAGE, nul_at

log = logging.getLogger("lgql.rest")

JSON_MEDIA_TYPE = "application/json"

Endpoint = Callable[[Request], Awaitable[Response]]

M = TypeVar("M", bound=BaseModel)


class HTTPError(Exception):
    """An answer other than success that no service error names (a body too large, a request
    LangGraph Server answers 400)."""

    def __init__(self, status: int, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})


class Body(BaseModel):
    """Base of the request bodies: unknown fields are ignored (newer SDKs send fields this
    server may not know; LangGraph Server's schemas allow them too)."""

    model_config = ConfigDict(extra="ignore")


def services(request: Request) -> Services:
    """The process's services (opened by the app's lifespan)."""
    found: Services = request.app.state.services
    return found


def current_user(request: Request) -> User | None:
    """The authenticated user of this request; None without auth or on a public path."""
    user: User | None = request.scope.get(USER_SCOPE_KEY)
    return user


def dumps(data: Any) -> bytes:
    try:
        return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        # Integers past 64 bits (a graph's own values) go out as JSON still.
        return json.dumps(data, separators=(",", ":"), default=_plain).encode()


def _plain(value: Any) -> Any:
    """What orjson writes for the values the standard encoder does not know."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(dumps(data), status_code=status, headers=headers, media_type=JSON_MEDIA_TYPE)


def no_content(headers: Mapping[str, str] | None = None) -> Response:
    return Response(status_code=204, headers=headers)


def error_response(status: int, detail: str, headers: Mapping[str, str] | None = None) -> Response:
    return json_response({"detail": detail}, status, headers)


def service_error_response(exc: ServiceError) -> Response:
    status = http_status(exc.code)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return error_response(status, exc.message, headers)


INVALID_JSON = "Invalid JSON in request body"


async def read_json(request: Request) -> Any:
    """The body as JSON (None when empty). 413 past `LGQL_MAX_BODY_BYTES`, 422 when not JSON."""
    limit = services(request).settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPError(413, f"Request body too large (limit: {limit} bytes)")
    chunks = bytearray()
    async for chunk in request.stream():
        chunks.extend(chunk)
        if len(chunks) > limit:
            raise HTTPError(413, f"Request body too large (limit: {limit} bytes)")
    if not chunks.strip():
        return None
    try:
        decoded = orjson.loads(chunks)
    except orjson.JSONDecodeError:
        raise HTTPError(422, INVALID_JSON) from None
    where = nul_at(decoded)
    if where is not None:
        raise HTTPError(422, f"{NUL_MESSAGE} (at `{where or 'the body'}`)")
    return decoded


def validation_detail(exc: ValidationError) -> str:
    """Pydantic's errors in one line each: where, then what."""
    parts = []
    for error in exc.errors(include_url=False, include_context=False):
        where = ".".join(str(p) for p in error["loc"])
        parts.append(f"{where}: {error['msg']}" if where else str(error["msg"]))
    return "; ".join(parts)


def parse(model: type[M], data: Any) -> M:
    """`data` as `model`, or 422 `{"detail": ...}` saying what does not fit."""
    try:
        return model.model_validate({} if data is None else data)
    except ValidationError as exc:
        raise HTTPError(422, validation_detail(exc)) from None


async def body(request: Request, model: type[M]) -> M:
    """The request body, read (see `read_json`) and validated as `model`."""
    return parse(model, await read_json(request))


def query_bool(request: Request, name: str, default: bool = False) -> bool:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise HTTPError(422, f"Query parameter `{name}` must be true or false")


def query_int(request: Request, name: str, default: int | None = None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise HTTPError(422, f"Query parameter `{name}` must be an integer") from None


def answering_errors(endpoint: Endpoint) -> Endpoint:
    """`endpoint`, with every error it raises answered as LangGraph Server answers it."""

    async def guarded(request: Request) -> Response:
        try:
            for name, value in request.query_params.multi_items():
                if "\x00" in value or "\x00" in name:
                    raise HTTPError(422, f"{NUL_MESSAGE} (query parameter `{name}`)")
            return await endpoint(request)
        except HTTPError as exc:
            return error_response(exc.status, exc.detail, exc.headers)
        except ServiceError as exc:
            return service_error_response(exc)
        except Exception as exc:
            fault = unavailable(exc)
            if fault is not None:
                log.warning("%s %s: %r", request.method, request.url.path, exc)
                return service_error_response(fault)
            log.exception("unexpected error in %s %s", request.method, request.url.path)
            return error_response(500, "Internal server error")

    guarded.__name__ = getattr(endpoint, "__name__", "endpoint")
    guarded.__doc__ = endpoint.__doc__
    return guarded


def off_switches(path: str) -> tuple[str, ...]:
    """The langgraph.json `http.disable_*` switches that turn a route off, as LangGraph Server
    groups its routes: runs and crons under `disable_runs`; Protocol v2 event streaming under
    `disable_runs` (it starts runs) and `disable_event_streaming`; the rest by resource."""
    if path.startswith(("/runs", "/threads/{thread_id}/runs")):
        return ("disable_runs",)
    if path.endswith(("/stream/events", "/commands")):
        return ("disable_runs", "disable_event_streaming")
    for group in ("assistants", "threads", "store"):
        if path.startswith(f"/{group}"):
            return (f"disable_{group}",)
    return ()


class RestRoute(Route):
    """A Starlette route whose endpoint's errors are answered as LangGraph Server answers them,
    and which answers 404 while langgraph.json's `http.disable_*` turns its group off."""

    def __init__(self, path: str, endpoint: Endpoint, *, methods: list[str]) -> None:
        super().__init__(path, answering_errors(endpoint), methods=methods)
        self.off_switches = off_switches(path)

    def _switched_off(self, scope: Scope) -> bool:
        services: Services | None = getattr(scope["app"].state, "services", None)
        http = (services.langgraph_config.http if services else None) or {}
        return any(http.get(switch) for switch in self.off_switches)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.off_switches and self._switched_off(scope):
            await error_response(404, "Not Found")(scope, receive, send)
        elif self.methods and scope["method"] not in self.methods:
            # Starlette's own answer is plain text; LangGraph's clients read `detail`.
            allow = {"Allow": ", ".join(sorted(self.methods))}
            await error_response(405, "Method Not Allowed", allow)(scope, receive, send)
        else:
            await self.app(scope, receive, send)


# --- lists -------------------------------------------------------------------------------------


class PageBody(Body):
    """`limit` and `offset` of a search body, as LangGraph's search requests carry them."""

    limit: int = 10
    offset: int = 0


def page_request(request: Request, limit: int, offset: int) -> PageRequest:
    """A page of `limit` rows after `offset`. 422 for a limit under 1 or a negative offset; a
    limit past `LGQL_MAX_PAGE_SIZE` is cut to it (the pagination headers say where to go on)."""
    if limit < 1:
        raise HTTPError(422, "`limit` must be at least 1")
    if offset < 0:
        raise HTTPError(422, "`offset` must not be negative")
    return PageRequest(first=min(limit, services(request).settings.max_page_size), offset=offset)


def pagination_headers(page: Page[Any], request: PageRequest) -> dict[str, str]:
    """LangGraph's `X-Pagination-Total` (at least this many, when more remain) and
    `X-Pagination-Next` (the next offset), which the SDKs read to page on."""
    if page.has_next_page:
        following = request.offset + len(page.items)
        return {"X-Pagination-Total": str(following + 1), "X-Pagination-Next": str(following)}
    return {"X-Pagination-Total": str(request.offset + len(page.items))}


def project(item: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    """Only the `select`ed fields of `item` (all of them without `select`)."""
    if not select:
        return item
    return {k: item[k] for k in select if k in item}

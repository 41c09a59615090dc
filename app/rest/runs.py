"""LangGraph Server's runs over REST: create (on a thread, stateless, in a batch), stream (SSE),
wait, get, list, delete, join, join stream, cancel (one, many), and the thread stream.

A thin adapter over `app.services.runs` and `app.services.run_streams`: the same checks,
double-texting, auth and webhooks as GraphQL's `createRun` / `runStream` / `runAndWait`, and the
same stored event stream (so a run started here can be joined by `joinRunStream`, and the other
way round). The bodies are `app.rest.run_bodies`'; waiting answers (`/wait`, `/join`,
`cancel?wait=true`) are `app.rest.run_results`'; SSE framing and the mapping of lgql's events are
`app.rest.sse`'s.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, AsyncIterator

import orjson
from starlette.requests import Request
from starlette.responses import Response

from app.errors import Conflict, NotFound
from app.rest.http import (
    HTTPError,
    RestRoute,
    body,
    json_response,
    page_request,
    project,
    query_bool,
    query_int,
    services,
)
from app.rest.run_bodies import (
    RUN_FIELDS,
    RunBatchCreate,
    RunCreate,
    RunCreateStateful,
    RunCreateStateless,
    RunsCancel,
    run_json,
    run_path,
    run_request,
    stateless_run_path,
)
from app.rest.run_results import cancel_quietly, wait_answer
from app.rest.sse import (
    THREAD_STREAM_MODES,
    EventSourceResponse,
    closing,
    last_event_id,
    run_frames,
    thread_frames,
)
from app.services.container import Services
from app.services.run_request import OnDisconnect, RunRequest, headers_for_configurable
from app.services.run_streams import StreamEvent, check_cursor
from app.services.runs import RunRecord

# --- create -------------------------------------------------------------------------------------


def _request(request: Request, data: RunCreate, thread_id: str | None) -> RunRequest:
    http_config = services(request).langgraph_config.http
    headers = headers_for_configurable(request.headers, http_config)
    return run_request(data, thread_id=thread_id, headers=headers)


def _thread_id(request: Request) -> str:
    return str(request.path_params["thread_id"])


async def create_run(request: Request) -> Response:
    data = await body(request, RunCreateStateful)
    run = await services(request).runs.create(_request(request, data, _thread_id(request)))
    return json_response(run_json(run), headers={"Content-Location": run_path(run)})


async def create_stateless_run(request: Request) -> Response:
    data = await body(request, RunCreateStateless)
    run = await services(request).runs.create(_request(request, data, None))
    return json_response(run_json(run), headers={"Content-Location": stateless_run_path(run)})


async def create_run_batch(request: Request) -> Response:
    data = await body(request, RunBatchCreate)
    runs = await services(request).runs.create_many(
        [_request(request, item, None) for item in data.root]
    )
    return json_response([run_json(r) for r in runs])


async def _stream(request: Request, data: RunCreate, thread_id: str | None) -> Response:
    svc = services(request)
    run, events = await svc.run_streams.stream_new_run(_request(request, data, thread_id))
    # A stateless run's stream is joined on its (temporary) thread, while it exists.
    path = run_path(run)
    return EventSourceResponse(
        run_frames(events),
        headers={"Location": f"{path}/stream", "Content-Location": path},
    )


async def stream_run(request: Request) -> Response:
    return await _stream(request, await body(request, RunCreateStateful), _thread_id(request))


async def stream_stateless_run(request: Request) -> Response:
    return await _stream(request, await body(request, RunCreateStateless), None)


async def _wait(request: Request, data: RunCreate, thread_id: str | None) -> Response:
    svc = services(request)
    run = await svc.runs.create(_request(request, data, thread_id), attached=True)
    return wait_answer(
        request,
        svc,
        run,
        stateless=thread_id is None,
        cancel_on_disconnect=data.on_disconnect is OnDisconnect.CANCEL,
    )


async def wait_run(request: Request) -> Response:
    return await _wait(request, await body(request, RunCreateStateful), _thread_id(request))


async def wait_stateless_run(request: Request) -> Response:
    return await _wait(request, await body(request, RunCreateStateless), None)


# --- read, delete -------------------------------------------------------------------------------


async def _run_of_thread(request: Request, *, action: str = "read") -> RunRecord:
    """The path's run, which must be of the path's thread. Raises NotFound."""
    run_id = str(request.path_params["run_id"])
    return await services(request).runs.get(run_id, action=action, thread_id=_thread_uuid(request))


def _thread_uuid(request: Request) -> uuid.UUID:
    try:
        return uuid.UUID(_thread_id(request))
    except ValueError:
        raise HTTPError(422, "Invalid thread ID: must be a UUID") from None


async def get_run(request: Request) -> Response:
    return json_response(run_json(await _run_of_thread(request)))


async def list_runs(request: Request) -> Response:
    svc = services(request)
    thread = await svc.threads.get(_thread_id(request))
    select = request.query_params.getlist("select") or None
    for name in select or ():
        if name not in RUN_FIELDS:
            raise HTTPError(422, f"Invalid select field: {name}")
    page = page_request(
        request, query_int(request, "limit", 10) or 10, query_int(request, "offset", 0) or 0
    )
    found = await svc.runs.search(
        page, thread_id=str(thread.thread_id), status=request.query_params.get("status") or None
    )
    return json_response([project(run_json(r), select) for r in found.items])


async def delete_run(request: Request) -> Response:
    run_id = str(request.path_params["run_id"])
    await services(request).runs.delete(run_id, thread_id=_thread_uuid(request))
    return Response(status_code=204)


# --- join ---------------------------------------------------------------------------------------


async def join_run(request: Request) -> Response:
    run = await _run_of_thread(request)
    return wait_answer(
        request,
        services(request),
        run,
        stateless=False,
        cancel_on_disconnect=query_bool(request, "cancel_on_disconnect"),
    )


def stream_modes_param(request: Request) -> list[str]:
    """`stream_mode` of a join: repeated, or one value, or a JSON list (as the JS SDK sends)."""
    modes: list[str] = []
    for raw in request.query_params.getlist("stream_mode"):
        if raw.startswith("["):
            try:
                parsed = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise HTTPError(422, "`stream_mode` is not a JSON list") from None
            if not isinstance(parsed, list) or not all(isinstance(m, str) for m in parsed):
                raise HTTPError(422, "`stream_mode` must list stream modes")
            modes += parsed
        elif raw:
            modes.append(raw)
    return modes


async def _cancelling_on_exit(
    svc: Services, run_id: uuid.UUID, frames: AsyncIterator[bytes]
) -> AsyncGenerator[bytes, None]:
    """`frames`; if the client leaves before their end, the run is cancelled."""
    finished = False
    try:
        async with closing(frames) as source:
            async for chunk in source:
                yield chunk
        finished = True
    finally:
        if not finished:
            task = asyncio.create_task(cancel_quietly(svc, run_id))
            task.add_done_callback(lambda _: None)


async def join_run_stream(request: Request) -> Response:
    run = await _run_of_thread(request)
    svc = services(request)
    cursor = check_cursor(last_event_id(request))
    events: AsyncIterator[StreamEvent] = svc.run_streams.follow_read_run(run, last_event_id=cursor)
    frames = run_frames(events, stream_mode=stream_modes_param(request))
    if query_bool(request, "cancel_on_disconnect"):
        frames = _cancelling_on_exit(svc, run.run_id, frames)
    path = run_path(run)
    return EventSourceResponse(
        frames, headers={"Location": f"{path}/stream", "Content-Location": path}
    )


async def join_thread_stream(request: Request) -> Response:
    svc = services(request)
    thread = await svc.threads.get(_thread_id(request))
    cursor = check_cursor(last_event_id(request))
    modes: list[str] = []
    # `stream_modes` is LangGraph Server's name; the Python SDK sends `stream_mode`.
    given = request.query_params.getlist("stream_modes") or request.query_params.getlist(
        "stream_mode"
    )
    for raw in given:
        modes += [m.strip() for m in raw.split(",") if m.strip()]
    for mode in modes:
        if mode not in THREAD_STREAM_MODES:
            raise HTTPError(422, f"Invalid stream mode: {mode}")
    events = svc.run_streams.follow_read_thread(thread, last_event_id=cursor)
    return EventSourceResponse(thread_frames(events, stream_modes=modes or ["run_modes"]))


# --- cancel -------------------------------------------------------------------------------------

_NOTHING_TO_CANCEL = (
    "No matching runs to cancel. Please verify the thread ID and run IDs are correct, and the "
    "runs haven't been deleted or completed."
)


def _action(request: Request) -> str:
    action = request.query_params.get("action") or "interrupt"
    if action not in ("interrupt", "rollback"):
        raise HTTPError(422, "`action` must be 'interrupt' or 'rollback'")
    return action


async def cancel_run(request: Request) -> Response:
    run_id = str(request.path_params["run_id"])
    svc = services(request)
    action = _action(request)
    try:
        run = await svc.runs.cancel(run_id, action, wait=False, thread_id=_thread_uuid(request))
    except Conflict as exc:
        # Already ended: LangGraph Server answers that there was nothing to cancel, 404.
        raise NotFound(exc.message, run_id=run_id) from None
    if not query_bool(request, "wait"):
        return Response(status_code=202)
    if run is None:
        # Rolled back before it started: gone, nothing to wait for.
        return Response(status_code=204)
    return wait_answer(request, svc, run, stateless=False, cancel_on_disconnect=False)


async def cancel_runs(request: Request) -> Response:
    """`POST /runs/cancel`: the runs named (`thread_id` + `run_ids`), or every run of a
    `status` (`pending`, `running`, `all` active; within `thread_id` when given, which
    LangGraph Server does not allow). 404 when nothing was cancelled."""
    data = await body(request, RunsCancel)
    action = _action(request)
    if data.status is not None and data.run_ids:
        raise HTTPError(422, "When providing a 'status', 'run_ids' must be omitted.")
    if data.status is None:
        if not data.thread_id or not data.run_ids:
            raise HTTPError(422, "Must provide either a status, or both 'thread_id' and 'run_ids'")
        try:
            uuid.UUID(data.thread_id)
        except ValueError:
            raise HTTPError(422, "Invalid thread ID: must be a UUID") from None
    cancelled = await services(request).runs.cancel_many(
        thread_id=data.thread_id, run_ids=data.run_ids, status=data.status, action=action
    )
    if not cancelled and data.status is None:
        raise NotFound(_NOTHING_TO_CANCEL)
    return Response(status_code=204)


ROUTES = [
    RestRoute("/runs/stream", stream_stateless_run, methods=["POST"]),
    RestRoute("/runs/wait", wait_stateless_run, methods=["POST"]),
    RestRoute("/runs/batch", create_run_batch, methods=["POST"]),
    RestRoute("/runs/cancel", cancel_runs, methods=["POST"]),
    RestRoute("/runs", create_stateless_run, methods=["POST"]),
    RestRoute("/threads/{thread_id}/stream", join_thread_stream, methods=["GET"]),
    RestRoute("/threads/{thread_id}/runs/stream", stream_run, methods=["POST"]),
    RestRoute("/threads/{thread_id}/runs/wait", wait_run, methods=["POST"]),
    RestRoute("/threads/{thread_id}/runs", create_run, methods=["POST"]),
    RestRoute("/threads/{thread_id}/runs", list_runs, methods=["GET"]),
    RestRoute("/threads/{thread_id}/runs/{run_id}/join", join_run, methods=["GET"]),
    RestRoute("/threads/{thread_id}/runs/{run_id}/stream", join_run_stream, methods=["GET"]),
    RestRoute("/threads/{thread_id}/runs/{run_id}/cancel", cancel_run, methods=["POST"]),
    RestRoute("/threads/{thread_id}/runs/{run_id}", get_run, methods=["GET"]),
    RestRoute("/threads/{thread_id}/runs/{run_id}", delete_run, methods=["DELETE"]),
]

__all__ = ["ROUTES"]

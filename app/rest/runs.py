"""LangGraph Server's runs over REST: create (on a thread, stateless, in a batch), stream (SSE),
wait, get, list, delete, join, join stream, cancel (one, many), and the thread stream.

A thin adapter over `app.services.runs` and `app.services.run_streams`: the same checks,
double-texting, auth and webhooks as GraphQL's `createRun` / `runStream` / `runAndWait`, and the
same stored event stream (so a run started here can be joined by `joinRunStream`, and the other
way round). Waiting answers (`/wait`, `/join`, `cancel?wait=true`) are kept alive with newlines
(`app.keep_alive`) and carry LangGraph's result body: the run's last values (with
`__interrupt__` when it stopped on interrupts), or `{"__error__": {error, message}}`, status 200.
SSE framing and the mapping of lgql's events are `app.rest.sse`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, Literal

import orjson
from pydantic import RootModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.errors import Conflict, NotFound
from app.keep_alive import answer_with_keep_alive
from app.pagination import PageRequest
from app.rest.http import (
    JSON_MEDIA_TYPE,
    Body,
    HTTPError,
    RestRoute,
    answering_errors,
    body,
    json_response,
    page_request,
    project,
    query_bool,
    query_int,
    services,
)
from app.rest.sse import (
    THREAD_STREAM_MODES,
    EventSourceResponse,
    closing,
    last_event_id,
    run_frames,
    thread_frames,
    wait_for_disconnect,
)
from app.services.container import Services
from app.services.run_outcome import RunOutcome
from app.services.run_request import (
    Durability,
    IfNotExists,
    MultitaskStrategy,
    OnCompletion,
    OnDisconnect,
    RunCommand,
    RunRequest,
    public_kwargs,
)
from app.services.run_streams import StreamEvent, check_cursor
from app.services.runs import RunRecord

log = logging.getLogger("lgql.rest.runs")

# --- bodies (the reference's RunCreateStateful / RunCreateStateless / RunsCancel) ---------------


class CommandBody(Body):
    update: Any = None
    resume: Any = None
    goto: Any = None


class CheckpointBody(Body):
    thread_id: str | None = None
    checkpoint_ns: str | None = None
    checkpoint_id: str | None = None
    checkpoint_map: dict[str, Any] | None = None


class RunCreate(Body):
    """What both kinds of run-create body hold. `stream_mode` values are checked by the service
    (one list of modes); `feedback_keys`, `langsmith_tracer` and `strict_resume` are accepted
    and have no effect (no LangSmith)."""

    assistant_id: str
    input: Any = None
    command: CommandBody | None = None
    metadata: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    webhook: str | None = None
    interrupt_before: Literal["*"] | list[str] | None = None
    interrupt_after: Literal["*"] | list[str] | None = None
    stream_mode: list[str] | str = ["values"]
    stream_subgraphs: bool = False
    stream_resumable: bool = False
    feedback_keys: list[str] | None = None
    after_seconds: float | None = None
    checkpoint_during: bool | None = None
    durability: Durability | None = None
    on_disconnect: OnDisconnect = OnDisconnect.CONTINUE


class RunCreateStateful(RunCreate):
    checkpoint: CheckpointBody | None = None
    checkpoint_id: str | None = None
    multitask_strategy: MultitaskStrategy = MultitaskStrategy.ENQUEUE
    if_not_exists: IfNotExists = IfNotExists.REJECT


class RunCreateStateless(RunCreate):
    on_completion: OnCompletion = OnCompletion.DELETE


class RunBatchCreate(RootModel[list[RunCreateStateless]]):
    pass


class RunsCancel(Body):
    status: Literal["pending", "running", "all"] | None = None
    thread_id: str | None = None
    run_ids: list[str] | None = None


def _nodes(value: Literal["*"] | list[str] | None) -> list[str] | None:
    return ["*"] if value == "*" else value


def run_request(data: RunCreate, *, thread_id: str | None) -> RunRequest:
    """The service's request for a body (`thread_id` None: stateless)."""
    command = None
    if data.command is not None:
        command = RunCommand(
            resume=data.command.resume,
            update=data.command.update,
            goto=data.command.goto,
            has_resume="resume" in data.command.model_fields_set,
        )
    durability = data.durability
    if durability is None:
        # LangGraph's mapping of the deprecated flag: false keeps only the last checkpoint.
        durability = Durability.EXIT if data.checkpoint_during is False else Durability.ASYNC
    request = RunRequest(
        assistant_id=data.assistant_id,
        thread_id=thread_id,
        input=data.input,
        command=command,
        config=data.config,
        context=data.context,
        metadata=data.metadata,
        stream_mode=[data.stream_mode] if isinstance(data.stream_mode, str) else data.stream_mode,
        stream_subgraphs=data.stream_subgraphs,
        stream_resumable=data.stream_resumable,
        interrupt_before=_nodes(data.interrupt_before),
        interrupt_after=_nodes(data.interrupt_after),
        webhook=data.webhook,
        on_disconnect=data.on_disconnect,
        after_seconds=data.after_seconds or 0,
        durability=durability,
    )
    if isinstance(data, RunCreateStateful):
        request.checkpoint_id = data.checkpoint_id or (
            data.checkpoint.checkpoint_id if data.checkpoint is not None else None
        )
        request.multitask_strategy = data.multitask_strategy
        request.if_not_exists = data.if_not_exists
    elif isinstance(data, RunCreateStateless):
        request.on_completion = data.on_completion
    return request


# --- answers ------------------------------------------------------------------------------------

RUN_FIELDS = (
    "run_id",
    "thread_id",
    "assistant_id",
    "created_at",
    "updated_at",
    "status",
    "metadata",
    "kwargs",
    "multitask_strategy",
)


def run_json(run: RunRecord) -> dict[str, Any]:
    """A run as LangGraph Server's `Run`."""
    return {
        "run_id": str(run.run_id),
        "thread_id": str(run.thread_id),
        "assistant_id": str(run.assistant_id),
        "created_at": run.created_at,
        "updated_at": run.updated_at,
        "status": run.status,
        "metadata": run.metadata_,
        "kwargs": public_kwargs(run.kwargs),
        "multitask_strategy": run.multitask_strategy,
    }


def _run_path(run: RunRecord) -> str:
    return f"/threads/{run.thread_id}/runs/{run.run_id}"


def _stateless_run_path(run: RunRecord) -> str:
    return f"/runs/{run.run_id}"


async def result_body(svc: Services, outcome: RunOutcome, *, stateless: bool) -> Any:
    """LangGraph's answer to a wait: `{"__error__": …}` for a failed run; the last values,
    with `__interrupt__` when the run stopped on interrupts; else the thread's values (`{}`
    for a stateless run, or when there are none)."""
    if outcome.error is not None:
        return {"__error__": outcome.error.to_json()}
    values = outcome.values
    if outcome.interrupts:
        return {**(values if isinstance(values, dict) else {}), "__interrupt__": outcome.interrupts}
    if values is not None:
        return values
    if not stateless:
        with contextlib.suppress(NotFound):
            thread = await svc.threads.get(outcome.run.thread_id)
            if thread.values:
                return thread.values
    return {}


class _WaitResponse(Response):
    """A run's result, which may take minutes: the answer of `produce` (its errors answered as
    every route's), kept alive with newlines while it is not ready, with `headers` either way.
    `on_disconnect`, when given, is called if the client leaves before the answer is sent."""

    def __init__(
        self,
        request: Request,
        produce: Callable[[], Awaitable[Any]],
        *,
        headers: dict[str, str],
        on_disconnect: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(headers=headers, media_type=JSON_MEDIA_TYPE)
        self._request = request
        self._produce = produce
        self._answer_headers = headers
        self._on_disconnect = on_disconnect

    async def _answer(self, _: Request) -> Response:
        return json_response(await self._produce(), headers=self._answer_headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = answering_errors(self._answer)(self._request)
        extra = [(k.lower().encode(), v.encode()) for k, v in self._answer_headers.items()]
        sending = asyncio.ensure_future(
            answer_with_keep_alive(
                answer, scope, receive, send, media_type=JSON_MEDIA_TYPE, headers=extra
            )
        )
        if self._on_disconnect is None:
            await sending
            return
        gone = asyncio.ensure_future(wait_for_disconnect(receive))
        try:
            await asyncio.wait({sending, gone}, return_when=asyncio.FIRST_COMPLETED)
            if gone.done() and not sending.done():
                await self._on_disconnect()
            await sending
        finally:
            gone.cancel()


async def _cancel_quietly(svc: Services, run_id: uuid.UUID) -> None:
    """Cancel a run whose client left (`on_disconnect: cancel`); it may have ended meanwhile."""
    try:
        await svc.runs.cancel(str(run_id), "interrupt", wait=False)
    except (Conflict, NotFound):
        pass
    except Exception:
        log.warning("could not cancel run %s after its client left", run_id, exc_info=True)


def _wait_answer(
    request: Request,
    svc: Services,
    run: RunRecord,
    *,
    stateless: bool,
    cancel_on_disconnect: bool,
    wait: Callable[[], Awaitable[RunOutcome]] | None = None,
) -> Response:
    async def produce() -> Any:
        outcome = await (wait() if wait is not None else svc.runs.wait(run))
        return await result_body(svc, outcome, stateless=stateless)

    async def cancel() -> None:
        await _cancel_quietly(svc, run.run_id)

    path = _run_path(run)
    return _WaitResponse(
        request,
        produce,
        headers={"Location": f"{path}/join", "Content-Location": path},
        on_disconnect=cancel if cancel_on_disconnect else None,
    )


# --- create -------------------------------------------------------------------------------------


def _thread_id(request: Request) -> str:
    return str(request.path_params["thread_id"])


async def create_run(request: Request) -> Response:
    data = await body(request, RunCreateStateful)
    run = await services(request).runs.create(run_request(data, thread_id=_thread_id(request)))
    return json_response(run_json(run), headers={"Content-Location": _run_path(run)})


async def create_stateless_run(request: Request) -> Response:
    data = await body(request, RunCreateStateless)
    run = await services(request).runs.create(run_request(data, thread_id=None))
    return json_response(run_json(run), headers={"Content-Location": _stateless_run_path(run)})


async def create_run_batch(request: Request) -> Response:
    data = await body(request, RunBatchCreate)
    runs = await services(request).runs.create_many(
        [run_request(item, thread_id=None) for item in data.root]
    )
    return json_response([run_json(r) for r in runs])


async def _stream(request: Request, data: RunCreate, thread_id: str | None) -> Response:
    svc = services(request)
    run, events = await svc.run_streams.stream_new_run(run_request(data, thread_id=thread_id))
    # A stateless run's stream is joined on its (temporary) thread, while it exists.
    path = _run_path(run)
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
    run = await svc.runs.create(run_request(data, thread_id=thread_id))
    return _wait_answer(
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
    thread_id = _thread_id(request)
    run_id = str(request.path_params["run_id"])
    svc = services(request)
    try:
        tid = uuid.UUID(thread_id)
    except ValueError:
        raise HTTPError(422, "Invalid thread ID: must be a UUID") from None
    run = await svc.runs.get(run_id, action=action)
    if run.thread_id != tid:
        raise NotFound(f"Run {run.run_id} not found", run_id=str(run.run_id))
    return run


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
    run = await _run_of_thread(request, action="delete")
    await services(request).runs.delete(str(run.run_id))
    return Response(status_code=204)


# --- join ---------------------------------------------------------------------------------------


async def join_run(request: Request) -> Response:
    run = await _run_of_thread(request)
    return _wait_answer(
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
            task = asyncio.create_task(_cancel_quietly(svc, run_id))
            task.add_done_callback(lambda _: None)


async def join_run_stream(request: Request) -> Response:
    run = await _run_of_thread(request)
    svc = services(request)
    cursor = check_cursor(last_event_id(request))
    events: AsyncIterator[StreamEvent] = svc.run_streams.follow_run(
        str(run.run_id), last_event_id=cursor
    )
    frames = run_frames(events, stream_mode=stream_modes_param(request))
    if query_bool(request, "cancel_on_disconnect"):
        frames = _cancelling_on_exit(svc, run.run_id, frames)
    path = _run_path(run)
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
    events = svc.run_streams.follow_thread(str(thread.thread_id), last_event_id=cursor)
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
    run = await _run_of_thread(request, action="update")
    svc = services(request)
    action = _action(request)
    try:
        await svc.runs.cancel(str(run.run_id), action, wait=False)
    except Conflict as exc:
        # Already ended: LangGraph Server answers that there was nothing to cancel, 404.
        raise NotFound(exc.message, run_id=str(run.run_id)) from None
    if not query_bool(request, "wait"):
        return Response(status_code=202)
    return _wait_answer(request, svc, run, stateless=False, cancel_on_disconnect=False)


async def cancel_runs(request: Request) -> Response:
    """`POST /runs/cancel`: the runs named (`thread_id` + `run_ids`), or every run of a
    `status` (`pending`, `running`, `all` active; within `thread_id` when given, which
    LangGraph Server does not allow). 404 when nothing was cancelled."""
    data = await body(request, RunsCancel)
    action = _action(request)
    svc = services(request)
    if data.status is not None:
        if data.run_ids:
            raise HTTPError(422, "When providing a 'status', 'run_ids' must be omitted.")
        statuses = ("pending", "running") if data.status == "all" else (data.status,)
        run_ids: list[uuid.UUID] = [
            run.run_id
            for status in statuses
            for run in await _all_runs(svc, thread_id=data.thread_id, status=status)
        ]
    else:
        if not data.thread_id or not data.run_ids:
            raise HTTPError(422, "Must provide either a status, or both 'thread_id' and 'run_ids'")
        try:
            tid = uuid.UUID(data.thread_id)
        except ValueError:
            raise HTTPError(422, "Invalid thread ID: must be a UUID") from None
        run_ids = []
        for rid_text in data.run_ids:
            try:
                run = await svc.runs.get(rid_text, action="update")
            except NotFound:
                continue
            if run.thread_id == tid:
                run_ids.append(run.run_id)
    cancelled = 0
    for rid in run_ids:
        try:
            await svc.runs.cancel(str(rid), action, wait=False)
            cancelled += 1
        except (Conflict, NotFound):
            continue  # ended (or went) meanwhile
    if cancelled == 0 and data.status is None:
        raise NotFound(_NOTHING_TO_CANCEL)
    return Response(status_code=204)


async def _all_runs(svc: Services, *, thread_id: str | None, status: str) -> list[RunRecord]:
    """Every run the user may see with `status` (in `thread_id` when given)."""
    found: list[RunRecord] = []
    after: str | None = None
    while True:
        page_req = PageRequest(first=svc.settings.max_page_size, after=after)
        page = await svc.runs.search(page_req, thread_id=thread_id, status=status)
        found += page.items
        if not page.has_next_page or not page.cursors:
            return found
        after = page.cursors[-1]


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

__all__ = ["ROUTES", "result_body", "run_json", "run_request"]

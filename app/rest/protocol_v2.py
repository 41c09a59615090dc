"""LangGraph's Protocol v2 event streaming (`langgraph_sdk`'s `client.threads.stream(...)`, the JS
SDK's `client.threads.stream(...)` and the newer `useStream`), over the same services as the rest:

- `POST /threads/{id}/stream/events` (SSE): body `{channels, namespaces?, depth?, since?}`; every
  run of the thread, from the start of what the thread's stream holds, then live, as protocol
  events (`app.rest.protocol_v2_events`), filtered by the body; frames are `event: <method>`,
  `data: <event>`, `id: <seq>`. `since` (or a `Last-Event-ID` header holding a `seq`) skips what
  the client had. The stream stays open (runs started later come on it) until the client leaves.
- `POST /threads/{id}/commands`: `{id, method, params}` → `{type: "success", id, result, meta}`
  or `{type: "error", id, error, message}` (200 both; 400 for an envelope that is not one).
  Methods: `run.start`, `input.respond`, `agent.getTree`, `state.get`, `state.listCheckpoints`,
  `state.fork`, and lgql's own `run.cancel` (`{run_id?, action?}`) and `state.update`
  (`{values, as_node?, checkpoint_id?}`): the protocol has neither.
- WebSocket at the stream's path: `app.rest.protocol_v2_ws`.

A run started here is an ordinary run (`RunService.create`, all its rules, auth and
double-texting), streaming every mode the channels are made from, with subgraphs; the events
come from the thread's stored stream (`RunStreamService.follow_thread`), so a run started over
GraphQL or the REST runs API is seen here too.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from app.errors import NotFound, ServiceError, unavailable
from app.pagination import PageRequest
from app.rest.http import (
    INVALID_JSON,
    HTTPError,
    RestRoute,
    json_response,
    read_json,
    services,
)
from app.rest.protocol_v2_events import (
    RUN_STREAM_MODES,
    Filter,
    FilterError,
    ProtocolEvents,
    Source,
    parse_filter,
    parse_since,
)
from app.rest.sse import EventSourceResponse, frame
from app.services.container import Services
from app.services.run_request import IfNotExists, MultitaskStrategy, RunCommand, RunRequest
from app.storable import NUL_MESSAGE, nul_at

log = logging.getLogger("lgql.rest.protocol_v2")

#: How long `input.respond` waits for a run that just stopped at an interrupt to record it.
INTERRUPT_SETTLE_SECONDS = 5.0

_ERROR_CODES = {
    "BAD_USER_INPUT": "invalid_argument",
    "NOT_FOUND": "invalid_argument",
    "CONFLICT": "invalid_argument",
    "FORBIDDEN": "permission_denied",
    "UNAUTHENTICATED": "permission_denied",
}


class ProtocolFailure(Exception):
    """A command that cannot be carried out: answered `{type: "error", error: code}`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def error(command_id: Any, code: str, message: str, seq: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "error",
        "id": command_id
        if isinstance(command_id, int) and not isinstance(command_id, bool)
        else None,
        "error": code,
        "message": message,
    }
    if seq is not None:
        out["meta"] = {"applied_through_seq": seq}
    return out


def success(command_id: int, result: dict[str, Any], seq: int) -> dict[str, Any]:
    return {
        "type": "success",
        "id": command_id,
        "result": result,
        "meta": {"applied_through_seq": seq},
    }


def stream_failure(exc: BaseException) -> dict[str, Any]:
    """The unsolicited error (`id: null`) a stream sends before it closes on a failure."""
    fault = unavailable(exc)
    if fault is not None:
        exc = fault
    if isinstance(exc, ServiceError):
        return error(None, _ERROR_CODES.get(exc.code, "unknown_error"), exc.message)
    return error(None, "unknown_error", "An internal error occurred")


def check_envelope(payload: Any) -> str | None:
    """Why `payload` is not a command envelope (None when it is one)."""
    if not isinstance(payload, dict):
        return "A protocol command must be a JSON object with an integer `id` and a `method`."
    command_id = payload.get("id")
    if not isinstance(command_id, int) or isinstance(command_id, bool) or command_id < 0:
        return "A protocol command must include a non-negative integer `id`."
    if not isinstance(payload.get("method"), str):
        return "A protocol command must include a string `method`."
    if (
        "params" in payload
        and payload["params"] is not None
        and not isinstance(payload["params"], dict)
    ):
        return "`params` must be a JSON object."
    where = nul_at(payload.get("params"), "params")
    if where is not None:
        return f"{NUL_MESSAGE} (at `{where}`)."
    return None


# --- the events of a thread ------------------------------------------------------------------


class GraphNames:
    """The graph each run runs (the root's `graph_name`), looked up once per run."""

    def __init__(self, svc: Services) -> None:
        self._svc = svc
        self._names: dict[str, str] = {}

    async def of(self, run_id: str) -> str:
        if run_id not in self._names:
            name = "root"
            try:
                run = await self._svc.runs.get(run_id)
                assistant = await self._svc.assistants.get(run.assistant_id)
                name = assistant.graph_id
            except Exception:
                log.debug("no graph name for run %s", run_id, exc_info=True)
            self._names[run_id] = name
        return self._names[run_id]


async def protocol_events(
    svc: Services, thread_id: str, converter: ProtocolEvents
) -> AsyncIterator[dict[str, Any]]:
    """Every protocol event of the thread's runs (`converter` numbers them), from the start of
    the thread's stream, live; a loss of stored events (lgql's `gap`) is an unsolicited error
    (`id: null`) and the stream goes on. Ends when the thread is deleted."""
    names = GraphNames(svc)
    events = svc.run_streams.follow_thread(thread_id)
    try:
        async for event in events:
            if event.event == "gap":
                yield error(None, "unknown_error", "Events of this thread were lost in Redis")
                continue
            graph_name = await names.of(event.run_id) if event.event == "metadata" else None
            source = Source(event.id, event.run_id, event.event, event.data)
            try:
                made = converter.convert(source, graph_name=graph_name)
            except Exception:
                # A payload the conversion cannot read (a graph's own odd values): that event
                # is skipped, the stream goes on (the same on every connection: numbers agree).
                log.warning(
                    "could not convert event %s of thread %s", event.id, thread_id, exc_info=True
                )
                continue
            for item in made:
                yield item
    finally:
        await events.aclose()  # type: ignore[attr-defined]


# --- commands ----------------------------------------------------------------------------------


def _params(command: dict[str, Any]) -> dict[str, Any]:
    params = command.get("params")
    return params if isinstance(params, dict) else {}


def _optional_object(params: dict[str, Any], name: str) -> dict[str, Any] | None:
    value = params.get(name)
    if value is not None and not isinstance(value, dict):
        raise ProtocolFailure("invalid_argument", f"`{name}` must be a JSON object")
    return value


def _strategy(params: dict[str, Any]) -> MultitaskStrategy:
    raw = params.get("multitask_strategy", params.get("multitaskStrategy"))
    if raw is None:
        return MultitaskStrategy.ENQUEUE
    try:
        return MultitaskStrategy(raw)
    except ValueError:
        allowed = ", ".join(s.value for s in MultitaskStrategy)
        raise ProtocolFailure(
            "invalid_argument", f"`multitaskStrategy` must be one of {allowed}"
        ) from None


def _namespace(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise ProtocolFailure("invalid_argument", f"`{where}` must be an array of strings")
    return value


def _interrupt_ids(thread: Any) -> set[str]:
    found: set[str] = set()
    for items in (thread.interrupts or {}).values():
        for item in items if isinstance(items, list) else ():
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                found.add(item["id"])
    return found


class Commands:
    """The commands of one thread, for one HTTP request or one WebSocket (which passes the
    events it has seen: `converter`, for `agent.getTree` and `applied_through_seq`)."""

    def __init__(
        self,
        svc: Services,
        thread_id: str,
        converter: ProtocolEvents | None = None,
        *,
        on_run_created: Callable[[], None] | None = None,
    ) -> None:
        self.svc = svc
        self.thread_id = thread_id
        self.converter = converter
        self._on_run_created = on_run_created

    @property
    def seq(self) -> int:
        return 0 if self.converter is None else self.converter.seq

    async def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        """The answer to a well-formed envelope (see `check_envelope`)."""
        command_id: int = command["id"]
        method: str = command["method"]
        handler = _METHODS.get(method)
        if handler is None:
            return error(command_id, "unknown_command", f"Unknown protocol command: {method}")
        try:
            result = await handler(self, _params(command))
        except ProtocolFailure as exc:
            return error(command_id, exc.code, exc.message, self.seq)
        except ServiceError as exc:
            code = _ERROR_CODES.get(exc.code, "unknown_error")
            return error(command_id, code, exc.message, self.seq)
        except Exception as exc:
            fault = unavailable(exc)
            if fault is None:
                log.exception("protocol command %s failed", method)
                return error(command_id, "unknown_error", "An internal error occurred", self.seq)
            return error(command_id, "unknown_error", fault.message, self.seq)
        return success(command_id, result, self.seq)

    def _run_request(self, assistant_id: str, params: dict[str, Any]) -> RunRequest:
        config = _optional_object(params, "config")
        checkpoint_id = None
        if config is not None and isinstance(config.get("configurable"), dict):
            configurable = dict(config["configurable"])
            checkpoint_id = configurable.pop("checkpoint_id", None)
            if checkpoint_id is not None and not isinstance(checkpoint_id, str):
                raise ProtocolFailure(
                    "invalid_argument", "`config.configurable.checkpoint_id` must be a string"
                )
            config = {**config, "configurable": configurable}
            if not configurable:
                del config["configurable"]
        return RunRequest(
            assistant_id=assistant_id,
            thread_id=self.thread_id,
            config=config,
            context=_optional_object(params, "context"),
            metadata=_optional_object(params, "metadata"),
            stream_mode=list(RUN_STREAM_MODES),
            stream_subgraphs=True,
            stream_resumable=True,
            checkpoint_id=checkpoint_id,
            multitask_strategy=_strategy(params),
            if_not_exists=IfNotExists.CREATE,
        )

    async def _created(self, request: RunRequest) -> dict[str, Any]:
        # A thread stream's client follows the runs it starts.
        run = await self.svc.runs.create(request, attached=True)
        if self._on_run_created is not None:
            self._on_run_created()
        return {"run_id": str(run.run_id)}

    async def run_start(self, params: dict[str, Any]) -> dict[str, Any]:
        assistant_id = params.get("assistant_id")
        if not isinstance(assistant_id, str) or not assistant_id:
            raise ProtocolFailure("invalid_argument", "run.start requires an `assistant_id`")
        request = self._run_request(assistant_id, params)
        value = params.get("input")
        if value is not None and await self._waiting_for_input():
            # LangGraph Server's rule: input for a thread stopped at an interrupt resumes it.
            request.command = RunCommand(resume=value, has_resume=True)
        else:
            request.input = value
        return await self._created(request)

    async def _waiting_for_input(self) -> bool:
        try:
            thread = await self.svc.threads.get(self.thread_id)
        except NotFound:
            return False
        return thread.status == "interrupted" and bool(_interrupt_ids(thread))

    async def input_respond(self, params: dict[str, Any]) -> dict[str, Any]:
        entries: list[tuple[str, Any]] = []
        responses = params.get("responses")
        if responses is not None:
            if not isinstance(responses, list) or not responses:
                raise ProtocolFailure("invalid_argument", "`responses` must be a non-empty array")
            for item in responses:
                if not isinstance(item, dict) or not isinstance(item.get("interrupt_id"), str):
                    raise ProtocolFailure(
                        "invalid_argument", "each of `responses` needs an `interrupt_id`"
                    )
                _namespace(item.get("namespace"), "responses[].namespace")
                entries.append((item["interrupt_id"], item.get("response")))
        else:
            interrupt_id = params.get("interrupt_id")
            if not isinstance(interrupt_id, str) or not interrupt_id:
                raise ProtocolFailure(
                    "invalid_argument", "input.respond requires an `interrupt_id`"
                )
            _namespace(params.get("namespace"), "namespace")
            entries.append((interrupt_id, params.get("response")))
        try:
            thread = await self.svc.threads.get(self.thread_id)
        except NotFound:
            raise ProtocolFailure(
                "no_such_run", f"Thread {self.thread_id} not found: nothing to respond to"
            ) from None
        pending = await self._settled_interrupts(thread)
        for interrupt_id, _ in entries:
            if interrupt_id not in pending:
                raise ProtocolFailure(
                    "no_such_interrupt", f"Unknown or already answered interrupt: {interrupt_id}"
                )
        latest = await self.svc.runs.search(PageRequest(first=1), thread_id=self.thread_id)
        if not latest.items:
            raise ProtocolFailure("no_such_run", "No interrupted run on this thread")
        request = self._run_request(str(latest.items[0].assistant_id), params)
        request.command = RunCommand(
            resume={interrupt_id: response for interrupt_id, response in entries},
            update=params.get("update"),
            goto=params.get("goto"),
            has_resume=True,
        )
        await self._created(request)
        return {}

    async def _settled_interrupts(self, thread: Any) -> set[str]:
        """The thread's pending interrupts; while a run is still recording the one a client
        just saw (its `input.requested` comes before the run's end is written), a little wait."""
        ids = _interrupt_ids(thread)
        deadline = asyncio.get_running_loop().time() + INTERRUPT_SETTLE_SECONDS
        while not ids and thread.status == "busy":
            if asyncio.get_running_loop().time() >= deadline:
                break
            await asyncio.sleep(0.1)
            thread = await self.svc.threads.get(self.thread_id)
            ids = _interrupt_ids(thread)
        return ids

    async def run_cancel(self, params: dict[str, Any]) -> dict[str, Any]:
        action = params.get("action", "interrupt")
        if action not in ("interrupt", "rollback"):
            raise ProtocolFailure("invalid_argument", "`action` must be interrupt or rollback")
        run_id = params.get("run_id")
        if run_id is not None:
            if not isinstance(run_id, str):
                raise ProtocolFailure("invalid_argument", "`run_id` must be a string")
            try:
                run = await self.svc.runs.get(run_id)
            except NotFound:
                raise ProtocolFailure("no_such_run", f"Run {run_id} not found") from None
            if str(run.thread_id) != self.thread_id:
                raise ProtocolFailure("no_such_run", f"Run {run_id} is not on this thread")
            run_ids = [run_id]
        else:
            # One look at the thread's runs (newest first: active runs are its latest), not one
            # per status: a run going from pending to running between two looks is in neither.
            page = await self.svc.runs.search(PageRequest(first=100), thread_id=self.thread_id)
            run_ids = [str(r.run_id) for r in page.items if r.status in ("pending", "running")]
            if not run_ids:
                raise ProtocolFailure("no_such_run", "No active run on this thread")
        for rid in run_ids:
            await self.svc.runs.cancel(rid, action, wait=False)
        return {"run_ids": run_ids}

    async def agent_get_tree(self, params: dict[str, Any]) -> dict[str, Any]:
        if self.converter is not None and self.converter.current_run is not None:
            return {"tree": self.converter.tree()}
        try:
            latest = await self.svc.runs.search(PageRequest(first=1), thread_id=self.thread_id)
        except NotFound:
            latest = None
        if latest is None or not latest.items:
            raise ProtocolFailure("no_such_run", "No run on this thread yet")
        run = latest.items[0]
        status = {
            "pending": "started",
            "running": "running",
            "success": "completed",
            "interrupted": "interrupted",
        }.get(run.status, "failed")
        assistant = await self.svc.assistants.get(run.assistant_id)
        return {"tree": {"namespace": [], "status": status, "graph_name": assistant.graph_id}}

    async def state_get(self, params: dict[str, Any]) -> dict[str, Any]:
        namespace = _namespace(params.get("namespace"), "namespace")
        if namespace:
            raise ProtocolFailure("not_supported", "state.get reads the root graph's state only")
        keys = params.get("keys")
        if keys is not None and (
            not isinstance(keys, list) or not all(isinstance(k, str) for k in keys)
        ):
            raise ProtocolFailure("invalid_argument", "`keys` must be an array of strings")
        thread = await self.svc.threads.get(self.thread_id)
        state = await self.svc.threads.state(thread)
        values = state.get("values") or {}
        if keys is not None and isinstance(values, dict):
            values = {k: v for k, v in values.items() if k in keys}
        result: dict[str, Any] = {"values": values}
        checkpoint = state.get("checkpoint") or {}
        if checkpoint.get("checkpoint_id"):
            result["checkpoint"] = {"id": checkpoint["checkpoint_id"]}
        return result

    async def state_list_checkpoints(self, params: dict[str, Any]) -> dict[str, Any]:
        limit = params.get("limit", 10)
        before = params.get("before")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ProtocolFailure("invalid_argument", "`limit` must be a positive integer")
        if before is not None and not isinstance(before, str):
            raise ProtocolFailure("invalid_argument", "`before` must be a checkpoint id")
        thread = await self.svc.threads.get(self.thread_id)
        history = await self.svc.threads.history(thread, limit=limit, before=before)
        checkpoints = []
        for state in history:
            metadata = state.get("metadata") or {}
            summary: dict[str, Any] = {
                "id": (state.get("checkpoint") or {}).get("checkpoint_id"),
                "timestamp": state.get("created_at"),
                "step": metadata.get("step", 0),
                "metadata": metadata,
            }
            writes = metadata.get("writes")
            if isinstance(writes, dict) and len(writes) == 1:
                summary["node_name"] = next(iter(writes))
            checkpoints.append(summary)
        return {"checkpoints": checkpoints}

    async def state_fork(self, params: dict[str, Any]) -> dict[str, Any]:
        checkpoint_id = params.get("checkpoint_id")
        if not isinstance(checkpoint_id, str) or not checkpoint_id:
            raise ProtocolFailure("invalid_argument", "state.fork requires a `checkpoint_id`")
        latest = await self.svc.runs.search(PageRequest(first=1), thread_id=self.thread_id)
        if not latest.items:
            raise ProtocolFailure("no_such_run", "No run on this thread to fork from")
        request = self._run_request(str(latest.items[0].assistant_id), params)
        request.checkpoint_id = checkpoint_id
        request.input = params.get("input")
        result = await self._created(request)
        return {**result, "thread_id": self.thread_id}

    async def state_update(self, params: dict[str, Any]) -> dict[str, Any]:
        """lgql's `state.update` `{values, as_node?, checkpoint_id?}`: the thread's state
        written as if `as_node` had run (`POST /threads/{id}/state`), between runs."""
        if "values" not in params:
            raise ProtocolFailure("invalid_argument", "state.update requires `values`")
        as_node = params.get("as_node")
        checkpoint_id = params.get("checkpoint_id")
        for name, value in (("as_node", as_node), ("checkpoint_id", checkpoint_id)):
            if value is not None and not isinstance(value, str):
                raise ProtocolFailure("invalid_argument", f"`{name}` must be a string")
        written = await self.svc.threads.update_state(
            self.thread_id, values=params["values"], as_node=as_node, checkpoint_id=checkpoint_id
        )
        checkpoint = written.get("checkpoint") or {}
        return {"checkpoint": {"id": checkpoint.get("checkpoint_id")}}

    async def subscription(self, params: dict[str, Any]) -> dict[str, Any]:
        raise ProtocolFailure(
            "not_supported",
            "Subscriptions are made over the WebSocket at /threads/{thread_id}/stream/events; "
            "over HTTP, the body of POST /threads/{thread_id}/stream/events is the subscription",
        )


_METHODS = {
    "run.start": Commands.run_start,
    "input.respond": Commands.input_respond,
    "run.cancel": Commands.run_cancel,
    "agent.getTree": Commands.agent_get_tree,
    "state.get": Commands.state_get,
    "state.listCheckpoints": Commands.state_list_checkpoints,
    "state.fork": Commands.state_fork,
    "state.update": Commands.state_update,
    "subscription.subscribe": Commands.subscription,
    "subscription.unsubscribe": Commands.subscription,
    "subscription.reconnect": Commands.subscription,
}


def checked_thread_id(raw: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise HTTPError(422, f"Invalid thread id {raw!r}: must be a UUID") from None


# --- routes --------------------------------------------------------------------------------------


def _since(body: dict[str, Any], request: Request) -> int | None:
    since = parse_since(body.get("since"))
    header = request.headers.get("last-event-id")
    if since is None and header is not None and header.strip():
        if not header.strip().isdigit():
            raise FilterError("`Last-Event-ID` must be the `seq` of an event (an integer)")
        since = int(header.strip())
    return since


async def stream_events(request: Request) -> Response:
    svc = services(request)
    thread_id = checked_thread_id(request.path_params["thread_id"])
    body = await read_json(request)
    try:
        flt = parse_filter(body, what="The body")
        since = _since(body, request)
    except FilterError as exc:
        raise HTTPError(422, str(exc)) from None
    await svc.threads.get(thread_id)  # 404 (or the auth handlers' answer) before streaming
    return EventSourceResponse(_frames(svc, thread_id, flt, since))


async def _frames(
    svc: Services, thread_id: str, flt: Filter, since: int | None
) -> AsyncIterator[bytes]:
    converter = ProtocolEvents()
    try:
        async for event in protocol_events(svc, thread_id, converter):
            if event["type"] == "error":
                yield frame("error", event)
            elif (since is None or event["seq"] > since) and flt.matches(event):
                yield frame(event["method"], event, str(event["seq"]))
    except Exception as exc:
        if unavailable(exc) is None and not isinstance(exc, ServiceError):
            log.exception("protocol event stream of thread %s failed", thread_id)
        yield frame("error", stream_failure(exc))


async def commands(request: Request) -> Response:
    svc = services(request)
    thread_id = checked_thread_id(request.path_params["thread_id"])
    try:
        payload = await read_json(request)
    except HTTPError as exc:
        if exc.status != 422:
            raise
        # Not JSON, or a string Postgres cannot store (`read_json` says which).
        message = "The body is not valid JSON" if exc.detail == INVALID_JSON else exc.detail
        return json_response(error(None, "invalid_argument", message), 400)
    problem = check_envelope(payload)
    if problem is not None:
        command_id = payload.get("id") if isinstance(payload, dict) else None
        return json_response(error(command_id, "invalid_argument", problem), 400)
    answer = await Commands(svc, thread_id).handle(payload)
    return json_response(answer)


ROUTES = [
    RestRoute("/threads/{thread_id}/stream/events", stream_events, methods=["POST"]),
    RestRoute("/threads/{thread_id}/commands", commands, methods=["POST"]),
]

"""Protocol v2 over a WebSocket at `/threads/{id}/stream/events`: commands and events on one
socket (the JS SDK's WebSocket transport sends everything on it; the Python SDK's sends
`subscription.subscribe` on it and its other commands over HTTP).

Every frame a client sends is a command envelope (`{id, method, params}`), answered by a
`success` or `error` frame with the same `id`: the commands of `POST /threads/{id}/commands`
(`app.rest.protocol_v2.Commands`), plus the socket's own

- `subscription.subscribe` `{channels, namespaces?, depth?, since?}` → `{subscription_id,
  replayed_events}`: what the socket has seen of the thread that matches (after `since`, when
  given) is sent again first, then live events;
- `subscription.reconnect` `{channels, …, since, subscription_id?}`: the same, replaying only
  events after `since` (a `seq`);
- `subscription.unsubscribe` `{subscription_id}`.

An event goes out once however many subscriptions match it. The socket follows the thread's
stored stream from its start (as the SSE route does), so sequence numbers agree with the SSE
streams of the same thread. A thread that does not exist yet (a client that names its thread
before `run.start` creates it) is followed from the moment it does. Credentials are read from
the handshake (the `langgraph.json` auth handlers, as for every request); a refusal closes the
socket with 4000 + the HTTP status (4401, 4403), which the SDKs read as final. The socket
closes (1011, after an unsolicited `error` frame) if following the thread fails, and (1000)
when the thread is deleted.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import uuid
from typing import Any

import orjson
from starlette.requests import HTTPConnection
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from app.auth.context import acting_as
from app.auth.handlers import AuthHandlerError, Credentials
from app.errors import NotFound, ServiceError, unavailable
from app.rest.http import dumps
from app.rest.protocol_v2 import (
    Commands,
    check_envelope,
    error,
    protocol_events,
    stream_failure,
    success,
)
from app.rest.protocol_v2_events import (
    Filter,
    FilterError,
    ProtocolEvents,
    parse_filter,
    parse_since,
)
from app.services.container import Services

log = logging.getLogger("lgql.rest.protocol_v2")

#: Events a socket keeps to replay to a new subscription (LangGraph Server keeps 10 000).
REPLAY_BUFFER = 10_000
#: While the thread does not exist yet, how often to look for it (a `run.start` on the socket
#: itself is noticed at once).
THREAD_POLL_SECONDS = 1.0


class _Socket:
    def __init__(self, websocket: WebSocket, svc: Services, thread_id: str) -> None:
        self.ws = websocket
        self.svc = svc
        self.thread_id = thread_id
        self.converter = ProtocolEvents()
        self.buffer: collections.deque[dict[str, Any]] = collections.deque(maxlen=REPLAY_BUFFER)
        self.subscriptions: dict[str, Filter] = {}
        # Held while an event is delivered or a subscription replays, so that a subscription
        # sees the replay, then the live events, in order and without a hole.
        self.lock = asyncio.Lock()
        self.send_lock = asyncio.Lock()
        self.thread_created = asyncio.Event()
        self.commands = Commands(
            svc, thread_id, self.converter, on_run_created=self.thread_created.set
        )

    async def send(self, message: dict[str, Any]) -> None:
        async with self.send_lock:
            await self.ws.send_text(dumps(message).decode())

    # --- the thread's events --------------------------------------------------------------

    async def _wait_for_thread(self) -> None:
        while True:
            try:
                await self.svc.threads.get(self.thread_id)
                return
            except NotFound:
                pass
            self.thread_created.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.thread_created.wait(), THREAD_POLL_SECONDS)

    async def follow(self) -> None:
        try:
            await self._wait_for_thread()
            async for event in protocol_events(self.svc, self.thread_id, self.converter):
                async with self.lock:
                    if event["type"] != "event":
                        await self.send(event)
                        continue
                    self.buffer.append(event)
                    if any(f.matches(event) for f in self.subscriptions.values()):
                        await self.send(event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if unavailable(exc) is None and not isinstance(exc, ServiceError):
                log.exception("protocol socket of thread %s failed", self.thread_id)
            with contextlib.suppress(Exception):
                await self.send(stream_failure(exc))
            with contextlib.suppress(Exception):
                await self.ws.close(1011, "the thread's event stream failed")
            return
        with contextlib.suppress(Exception):
            await self.ws.close(1000, "the thread was deleted")

    # --- commands ---------------------------------------------------------------------------

    async def answer(self, raw: str) -> dict[str, Any]:
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return error(None, "invalid_argument", "A protocol command must be valid JSON.")
        problem = check_envelope(payload)
        if problem is not None:
            return error(
                payload.get("id") if isinstance(payload, dict) else None,
                "invalid_argument",
                problem,
            )
        command_id: int = payload["id"]
        method = payload["method"]
        params = payload.get("params") or {}
        try:
            if method in ("subscription.subscribe", "subscription.reconnect"):
                return await self._subscribe(
                    command_id, params, reconnect=method.endswith("reconnect")
                )
            if method == "subscription.unsubscribe":
                return await self._unsubscribe(command_id, params)
        except FilterError as exc:
            return error(command_id, "invalid_argument", str(exc), self.converter.seq)
        return await self.commands.handle(payload)

    async def _subscribe(
        self, command_id: int, params: dict[str, Any], *, reconnect: bool
    ) -> dict[str, Any]:
        flt = parse_filter(params, what="`params`")
        # The Python SDK puts its cursor in `subscription.subscribe` when it reconnects.
        since = parse_since(params.get("since"))
        if reconnect and since is None:
            raise FilterError("subscription.reconnect requires `since` (the last `seq` received)")
        wanted = params.get("subscription_id")
        subscription_id = (
            wanted if reconnect and isinstance(wanted, str) and wanted else str(uuid.uuid4())
        )
        async with self.lock:
            replayed = 0
            for event in list(self.buffer):
                if (since is None or event["seq"] > since) and flt.matches(event):
                    await self.send(event)
                    replayed += 1
            self.subscriptions[subscription_id] = flt
        result = {"subscription_id": subscription_id, "replayed_events": replayed}
        return success(command_id, result, self.converter.seq)

    async def _unsubscribe(self, command_id: int, params: dict[str, Any]) -> dict[str, Any]:
        subscription_id = params.get("subscription_id")
        if not isinstance(subscription_id, str):
            raise FilterError("subscription.unsubscribe requires a `subscription_id`")
        async with self.lock:
            if self.subscriptions.pop(subscription_id, None) is None:
                return error(
                    command_id,
                    "no_such_subscription",
                    f"Unknown subscription: {subscription_id}",
                    self.converter.seq,
                )
        return success(command_id, {}, self.converter.seq)

    async def serve(self) -> None:
        follower = asyncio.create_task(self.follow())
        try:
            while True:
                raw = await self.ws.receive_text()
                answer = await self.answer(raw)
                await self.send(answer)
        except (WebSocketDisconnect, RuntimeError):
            pass  # the client left (RuntimeError: the socket was closed by `follow`)
        finally:
            follower.cancel()
            with contextlib.suppress(BaseException):
                await follower


async def _authenticate(websocket: WebSocket, svc: Services) -> tuple[bool, Any]:
    """The user of the handshake's credentials: (True, user), or (False, close code)."""
    handlers = svc.auth.handlers
    if handlers is None:
        return True, None
    try:
        user = await handlers.authenticate(
            Credentials(HTTPConnection(websocket.scope, websocket.receive))
        )
    except ServiceError as exc:
        return False, 4401 if exc.code == "UNAUTHENTICATED" else 4403
    except AuthHandlerError:
        return False, 4500
    return True, user


async def protocol_socket(websocket: WebSocket) -> None:
    svc: Services = websocket.app.state.services
    raw = websocket.path_params["thread_id"]
    try:
        thread_id = str(uuid.UUID(raw))
    except ValueError:
        await websocket.accept()
        await websocket.close(4422, "the thread id must be a UUID")
        return
    ok, user_or_code = await _authenticate(websocket, svc)
    if not ok:
        # Accepted, then closed: a browser cannot read the status of a refused upgrade.
        await websocket.accept()
        await websocket.close(user_or_code, "not authorized")
        return
    with acting_as(user_or_code):
        await websocket.accept()
        await _Socket(websocket, svc, thread_id).serve()


ROUTES = [WebSocketRoute("/threads/{thread_id}/stream/events", protocol_socket)]

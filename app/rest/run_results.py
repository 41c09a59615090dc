"""Answers that wait for a run (`/wait`, `/join`, `cancel?wait=true`): LangGraph Server's result
body (the run's last values, with `__interrupt__` when it stopped on interrupts, or
`{"__error__": {error, message}}`, status 200 either way), kept alive with newlines while the run
goes on (`app.keep_alive`), with the run's `Location` (`…/join`) and `Content-Location`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.errors import Conflict, NotFound
from app.keep_alive import answer_with_keep_alive
from app.rest.http import JSON_MEDIA_TYPE, answering_errors, json_response
from app.rest.run_bodies import run_path
from app.rest.sse import wait_for_disconnect
from app.services.container import Services
from app.services.run_outcome import RunOutcome
from app.services.runs import RunRecord

log = logging.getLogger("lgql.rest.runs")


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


async def cancel_quietly(svc: Services, run_id: uuid.UUID) -> None:
    """Cancel a run whose client left (`on_disconnect: cancel`); it may have ended meanwhile."""
    try:
        await svc.runs.cancel(str(run_id), "interrupt", wait=False)
    except (Conflict, NotFound):
        pass
    except Exception:
        log.warning("could not cancel run %s after its client left", run_id, exc_info=True)


def wait_answer(
    request: Request,
    svc: Services,
    run: RunRecord,
    *,
    stateless: bool,
    cancel_on_disconnect: bool,
) -> Response:
    """The answer that waits for `run` to end (`cancel_on_disconnect`: a client that leaves
    first cancels it, LangGraph's `on_disconnect: cancel`)."""

    async def produce() -> Any:
        return await result_body(svc, await svc.runs.wait(run), stateless=stateless)

    async def cancel() -> None:
        await cancel_quietly(svc, run.run_id)

    path = run_path(run)
    return _WaitResponse(
        request,
        produce,
        headers={"Location": f"{path}/join", "Content-Location": path},
        on_disconnect=cancel if cancel_on_disconnect else None,
    )

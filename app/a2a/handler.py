"""The A2A request handler: `a2a-sdk`'s `RequestHandler` interface over lgql's services.

The SDK's JSON-RPC dispatcher parses both protocol versions (1.0 `SendMessage`… and 0.3
`message/send`…) into its protobuf types and calls these methods. Tasks are not kept in an SDK
task store: a task is a run, so the state lives where every other run's does (Postgres and the
run's Redis stream), visible to GraphQL and to every API process.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from a2a.server.context import ServerCallContext
from a2a.server.events.event_queue import Event
from a2a.server.request_handlers.request_handler import RequestHandler
from a2a.types.a2a_pb2 import (
    AgentCard,
    CancelTaskRequest,
    DeleteTaskPushNotificationConfigRequest,
    GetExtendedAgentCardRequest,
    GetTaskPushNotificationConfigRequest,
    GetTaskRequest,
    ListTaskPushNotificationConfigsRequest,
    ListTaskPushNotificationConfigsResponse,
    ListTasksRequest,
    ListTasksResponse,
    Message,
    SendMessageRequest,
    SubscribeToTaskRequest,
    Task,
    TaskArtifactUpdateEvent,
    TaskPushNotificationConfig,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)
from a2a.utils.errors import (
    A2AError,
    ContentTypeNotSupportedError,
    ExtendedAgentCardNotConfiguredError,
    InvalidParamsError,
    PushNotificationNotSupportedError,
    TaskNotCancelableError,
    TaskNotFoundError,
    UnsupportedOperationError,
)

from app.a2a import tasks
from app.errors import Conflict, NotFound, ServiceError
from app.services.assistants import AssistantRecord
from app.services.container import Services
from app.services.run_lifecycle import FINAL_STATUSES
from app.services.run_request import IfNotExists, RunCommand, RunRequest
from app.services.run_streams import StreamEvent
from app.services.runs import RunRecord

log = logging.getLogger("lgql.a2a")

SERVICES_KEY = "lgql.services"
ASSISTANT_KEY = "lgql.assistant_id"


def _services(context: ServerCallContext) -> Services:
    services: Services = context.state[SERVICES_KEY]
    return services


def _service_error(exc: ServiceError) -> A2AError:
    """A service error as the A2A error a client can act on."""
    if isinstance(exc, NotFound) and "run_id" in exc.details:
        return TaskNotFoundError(message=exc.message)
    # The rest (an assistant or thread not found or not visible, a busy thread under `reject`,
    # a refusal by an auth handler) is about what the message asked for.
    return InvalidParamsError(message=exc.message)


def _uuid(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidParamsError(message=f"`{what}` must be a UUID (lgql ids are)") from None


class LgqlRequestHandler(RequestHandler):
    """Every method acts for the request's user (set by the auth middleware) through the same
    services as GraphQL, so auth filters, double-texting and run storage apply unchanged."""

    # --- helpers ----------------------------------------------------------------------------

    async def _assistant(self, context: ServerCallContext) -> AssistantRecord:
        try:
            return await _services(context).assistants.get(context.state[ASSISTANT_KEY])
        except ServiceError as exc:
            raise InvalidParamsError(message=exc.message) from None

    async def _run_of_assistant(self, context: ServerCallContext, task_id: str) -> RunRecord:
        """The run behind `task_id`, if it is this assistant's and the user may see it."""
        assistant = await self._assistant(context)
        try:
            run = await _services(context).runs.get(_uuid(task_id, "id"))
        except NotFound:
            raise TaskNotFoundError from None
        if run.assistant_id != assistant.assistant_id:
            raise TaskNotFoundError
        return run

    async def _request_for(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> RunRequest:
        """The run a message asks for: on the thread of its `contextId` (a new one without), its
        text and data parts as the graph's input, or, when that thread waits at an
        `interrupt()`, as the value that resumes it."""
        services = _services(context)
        assistant = await self._assistant(context)
        message = params.message
        if not message.parts:
            raise InvalidParamsError(message="The message has no parts")
        if tasks.has_other_parts(message.parts):
            raise ContentTypeNotSupportedError(
                message="Only text and data parts are supported (no files or raw bytes)"
            )
        thread_id: str | None = (
            _uuid(message.context_id, "contextId") if message.context_id else None
        )
        if message.task_id:
            run = await self._run_of_assistant(context, message.task_id)
            if thread_id is not None and thread_id != str(run.thread_id):
                raise InvalidParamsError(message="`taskId` belongs to another context")
            thread_id = str(run.thread_id)
        if thread_id is None:
            thread_id = str(uuid.uuid4())
        text = tasks.text_of(message.parts)
        data = tasks.data_of(message.parts)
        waiting = False
        try:
            thread = await services.threads.get(thread_id)
            waiting = thread.status == "interrupted"
        except NotFound:
            pass
        request = RunRequest(
            assistant_id=str(assistant.assistant_id),
            thread_id=thread_id,
            if_not_exists=IfNotExists.CREATE,
            stream_mode=["values"],
            metadata={"source": "a2a"},
        )
        if waiting:
            resume: Any = data[0] if len(data) == 1 and not text else text if not data else None
            if resume is None:
                resume = {"text": text, "data": data}
            request.command = RunCommand(resume=resume, has_resume=True)
            return request
        payload: dict[str, Any] = {}
        for item in data:
            if not isinstance(item, dict):
                raise InvalidParamsError(message="Data parts must be JSON objects (graph input)")
            payload.update(item)
        if text:
            schemas = await services.assistants.schemas(assistant)
            properties = (schemas.get("input_schema") or {}).get("properties") or {}
            if "messages" not in properties:
                raise InvalidParamsError(
                    message=f"Text parts need a graph whose input has `messages`; "
                    f"'{assistant.graph_id}' takes data parts only"
                )
            payload.setdefault("messages", [])
            payload["messages"] = [*payload["messages"], {"role": "user", "content": text}]
        request.input = payload
        return request

    async def _create(
        self, params: SendMessageRequest, context: ServerCallContext, *, attached: bool
    ) -> RunRecord:
        request = await self._request_for(params, context)
        try:
            return await _services(context).runs.create(request, attached=attached)
        except ServiceError as exc:
            raise _service_error(exc) from None

    # --- message/send, message/stream --------------------------------------------------------

    async def on_message_send(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> Task | Message:
        attached = not params.configuration.return_immediately
        run = await self._create(params, context, attached=attached)
        if not attached:
            return tasks.task_of(str(run.run_id), str(run.thread_id), run.status)
        outcome = await _services(context).runs.wait(run)
        return tasks.task_of_outcome(outcome)

    async def on_message_send_stream(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event]:
        run = await self._create(params, context, attached=True)
        yield tasks.task_of(str(run.run_id), str(run.thread_id), run.status)
        events = _services(context).run_streams.follow_run(str(run.run_id))
        async for event in self._updates(run, events, context):
            yield event

    async def on_subscribe_to_task(
        self, params: SubscribeToTaskRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event]:
        run = await self._run_of_assistant(context, params.id)
        yield tasks.task_of_record(run)
        if run.status in FINAL_STATUSES:
            return
        events = _services(context).run_streams.follow_run(str(run.run_id))
        async for event in self._updates(run, events, context):
            yield event

    async def _updates(
        self, run: RunRecord, events: AsyncIterator[StreamEvent], context: ServerCallContext
    ) -> AsyncIterator[Event]:
        """The run's stream as A2A updates: `working` once it starts, the growing state as the
        result artifact at each `values` event, then the final status."""
        run_id, thread_id = str(run.run_id), str(run.thread_id)
        working = False
        async for event in events:
            if event.event in ("end", "error"):
                break
            if not working:
                working = True
                yield TaskStatusUpdateEvent(
                    task_id=run_id,
                    context_id=thread_id,
                    status=TaskStatus(state=TaskState.TASK_STATE_WORKING),
                )
            if event.event == "values":
                yield TaskArtifactUpdateEvent(
                    task_id=run_id,
                    context_id=thread_id,
                    artifact=tasks.result_artifact(run_id, event.data),
                    append=False,
                    last_chunk=False,
                )
        # The stream's end says that the run ended; its outcome says how (and with what).
        final = tasks.task_of_outcome(await _services(context).runs.wait(run))
        if final.status.state == TaskState.TASK_STATE_COMPLETED and final.artifacts:
            yield TaskArtifactUpdateEvent(
                task_id=run_id,
                context_id=thread_id,
                artifact=final.artifacts[0],
                append=False,
                last_chunk=True,
            )
        yield TaskStatusUpdateEvent(task_id=run_id, context_id=thread_id, status=final.status)

    # --- tasks/get, tasks/cancel -------------------------------------------------------------

    async def on_get_task(self, params: GetTaskRequest, context: ServerCallContext) -> Task | None:
        return tasks.task_of_record(await self._run_of_assistant(context, params.id))

    async def on_cancel_task(
        self, params: CancelTaskRequest, context: ServerCallContext
    ) -> Task | None:
        run = await self._run_of_assistant(context, params.id)
        if run.status in FINAL_STATUSES:
            raise TaskNotCancelableError(message=f"The task has already ended ({run.status})")
        try:
            ended = await _services(context).runs.cancel(str(run.run_id), "interrupt")
        except Conflict as exc:
            raise TaskNotCancelableError(message=exc.message) from None
        except ServiceError as exc:
            raise _service_error(exc) from None
        return tasks.task_of_record(ended or run)

    # --- not offered (the agent card says so) -------------------------------------------------

    async def on_list_tasks(
        self, params: ListTasksRequest, context: ServerCallContext
    ) -> ListTasksResponse:
        raise UnsupportedOperationError(message="Listing tasks is GraphQL's `runs` here")

    async def on_create_task_push_notification_config(
        self, params: TaskPushNotificationConfig, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        raise PushNotificationNotSupportedError

    async def on_get_task_push_notification_config(
        self, params: GetTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        raise PushNotificationNotSupportedError

    async def on_list_task_push_notification_configs(
        self, params: ListTaskPushNotificationConfigsRequest, context: ServerCallContext
    ) -> ListTaskPushNotificationConfigsResponse:
        raise PushNotificationNotSupportedError

    async def on_delete_task_push_notification_config(
        self, params: DeleteTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> None:
        raise PushNotificationNotSupportedError

    async def on_get_extended_agent_card(
        self, params: GetExtendedAgentCardRequest, context: ServerCallContext
    ) -> AgentCard:
        raise ExtendedAgentCardNotConfiguredError

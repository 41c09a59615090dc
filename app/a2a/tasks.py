"""A2A's shapes for lgql's runs and threads: a task is a run (task id = run id), a context is a
thread (context id = thread id); text and data parts are a graph's input, its values are a
task's artifact, an `interrupt()` is an `input-required` task."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from a2a.helpers.proto_helpers import new_data_part, new_text_part
from a2a.types.a2a_pb2 import (
    Artifact,
    Message,
    Part,
    Role,
    Task,
    TaskState,
    TaskStatus,
)
from google.protobuf.json_format import MessageToDict

from app.services.run_outcome import RunError, RunOutcome
from app.services.runs import RunRecord

RESULT_ARTIFACT = "result"

# A run's status, and whether it stopped at an interrupt, as an A2A task state.
_STATES = {
    "pending": TaskState.TASK_STATE_SUBMITTED,
    "running": TaskState.TASK_STATE_WORKING,
    "success": TaskState.TASK_STATE_COMPLETED,
    "error": TaskState.TASK_STATE_FAILED,
    "timeout": TaskState.TASK_STATE_FAILED,
    "interrupted": TaskState.TASK_STATE_CANCELED,
}
FINAL_STATES = frozenset(
    {
        TaskState.TASK_STATE_COMPLETED,
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_CANCELED,
        TaskState.TASK_STATE_INPUT_REQUIRED,
        TaskState.TASK_STATE_REJECTED,
    }
)


def state_of(status: str, interrupts: list[Any] | None = None) -> TaskState:
    if status == "success" and interrupts:
        return TaskState.TASK_STATE_INPUT_REQUIRED
    return _STATES.get(status, TaskState.TASK_STATE_UNSPECIFIED)


def integral(value: Any) -> Any:
    """`value` with whole floats as ints: a data part travels as a protobuf `Value`, whose
    numbers are all doubles, so a client's `{"count": 1}` arrives as `1.0`; graphs that add
    to it expect the int the client sent."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [integral(v) for v in value]
    return value


def text_of(parts: Iterable[Part]) -> str:
    return "\n".join(p.text for p in parts if p.HasField("text"))


def data_of(parts: Iterable[Part]) -> list[Any]:
    return [integral(MessageToDict(p.data)) for p in parts if p.HasField("data")]


def has_other_parts(parts: Iterable[Part]) -> bool:
    return any(not (p.HasField("text") or p.HasField("data")) for p in parts)


def last_message_text(values: Any) -> str | None:
    """The text of the last message of a `messages` state, as a chat graph answers."""
    if not isinstance(values, dict):
        return None
    messages = values.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    last = messages[-1]
    content = last.get("content") if isinstance(last, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks
        texts = [b.get("text", "") for b in content if isinstance(b, dict)]
        return "".join(texts) or None
    return None


def result_artifact(run_id: str, values: Any) -> Artifact:
    """The graph's values as the task's one artifact: the last message's text (when the state
    has messages) and the whole state as a data part."""
    parts: list[Part] = []
    text = last_message_text(values)
    if text is not None:
        parts.append(new_text_part(text))
    parts.append(new_data_part(_jsonable(values)))
    return Artifact(artifact_id=f"{run_id}-result", name=RESULT_ARTIFACT, parts=parts)


def agent_message(parts: list[Part], *, context_id: str, task_id: str, message_id: str) -> Message:
    return Message(
        message_id=message_id,
        role=Role.ROLE_AGENT,
        parts=parts,
        context_id=context_id,
        task_id=task_id,
    )


def status_message(
    state: TaskState,
    *,
    run_id: str,
    thread_id: str,
    interrupts: list[Any],
    error: RunError | None,
) -> Message | None:
    """What the agent says with a status: the question an interrupt asks, or the error."""
    if state == TaskState.TASK_STATE_INPUT_REQUIRED:
        values = [i.get("value") if isinstance(i, dict) else i for i in interrupts]
        value = values[0] if len(values) == 1 else values
        text = value if isinstance(value, str) else _question(value)
        return agent_message(
            [new_text_part(text), new_data_part(_jsonable({"interrupts": interrupts}))],
            context_id=thread_id,
            task_id=run_id,
            message_id=f"{run_id}-input-required",
        )
    if state == TaskState.TASK_STATE_FAILED:
        text = str(error) if error is not None else "The run failed"
        return agent_message(
            [new_text_part(text)],
            context_id=thread_id,
            task_id=run_id,
            message_id=f"{run_id}-error",
        )
    return None


def _question(value: Any) -> str:
    if isinstance(value, dict) and isinstance(value.get("question"), str):
        return str(value["question"])
    return json.dumps(value, ensure_ascii=False, default=str)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def task_of(
    run_id: str,
    thread_id: str,
    status: str,
    *,
    values: Any = None,
    interrupts: list[Any] | None = None,
    error: RunError | None = None,
) -> Task:
    """The task for a run in `status` with its outcome (values, interrupts, error)."""
    interrupts = interrupts or []
    state = state_of(status, interrupts)
    task = Task(id=run_id, context_id=thread_id, status=TaskStatus(state=state))
    message = status_message(
        state, run_id=run_id, thread_id=thread_id, interrupts=interrupts, error=error
    )
    if message is not None:
        task.status.message.CopyFrom(message)
    if state == TaskState.TASK_STATE_COMPLETED and values is not None:
        task.artifacts.append(result_artifact(run_id, values))
    return task


def task_of_outcome(outcome: RunOutcome) -> Task:
    """The task for `RunService.wait`'s outcome."""
    run = outcome.run
    return task_of(
        str(run.run_id),
        str(run.thread_id),
        run.status,
        values=outcome.values,
        interrupts=outcome.interrupts,
        error=outcome.error,
    )


def task_of_record(run: RunRecord) -> Task:
    """The task for a run as stored (ended or not)."""
    output = run.output or {}
    return task_of(
        str(run.run_id),
        str(run.thread_id),
        run.status,
        values=output.get("values"),
        interrupts=output.get("interrupts"),
        error=RunError.from_json(run.error),
    )

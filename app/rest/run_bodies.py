"""The bodies of LangGraph Server's run routes (the reference's `RunCreateStateful`,
`RunCreateStateless`, `RunBatchCreate`, `RunsCancel`) as the service's `RunRequest`, and its
`Run` answer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import RootModel

from app.rest.http import Body
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
from app.services.runs import RunRecord


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


def run_request(
    data: RunCreate, *, thread_id: str | None, headers: Mapping[str, str] | None = None
) -> RunRequest:
    """The service's request for a body (`thread_id` None: stateless), with the request
    `headers` its config carries (`configurable_headers`)."""
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
        configurable_headers=dict(headers or {}),
    )
    if isinstance(data, RunCreateStateful):
        # LangGraph Server lays `checkpoint` over `checkpoint_id`.
        chosen = data.checkpoint or CheckpointBody()
        request.checkpoint_id = chosen.checkpoint_id or data.checkpoint_id
        request.checkpoint_ns = chosen.checkpoint_ns or ""
        request.checkpoint_map = chosen.checkpoint_map
        request.multitask_strategy = data.multitask_strategy
        request.if_not_exists = data.if_not_exists
    elif isinstance(data, RunCreateStateless):
        request.on_completion = data.on_completion
    return request


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


def run_path(run: RunRecord) -> str:
    return f"/threads/{run.thread_id}/runs/{run.run_id}"


def stateless_run_path(run: RunRecord) -> str:
    return f"/runs/{run.run_id}"

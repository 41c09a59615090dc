"""`RunEvent`: one event of a run's stream, as LangGraph Server names it."""

from __future__ import annotations

import strawberry

from app.services.run_streams import StreamEvent, ThreadStreamMode
from app.services.worker_presence import NoWorkerNotice
from schema.enums import graphql_enum
from schema.scalars import JSON
from schema.types.run import StreamMode

graphql_enum(
    ThreadStreamMode,
    description="What `threadStream` shows (LangGraph Server's thread stream modes).",
    values={
        "RUN_MODES": "Every event of every run of the thread (filtered by `streamMode`).",
        "LIFECYCLE": "Only each run's start (`metadata`) and end (`end` or `error`).",
        "STATE_UPDATE": "`state_update` events (`{thread_id, state}`): `updateThreadState` "
        "publishes one (its `runId` is empty).",
    },
)


@strawberry.type(
    description="An event of a run: `metadata` first (`{run_id, attempt}`), then one per stream "
    "mode chunk (`values`, `updates`, `messages/partial`…; `<mode>|<namespace>` from subgraphs), "
    "then `end` (`{run_id, status}`) or `error` (`{error, message}`)."
)
class RunEvent:
    id: str = strawberry.field(description="The event id; resume after it with `lastEventId`.")
    run_id: strawberry.ID
    event: str = strawberry.field(description="The event name, as LangGraph Server's SSE `event:`.")
    mode: StreamMode | None = strawberry.field(
        description="The stream mode the event belongs to; null for metadata, end and error."
    )
    namespace: list[str] = strawberry.field(
        description="The subgraph it comes from (`node:task_id` segments); empty for the root graph."
    )
    data: JSON

    @classmethod
    def warning(cls, notice: NoWorkerNotice) -> RunEvent:
        """`warning`: what the server tells before the run's own events (`NO_LIVE_WORKER`: no
        worker is alive, the run waits until one starts). Not part of the run's stream: its
        id is `0-0`, so resuming after it starts from the beginning."""
        return cls(
            id="0-0",
            run_id=strawberry.ID(notice.run_id or ""),
            event="warning",
            mode=None,
            namespace=[],
            data=notice.as_dict(),
        )

    @classmethod
    def from_stream(cls, event: StreamEvent) -> RunEvent:
        base, *namespace = event.event.split("|")
        return cls(
            id=event.id,
            run_id=strawberry.ID(event.run_id),
            event=event.event,
            mode=StreamMode.of_event(base),
            namespace=namespace,
            data=event.data,
        )

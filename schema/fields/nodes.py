"""Relay's `node` and `nodes` root fields (`NodeQueries`): any assistant, thread, run or cron by
its id (`schema/types/node.py` says why ids need no type prefix)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import strawberry

from app.errors import NotFound
from app.services.container import Services
from schema.context import Context, services
from schema.types.assistant import Assistant
from schema.types.cron import Cron
from schema.types.node import Node
from schema.types.run import Run
from schema.types.thread import Thread

Info = strawberry.Info[Context, Any]


async def _assistant(svc: Services, id: str) -> Node:
    return Assistant.from_record(await svc.assistants.get(id))


async def _thread(svc: Services, id: str) -> Node:
    return Thread.from_record(await svc.threads.get(id))


async def _run(svc: Services, id: str) -> Node:
    return Run.from_record(await svc.runs.get(id))


async def _cron(svc: Services, id: str) -> Node:
    return Cron.from_record(await svc.crons.get(id))


_KINDS: tuple[Callable[[Services, str], Awaitable[Node]], ...] = (
    _assistant,
    _thread,
    _run,
    _cron,
)


async def _node(info: Info, id: str) -> Node | None:
    try:
        uuid.UUID(id)
    except ValueError:
        return None  # not an id lgql made (a graph id is not a node id)
    svc = services(info)
    # Each kind in turn (an id is one kind's only); NotFound also covers what the user may not see.
    for kind in _KINDS:
        try:
            return await kind(svc, id)
        except NotFound:
            continue
    return None


@strawberry.type
class NodeQueries:
    @strawberry.field(description="Any assistant, thread, run or cron by its id; null if none.")
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        return await _node(info, str(id))

    @strawberry.field(
        description="Several objects by id, in the order asked; null for an id with none."
    )
    async def nodes(self, info: Info, ids: list[strawberry.ID]) -> list[Node | None]:
        return list(await asyncio.gather(*(_node(info, str(i)) for i in ids)))

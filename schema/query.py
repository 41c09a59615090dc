"""Root `Query`: the resources' query fields (`schema/fields/`), in the SDL's order."""

from __future__ import annotations

import strawberry

from schema.fields.assistants import AssistantQueries
from schema.fields.crons import CronQueries
from schema.fields.nodes import NodeQueries
from schema.fields.runs import RunQueries
from schema.fields.server import ServerQueries
from schema.fields.store import StoreQueries
from schema.fields.threads import ThreadQueries


@strawberry.type
class Query(
    CronQueries,
    StoreQueries,
    AssistantQueries,
    ThreadQueries,
    RunQueries,
    ServerQueries,
    NodeQueries,
):
    pass

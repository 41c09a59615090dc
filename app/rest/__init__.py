"""LangGraph Server's REST API (`/assistants`, `/threads`, `/runs`, `/store`...), beside `/graphql`:
the LangGraph SDKs, `RemoteGraph` and `useStream` speak it unchanged. A transport, as `schema/`
is: each route is a thin adapter over `app.services` (see `app.rest.http` for how to write one).

Each module lists its routes in `ROUTES`; `MODULES` names the modules, in the order their routes
are matched (a module may not exist yet while it is being written: it is skipped, not hidden).
`/ok` and `/info` live in `app.health`, and answer as LangGraph Server's do.
"""

from __future__ import annotations

import importlib
import importlib.util

from starlette.routing import BaseRoute

MODULES = (
    "app.rest.assistants",
    "app.rest.threads",  # threads, their state and history (not runs, not streams)
    "app.rest.crons",  # before runs: `/runs/crons...` is a path of its own
    "app.rest.store",
    "app.rest.runs",  # runs (thread and stateless), their streams, the thread stream
    "app.rest.protocol_v2",  # `/threads/{id}/stream/events`, `/threads/{id}/commands`
    "app.rest.protocol_v2_ws",  # the same protocol over a WebSocket at `/threads/{id}/stream/events`
)


def routes() -> list[BaseRoute]:
    """Every REST route, from each module of `MODULES` that exists."""
    found: list[BaseRoute] = []
    for name in MODULES:
        if importlib.util.find_spec(name) is None:
            continue
        found.extend(importlib.import_module(name).ROUTES)
    return found

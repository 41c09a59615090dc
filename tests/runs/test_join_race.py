"""Joining a run that is still pending while it starts and ends (issue 16, item 4).

A join reads the run from the database, then looks at Redis. If the whole run happens between
two of those looks, the join once ended at once with `end {status: "pending"}` and none of the
run's events. These tests put the run's whole execution at every point where the join talks to
Redis about the run, one point per join, in turn: the interleaving is chosen, not hoped for.
The join must deliver every event of the run once, in order, ending with its real status.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest_asyncio
from gql import gql

from app.messaging.streams import StreamEvent
from app.services.container import Services
from app.services.run_request import RunRequest
from tests.conftest import (
    EngineUrls,
    GraphQLClient,
    LiveServer,
    make_settings,
    private_services,
    scratch_database,
    start_server,
)
from tests.helpers import ws_client
from workers.runner import RunRunner

# Points explored per test: far more than a join has before it waits for news.
MAX_POINTS = 12

JOIN = gql("""subscription($id: ID!) { joinRunStream(runId: $id) { id runId event data } }""")

# Set in the task that executes the run (and so in every task it starts): its Redis commands
# are the run's, not the join's.
_in_run: contextvars.ContextVar[bool] = contextvars.ContextVar("in_run", default=False)


class RunAtPoint:
    """Executes the run just before the join's `point`-th Redis command about it (commands
    naming the run id, from anything but the run's own execution). A join that waits for news
    before reaching that point gets the run once its commands so far are answered and the
    event loop has gone round a while: any moment is a fair interleaving from then on."""

    def __init__(self, services: Services, run_id: str, point: int) -> None:
        self.services = services
        self.run_id = run_id
        self.point = point
        self.issued = 0
        self.answered = 0
        self.fired_at_point = False
        self._answered = asyncio.Event()
        self._run: asyncio.Task[None] | None = None
        self._original: Callable[..., Awaitable[Any]] | None = None

    def install(self) -> None:
        redis = self.services.redis
        original = redis.execute_command
        self._original = original

        async def execute_command(*args: Any, **options: Any) -> Any:
            mine = not _in_run.get() and any(
                self.run_id in (a.decode(errors="replace") if isinstance(a, bytes) else str(a))
                for a in args
            )
            if mine:
                index = self.issued
                self.issued += 1
                if index == self.point and self._run is None:
                    self.fired_at_point = True
                    await self.fire()
            try:
                return await original(*args, **options)
            finally:
                if mine:
                    self.answered += 1
                    self._answered.set()

        redis.execute_command = execute_command  # type: ignore[method-assign]

    def uninstall(self) -> None:
        if self._original is not None:
            self.services.redis.execute_command = self._original  # type: ignore[method-assign]

    async def fire(self) -> None:
        """Execute the whole run (in a task of its own, marked as the run's) and wait for it."""
        if self._run is None:

            async def execute() -> None:
                _in_run.set(True)
                await RunRunner(self.services, "race-worker").run(uuid.UUID(self.run_id))

            self._run = asyncio.create_task(execute())
        await asyncio.shield(self._run)

    async def backstop(self) -> None:
        """If the join waits for news before its `point`-th command, run the run anyway. (A
        join always looks at Redis before it waits: point 0 needs no backstop.)"""
        if self.point == 0:
            return
        while self.answered < self.point:
            self._answered.clear()
            await self._answered.wait()
        for _ in range(200):
            if self._run is not None:
                break
            await asyncio.sleep(0)
        await self.fire()


async def explore(
    services: Services,
    new_pending_run: Callable[[], Awaitable[str]],
    join: Callable[[str], AsyncIterator[dict[str, Any]]],
) -> int:
    """For point 0, 1, …: a new pending run, a join, the run executed at that point. Returns
    the number of points explored (the last one is where the join waited for news)."""
    for point in range(MAX_POINTS):
        run_id = await new_pending_run()
        hook = RunAtPoint(services, run_id, point)
        hook.install()
        backstop = asyncio.create_task(hook.backstop())
        try:
            got = [event async for event in join(run_id)]
        finally:
            hook.uninstall()
            backstop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await backstop
        assert hook._run is not None
        await hook._run
        replay = [event async for event in join(run_id)]  # the run's retained events
        # No worker is alive here (the hook executes the run): a GraphQL join says so first,
        # with a `warning` that is not one of the run's events.
        got = [e for e in got if e["event"] != "warning"]
        replay = [e for e in replay if e["event"] != "warning"]
        where = f"run executed before the join's Redis command #{point}"
        assert got[-1]["event"] == "end", where
        assert got[-1]["data"]["status"] == "success", (where, got[-1])
        assert got[0]["event"] == "metadata", (where, got)
        assert [e["id"] for e in got] == [e["id"] for e in replay], where
        assert [e["data"] for e in got] == [e["data"] for e in replay], where
        values = [e["data"] for e in got if e["event"] == "values"]
        assert values[-1] == {"count": 5}, where
        if not hook.fired_at_point:
            return point + 1
    return MAX_POINTS


@pytest_asyncio.fixture(loop_scope="session")
async def race_services(engines: EngineUrls, redis_prefix: str) -> AsyncIterator[Services]:
    async with private_services(engines, redis_prefix, name="race") as services:
        yield services


async def test_join_of_a_pending_run_that_starts_and_ends_meanwhile(
    race_services: Services,
) -> None:
    services = race_services

    async def new_pending_run() -> str:
        thread = await services.threads.create()
        run = await services.runs.create(
            RunRequest(
                assistant_id="steps",
                thread_id=str(thread.thread_id),
                input={"count": 0},
                stream_mode=["values", "updates"],
            )
        )
        assert run.status == "pending"
        return str(run.run_id)

    async def join(run_id: str) -> AsyncIterator[dict[str, Any]]:
        event: StreamEvent
        async for event in services.run_streams.follow_run(run_id):
            yield {"id": event.id, "event": event.event, "data": event.data}

    explored = await explore(services, new_pending_run, join)
    assert explored >= 2  # at least: before the join's first look, and while it waits


@pytest_asyncio.fixture(loop_scope="session")
async def race_server(
    engines: EngineUrls, redis_prefix: str
) -> AsyncIterator[tuple[LiveServer, Services]]:
    """An API with no worker, on a database and Redis prefix of its own: runs stay pending
    until the test executes them."""
    async with scratch_database(engines.database_uri, prefix="lgql_race_gql") as url:
        server = await start_server(
            make_settings(f"{redis_prefix}_race_gql"),
            database_uri=url,
            redis_uri=engines.redis_uri,
            migrate=True,
            embedded_worker=False,
        )
        try:
            services: Services = server.server.config.app.state.services
            yield server, services
        finally:
            await server.stop()


async def test_join_over_graphql_of_a_pending_run_that_starts_and_ends_meanwhile(
    race_server: tuple[LiveServer, Services],
) -> None:
    server, services = race_server
    client = GraphQLClient(server.graphql_url)

    async def new_pending_run() -> str:
        thread = await client.data('mutation { createThread(input: {graphId: "steps"}) { id } }')
        run = await client.data(
            """mutation($input: RunInput!) { createRun(input: $input) { id status } }""",
            {
                "input": {
                    "assistantId": "steps",
                    "threadId": thread["createThread"]["id"],
                    "input": {"count": 0},
                    "streamMode": ["VALUES", "UPDATES"],
                }
            },
        )
        assert run["createRun"]["status"] == "PENDING"
        return str(run["createRun"]["id"])

    async def join(run_id: str) -> AsyncIterator[dict[str, Any]]:
        JOIN.variable_values = {"id": run_id}
        async with ws_client(server) as session:
            async for result in session.subscribe(JOIN):
                yield result["joinRunStream"]

    try:
        explored = await explore(services, new_pending_run, join)
    finally:
        await client.close()
    assert explored >= 2

"""Thread time-to-live: `ttl` on createThread/updateThread, langgraph.json `checkpointer.ttl`
defaults, and the sweeper that deletes (or prunes) threads left untouched for that long."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from app.db import threads as threads_db
from app.errors import BadUserInput
from app.runtime.langgraph_config import ConfigError, load_langgraph_config
from app.services.container import Services
from app.services.run_request import RunRequest
from app.services.thread_ttl import ThreadTTL, ThreadTTLConfig, ThreadTTLStrategy
from tests.conftest import (
    ROOT,
    EngineUrls,
    GraphQLClient,
    LiveServer,
    make_settings,
    private_services,
    scratch_database,
    start_server,
)
from tests.helpers import eventually

TTL_CONFIG = ROOT / "tests" / "fixtures" / "ttl" / "langgraph.json"

TTL_FIELDS = "id ttl { strategy minutes expiresAt }"
CREATE = f"mutation($input: CreateThreadInput) {{ createThread(input: $input) {{ {TTL_FIELDS} }} }}"
UPDATE = f"mutation($id: ID!, $input: UpdateThreadInput!) {{ updateThread(id: $id, input: $input) {{ {TTL_FIELDS} }} }}"
GET = f"query($id: ID!) {{ thread(id: $id) {{ {TTL_FIELDS} }} }}"
RUN_AND_WAIT = """
mutation($input: RunInput!) { runAndWait(input: $input) { run { id threadId status } } }
"""


async def _thread(client: GraphQLClient, thread_id: str) -> dict[str, Any] | None:
    """The thread, or None when the server answers NOT_FOUND."""
    body = await client.execute(GET, {"id": thread_id})
    if body.get("errors"):
        assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND", body
        return None
    thread: dict[str, Any] = body["data"]["thread"]
    return thread


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


# -- through GraphQL, on the shared server (no default TTL) ---------------------------------


async def test_create_thread_with_ttl_shows_strategy_minutes_and_expiry(
    gql_client: GraphQLClient,
) -> None:
    before = datetime.now().astimezone()
    created = (
        await gql_client.data(
            CREATE, {"input": {"ttl": {"minutes": 30, "strategy": "KEEP_LATEST"}}}
        )
    )["createThread"]
    ttl = created["ttl"]
    assert ttl["strategy"] == "KEEP_LATEST" and ttl["minutes"] == 30
    expires = _at(ttl["expiresAt"])
    assert before + timedelta(minutes=29) < expires < before + timedelta(minutes=31)


async def test_thread_without_ttl_never_expires(gql_client: GraphQLClient) -> None:
    created = (await gql_client.data(CREATE, {"input": {}}))["createThread"]
    assert created["ttl"] is None


async def test_update_thread_sets_and_removes_ttl(gql_client: GraphQLClient) -> None:
    tid = (await gql_client.data(CREATE, {"input": {}}))["createThread"]["id"]
    set_ttl = (await gql_client.data(UPDATE, {"id": tid, "input": {"ttl": {"minutes": 5}}}))[
        "updateThread"
    ]
    assert set_ttl["ttl"]["strategy"] == "DELETE" and set_ttl["ttl"]["minutes"] == 5
    # Metadata-only updates leave the TTL alone.
    kept = (await gql_client.data(UPDATE, {"id": tid, "input": {"metadata": {"a": 1}}}))[
        "updateThread"
    ]
    assert kept["ttl"]["minutes"] == 5
    removed = (await gql_client.data(UPDATE, {"id": tid, "input": {"ttl": None}}))["updateThread"]
    assert removed["ttl"] is None
    assert (await _thread(gql_client, tid))["ttl"] is None


@pytest.mark.parametrize("minutes", [0, -1, -0.5])
async def test_bad_ttl_is_bad_user_input_and_creates_nothing(
    gql_client: GraphQLClient, minutes: float
) -> None:
    tid = str(uuid.uuid4())
    body = await gql_client.execute(
        CREATE, {"input": {"threadId": tid, "ttl": {"minutes": minutes}}}
    )
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
    assert (await _thread(gql_client, tid)) is None


async def test_bad_ttl_on_update_changes_nothing(gql_client: GraphQLClient) -> None:
    tid = (await gql_client.data(CREATE, {"input": {"ttl": {"minutes": 7}}}))["createThread"]["id"]
    code = await gql_client.error_code(
        UPDATE, {"id": tid, "input": {"metadata": {"x": 1}, "ttl": {"minutes": -3}}}
    )
    assert code == "BAD_USER_INPUT"
    assert (await _thread(gql_client, tid))["ttl"]["minutes"] == 7


# -- langgraph.json `checkpointer.ttl` ------------------------------------------------------


def test_config_is_validated_at_start_up(tmp_path: Path) -> None:
    assert ThreadTTLConfig.from_langgraph(None).default is None
    parsed = ThreadTTLConfig.from_langgraph(
        {"ttl": {"strategy": "keep_latest", "default_ttl": 60, "sweep_interval_minutes": 2}}
    )
    assert parsed.default == ThreadTTL(60, ThreadTTLStrategy.KEEP_LATEST)
    assert parsed.sweep_interval_seconds == 120
    for bad in (
        {"ttl": {"default_ttl": -1}},
        {"ttl": {"default_ttl": 5, "strategy": "archive"}},
        {"ttl": {"sweep_interval_minutes": 0}},
        {"ttl": {"sweep_limit": "many"}},
        {"ttl": "soon"},
    ):
        with pytest.raises(ConfigError, match=r"checkpointer\.ttl"):
            ThreadTTLConfig.from_langgraph(bad)


def test_service_rejects_bad_ttl_values() -> None:
    for minutes in (0, -5, float("nan"), float("inf"), True, "10"):
        with pytest.raises(BadUserInput):
            ThreadTTL.checked(minutes)
    with pytest.raises(BadUserInput, match="strategy"):
        ThreadTTL.checked(10, "archive")


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def ttl_database(engines: EngineUrls) -> AsyncIterator[str]:
    from app.db.migrate import upgrade

    async with scratch_database(engines.database_uri, prefix="lgql_ttl") as url:
        await upgrade(url)
        yield url


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def ttl_server(
    engines: EngineUrls, ttl_database: str, redis_prefix: str
) -> AsyncIterator[LiveServer]:
    """A server whose langgraph.json gives every thread a 1.2 s TTL, swept every second (the
    configured 0.3 s, rounded up to a schedule's whole second)."""
    server = await start_server(
        make_settings(f"{redis_prefix}_ttl", config=TTL_CONFIG),
        database_uri=ttl_database,
        redis_uri=engines.redis_uri,
    )
    try:
        yield server
    finally:
        await server.stop()


async def _gone(client: GraphQLClient, thread_id: str, *, within: float) -> bool:
    async def missing() -> bool:
        return await _thread(client, thread_id) is None

    return await eventually(missing, within=within, what=f"thread {thread_id} to be swept")


async def test_default_ttl_applies_and_the_worker_deletes_expired_threads(
    ttl_server: LiveServer,
) -> None:
    client = GraphQLClient(ttl_server.graphql_url)
    try:
        created = (await client.data(CREATE, {"input": {}}))["createThread"]
        assert created["ttl"]["minutes"] == 0.02 and created["ttl"]["strategy"] == "DELETE"
        # A thread a run creates gets the default too, and goes with its runs.
        run = (
            await client.data(
                RUN_AND_WAIT,
                {
                    "input": {
                        "assistantId": "echo",
                        "threadId": str(uuid.uuid4()),
                        "ifNotExists": "CREATE",
                        "input": {"messages": [{"role": "user", "content": "hi"}]},
                    }
                },
            )
        )["runAndWait"]["run"]
        assert run["status"] == "SUCCESS"
        assert (await _thread(client, run["threadId"]) or {}).get("ttl") is not None
        assert await _gone(client, created["id"], within=15)
        assert await _gone(client, run["threadId"], within=15)
        code = await client.error_code("query($id: ID!) { run(id: $id) { id } }", {"id": run["id"]})
        assert code == "NOT_FOUND"
    finally:
        await client.close()


async def test_explicit_ttl_overrides_the_default(ttl_server: LiveServer) -> None:
    client = GraphQLClient(ttl_server.graphql_url)
    try:
        created = (await client.data(CREATE, {"input": {"ttl": {"minutes": 60}}}))["createThread"]
        assert created["ttl"]["minutes"] == 60
        # A thread with the default TTL, made after it, expires and is swept: the sweeps that
        # removed it left the other alone.
        default = (await client.data(CREATE, {"input": {}}))["createThread"]
        assert await _gone(client, default["id"], within=30)
        assert await _thread(client, created["id"]) is not None
    finally:
        await client.close()


# -- the sweeper, at the service layer --------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def ttl_services(engines: EngineUrls, redis_prefix: str) -> AsyncIterator[Services]:
    async with private_services(engines, redis_prefix, name="ttlsvc") as opened:
        yield opened


async def _expire_now(services: Services, thread_id: uuid.UUID) -> None:
    """Age the thread as if it had been untouched for longer than its TTL."""
    async with services.db.sessions.begin() as session:
        old = datetime.now().astimezone() - timedelta(days=1)
        await threads_db.update_fields(
            session, thread_id, updated_at=old, state_updated_at=old, expires_at=old
        )


async def _checkpoint_count(services: Services, thread_id: uuid.UUID) -> int:
    async with services.db.pool.acquire() as conn:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM checkpoints WHERE thread_id = $1", str(thread_id)
        )
    return count


async def _write_states(services: Services, thread_id: uuid.UUID, count: int = 3) -> None:
    """A few checkpoints on a `steps` thread, written as state updates (no worker needed)."""
    for i in range(1, count + 1):
        await services.threads.update_state(str(thread_id), values={"count": i}, as_node="step_1")


async def test_sweeper_deletes_thread_runs_and_checkpoints(ttl_services: Services) -> None:
    svc = ttl_services
    thread = await svc.threads.create(ttl=ThreadTTL(10), graph_id="steps")
    await _write_states(svc, thread.thread_id)
    run = await svc.runs.create(
        RunRequest(assistant_id="steps", thread_id=str(thread.thread_id), input={"count": 0})
    )
    await svc.runs.cancel(str(run.run_id), "interrupt")
    assert await svc.runs.count(thread_id=str(thread.thread_id)) == 1
    assert await _checkpoint_count(svc, thread.thread_id) > 0
    await _expire_now(svc, thread.thread_id)
    deleted, pruned = await svc.threads.sweep_expired()
    assert (deleted, pruned) == (1, 0)
    async with svc.db.sessions() as session:
        assert await threads_db.get(session, thread.thread_id) is None
    assert await _checkpoint_count(svc, thread.thread_id) == 0
    assert await svc.runs.count(thread_id=str(thread.thread_id)) == 0


async def test_keep_latest_prunes_to_the_latest_checkpoint_and_keeps_the_thread(
    ttl_services: Services,
) -> None:
    svc = ttl_services
    thread = await svc.threads.create(
        ttl=ThreadTTL(10, ThreadTTLStrategy.KEEP_LATEST), graph_id="steps"
    )
    await _write_states(svc, thread.thread_id)
    before = await svc.threads.state(await svc.threads.get(thread.thread_id))
    assert await _checkpoint_count(svc, thread.thread_id) > 1
    await _expire_now(svc, thread.thread_id)
    assert await svc.threads.sweep_expired() == (0, 1)
    assert await _checkpoint_count(svc, thread.thread_id) == 1
    after = await svc.threads.state(await svc.threads.get(thread.thread_id))
    assert after["values"] == before["values"] == {"count": 3}
    # Pruned threads get a new deadline: the next sweep leaves them alone.
    assert await svc.threads.sweep_expired() == (0, 0)


async def test_activity_since_pushes_the_deadline_instead_of_deleting(
    ttl_services: Services,
) -> None:
    svc = ttl_services
    thread = await svc.threads.create(ttl=ThreadTTL(10))
    async with svc.db.sessions.begin() as session:
        # The index bound has passed but the thread was touched just now.
        past = datetime.now().astimezone() - timedelta(minutes=1)
        await threads_db.update_fields(session, thread.thread_id, expires_at=past)
    assert await svc.threads.sweep_expired() == (0, 0)
    row = await svc.threads.get(thread.thread_id)
    assert row.expires_at is not None and row.expires_at > datetime.now().astimezone()


async def test_threads_with_an_active_run_are_not_deleted(ttl_services: Services) -> None:
    svc = ttl_services
    thread = await svc.threads.create(ttl=ThreadTTL(10))
    # No worker serves this queue prefix: the run stays pending.
    await svc.runs.create(
        RunRequest(assistant_id="echo", thread_id=str(thread.thread_id), input={"messages": []})
    )
    await _expire_now(svc, thread.thread_id)
    assert await svc.threads.sweep_expired() == (0, 0)
    assert (await svc.threads.get(thread.thread_id)).thread_id == thread.thread_id


async def test_two_sweepers_delete_each_thread_once(ttl_services: Services) -> None:
    svc = ttl_services
    threads = [await svc.threads.create(ttl=ThreadTTL(10)) for _ in range(20)]
    for t in threads:
        await _expire_now(svc, t.thread_id)
    results = await asyncio.gather(*(svc.threads.sweep_expired() for _ in range(3)))
    assert sum(deleted for deleted, _ in results) == 20


def test_ttl_fixture_config_parses() -> None:
    config = load_langgraph_config(TTL_CONFIG)
    parsed = ThreadTTLConfig.from_langgraph(config.checkpointer)
    assert parsed.default is not None and parsed.default.minutes == 0.02
    assert json.loads(TTL_CONFIG.read_text())["checkpointer"]["ttl"]["strategy"] == "delete"

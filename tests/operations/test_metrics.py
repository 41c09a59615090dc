"""`/metrics`: scraped with httpx after real runs over GraphQL, the counters and histograms moved
with the right labels; the token and the API's auth guard it; a worker process's own listener;
prometheus-client's multiprocess mode across an API and a worker process.

Metrics are per process, and this test process runs other servers too: every assertion is on
what moved between two scrapes, never on absolute values."""

from __future__ import annotations

import asyncio
import re
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import (
    ALICE,
    AUTH_CONFIG,
    EngineUrls,
    GraphQLClient,
    LiveServer,
    free_port,
    make_settings,
    start_server,
)
from tests.graphql.test_crons_api import make_due
from tests.helpers import new_thread
from tests.processes import LgqlCluster, poll_until

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

RUN_AND_WAIT = "mutation($input: RunInput!) { runAndWait(input: $input) { run { id status } } }"
CREATE_CRON = "mutation($input: CreateCronInput!) { createCron(input: $input) { id } }"
PUT_ITEM = "mutation($input: PutStoreItemInput!) { putStoreItem(input: $input) { key } }"
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(url: str, headers: dict[str, str] | None = None) -> Samples:
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.get(f"{url}/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


async def until_moved(
    read: Callable[[], Awaitable[Samples]], check: Callable[[Samples], bool], what: str
) -> Samples:
    """Scrape until `check` holds: counters of a run's end move once the worker records it,
    which may come a moment after the client has its answer."""

    async def probe() -> Samples | None:
        samples = await read()
        return samples if check(samples) else None

    return await poll_until(probe, deadline=60, what=what)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def server(
    engines: EngineUrls, database_uri: str, redis_prefix: str, redis_cleanup: None
) -> AsyncIterator[LiveServer]:
    """A server whose webhooks may target this machine and whose worker looks for crons often."""
    live = await start_server(
        make_settings(
            f"{redis_prefix}_metrics",
            webhook_allow_private=True,
            webhook_allowed_hosts="127.0.0.1",
            webhook_max_attempts=2,
            webhook_timeout_seconds=2,
            cron_interval_seconds=0.2,
        ),
        database_uri=database_uri,
        redis_uri=engines.redis_uri,
    )
    try:
        yield live
    finally:
        await live.stop()


async def test_runs_and_operations_move_their_metrics(
    server: LiveServer, database_uri: str
) -> None:
    client = GraphQLClient(server.graphql_url)
    try:
        before = await scrape(server.url)
        done = await client.data(RUN_AND_WAIT, {"input": {"assistantId": "steps", "input": {}}})
        assert done["runAndWait"]["run"]["status"] == "SUCCESS"
        # On a thread of its own: its last checkpoints are written by its end's call.
        thread_id = await new_thread(client)
        kept = await client.data(
            RUN_AND_WAIT, {"input": {"assistantId": "steps", "input": {}, "threadId": thread_id}}
        )
        assert kept["runAndWait"]["run"]["status"] == "SUCCESS"
        failed = await client.data(
            RUN_AND_WAIT, {"input": {"assistantId": "fail", "input": {"message": "kaput"}}}
        )
        assert failed["runAndWait"]["run"]["status"] == "ERROR"
        await client.data(
            PUT_ITEM, {"input": {"namespace": ["metrics", "test"], "key": "k", "value": {"a": 1}}}
        )
        assert (await client.execute("{ nope }")).get("errors")
        missing = 'query { run(id: "00000000-0000-0000-0000-000000000000") { id } }'
        assert await client.error_code(missing) == "NOT_FOUND"

        def moved(after: Samples) -> bool:
            return (
                value(after, "lgql_runs_ended_total", graph_id="fail", status="error")
                > value(before, "lgql_runs_ended_total", graph_id="fail", status="error")
            ) and (
                value(after, "lgql_runs_ended_total", graph_id="steps", status="success")
                > value(before, "lgql_runs_ended_total", graph_id="steps", status="success")
            )

        after = await until_moved(lambda: scrape(server.url), moved, "the runs' ends counted")
    finally:
        await client.close()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    for graph in ("steps", "fail"):
        assert delta("lgql_runs_created_total", graph_id=graph) >= 1
        assert delta("lgql_runs_started_total", graph_id=graph) >= 1
        assert delta("lgql_run_queue_wait_seconds_count", graph_id=graph) >= 1
    assert delta("lgql_run_duration_seconds_count", graph_id="steps", status="success") >= 1
    assert delta("lgql_run_duration_seconds_count", graph_id="fail", status="error") >= 1
    # A histogram's buckets: its +Inf bucket holds every observation.
    assert value(
        after, "lgql_run_duration_seconds_bucket", graph_id="steps", status="success", le="+Inf"
    ) == value(after, "lgql_run_duration_seconds_count", graph_id="steps", status="success")

    assert delta("lgql_graphql_operations_total", operation_type="mutation", outcome="success") >= 3
    assert delta("lgql_graphql_operations_total", operation_type="query", outcome="rejected") >= 1
    assert delta("lgql_graphql_operations_total", operation_type="query", outcome="error") >= 1
    assert delta("lgql_graphql_operation_duration_seconds_count", operation_type="mutation") >= 3
    assert delta("lgql_stream_events_written_total") >= 8  # metadata, six values, end (steps)
    assert delta("lgql_checkpointer_operation_seconds_count", operation="write") >= 1
    # The thread's steps run's last checkpoints, written by its end's call.
    assert delta("lgql_checkpointer_operation_seconds_count", operation="write_at_end") >= 1
    assert delta("lgql_store_operation_seconds_count", operation="put") >= 1

    # Sampled at the scrape: the queue (nothing waits now), the worker, the pools.
    assert value(after, "lgql_runs_pending") >= 0
    assert ("lgql_oldest_pending_run_age_seconds", frozenset()) in after
    assert value(after, "lgql_worker_slots") >= 10  # N_JOBS_PER_WORKER of this server's worker
    assert value(after, "lgql_db_pool_max_connections") >= 4
    assert value(after, "lgql_db_pool_connections", state="idle") >= 0
    assert ("lgql_redis_connections", frozenset({("state", "in_use")})) in after

    # Every label value comes from a small set: no ids.
    for name, labels in after:
        if name.startswith("lgql_"):
            for _, label_value in labels:
                assert not UUID_RE.search(label_value), (name, labels)


async def test_a_waiting_run_shows_in_the_queue_gauges(server: LiveServer) -> None:
    """A run held back by a busy thread is due and not started: the queue's depth and the age of
    its oldest run say so (read from Postgres, cached a couple of seconds)."""
    client = GraphQLClient(server.graphql_url)
    try:
        thread = (await client.data("mutation { createThread { id } }"))["createThread"]["id"]
        create = "mutation($input: RunInput!) { createRun(input: $input) { id } }"
        slow = {"assistantId": "slow", "threadId": thread, "input": {"seconds": 30}}
        first = (await client.data(create, {"input": slow}))["createRun"]["id"]
        queued = {**slow, "multitaskStrategy": "ENQUEUE", "input": {"seconds": 0}}
        await client.data(create, {"input": queued})
        await until_moved(
            lambda: scrape(server.url),
            lambda s: (
                value(s, "lgql_runs_pending") >= 1
                and value(s, "lgql_oldest_pending_run_age_seconds") > 0
                and value(s, "lgql_runs_running") >= 1
                and value(s, "lgql_worker_active_runs") >= 1
            ),
            "the queued run in the gauges",
        )
        await client.data(
            "mutation($id: ID!) { cancelRun(id: $id, action: INTERRUPT) { id } }", {"id": first}
        )
    finally:
        await client.close()


async def test_live_subscriptions_are_gauged_by_transport(server: LiveServer) -> None:
    query = "subscription($input: RunInput!) { runStream(input: $input) { event } }"
    variables = {"input": {"assistantId": "slow", "input": {"seconds": 30}}}

    def open_sse(s: Samples) -> float:
        return value(s, "lgql_subscriptions_active", transport="sse")

    before = open_sse(await scrape(server.url))
    async with (
        httpx.AsyncClient(timeout=60) as http,
        http.stream(
            "POST",
            server.graphql_url,
            json={"query": query, "variables": variables},
            headers={"accept": "text/event-stream"},
        ) as response,
    ):
        assert response.status_code == 200
        lines = response.aiter_lines()
        async for line in lines:
            if line.startswith("data:") and "metadata" in line:
                break  # the subscription is running
        during = open_sse(await scrape(server.url))
        assert during >= before + 1
    await until_moved(
        lambda: scrape(server.url), lambda s: open_sse(s) <= during - 1, "the SSE stream closed"
    )


async def test_cron_firings_and_webhook_deliveries_are_counted(
    server: LiveServer, database_uri: str
) -> None:
    client = GraphQLClient(server.graphql_url)
    try:
        before = await scrape(server.url)
        cron = await client.data(
            CREATE_CRON, {"input": {"assistantId": "echo", "schedule": "0 0 1 1 *"}}
        )
        await make_due(database_uri, cron["createCron"]["id"], ago=timedelta(seconds=1))
        # Nothing listens on this port: the delivery fails, is retried once, then given up.
        dead = f"http://127.0.0.1:{free_port()}/hook"
        await client.data(
            RUN_AND_WAIT, {"input": {"assistantId": "echo", "input": {}, "webhook": dead}}
        )
        after = await until_moved(
            lambda: scrape(server.url),
            lambda s: (
                value(s, "lgql_cron_firings_total", outcome="started")
                > value(before, "lgql_cron_firings_total", outcome="started")
                and value(s, "lgql_webhook_deliveries_total", outcome="failed")
                > value(before, "lgql_webhook_deliveries_total", outcome="failed")
            ),
            "the cron's firing and the webhook given up",
        )
        assert value(after, "lgql_webhook_deliveries_total", outcome="retry") > value(
            before, "lgql_webhook_deliveries_total", outcome="retry"
        )
        await client.data(
            "mutation($id: ID!) { deleteCron(id: $id) }", {"id": cron["createCron"]["id"]}
        )
    finally:
        await client.close()


async def test_the_metrics_token_guards_the_endpoint(
    engines: EngineUrls, database_uri: str, redis_prefix: str
) -> None:
    live = await start_server(
        make_settings(f"{redis_prefix}_mtoken", metrics_token="s3cret"),
        database_uri=database_uri,
        redis_uri=engines.redis_uri,
        embedded_worker=False,
    )
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
                response = await http.get(f"{live.url}/metrics", headers=headers)
                assert response.status_code == 401, headers
                assert response.headers["www-authenticate"] == "Bearer"
        await scrape(live.url, {"Authorization": "Bearer s3cret"})
    finally:
        await live.stop()


async def test_with_auth_on_metrics_take_the_same_credentials(
    engines: EngineUrls, database_uri: str, redis_prefix: str
) -> None:

    live = await start_server(
        make_settings(f"{redis_prefix}_mauth", config=AUTH_CONFIG),
        database_uri=database_uri,
        redis_uri=engines.redis_uri,
        embedded_worker=False,
    )
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            assert (await http.get(f"{live.url}/metrics")).status_code == 401
            bad = {"Authorization": "Bearer nope"}
            assert (await http.get(f"{live.url}/metrics", headers=bad)).status_code == 401
        await scrape(live.url, ALICE)
    finally:
        await live.stop()


async def test_worker_listener_and_multiprocess_mode(
    engines: EngineUrls, database_uri: str
) -> None:
    """An API process and a worker process sharing PROMETHEUS_MULTIPROC_DIR: the worker's own
    listener answers (behind the token), and a scrape of either shows both processes' counts
    (the run was created in the API and executed in the worker)."""
    port = free_port()
    token = uuid.uuid4().hex
    with tempfile.TemporaryDirectory(prefix="lgql-prom-") as prom_dir:
        env = {
            "PROMETHEUS_MULTIPROC_DIR": prom_dir,
            "LGQL_WORKER_METRICS_PORT": str(port),
            "LGQL_METRICS_TOKEN": token,
            "N_JOBS_PER_WORKER": "3",
        }
        async with LgqlCluster(
            database_uri, engines.redis_uri, apis=1, workers=1, env_overrides=env
        ) as cluster:
            worker_url = f"http://127.0.0.1:{port}"
            auth = {"Authorization": f"Bearer {token}"}

            async def worker_scrape() -> Samples:
                return await scrape(worker_url, auth)

            async def listening() -> Samples | None:
                try:
                    return await worker_scrape()
                except httpx.TransportError:
                    return None

            await poll_until(listening, deadline=60, what="the worker's listener", cluster=cluster)
            async with httpx.AsyncClient(timeout=30) as http:
                assert (await http.get(f"{worker_url}/metrics")).status_code == 401
                assert (await http.get(f"{worker_url}/nothing", headers=auth)).status_code == 404
            client = cluster.client(0)
            done = await client.data(RUN_AND_WAIT, {"input": {"assistantId": "steps", "input": {}}})
            assert done["runAndWait"]["run"]["status"] == "SUCCESS"
            for read in (worker_scrape, lambda: scrape(cluster.api_urls[0], auth)):
                samples = await until_moved(
                    read,
                    lambda s: (
                        value(s, "lgql_runs_ended_total", graph_id="steps", status="success") >= 1
                    ),
                    "the run's end",
                )
                assert value(samples, "lgql_runs_created_total", graph_id="steps") == 1
                assert value(samples, "lgql_runs_started_total", graph_id="steps") == 1
                assert value(samples, "lgql_worker_slots") == 3
                assert value(samples, "lgql_worker_active_runs") == 0
        # Every process wrote its own files (the API's and the worker's).
        files = await asyncio.to_thread(lambda: list(Path(prom_dir).glob("counter_*.db")))
        assert len({p.name.rsplit("_", 1)[-1] for p in files}) >= 2


async def test_websocket_subscriptions_are_gauged(server: LiveServer) -> None:
    from gql import Client, gql
    from gql.transport.websockets import WebsocketsTransport

    def open_ws(s: Samples) -> float:
        return value(s, "lgql_subscriptions_active", transport="websocket")

    before = open_ws(await scrape(server.url))
    query = gql("subscription($input: RunInput!) { runStream(input: $input) { event } }")
    query.variable_values = {"input": {"assistantId": "slow", "input": {"seconds": 30}}}
    transport = WebsocketsTransport(url=server.graphql_url.replace("http://", "ws://"))
    async with Client(transport=transport) as session:
        events = session.subscribe(query)
        first = await events.__anext__()  # the subscription is running, and stays open
        assert first["runStream"]["event"] == "metadata"
        during = open_ws(await scrape(server.url))
        assert during >= before + 1
        await events.aclose()
    await until_moved(
        lambda: scrape(server.url), lambda s: open_ws(s) <= during - 1, "the WebSocket closed"
    )


async def test_a_worker_whose_metrics_port_is_taken_says_so(
    engines: EngineUrls, database_uri: str, redis_prefix: str
) -> None:
    import os
    import socket
    import subprocess
    import sys

    from tests.conftest import FIXTURE_GRAPHS, ROOT

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
            "DATABASE_URI": database_uri,
            "REDIS_URI": engines.redis_uri,
            "REDIS_KEY_PREFIX": f"{redis_prefix}_mport",
            "LGQL_CONFIG": str(FIXTURE_GRAPHS),
            "LGQL_WORKER_METRICS_HOST": "127.0.0.1",
        }
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "lgql", "worker", "--metrics-port", str(port)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"lgql: cannot serve worker metrics on 127.0.0.1:{port}"), done.stderr
    assert "Traceback" not in done.stderr

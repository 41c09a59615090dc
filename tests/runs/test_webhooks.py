"""Webhooks end to end: runs with `webhook` set, a real receiver on 127.0.0.1, the outbox rows.

The receiver answers each path from a script (status codes, a sleep, or a hang until released),
so each test drives retries, timeouts and refusals on its own path. The servers here have a
database and a queue of their own: another server's worker (with another webhook policy) must
not deliver their webhooks.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.db import threads as threads_db
from app.db import webhooks as webhooks_db
from app.db.engine import Database, driver_connection
from app.db.migrate import upgrade
from app.db.models import Run, WebhookDelivery
from app.messaging.queue import Broker, connect_queue
from app.runtime.langgraph_config import load_langgraph_config
from app.services import run_lifecycle as lifecycle
from app.services import webhooks as webhooks_module
from app.services.common import new_id, utcnow
from app.services.webhooks import WebhookService, record_run_end
from tests.conftest import (
    FIXTURE_GRAPHS,
    EngineUrls,
    GraphQLClient,
    LiveServer,
    free_port,
    make_settings,
    scratch_database,
    start_server,
)
from tests.helpers import (
    CREATE_RUN,
    create_run,
    eventually,
    in_wait_node,
    new_thread,
    run_and_wait,
)

SECRET = "s3cret-for-tests"
CANCEL = "mutation($id: ID!, $action: CancelAction) { cancelRun(id: $id, action: $action) { id status } }"


# --- a webhook receiver ----------------------------------------------------------------------


@dataclass
class Received:
    name: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = orjson.loads(self.body)
        return data


@dataclass
class Receiver:
    """A Starlette app under uvicorn on 127.0.0.1 that records every POST to `/<name>`.

    `script(name, *actions)` sets the answers to the next requests on that path: a status code,
    `("sleep", seconds)` then 200, or `"hang"` (answers 200 once `release` is set); then 200."""

    port: int = field(default_factory=free_port)
    requests: list[Received] = field(default_factory=list)
    scripts: dict[str, list[Any]] = field(default_factory=dict)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def script(self, name: str, *actions: Any) -> str:
        self.scripts[name] = list(actions)
        return self.url(name)

    def got(self, name: str) -> list[Received]:
        return [r for r in self.requests if r.name == name]

    async def wait_for(self, name: str, count: int = 1, within: float = 30) -> list[Received]:
        await eventually(
            lambda: len(self.got(name)) >= count, within=within, what=f"webhook {name}"
        )
        return self.got(name)

    async def _hook(self, request: Request) -> Response:
        name = request.path_params["name"]
        self.requests.append(Received(name, dict(request.headers), await request.body()))
        script = self.scripts.get(name) or []
        action = script.pop(0) if script else 200
        if action == "hang":
            await self.release.wait()
            return Response(status_code=200)
        if isinstance(action, tuple):
            await asyncio.sleep(action[1])
            return Response(status_code=200)
        return Response(status_code=int(action))

    async def start(self) -> None:
        app = Starlette(routes=[Route("/{name}", self._hook, methods=["POST"])])
        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            assert not self._task.done(), "receiver did not start"
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self.release.set()
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task


# --- servers with their own database and queue -------------------------------------------------


@dataclass
class Hooked:
    server: LiveServer
    client: GraphQLClient
    db: Database

    async def deliveries(self, run_id: str) -> list[WebhookDelivery]:
        async with self.db.sessions() as session:
            return await webhooks_db.for_run(session, uuid.UUID(run_id))

    async def delivery(
        self,
        run_id: str,
        statuses: set[str],
        *,
        until: Callable[[WebhookDelivery], bool] = lambda row: True,
        within: float = 30,
    ) -> WebhookDelivery:
        """The run's only delivery, once it has one of `statuses` (and passes `until`)."""

        async def delivered() -> WebhookDelivery | None:
            rows = await self.deliveries(run_id)
            assert len(rows) <= 1, rows
            return rows[0] if rows and rows[0].status in statuses and until(rows[0]) else None

        return await eventually(
            delivered, within=within, what=f"the delivery of run {run_id} to be {statuses}"
        )


@asynccontextmanager
async def hooked_server(
    engines: EngineUrls, redis_prefix: str, **overrides: Any
) -> AsyncIterator[Hooked]:
    values: dict[str, Any] = {
        "webhook_allow_private": True,
        "webhook_allowed_hosts": "127.0.0.1",
        "webhook_secret": SECRET,
        "webhook_max_attempts": 3,
        "webhook_timeout_seconds": 10,
        **overrides,
    }
    async with scratch_database(engines.database_uri, prefix="lgql_test_hooks") as url:
        await upgrade(url)
        settings = make_settings(f"{redis_prefix}_hooks_{uuid.uuid4().hex[:6]}", **values)
        server = await start_server(settings, database_uri=url, redis_uri=engines.redis_uri)
        db = await Database.connect(url, pool_size=2)
        client = GraphQLClient(server.graphql_url)
        try:
            yield Hooked(server, client, db)
        finally:
            await client.close()
            await server.stop()
            await db.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def hooked(
    engines: EngineUrls, redis_prefix: str, redis_cleanup: None
) -> AsyncIterator[Hooked]:
    async with hooked_server(engines, redis_prefix) as server:
        yield server


PAYLOAD_KEYS = {
    "run_id",
    "thread_id",
    "assistant_id",
    "created_at",
    "updated_at",
    "run_started_at",
    "run_ended_at",
    "metadata",
    "kwargs",
    "multitask_strategy",
    "status",
    "values",
    "webhook_sent_at",
}


# --- payloads ----------------------------------------------------------------------------------


async def test_a_successful_run_posts_its_values(hooked: Hooked, receiver: Receiver) -> None:
    url = receiver.script("success")
    tid = await new_thread(hooked.client)
    done = await run_and_wait(
        hooked.client,
        assistantId="steps",
        threadId=tid,
        input={"count": 0},
        metadata={"who": "test"},
        webhook=url,
    )
    run_id = done["run"]["id"]
    (got,) = await receiver.wait_for("success")
    body = got.json
    assert set(body) == PAYLOAD_KEYS  # no `error` for a run that did not fail
    assert body["run_id"] == run_id
    assert body["thread_id"] == tid
    assert body["status"] == "success"
    assert body["values"] == {"count": 5}
    assert body["metadata"] == {"who": "test"}
    assert body["kwargs"]["webhook"] == url
    assert body["multitask_strategy"] == "enqueue"
    assert body["run_started_at"] <= body["run_ended_at"] <= body["webhook_sent_at"]
    delivery = await hooked.delivery(run_id, {"sent"})
    assert delivery.attempts == 1 and delivery.sent_at is not None
    assert got.headers["content-type"] == "application/json"
    assert got.headers["user-agent"].startswith("lgql/")
    assert got.headers["x-lgql-delivery"] == str(delivery.delivery_id)


async def test_the_signature_verifies_with_the_secret(hooked: Hooked, receiver: Receiver) -> None:
    url = receiver.script("signed")
    await run_and_wait(hooked.client, assistantId="steps", input={"count": 0}, webhook=url)
    (got,) = await receiver.wait_for("signed")
    parts = dict(item.split("=", 1) for item in got.headers["x-lgql-signature"].split(","))
    signed = parts["t"].encode() + b"." + got.body
    expected = hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected)
    assert abs(int(parts["t"]) - time.time()) < 300
    wrong = hmac.new(b"another secret", signed, hashlib.sha256).hexdigest()
    assert parts["v1"] != wrong


async def test_a_failed_run_posts_its_error(hooked: Hooked, receiver: Receiver) -> None:
    url = receiver.script("failed")
    tid = await new_thread(hooked.client)
    done = await run_and_wait(
        hooked.client, assistantId="fail", threadId=tid, input={"message": "kaput"}, webhook=url
    )
    assert done["run"]["status"] == "ERROR"
    (got,) = await receiver.wait_for("failed")
    assert got.json["status"] == "error"
    assert got.json["error"] == {"error": "ValueError", "message": "kaput"}


async def test_cancelled_runs_post_interrupted(hooked: Hooked, receiver: Receiver) -> None:
    client = hooked.client
    running_url = receiver.script("cancel-running")
    pending_url = receiver.script("cancel-pending")
    tid = await new_thread(client)
    run = await create_run(
        client,
        assistantId="pipeline",
        threadId=tid,
        input={"tag": "A", "seconds": 30},
        webhook=running_url,
    )
    await in_wait_node(client, run["id"], tid)
    await client.data(CANCEL, {"id": run["id"], "action": "INTERRUPT"})
    (got,) = await receiver.wait_for("cancel-running")
    assert got.json["status"] == "interrupted"
    assert got.json["values"]["log"] == ["first:A"]  # the progress it kept
    assert got.json["run_started_at"] is not None
    # A pending run that never started: no values, no start time.
    other = await create_run(
        client,
        assistantId="steps",
        threadId=tid,
        input={"count": 0},
        afterSeconds=60,
        webhook=pending_url,
    )
    await client.data(CANCEL, {"id": other["id"]})
    (got,) = await receiver.wait_for("cancel-pending")
    assert got.json["status"] == "interrupted"
    assert got.json["run_id"] == other["id"]
    assert got.json["values"] is None and got.json["run_started_at"] is None


async def test_double_texting_interrupt_posts_the_superseded_run(
    hooked: Hooked, receiver: Receiver
) -> None:
    client = hooked.client
    url = receiver.script("superseded")
    tid = await new_thread(client)
    first = await create_run(
        client, assistantId="steps", threadId=tid, input={"count": 0}, afterSeconds=60, webhook=url
    )
    await create_run(
        client, assistantId="steps", threadId=tid, input={"count": 0}, multitaskStrategy="INTERRUPT"
    )
    (got,) = await receiver.wait_for("superseded")
    assert got.json["run_id"] == first["id"]
    assert got.json["status"] == "interrupted"


async def test_rolled_back_runs_post_rollback_after_their_row_is_gone(
    hooked: Hooked, receiver: Receiver
) -> None:
    client = hooked.client
    url = receiver.script("rollback")
    pending_url = receiver.script("rollback-pending")
    tid = await new_thread(client)
    run = await create_run(
        client, assistantId="pipeline", threadId=tid, input={"tag": "A", "seconds": 30}, webhook=url
    )
    await in_wait_node(client, run["id"], tid)
    data = await client.data(CANCEL, {"id": run["id"], "action": "ROLLBACK"})
    assert data["cancelRun"] is None  # the run row is deleted…
    (got,) = await receiver.wait_for("rollback")  # …and its webhook still goes out
    assert got.json["run_id"] == run["id"]
    assert got.json["status"] == "rollback"
    pending = await create_run(
        client, assistantId="steps", threadId=tid, input={}, afterSeconds=60, webhook=pending_url
    )
    await client.data(CANCEL, {"id": pending["id"], "action": "ROLLBACK"})
    (got,) = await receiver.wait_for("rollback-pending")
    assert got.json["run_id"] == pending["id"] and got.json["status"] == "rollback"


async def test_a_stateless_run_posts_after_its_thread_is_deleted(
    hooked: Hooked, receiver: Receiver
) -> None:
    url = receiver.script("stateless")
    done = await run_and_wait(hooked.client, assistantId="steps", input={"count": 1}, webhook=url)
    (got,) = await receiver.wait_for("stateless")
    assert got.json["status"] == "success"
    assert got.json["values"] == {"count": 6}
    assert got.json["thread_id"] == done["run"]["threadId"]
    assert got.json["kwargs"]["temporary"] is True


# --- delivery: retries, timeouts, refusals -----------------------------------------------------


async def test_5xx_and_429_are_retried_until_success(hooked: Hooked, receiver: Receiver) -> None:
    url = receiver.script("flaky", 500, 429, 200)
    done = await run_and_wait(hooked.client, assistantId="steps", input={}, webhook=url)
    delivery = await hooked.delivery(done["run"]["id"], {"sent"})
    assert delivery.attempts == 3
    assert delivery.last_error is None
    got = receiver.got("flaky")
    assert len(got) == 3
    # The same delivery each time: receivers can drop duplicates by this id.
    assert {r.headers["x-lgql-delivery"] for r in got} == {str(delivery.delivery_id)}


async def test_4xx_is_not_retried(hooked: Hooked, receiver: Receiver) -> None:
    url = receiver.script("gone", 404)
    done = await run_and_wait(hooked.client, assistantId="steps", input={}, webhook=url)
    delivery = await hooked.delivery(done["run"]["id"], {"failed"})
    assert delivery.attempts == 1
    assert delivery.last_error == "HTTP 404"
    assert len(receiver.got("gone")) == 1


async def test_given_up_after_max_attempts(hooked: Hooked, receiver: Receiver) -> None:
    url = receiver.script("broken", 500, 500, 500, 200)
    done = await run_and_wait(hooked.client, assistantId="steps", input={}, webhook=url)
    delivery = await hooked.delivery(done["run"]["id"], {"failed"})
    assert delivery.attempts == 3  # webhook_max_attempts
    assert delivery.last_error == "HTTP 500"
    assert len(receiver.got("broken")) == 3


async def test_a_receiver_down_then_up_gets_the_webhook(hooked: Hooked) -> None:
    late = Receiver()
    done = await run_and_wait(
        hooked.client, assistantId="steps", input={}, webhook=late.url("late")
    )
    run_id = done["run"]["id"]
    first = await hooked.delivery(run_id, {"pending"}, until=lambda row: row.attempts >= 1)
    assert first.last_error is not None and first.last_error.startswith("network error")
    await late.start()
    try:
        delivery = await hooked.delivery(run_id, {"sent"})
        assert delivery.attempts >= 2
        assert len(late.got("late")) == 1
    finally:
        await late.stop()


async def test_a_never_enqueued_delivery_is_sent_by_the_sweeper(
    hooked: Hooked, receiver: Receiver
) -> None:
    # As if Redis lost the job (or was down when the run ended): the row alone must suffice.
    url = receiver.script("orphan")
    run = Run(
        run_id=new_id(),
        thread_id=new_id(),
        assistant_id=new_id(),
        status="success",
        metadata_={},
        kwargs={},
        multitask_strategy="enqueue",
        webhook=url,
        created_at=utcnow(),
        updated_at=utcnow(),
    )
    async with hooked.db.sessions.begin() as session:
        delivery_id = await record_run_end(await driver_connection(session), run, values={"x": 1})
    (got,) = await receiver.wait_for("orphan")
    assert got.headers["x-lgql-delivery"] == str(delivery_id)
    assert got.json["values"] == {"x": 1}
    assert (await hooked.delivery(str(run.run_id), {"sent"})).attempts == 1


async def test_a_slow_receiver_does_not_hold_up_other_runs(
    hooked: Hooked, receiver: Receiver
) -> None:
    url = receiver.script("slow", "hang")
    receiver.release.clear()
    try:
        done = await run_and_wait(hooked.client, assistantId="steps", input={}, webhook=url)
        run_id = done["run"]["id"]
        await receiver.wait_for("slow")  # the attempt is in flight, its receiver silent
        other = await run_and_wait(hooked.client, assistantId="steps", input={"count": 0})
        assert other["values"] == {"count": 5}
        # The other run finished while the attempt was still waiting for its answer.
        in_flight = await hooked.delivery(run_id, {"pending"})
        assert in_flight.attempts == 1 and in_flight.last_error is None
    finally:
        receiver.release.set()
    assert (await hooked.delivery(run_id, {"sent"})).attempts == 1


async def test_a_timed_out_attempt_is_retried(
    engines: EngineUrls, redis_prefix: str, redis_cleanup: None, receiver: Receiver
) -> None:
    url = receiver.script("sluggish", ("sleep", 3), 200)
    async with hooked_server(engines, redis_prefix, webhook_timeout_seconds=1) as quick:
        done = await run_and_wait(quick.client, assistantId="steps", input={}, webhook=url)
        delivery = await quick.delivery(done["run"]["id"], {"sent"})
        assert delivery.attempts == 2
        assert len(receiver.got("sluggish")) == 2


# --- configuration: allowed_fields and headers -------------------------------------------------


async def test_allowed_fields_and_configured_headers(
    engines: EngineUrls,
    redis_prefix: str,
    redis_cleanup: None,
    receiver: Receiver,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LG_WEBHOOK_TEAM", "core")
    fixtures = FIXTURE_GRAPHS.parent
    config = tmp_path / "langgraph.json"
    config.write_text(
        json.dumps(
            {
                "dependencies": [str(fixtures)],
                "graphs": {"steps": str(fixtures / "agents" / "steps.py") + ":graph"},
                "webhooks": {
                    "allowed_fields": ["run_id", "status", "values"],
                    "headers": {"X-Team": "${{ env.LG_WEBHOOK_TEAM }}"},
                },
            }
        )
    )
    url = receiver.script("fields")
    async with hooked_server(engines, redis_prefix, config=config) as custom:
        done = await run_and_wait(custom.client, assistantId="steps", input={}, webhook=url)
        (got,) = await receiver.wait_for("fields")
    assert got.json == {"run_id": done["run"]["id"], "status": "success", "values": {"count": 5}}
    assert got.headers["x-team"] == "core"


# --- refusals at creation ----------------------------------------------------------------------


async def test_production_refuses_private_targets_and_writes_nothing(
    gql_client: GraphQLClient,
) -> None:
    tid = await new_thread(gql_client)
    for url in (
        "ftp://example.com/hook",
        "http:///no-host",
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
    ):
        fields = {"assistantId": "steps", "threadId": tid, "input": {}, "webhook": url}
        assert await gql_client.error_code(CREATE_RUN, {"input": fields}) == "BAD_USER_INPUT", url
    runs = await gql_client.data(
        "query($id: ID!) { runs(threadId: $id) { totalCount } }", {"id": tid}
    )
    assert runs["runs"]["totalCount"] == 0
    # A batch with one bad webhook writes none of its runs.
    before = (await gql_client.data("{ runs { totalCount } }"))["runs"]["totalCount"]
    code = await gql_client.error_code(
        "mutation($inputs: [RunInput!]!) { createRuns(inputs: $inputs) { id } }",
        {
            "inputs": [
                {"assistantId": "steps", "input": {}},
                {"assistantId": "steps", "input": {}, "webhook": "http://192.168.0.1/x"},
            ]
        },
    )
    assert code == "BAD_USER_INPUT"
    assert (await gql_client.data("{ runs { totalCount } }"))["runs"]["totalCount"] == before


async def test_the_allow_list_refuses_other_hosts(hooked: Hooked) -> None:
    tid = await new_thread(hooked.client)
    for url in ("https://example.com/hook", "http://127.0.0.2/hook"):
        fields = {"assistantId": "steps", "threadId": tid, "input": {}, "webhook": url}
        assert await hooked.client.error_code(CREATE_RUN, {"input": fields}) == "BAD_USER_INPUT"
    runs = await hooked.client.data(
        "query($id: ID!) { runs(threadId: $id) { totalCount } }", {"id": tid}
    )
    assert runs["runs"]["totalCount"] == 0


# --- the service on its own: the address it checked is the one it connects to ------------------


@pytest_asyncio.fixture(loop_scope="session")
async def bare_service(
    engines: EngineUrls, redis_prefix: str, redis_cleanup: None
) -> AsyncIterator[Callable[..., WebhookService]]:
    """WebhookService factories on a database and queue no worker watches."""
    async with scratch_database(engines.database_uri, prefix="lgql_test_hooks") as url:
        await upgrade(url)
        db = await Database.connect(url, pool_size=2)
        prefix = f"{redis_prefix}_bare_{uuid.uuid4().hex[:6]}"
        redis = await connect_queue(engines.redis_uri, prefix)
        made: list[WebhookService] = []

        def make(**overrides: Any) -> WebhookService:
            settings = make_settings(prefix, **overrides)
            service = WebhookService(
                settings, load_langgraph_config(settings.config), db, Broker(redis, prefix)
            )
            made.append(service)
            return service

        try:
            yield make
        finally:
            for service in made:
                await service.close()
            await redis.aclose()
            await db.close()


async def _outbox(service: WebhookService, url: str) -> uuid.UUID:
    run = Run(
        run_id=new_id(),
        thread_id=new_id(),
        assistant_id=new_id(),
        status="success",
        metadata_={},
        kwargs={},
        multitask_strategy="enqueue",
        webhook=url,
        created_at=utcnow(),
        updated_at=utcnow(),
    )
    async with service.db.sessions.begin() as session:
        delivery_id = await record_run_end(await driver_connection(session), run)
    assert delivery_id is not None
    return delivery_id


async def test_delivery_connects_to_the_address_it_checked(
    bare_service: Callable[..., WebhookService],
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lookups: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"] if host == "hooks.test" else []

    # `hooks.test` exists only in this resolver: the request can only arrive if it is sent to
    # the address checked, never looked up a second time by the HTTP client.
    monkeypatch.setattr(webhooks_module, "resolve", resolver)
    service = bare_service(webhook_allow_private=True)
    receiver.script("pinned")
    delivery_id = await _outbox(service, f"http://hooks.test:{receiver.port}/pinned")
    assert await service.deliver(delivery_id) == "sent"
    (got,) = receiver.got("pinned")
    assert got.headers["host"] == f"hooks.test:{receiver.port}"
    assert lookups == ["hooks.test"]
    # A second delivery of the same row does nothing: it is no longer pending.
    assert await service.deliver(delivery_id) is None


async def test_a_name_resolving_to_a_private_address_is_refused_without_retry(
    bare_service: Callable[..., WebhookService],
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def resolver(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "127.0.0.1"]  # one bad address is enough to refuse

    monkeypatch.setattr(webhooks_module, "resolve", resolver)
    service = bare_service()  # production: no private targets
    receiver.script("rebound")
    delivery_id = await _outbox(service, f"http://rebind.test:{receiver.port}/rebound")
    assert await service.deliver(delivery_id) == "failed"
    async with service.db.sessions() as session:
        row = await webhooks_db.get(session, delivery_id)
    assert row is not None and row.attempts == 1
    assert row.last_error is not None and "refused" in row.last_error
    assert receiver.got("rebound") == []


async def test_disabled_webhooks_are_not_sent(
    bare_service: Callable[..., WebhookService], receiver: Receiver
) -> None:
    service = bare_service(webhook_allow_private=True)
    service.disabled = True  # langgraph.json http.disable_webhooks
    receiver.script("disabled")
    delivery_id = await _outbox(service, receiver.url("disabled"))
    assert await service.deliver(delivery_id) == "failed"
    assert receiver.got("disabled") == []


async def test_a_run_whose_worker_keeps_dying_records_its_error_webhook(
    bare_service: Callable[..., WebhookService],
) -> None:
    # The sweeper's path: the lease lapsed once too often, the run ends ERROR.
    service = bare_service()
    thread_id, run_id = new_id(), new_id()
    async with service.db.sessions.begin() as session:
        await threads_db.insert_if_absent(
            await driver_connection(session),
            thread_id=thread_id,
            metadata={},
            now=utcnow(),
            status="busy",
        )
        await (await driver_connection(session)).execute(
            "INSERT INTO runs (run_id, thread_id, assistant_id, status, attempt, started_at,"
            " lease_until, webhook) VALUES ($1, $2, $3, 'running', 1, $4, $5, $6)",
            run_id,
            thread_id,
            new_id(),
            utcnow() - timedelta(minutes=1),
            utcnow() - timedelta(seconds=1),
            "https://hooks.example.com/x",
        )
    async with service.db.pool.acquire() as conn, conn.transaction():
        (lapsed,) = await lifecycle.lapse_leases(lifecycle.RunTx(conn), max_attempts=1)
    assert lapsed.status == "error" and lapsed.ended_at is not None
    async with service.db.sessions() as session:
        (delivery,) = await webhooks_db.for_run(session, run_id)
    assert delivery.status == "pending" and delivery.attempts == 0
    assert delivery.payload["status"] == "error"
    assert delivery.payload["error"]["error"] == "RunAttemptsExceeded"
    assert delivery.payload["run_started_at"] is not None
    assert delivery.payload["run_ended_at"] is not None
    # The sweeper's pass finds it due (its job was never enqueued).
    assert await service.requeue_due() >= 1

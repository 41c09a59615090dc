"""A run created over LangGraph's REST API with `webhook` (the Python SDK's `webhook=`) posts its
end to that URL, as one created over GraphQL does: the same outbox and payload
(tests/runs/test_webhooks.py has the receiver and the server)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from langgraph_sdk import get_client

from tests.conftest import EngineUrls
from tests.runs.test_webhooks import PAYLOAD_KEYS, Hooked, Receiver, hooked_server


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def rest_receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def rest_hooked(
    engines: EngineUrls, redis_prefix: str, redis_cleanup: None
) -> AsyncIterator[Hooked]:
    async with hooked_server(engines, redis_prefix) as server:
        yield server


async def test_rest_runs_post_their_webhooks(rest_hooked: Hooked, rest_receiver: Receiver) -> None:
    client = get_client(url=rest_hooked.server.url)
    try:
        thread = await client.threads.create()
        tid = thread["thread_id"]
        on_thread = rest_receiver.script("rest-thread")
        run = await client.runs.create(
            tid, "steps", input={"count": 0}, metadata={"via": "rest"}, webhook=on_thread
        )
        await client.runs.join(tid, run["run_id"])
        stateless = rest_receiver.script("rest-stateless")
        created: list[dict[str, str]] = []
        await client.runs.wait(
            None, "steps", input={"count": 1}, webhook=stateless, on_run_created=created.append
        )
    finally:
        await client.aclose()

    (got,) = await rest_receiver.wait_for("rest-thread")
    body = got.json
    assert set(body) == PAYLOAD_KEYS
    assert body["run_id"] == run["run_id"] and body["thread_id"] == tid
    assert body["status"] == "success"
    assert body["values"] == {"count": 5}
    assert body["metadata"] == {"via": "rest"}
    assert body["kwargs"]["webhook"] == on_thread
    delivery = await rest_hooked.delivery(run["run_id"], {"sent"})
    assert got.headers["x-lgql-delivery"] == str(delivery.delivery_id)

    (got_stateless,) = await rest_receiver.wait_for("rest-stateless")
    assert got_stateless.json["run_id"] == created[0]["run_id"]
    assert got_stateless.json["values"] == {"count": 6}

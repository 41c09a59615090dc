"""Crons over LangGraph's REST API, through `langgraph_sdk` and httpx."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from tests.conftest import GraphQLClient, LiveServer

SYSTEM_ECHO = str(uuid.uuid5(uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8"), "echo"))
CRON_FIELDS = {
    "cron_id",
    "assistant_id",
    "thread_id",
    "on_run_completed",
    "end_time",
    "schedule",
    "timezone",
    "created_at",
    "updated_at",
    "user_id",
    "payload",
    "next_run_date",
    "metadata",
    "enabled",
}


@pytest.fixture
async def client(live_server: LiveServer) -> AsyncIterator[LangGraphClient]:
    c = get_client(url=live_server.url)
    try:
        yield c
    finally:
        await c.aclose()


@pytest.fixture
async def http(live_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as c:
        yield c


async def test_stateless_cron(
    client: LangGraphClient, http: httpx.AsyncClient, unique: str
) -> None:
    cron = await client.crons.create(
        "echo",
        schedule="0 3 * * *",
        input={"messages": [{"role": "user", "content": "hi"}]},
        metadata={"tag": unique},
        timezone="Europe/Paris",
        stream_mode="updates",
    )
    assert set(cron) >= CRON_FIELDS
    assert cron["assistant_id"] == SYSTEM_ECHO
    assert cron["thread_id"] is None
    assert cron["on_run_completed"] == "delete"
    assert cron["schedule"] == "0 3 * * *"
    assert cron["timezone"] == "Europe/Paris"
    assert cron["enabled"] is True
    assert cron["next_run_date"]
    assert cron["metadata"] == {"tag": unique}
    assert cron["payload"]["input"] == {"messages": [{"role": "user", "content": "hi"}]}
    assert cron["payload"]["stream_mode"] == ["updates"]
    got = (await http.get(f"/runs/crons/{cron['cron_id']}")).json()
    assert got == cron
    keep = await client.crons.create("echo", schedule="0 4 * * *", on_run_completed="keep")
    assert keep["on_run_completed"] == "keep"


async def test_thread_cron(client: LangGraphClient) -> None:
    thread = await client.threads.create()
    cron = await client.crons.create_for_thread(
        thread["thread_id"], "echo", schedule="*/5 * * * *", multitask_strategy="reject"
    )
    assert cron["thread_id"] == thread["thread_id"]
    assert cron["on_run_completed"] is None
    assert cron["payload"]["multitask_strategy"] == "reject"
    found = await client.crons.search(thread_id=thread["thread_id"])
    assert [c["cron_id"] for c in found] == [cron["cron_id"]]
    await client.threads.delete(thread["thread_id"])
    assert await client.crons.search(thread_id=thread["thread_id"]) == []


async def test_update(client: LangGraphClient, http: httpx.AsyncClient, unique: str) -> None:
    cron = await client.crons.create(
        "echo", schedule="0 3 * * *", metadata={"a": 1}, end_time=datetime(2100, 1, 1, tzinfo=UTC)
    )
    cid = cron["cron_id"]
    updated = await client.crons.update(
        cid, schedule="0 5 * * *", metadata={"b": unique}, enabled=False
    )
    assert updated["schedule"] == "0 5 * * *"
    assert updated["metadata"] == {"a": 1, "b": unique}
    assert updated["enabled"] is False
    assert updated["end_time"].startswith("2100-01-01")
    cleared = await http.patch(f"/runs/crons/{cid}", json={"end_time": None})
    assert cleared.status_code == 200
    assert cleared.json()["end_time"] is None
    empty = await http.patch(f"/runs/crons/{cid}", json={})
    assert empty.status_code == 400
    assert empty.json() == {"detail": "Request body cannot be empty"}


async def test_search_count_select_delete(
    client: LangGraphClient, http: httpx.AsyncClient, unique: str
) -> None:
    made = [
        await client.crons.create("echo", schedule=f"{i} 3 * * *", metadata={"tag": unique})
        for i in range(3)
    ]
    found = await client.crons.search(metadata={"tag": unique})
    assert [c["cron_id"] for c in found] == [c["cron_id"] for c in reversed(made)]
    assert await client.crons.count(metadata={"tag": unique}) == 3
    assert await client.crons.count(metadata={"tag": unique}, assistant_id="steps") == 0
    by_id = await client.crons.search(
        metadata={"tag": unique}, sort_by="cron_id", sort_order="asc", select=["cron_id"]
    )
    assert by_id == [{"cron_id": c} for c in sorted(c["cron_id"] for c in made)]
    disabled = await client.crons.search(metadata={"tag": unique}, enabled=False)
    assert disabled == []
    page = await http.post("/runs/crons/search", json={"metadata": {"tag": unique}, "limit": 2})
    assert len(page.json()) == 2 and page.headers["X-Pagination-Next"] == "2"
    await client.crons.delete(made[0]["cron_id"])
    assert await client.crons.count(metadata={"tag": unique}) == 2
    again = await http.delete(f"/runs/crons/{made[0]['cron_id']}")
    assert again.status_code == 404


async def test_bad_input(http: httpx.AsyncClient) -> None:
    schedule = await http.post("/runs/crons", json={"assistant_id": "echo", "schedule": "nope"})
    assert schedule.status_code == 422
    assert "schedule" in schedule.json()["detail"]
    zone = await http.post(
        "/runs/crons", json={"assistant_id": "echo", "schedule": "* * * * *", "timezone": "Mars/X"}
    )
    assert zone.status_code == 422
    assistant = await http.post(
        "/runs/crons", json={"assistant_id": str(uuid.uuid4()), "schedule": "* * * * *"}
    )
    assert assistant.status_code == 404
    thread = await http.post(
        f"/threads/{uuid.uuid4()}/runs/crons",
        json={"assistant_id": "echo", "schedule": "* * * * *"},
    )
    assert thread.status_code == 404
    mode = await http.post(
        "/runs/crons", json={"assistant_id": "echo", "schedule": "* * * * *", "stream_mode": "x"}
    )
    assert mode.status_code == 422


async def test_rest_and_graphql_see_the_same_crons(
    client: LangGraphClient, gql_client: GraphQLClient
) -> None:
    cron = await client.crons.create("echo", schedule="0 3 * * *")
    got = await gql_client.data(
        "query($id: ID!) { cron(id: $id) { id schedule } }", {"id": cron["cron_id"]}
    )
    assert got["cron"] == {"id": cron["cron_id"], "schedule": "0 3 * * *"}

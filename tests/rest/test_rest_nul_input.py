"""REST bodies and query parameters holding U+0000, which Postgres can store in no text or
jsonb column: 422 naming where, as LangGraph Server answers bad input, and nothing written
(they used to fail in the database, as 500)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import LiveServer


@pytest.fixture
async def http(live_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as client:
        yield client


@pytest.mark.parametrize(
    ("path", "body", "where"),
    [
        ("/threads", {"metadata": {"owner": "a\x00"}}, "metadata.owner"),
        (
            "/runs/wait",
            {"assistant_id": "echo", "input": {"messages": [{"role": "user", "content": "\x00"}]}},
            "input.messages[0].content",
        ),
        ("/store/items", {"namespace": ["n"], "key": "k\x00", "value": {"a": 1}}, "key"),
        ("/assistants", {"graph_id": "echo", "config": {"tags": ["\x00"]}}, "config.tags[0]"),
    ],
)
async def test_a_body_with_a_nul_character_is_422(
    http: httpx.AsyncClient, path: str, body: dict[str, object], where: str
) -> None:
    method = "PUT" if path == "/store/items" else "POST"
    response = await http.request(method, path, json=body)
    assert response.status_code == 422
    assert response.json()["detail"] == (
        f"Strings cannot contain the character U+0000 (at `{where}`)"
    )


async def test_a_query_parameter_with_a_nul_character_is_422(http: httpx.AsyncClient) -> None:
    response = await http.get("/store/items", params={"namespace": "n", "key": "k\x00"})
    assert response.status_code == 422
    assert "query parameter `key`" in response.json()["detail"]


async def test_nothing_is_written(http: httpx.AsyncClient, unique: str) -> None:
    response = await http.post("/threads", json={"metadata": {"owner": unique, "x": "\x00"}})
    assert response.status_code == 422
    found = await http.post("/threads/search", json={"metadata": {"owner": unique}})
    assert found.json() == []

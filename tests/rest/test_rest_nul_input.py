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


# --- the walker every door asks ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"a": ["x", {"b\x00": 1}]}, "p.a[1].b\\u0000"),
        ({"a": ["x", "y\x00"]}, "p.a[1]"),
        # A backslash followed by "u0000" is text, not the character: nothing to refuse.
        ({"a": "\\u0000", "b": ["\\\\u0000"]}, None),
        ({"a": "plain", "b": [1, 2.5, None, True]}, None),
        # Values JSON cannot encode (an integer key, a 70-bit integer) are still looked through.
        ({1: "c\x00"}, "p.1"),
        ({"n": 2**70, "s": "t\x00"}, "p.s"),
        ({"n": 2**70}, None),
    ],
)
def test_nul_at_names_where_the_character_is(value: object, where: str | None) -> None:
    from app.storable import nul_at

    assert nul_at(value, "p") == where

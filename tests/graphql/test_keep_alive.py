"""A slow `runAndWait` over plain HTTP is kept alive with newlines before its JSON body
(`app.keep_alive`, which A2A's `message/send` shares: tests/doors/test_a2a.py)."""

from __future__ import annotations

import httpx
import orjson
import pytest

from tests.conftest import LiveServer

RUN_AND_WAIT = """mutation($input: RunInput!) {
  runAndWait(input: $input) { run { status } values }
}"""


async def test_a_slow_run_and_wait_is_kept_alive_with_newlines(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 5 s in production; shortened so the proof takes a second. The client's read timeout
    # (0.5 s) is far shorter than the run (1.5 s): only the newlines save the call.
    from app import keep_alive

    monkeypatch.setattr(keep_alive, "KEEP_ALIVE_AFTER", 0.1)
    monkeypatch.setattr(keep_alive, "KEEP_ALIVE_EVERY", 0.1)
    body = {
        "query": RUN_AND_WAIT,
        "variables": {"input": {"assistantId": "slow", "input": {"seconds": 1.5, "count": 0}}},
    }
    async with httpx.AsyncClient(timeout=0.5) as http:
        response = await http.post(live_server.graphql_url, json=body)
    assert response.status_code == 200
    raw = response.content
    assert raw.startswith(b"\n") and raw.count(b"\n") >= 5, raw[:40]
    answer = orjson.loads(raw)
    assert answer["data"]["runAndWait"]["run"]["status"] == "SUCCESS"
    assert answer["data"]["runAndWait"]["values"]["count"] == 1


async def test_a_client_leaving_during_the_newlines_does_not_stop_the_run(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer is awaited in the request's own task: a client that goes away while the
    newlines flow stops the sending, not the run (`onDisconnect: CONTINUE`, the default), which
    ends SUCCESS with its state saved."""
    from app import keep_alive

    monkeypatch.setattr(keep_alive, "KEEP_ALIVE_AFTER", 0.1)
    monkeypatch.setattr(keep_alive, "KEEP_ALIVE_EVERY", 0.1)
    async with httpx.AsyncClient(timeout=30) as http:
        created = await http.post(
            live_server.graphql_url,
            json={"query": 'mutation { createThread(input: {graphId: "slow"}) { id } }'},
        )
        thread_id = created.json()["data"]["createThread"]["id"]
        body = {
            "query": RUN_AND_WAIT,
            "variables": {
                "input": {
                    "assistantId": "slow",
                    "threadId": thread_id,
                    "input": {"seconds": 1.0, "count": 0},
                }
            },
        }
        async with http.stream("POST", live_server.graphql_url, json=body) as response:
            assert response.status_code == 200
            async for chunk in response.aiter_bytes():
                assert chunk.strip() == b""  # a newline: the run is still going
                break
        # The client has gone; the run goes on and ends (waited for by its id), state saved.
        runs = await http.post(
            live_server.graphql_url,
            json={
                "query": "query($t: ID) { runs(threadId: $t) { nodes { id } } }",
                "variables": {"t": thread_id},
            },
        )
        (run,) = runs.json()["data"]["runs"]["nodes"]
        joined = await http.post(
            live_server.graphql_url,
            json={
                "query": "query($id: ID!) { joinRun(runId: $id) { run { status } values } }",
                "variables": {"id": run["id"]},
            },
        )
        result = joined.json()["data"]["joinRun"]
        assert result["run"]["status"] == "SUCCESS" and result["values"]["count"] == 1, result

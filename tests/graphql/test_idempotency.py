"""Idempotency keys: a retried create (createRun, runAndWait, runStream, createRuns, createThread,
createAssistant) returns what the first request made and never makes a second; a reused key with
another input is a CONFLICT; keys expire and are swept."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from app.db import idempotency as keys_db
from app.services.idempotency import IdempotencyKey, fingerprint
from tests.conftest import EngineUrls, GraphQLClient, LiveServer, migrated_pool
from tests.helpers import CREATE_RUN, RUN_AND_WAIT, RUN_STREAM, collect, new_thread

CREATE_THREAD = (
    "mutation($input: CreateThreadInput) { createThread(input: $input) { id metadata } }"
)
CREATE_ASSISTANT = (
    "mutation($input: CreateAssistantInput!) { createAssistant(input: $input) { id version } }"
)
CREATE_RUNS = "mutation($inputs: [RunInput!]!) { createRuns(inputs: $inputs) { id } }"
RUNS_OF = "query($tid: ID!) { runs(threadId: $tid) { totalCount edges { node { id } } } }"
THREADS_WITH = "query($m: JSON) { threads(filter: { metadata: $m }) { totalCount } }"


def new_key() -> str:
    return f"key-{uuid.uuid4()}"


async def errors_of(client: GraphQLClient, query: str, variables: dict[str, Any]) -> list[Any]:
    body = await client.execute(query, variables)
    assert body.get("errors"), body
    return list(body["errors"])


async def test_repeated_create_thread_returns_the_same_thread(gql_client: GraphQLClient) -> None:
    key, tag = new_key(), uuid.uuid4().hex
    variables = {"input": {"metadata": {"tag": tag}, "idempotencyKey": key}}
    first = (await gql_client.data(CREATE_THREAD, variables))["createThread"]
    again = (await gql_client.data(CREATE_THREAD, variables))["createThread"]
    assert again["id"] == first["id"]
    counted = await gql_client.data(THREADS_WITH, {"m": {"tag": tag}})
    assert counted["threads"]["totalCount"] == 1


async def test_key_reused_with_another_input_is_a_conflict(gql_client: GraphQLClient) -> None:
    key = new_key()
    first = await gql_client.data(
        CREATE_THREAD, {"input": {"metadata": {"n": 1}, "idempotencyKey": key}}
    )
    errors = await errors_of(
        gql_client, CREATE_THREAD, {"input": {"metadata": {"n": 2}, "idempotencyKey": key}}
    )
    assert errors[0]["extensions"]["code"] == "CONFLICT"
    assert "already used for a different thread request" in errors[0]["message"]
    assert errors[0]["extensions"]["resource_id"] == first["createThread"]["id"]


async def test_keys_of_different_kinds_do_not_meet(gql_client: GraphQLClient) -> None:
    key = new_key()
    await gql_client.data(CREATE_THREAD, {"input": {"idempotencyKey": key}})
    created = await gql_client.data(
        CREATE_ASSISTANT, {"input": {"graphId": "echo", "idempotencyKey": key}}
    )
    assert created["createAssistant"]["version"] == 1


async def test_repeated_create_assistant_returns_the_same_assistant(
    gql_client: GraphQLClient,
) -> None:
    variables = {"input": {"graphId": "echo", "name": "once", "idempotencyKey": new_key()}}
    first = (await gql_client.data(CREATE_ASSISTANT, variables))["createAssistant"]
    again = (await gql_client.data(CREATE_ASSISTANT, variables))["createAssistant"]
    assert again == first


async def test_repeated_create_run_makes_one_run(gql_client: GraphQLClient) -> None:
    tid = await new_thread(gql_client)
    variables = {
        "input": {
            "assistantId": "echo",
            "threadId": tid,
            "input": {"messages": [{"role": "user", "content": "hi"}]},
            "idempotencyKey": new_key(),
        }
    }
    first = (await gql_client.data(CREATE_RUN, variables))["createRun"]
    again = (await gql_client.data(CREATE_RUN, variables))["createRun"]
    assert again["id"] == first["id"]
    runs = (await gql_client.data(RUNS_OF, {"tid": tid}))["runs"]
    assert runs["totalCount"] == 1


async def test_concurrent_repeats_of_a_create_run_make_one_run(gql_client: GraphQLClient) -> None:
    tid = await new_thread(gql_client)
    variables = {
        "input": {
            "assistantId": "echo",
            "threadId": tid,
            "input": {"messages": [{"role": "user", "content": "hi"}]},
            "idempotencyKey": new_key(),
        }
    }
    answers = await asyncio.gather(*(gql_client.data(CREATE_RUN, variables) for _ in range(8)))
    assert len({a["createRun"]["id"] for a in answers}) == 1
    assert (await gql_client.data(RUNS_OF, {"tid": tid}))["runs"]["totalCount"] == 1


async def test_repeated_run_and_wait_returns_the_first_runs_outcome(
    gql_client: GraphQLClient,
) -> None:
    tid = await new_thread(gql_client)
    variables = {
        "input": {
            "assistantId": "echo",
            "threadId": tid,
            "input": {"messages": [{"role": "user", "content": "once"}]},
            "idempotencyKey": new_key(),
        }
    }
    first = (await gql_client.data(RUN_AND_WAIT, variables))["runAndWait"]
    again = (await gql_client.data(RUN_AND_WAIT, variables))["runAndWait"]
    assert again["run"]["id"] == first["run"]["id"]
    assert again["run"]["status"] == "SUCCESS"
    assert again["values"] == first["values"]
    assert len(again["values"]["messages"]) == 2  # the run ran once
    assert (await gql_client.data(RUNS_OF, {"tid": tid}))["runs"]["totalCount"] == 1


async def test_repeated_run_stream_follows_the_same_run(
    live_server: LiveServer, gql_client: GraphQLClient
) -> None:
    tid = await new_thread(gql_client)
    variables = {
        "input": {
            "assistantId": "echo",
            "threadId": tid,
            "input": {"messages": [{"role": "user", "content": "x"}]},
            "idempotencyKey": new_key(),
        }
    }
    first = await collect(live_server, RUN_STREAM, variables, "runStream")
    again = await collect(live_server, RUN_STREAM, variables, "runStream")
    assert {e["runId"] for e in first} == {e["runId"] for e in again}
    assert again[-1]["event"] == "end"
    assert (await gql_client.data(RUNS_OF, {"tid": tid}))["runs"]["totalCount"] == 1


async def test_create_runs_takes_a_key_per_run(gql_client: GraphQLClient) -> None:
    inputs = [
        {
            "assistantId": "echo",
            "input": {"messages": []},
            "onCompletion": "KEEP",
            "idempotencyKey": new_key(),
        }
        for _ in range(2)
    ]
    first = (await gql_client.data(CREATE_RUNS, {"inputs": inputs}))["createRuns"]
    again = (await gql_client.data(CREATE_RUNS, {"inputs": inputs}))["createRuns"]
    assert [r["id"] for r in again] == [r["id"] for r in first]
    assert len({r["id"] for r in first}) == 2


async def test_a_failed_create_keeps_no_key(gql_client: GraphQLClient) -> None:
    tid, key = await new_thread(gql_client), new_key()
    errors = await errors_of(
        gql_client, CREATE_THREAD, {"input": {"threadId": tid, "idempotencyKey": key}}
    )
    assert errors[0]["extensions"]["code"] == "CONFLICT"  # the thread exists: nothing made
    # The key was rolled back with the failed create: it is free for another request.
    made = await gql_client.data(CREATE_THREAD, {"input": {"idempotencyKey": key}})
    assert made["createThread"]["id"] != tid


async def test_repeat_of_a_run_that_is_gone_is_a_conflict(gql_client: GraphQLClient) -> None:
    variables = {
        "input": {"assistantId": "echo", "input": {"messages": []}, "idempotencyKey": new_key()}
    }
    # A stateless run is deleted with its temporary thread when it ends.
    first = (await gql_client.data(RUN_AND_WAIT, variables))["runAndWait"]
    errors = await errors_of(gql_client, RUN_AND_WAIT, variables)
    assert errors[0]["extensions"]["code"] == "CONFLICT"
    assert "no longer exists" in errors[0]["message"]
    assert errors[0]["extensions"]["resource_id"] == first["run"]["id"]


async def test_invalid_keys_are_bad_user_input(gql_client: GraphQLClient) -> None:
    for bad in ("", "k" * 256, "line\nbreak"):
        errors = await errors_of(gql_client, CREATE_THREAD, {"input": {"idempotencyKey": bad}})
        assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT", bad
        assert errors[0]["extensions"]["field"] == "idempotencyKey"
    ok = await gql_client.data(CREATE_THREAD, {"input": {"idempotencyKey": "k" * 255}})
    assert ok["createThread"]["id"]


# --- the key table on its own ------------------------------------------------------------


async def test_an_expired_key_is_free_again_and_swept(engines: EngineUrls) -> None:
    async with migrated_pool(engines.database_uri, prefix="lgql_idem") as pool:
        key = IdempotencyKey.of("thread", "k", owner="ada", request={"a": 1})
        assert key is not None
        first, second = uuid.uuid4(), uuid.uuid4()
        async with pool.acquire() as conn:
            assert await key.claim(conn, first) is None
            assert await key.claim(conn, second) == first  # a repeat: the first one's object
            await conn.execute("UPDATE idempotency_keys SET expires_at = now() - interval '1 s'")
            assert await key.claim(conn, second) is None  # expired: the key is free again
            assert await key.claim(conn, uuid.uuid4()) == second
            other = IdempotencyKey.of("thread", "k", owner="bob", request={"a": 1})
            assert other is not None and await other.claim(conn, first) is None  # per user
            await conn.execute("UPDATE idempotency_keys SET expires_at = now() - interval '1 s'")
            assert await keys_db.sweep(conn) == 2
            assert await conn.fetchval("SELECT count(*) FROM idempotency_keys") == 0


async def test_key_statements_plan_against_the_migrated_schema(engines: EngineUrls) -> None:
    async with migrated_pool(engines.database_uri, prefix="lgql_idem") as pool:
        async with pool.acquire() as conn:
            for sql in keys_db.STATEMENTS:
                await conn.prepare(sql)


def test_fingerprint_ignores_key_order() -> None:
    assert fingerprint({"a": 1, "b": [1, {"c": 2, "d": 3}]}) == fingerprint(
        {"b": [1, {"d": 3, "c": 2}], "a": 1}
    )
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})

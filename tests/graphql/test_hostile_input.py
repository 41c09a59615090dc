"""Hostile input: JSON scalar limits, strict body decoding, masked internal errors, and secrets
kept out of logs and responses (docs/hardening.md)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
import sqlalchemy.exc
import strawberry

from app.services.threads import ThreadService
from schema.context import Context
from schema.scalars import JSONLimitError, check_json_value
from schema.schema import build_schema
from tests.conftest import EngineUrls, GraphQLClient, LiveServer, make_settings, start_server

CREATE_THREAD = "mutation($input: CreateThreadInput) { createThread(input: $input) { id } }"
THREAD = "query($id: ID!) { thread(id: $id) { id } }"
SQL_TEXT = "SELECT thread.thread_id, thread.metadata FROM thread WHERE thread.thread_id = $1::UUID"


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


def literal(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


def only_error(body: dict[str, Any]) -> dict[str, Any]:
    assert len(body.get("errors") or []) == 1, body
    error: dict[str, Any] = body["errors"][0]
    return error


# --- JSON scalar limits -----------------------------------------------------------------------


def test_check_json_value_counts_depth_of_arrays_and_objects() -> None:
    assert check_json_value(nested(3), max_depth=3, max_bytes=1000) == nested(3)
    assert check_json_value([[[]]], max_depth=3, max_bytes=1000) == [[[]]]
    with pytest.raises(JSONLimitError, match="deeper than 3"):
        check_json_value(nested(4), max_depth=3, max_bytes=1000)
    with pytest.raises(JSONLimitError, match="deeper than 3"):
        check_json_value([[[[]]]], max_depth=3, max_bytes=1000)


def test_check_json_value_does_not_recurse_on_huge_depth() -> None:
    value: Any = 1
    for _ in range(100_000):  # far past the interpreter's recursion limit
        value = [value]
    with pytest.raises(JSONLimitError, match="LGQL_MAX_JSON_DEPTH"):
        check_json_value(value, max_depth=32, max_bytes=10**9)


def test_check_json_value_size_is_serialized_bytes() -> None:
    value = {"k": "x" * 100}  # {"k":"xxx…"} is 108 bytes
    assert check_json_value(value, max_depth=32, max_bytes=108) == value
    with pytest.raises(JSONLimitError, match=r"108 bytes serialized, more than 107"):
        check_json_value(value, max_depth=32, max_bytes=107)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (float("nan"), "finite"),
        ({"x": float("inf")}, "finite"),
        (2**64, "64 bits"),
        ([-(2**63) - 1], "64 bits"),
        ({"s": "a\x00b"}, "U\\+0000"),
        ({"k\x00": 1}, "U\\+0000"),
    ],
)
def test_check_json_value_refuses_what_postgres_jsonb_cannot_store(value: Any, reason: str) -> None:
    with pytest.raises(JSONLimitError, match=reason):
        check_json_value(value, max_depth=32, max_bytes=1000)


async def test_json_variable_too_deep_is_bad_user_input(gql_client: GraphQLClient) -> None:
    body = await gql_client.execute(CREATE_THREAD, {"input": {"metadata": nested(33)}})

    error = only_error(body)
    assert body["data"] is None
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "$input" in error["message"] and "metadata" in error["message"]
    assert "32 levels" in error["message"] and "LGQL_MAX_JSON_DEPTH" in error["message"]


async def test_json_variable_at_the_depth_limit_is_accepted(gql_client: GraphQLClient) -> None:
    data = await gql_client.data(CREATE_THREAD, {"input": {"metadata": nested(32)}})
    assert data["createThread"]["id"]


async def test_json_variable_too_large_is_bad_user_input(gql_client: GraphQLClient) -> None:
    big = {"blob": "x" * (1024 * 1024)}  # just over 1 MiB once serialized
    body = await gql_client.execute(CREATE_THREAD, {"input": {"metadata": big}})

    error = only_error(body)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "LGQL_MAX_JSON_BYTES" in error["message"] and "1048576" in error["message"]
    assert len(error["message"]) < 1000  # the refused value is not echoed back


async def test_inline_json_literal_too_deep_is_bad_user_input(gql_client: GraphQLClient) -> None:
    query = f"mutation {{ createThread(input: {{metadata: {{a: {literal(40)}}}}}) {{ id }} }}"
    body = await gql_client.execute(query)

    error = only_error(body)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "LGQL_MAX_JSON_DEPTH" in error["message"]


async def test_inline_json_literal_within_limits_is_accepted(gql_client: GraphQLClient) -> None:
    query = f"mutation {{ createThread(input: {{metadata: {{a: {literal(5)}}}}}) {{ id }} }}"
    assert (await gql_client.data(query))["createThread"]["id"]


async def test_json_argument_limit_applies_to_query_arguments_too(
    gql_client: GraphQLClient,
) -> None:
    query = "query($m: JSON) { threads(filter: {metadata: $m}) { totalCount } }"
    body = await gql_client.execute(query, {"m": {"blob": "y" * (1024 * 1024 + 1)}})

    assert only_error(body)["extensions"]["code"] == "BAD_USER_INPUT"


async def test_refused_json_never_reaches_a_service(
    gql_client: GraphQLClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Any] = []
    real_create = ThreadService.create

    async def spy(self: ThreadService, *args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return await real_create(self, *args, **kwargs)

    monkeypatch.setattr(ThreadService, "create", spy)

    refused = await gql_client.execute(CREATE_THREAD, {"input": {"metadata": nested(100)}})
    assert only_error(refused)["extensions"]["code"] == "BAD_USER_INPUT"
    assert calls == []
    await gql_client.data(CREATE_THREAD, {"input": {"metadata": nested(2)}})
    assert len(calls) == 1  # the spy does see calls that pass the limits


async def test_json_limits_are_per_schema() -> None:
    schema: strawberry.Schema = build_schema(
        make_settings("unused", max_json_depth=2, max_json_bytes=64)
    )
    query = "query($m: JSON) { threads(filter: {metadata: $m}) { totalCount } }"
    context = Context(services=None, request=None)  # type: ignore[arg-type]

    deep = await schema.execute(query, variable_values={"m": [[[1]]]}, context_value=context)
    large = await schema.execute(query, variable_values={"m": ["z" * 80]}, context_value=context)

    assert deep.errors and "deeper than 2" in deep.errors[0].message
    assert large.errors and "more than 64" in large.errors[0].message
    for result in (deep, large):
        assert result.errors is not None
        assert result.errors[0].formatted["extensions"] == {"code": "BAD_USER_INPUT"}


async def test_non_finite_numbers_and_nul_in_json_are_bad_user_input(
    gql_client: GraphQLClient,
) -> None:
    # 1e400 is a valid GraphQL float literal that Python reads as infinity.
    inline_inf = "mutation { createThread(input: {metadata: {n: 1e400}}) { id } }"
    nul = await gql_client.execute(CREATE_THREAD, {"input": {"metadata": {"s": "a\u0000b"}}})

    assert (await gql_client.error_code(inline_inf)) == "BAD_USER_INPUT"
    assert only_error(nul)["extensions"]["code"] == "BAD_USER_INPUT"


# --- Strict body decoding ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"query": "{ __typename }", "variables": {"v": ' + b"[" * 5000 + b"]" * 5000 + b"}}",
        b'{"query": "{ __typename }", "variables": {"v": ' + b"1" * 5000 + b"}}",
        b'{"query": "{ __typename }", "variables": {"v": NaN}}',
        b'{"query": "{ __typename }", "variables": {"v": "\\ud800"}}',
    ],
    ids=["nested-5000", "int-5000-digits", "nan", "lone-surrogate"],
)
async def test_hostile_json_bodies_are_400_bad_request(
    live_server: LiveServer, body: bytes
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(
            live_server.graphql_url, content=body, headers={"content-type": "application/json"}
        )

    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


# --- Masked internal errors -------------------------------------------------------------------


def _sqlalchemy_error() -> Exception:
    orig = asyncpg.exceptions.UndefinedTableError('relation "thread" does not exist')
    return sqlalchemy.exc.ProgrammingError(SQL_TEXT, ("00000000",), orig)


def _asyncpg_error() -> Exception:
    return asyncpg.exceptions.SyntaxOrAccessError(f"syntax error at or near FROM: {SQL_TEXT}")


@pytest.mark.parametrize("make_error", [_sqlalchemy_error, _asyncpg_error])
async def test_database_error_in_a_resolver_is_masked_and_logged(
    gql_client: GraphQLClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    make_error: Any,
) -> None:
    async def explode(self: ThreadService, thread_id: Any) -> Any:
        raise make_error()

    monkeypatch.setattr(ThreadService, "get", explode)

    with caplog.at_level(logging.ERROR, logger="lgql.graphql"):
        body = await gql_client.execute(THREAD, {"id": "00000000-0000-0000-0000-000000000001"})

    error = only_error(body)
    assert error["message"] == "Unexpected error."
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR"}
    assert error["path"] == ["thread"]
    text = json.dumps(body)
    for leak in ("SELECT", "thread_id", "Traceback", "asyncpg", "sqlalchemy", 'File "'):
        assert leak not in text, leak
    assert "SELECT thread.thread_id" in caplog.text  # the operator sees the whole error
    assert any(r.exc_info for r in caplog.records if r.name == "lgql.graphql")


async def test_transport_errors_carry_no_stack_trace(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        malformed = await http.post(
            live_server.graphql_url,
            content=b'{"query": ',
            headers={"content-type": "application/json"},
        )
        wrong_type = await http.post(
            live_server.graphql_url, content=b"{ __typename }", headers={"content-type": "text/xml"}
        )
        oversize = await http.post(
            live_server.graphql_url,
            content=b'{"query": "{ __typename }", "pad": "' + b"x" * (11 * 1024 * 1024) + b'"}',
            headers={"content-type": "application/json"},
        )
        not_an_object = await http.post(live_server.graphql_url, json=[1, 2, 3])
        # JSON values that are not operations at all (a 500 before), on the JSON answer's
        # path and on the streaming ones'.
        scalars = [
            await http.post(
                live_server.graphql_url,
                content=content,
                headers={"content-type": "application/json", "accept": accept},
            )
            for content in (b'"{ __typename }"', b"1", b"null", b"true")
            for accept in ("application/json", "text/event-stream", "multipart/mixed")
        ]

    for response, status in (
        (malformed, 400),
        (wrong_type, 400),
        (oversize, 413),
        (not_an_object, 400),
        *((scalar, 400) for scalar in scalars),
    ):
        assert response.status_code == status, (status, response.text)
        body = response.json()
        assert body["errors"][0]["extensions"]["code"], body
        for leak in ("Traceback", 'File "', "strawberry", "starlette", ".py"):
            assert leak not in response.text, (leak, response.text)


# --- Secrets ------------------------------------------------------------------------------------

WEBHOOK_SECRET = "whsec-do-not-leak-4f1c9e"
BEARER_TOKEN = "tok-do-not-leak-8a2b7d"


@pytest_asyncio.fixture(loop_scope="session")
async def secret_server(
    engines: EngineUrls, database_uri: str, redis_prefix: str, live_server: LiveServer
) -> AsyncIterator[LiveServer]:
    server = await start_server(
        make_settings(redis_prefix, webhook_secret=WEBHOOK_SECRET),
        database_uri=database_uri,
        redis_uri=engines.redis_uri,
        embedded_worker=False,
    )
    try:
        yield server
    finally:
        await server.stop()


async def test_webhook_secret_and_bearer_token_never_logged_nor_returned(
    secret_server: LiveServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def explode(self: ThreadService, thread_id: Any) -> Any:
        raise RuntimeError("boom while reading a thread")

    headers = {"authorization": f"Bearer {BEARER_TOKEN}"}
    operations: list[dict[str, Any]] = [
        {"query": "{ serverInfo { version langgraphVersion graphs { graphId description } } }"},
        {"query": CREATE_THREAD, "variables": {"input": {"metadata": {"k": "v"}}}},
        {"query": "{ nope }"},
        {"query": CREATE_THREAD, "variables": {"input": {"metadata": nested(40)}}},
        {"query": THREAD, "variables": {"id": "00000000-0000-0000-0000-000000000002"}},
    ]
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        async with httpx.AsyncClient(timeout=30, headers=headers) as http:
            for operation in operations[:-1]:
                texts.append((await http.post(secret_server.graphql_url, json=operation)).text)
            monkeypatch.setattr(ThreadService, "get", explode)  # an unexpected error, logged
            texts.append((await http.post(secret_server.graphql_url, json=operations[-1])).text)
            texts.append((await http.get(f"{secret_server.url}/info")).text)
            texts.append((await http.get(f"{secret_server.url}/ok")).text)

    assert "INTERNAL_SERVER_ERROR" in texts[4]  # the error path was taken, and logged
    assert "boom while reading a thread" in caplog.text
    # Every record whole, not only its formatted message: `extra` fields and arguments too.
    logged = caplog.text + "\n".join(repr(r.__dict__) for r in caplog.records)
    for secret in (WEBHOOK_SECRET, BEARER_TOKEN):
        assert secret not in logged
        for text in texts:
            assert secret not in text


async def test_subscription_over_plain_post_is_a_clean_400(live_server: LiveServer) -> None:
    # Regression (found by tests/graphql/test_fuzz.py): Strawberry ran it as a query, and the stream
    # it got back failed as a null value, an INTERNAL_SERVER_ERROR.
    document = (
        'subscription { joinRunStream(runId: "00000000-0000-0000-0000-000000000000") { data } }'
    )
    async with httpx.AsyncClient(timeout=30) as http:
        post = await http.post(live_server.graphql_url, json={"query": document})
        get = await http.get(live_server.graphql_url, params={"query": document})

    for response in (post, get):
        assert response.status_code == 400, response.text
        error = only_error(response.json())
        assert error["extensions"]["code"] == "BAD_REQUEST"
        assert "text/event-stream" in error["message"]


# Regression: Postgres stores U+0000 in no text or jsonb column, so each of these reached the
# database and failed there as an INTERNAL_SERVER_ERROR (assistants, runs, store, filters).
NUL_LITERALS = [
    r'mutation { createAssistant(input: {graphId: "echo", name: "a\u0000b"}) { id } }',
    r'mutation { putStoreItem(input: {namespace: ["a"], key: "k\u0000", value: {a: 1}}) { key } }',
    r'mutation { createRun(input: {assistantId: "echo", webhook: "http://a\u0000b"}) { id } }',
    r'mutation { createRun(input: {assistantId: "echo", checkpointId: "a\u0000"}) { id } }',
    r'query { assistants(filter: {name: "a\u{0}"}) { totalCount } }',
]


@pytest.mark.parametrize("document", NUL_LITERALS)
async def test_nul_in_string_literals_is_bad_user_input(
    gql_client: GraphQLClient, document: str
) -> None:
    error = only_error(await gql_client.execute(document))

    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "U+0000" in error["message"] and "line 1" in error["message"]


async def test_nul_in_string_variables_is_bad_user_input(gql_client: GraphQLClient) -> None:
    document = "mutation($input: CreateAssistantInput!) { createAssistant(input: $input) { id } }"
    body = await gql_client.execute(
        document, {"input": {"graphId": "echo", "name": "ok", "description": "a\x00b"}}
    )

    error = only_error(body)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "U+0000" in error["message"] and "$input" in error["message"]


async def test_escaped_backslash_u_is_not_mistaken_for_nul(gql_client: GraphQLClient) -> None:
    document = r'mutation { createAssistant(input: {graphId: "echo", name: "a\\u0000b"}) { name } }'
    data = await gql_client.data(document)
    assert data["createAssistant"]["name"] == "a\\u0000b"


async def test_introspection_can_be_turned_off() -> None:
    schema: strawberry.Schema = build_schema(make_settings("unused", introspection=False))
    context = Context(services=None, request=None)  # type: ignore[arg-type]

    result = await schema.execute("{ __schema { queryType { name } } }", context_value=context)

    assert result.errors
    assert result.errors[0].formatted["extensions"] == {"code": "GRAPHQL_VALIDATION_FAILED"}
    assert "introspection" in result.errors[0].message.lower()

"""Fuzzing: queries, mutations and subscriptions generated from the live schema (hypothesis-graphql)
are sent over HTTP to a real server; every answer must be a well-formed GraphQL response, none
may be an INTERNAL_SERVER_ERROR, and none may hang.

The server is one of this module's own, on a database and queue of its own: fuzzed mutations
start runs that can last as long as their input says (`slow` with `seconds: 1e9`), and those
must not hold the shared `live_server` worker's slots for the rest of the session.

Examples are derandomized (the same documents on every run) and bounded in number, with no
per-example deadline: a hang shows up as the 30 s client timeout, not as a slow example.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
import math
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import graphql
import httpx
import hypothesis_graphql as hg
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import nodes

from app.db.migrate import upgrade
from app.runtime.graphs import default_assistant_id
from schema.schema import build_schema
from tests.conftest import (
    FIXTURE_GRAPHS,
    EngineUrls,
    LiveServer,
    make_settings,
    scratch_database,
    start_server,
)

TIMEOUT = 30.0  # seconds; far above any honest answer, so reaching it means a hang
SSE_READ_SECONDS = 1.5  # subscriptions may run forever (threadStream): read a while, then leave

# LGQL_FUZZ_SCALE=10 LGQL_FUZZ_RANDOM=1 hunts further, with new examples on every run.
SCALE = int(os.environ.get("LGQL_FUZZ_SCALE", "1"))
FUZZ = settings(
    derandomize=not os.environ.get("LGQL_FUZZ_RANDOM"),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

SCHEMA = build_schema(make_settings("fuzz"))._schema
GRAPH_IDS = sorted(json.loads(FIXTURE_GRAPHS.read_text())["graphs"])
# Graphs whose runs end by themselves quickly whatever their input: `slow`, `crashy` and
# `pipeline` sleep as long as their input asks, the stream graphs emit thousands of events.
QUICK_GRAPHS = ["echo", "ctx", "fail", "factory", "interrupt", "subgraph_parent"]

# Ids of records the seed fixture creates, so fuzzed ids sometimes hit real rows.
KNOWN_IDS: list[str] = []
# The thread `runAndWait` uses: generic fuzzing never sees it, so no endless run sits on it.
WAIT_THREAD: list[str] = []


# --- Scalars ------------------------------------------------------------------------------------

GQL_NAMES = st.from_regex(r"[_A-Za-z][_0-9A-Za-z]{0,8}", fullmatch=True)
JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(GQL_NAMES, children, max_size=4)
    ),
    max_leaves=16,
)


def _nested(depth: int) -> Any:
    value: Any = {"k": 1}
    for _ in range(depth):
        value = [value]
    return value


def to_node(value: Any) -> graphql.ValueNode:
    """A Python JSON value as a GraphQL literal (object keys are GraphQL names)."""
    if value is None:
        return nodes.Null
    if isinstance(value, bool):
        return nodes.Boolean(value)
    if isinstance(value, int):
        return nodes.Int(value)
    if isinstance(value, float):
        assert math.isfinite(value)
        return nodes.Float(value)
    if isinstance(value, str):
        return nodes.String(value)
    if isinstance(value, list):
        return nodes.List([to_node(v) for v in value])
    return nodes.Object(
        [
            graphql.ObjectFieldNode(name=graphql.NameNode(value=k), value=to_node(v))
            for k, v in value.items()
        ]
    )


# Mostly ordinary JSON; sometimes past the depth limit (LGQL_MAX_JSON_DEPTH), or a graph's
# own input shape (`{"seconds": …}` makes `slow` runs long).
JSON_NODES = st.one_of(
    *[JSON_VALUES] * 8,
    st.integers(min_value=30, max_value=40).map(_nested),
    st.fixed_dictionaries({"seconds": st.floats(0, 1e9), "messages": JSON_VALUES}),
).map(to_node)

DATETIME_NODES = st.one_of(
    st.datetimes(timezones=st.none() | st.just(dt.UTC)).map(dt.datetime.isoformat),
    st.text(max_size=30),
).map(nodes.String)

ID_NODES = st.one_of(
    st.uuids().map(str),
    st.just("00000000-0000-0000-0000-000000000000"),
    st.deferred(lambda: st.sampled_from(KNOWN_IDS)),
    st.sampled_from(GRAPH_IDS),
    st.text(max_size=40),
).map(nodes.String)

# Strings are Strawberry's, except that graph ids turn up often enough to reach real graphs
# (`assistantId: String!`), and so do a few hostile ones.
HOSTILE_STRINGS = ["", " ", "a\x00b", "x" * 10_000, "\U0001f4a5" * 100, "'; DROP TABLE thread; --"]
STRING_NODES: st.SearchStrategy[graphql.ValueNode] = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=30),
    st.sampled_from(GRAPH_IDS),
    st.sampled_from(HOSTILE_STRINGS),
).map(nodes.String)


def custom_scalars(schema: graphql.GraphQLSchema) -> dict[str, st.SearchStrategy[Any]]:
    known = {"JSON": JSON_NODES, "DateTime": DATETIME_NODES, "ID": ID_NODES, "String": STRING_NODES}
    # A scalar someone adds later is fuzzed with plain strings rather than breaking this test.
    extra = {
        name: st.text(max_size=20).map(nodes.String)
        for name, type_ in schema.type_map.items()
        if isinstance(type_, graphql.GraphQLScalarType)
        and name not in known
        and name not in graphql.specified_scalar_types
    }
    return {**known, **extra}


SCALARS = custom_scalars(SCHEMA)
assert SCHEMA.query_type is not None
assert SCHEMA.mutation_type is not None and SCHEMA.subscription_type is not None

# `runAndWait` answers when its run ends, which fuzzed input can put off for ever (`slow` with
# `seconds: 1e9`, `afterSeconds: 1e9`, or ENQUEUE behind such a run): it is fuzzed separately,
# in `test_fuzz_run_and_wait`, on quick graphs with a bounded delay.
MUTATIONS = [name for name in SCHEMA.mutation_type.fields if name != "runAndWait"]
OPERATIONS = hg.from_schema(
    SCHEMA, fields=[*SCHEMA.query_type.fields, *MUTATIONS], custom_scalars=SCALARS
)


def _as_subscription(document: graphql.DocumentNode) -> str:
    operation = document.definitions[0]
    assert isinstance(operation, graphql.OperationDefinitionNode)
    subscription = dataclasses.replace(operation, operation=graphql.OperationType.SUBSCRIPTION)
    return graphql.print_ast(graphql.DocumentNode(definitions=(subscription,)))


# hypothesis-graphql has no subscription strategy: generate "queries" of a schema whose query
# root is our Subscription type, and print them as subscriptions; one root field each, as
# the spec asks of a subscription.
_SUBSCRIPTION_ROOT = graphql.GraphQLSchema(query=SCHEMA.subscription_type)
SUBSCRIPTIONS = st.one_of(
    *(
        hg.queries(
            _SUBSCRIPTION_ROOT, fields=[name], custom_scalars=SCALARS, print_ast=_as_subscription
        )
        for name in SCHEMA.subscription_type.fields
    )
)


# --- The server ---------------------------------------------------------------------------------


class _Errors(logging.Handler):
    """Keeps what the server logs at ERROR, to show with a failing example."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(self.format(record))


ERRORS = _Errors()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def fuzz_server(engines: EngineUrls) -> AsyncIterator[LiveServer]:
    logging.getLogger("lgql").addHandler(ERRORS)
    prefix = f"lgql_fuzz_{uuid.uuid4().hex[:12]}"
    async with scratch_database(engines.database_uri, prefix="lgql_fuzz") as url:
        await upgrade(url)
        server = await start_server(
            make_settings(prefix), database_uri=url, redis_uri=engines.redis_uri
        )
        try:
            await _seed(server)
            yield server
        finally:
            await server.stop()
            logging.getLogger("lgql").removeHandler(ERRORS)


async def _seed(server: LiveServer) -> None:
    """A few real rows (threads, a run, an assistant) whose ids the fuzzer reuses."""

    async def data(query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = (
            await http.post(server.graphql_url, json={"query": query, "variables": variables})
        ).json()
        assert "errors" not in body, body
        result: dict[str, Any] = body["data"]
        return result

    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        threads = [
            (await data("mutation { createThread(input: {metadata: {seed: true}}) { id } }"))[
                "createThread"
            ]["id"]
            for _ in range(3)
        ]
        run = await data(
            'mutation($t: ID!) { createRun(input: {assistantId: "echo", threadId: $t}) { id } }',
            {"t": threads[0]},
        )
        assistant = await data(
            'mutation { createAssistant(input: {graphId: "echo", name: "fuzz"}) { id } }'
        )
        wait_thread = await data("mutation { createThread { id } }")
    KNOWN_IDS[:] = [
        *threads,
        run["createRun"]["id"],
        assistant["createAssistant"]["id"],
        *(str(default_assistant_id(g)) for g in GRAPH_IDS),
    ]
    WAIT_THREAD[:] = [wait_thread["createThread"]["id"]]


@pytest.fixture(scope="module")
def fuzz_url(fuzz_server: LiveServer) -> Iterator[str]:
    yield fuzz_server.graphql_url


# --- Checks -------------------------------------------------------------------------------------


def check_result(result: Any, where: str) -> None:
    """A GraphQL response (or one subscription result): `data` and/or `errors`, each error with
    a message and a code, and no INTERNAL_SERVER_ERROR."""
    assert isinstance(result, dict), where
    assert set(result) <= {"data", "errors", "extensions"}, where
    assert "data" in result or "errors" in result, where
    if not result.get("errors"):
        event("ok")
    for error in result.get("errors") or []:
        assert isinstance(error.get("message"), str), where
        code = (error.get("extensions") or {}).get("code")
        assert isinstance(code, str), where
        event(code)  # `pytest --hypothesis-show-statistics` shows how far the fuzzer got
        assert code != "INTERNAL_SERVER_ERROR", where


def _where(document: str, answer: str) -> str:
    logged = "\n".join(ERRORS.records[-3:]) or "(nothing logged)"
    return f"\ndocument:\n{document}\nanswer:\n{answer[:2000]}\nserver log:\n{logged}"


async def post(url: str, document: str) -> None:
    ERRORS.records.clear()
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        response = await http.post(url, json={"query": document})
    where = _where(document, response.text)
    assert response.status_code == 200, where
    assert response.headers["content-type"].startswith("application/json"), where
    check_result(response.json(), where)


# --- Tests --------------------------------------------------------------------------------------


@settings(FUZZ, max_examples=200 * SCALE)
@given(document=OPERATIONS)
async def test_fuzz_queries_and_mutations(fuzz_url: str, document: str) -> None:
    await post(fuzz_url, document)


# The fields `runAndWait` shares with `createRun`, bounded so that every run ends soon: quick
# graphs, a short delay, and either no thread, a fresh one, or its own thread.
_RUN_AND_WAIT_OPTIONAL: dict[str, st.SearchStrategy[Any]] = {
    "input": JSON_NODES,
    "config": JSON_NODES,
    "context": JSON_NODES,
    "metadata": JSON_NODES,
    "threadId": st.one_of(
        st.uuids().map(str), st.deferred(lambda: st.sampled_from(WAIT_THREAD))
    ).map(nodes.String),
    "ifNotExists": st.sampled_from(["CREATE", "REJECT"]).map(nodes.Enum),
    "afterSeconds": st.floats(0, 0.5).map(nodes.Float),
    "interruptBefore": st.lists(STRING_NODES, max_size=2).map(nodes.List),
    "checkpointId": st.uuids().map(str).map(nodes.String),
    "multitaskStrategy": st.sampled_from(["REJECT", "INTERRUPT", "ROLLBACK"]).map(nodes.Enum),
    "streamMode": st.lists(st.sampled_from(["VALUES", "UPDATES", "MESSAGES"]), max_size=2).map(
        lambda modes: nodes.List([nodes.Enum(m) for m in modes])
    ),
}
RUN_AND_WAIT_INPUTS = st.fixed_dictionaries(
    {"assistantId": st.sampled_from(QUICK_GRAPHS).map(nodes.String)},
    optional=_RUN_AND_WAIT_OPTIONAL,
).map(
    lambda fields: nodes.Object(
        [
            graphql.ObjectFieldNode(name=graphql.NameNode(value=k), value=v)
            for k, v in fields.items()
        ]
    )
)


def _run_and_wait(input_node: graphql.ValueNode) -> str:
    return (
        "mutation { runAndWait(input: "
        + graphql.print_ast(input_node)
        + ") { run { id status } values interrupts { id value } error { type message } } }"
    )


@settings(FUZZ, max_examples=40 * SCALE)
@given(document=RUN_AND_WAIT_INPUTS.map(_run_and_wait))
async def test_fuzz_run_and_wait(fuzz_url: str, document: str) -> None:
    await post(fuzz_url, document)


@settings(FUZZ, max_examples=15 * SCALE)
@given(document=SUBSCRIPTIONS)
async def test_fuzz_subscriptions_over_plain_post_get_a_clean_error(
    fuzz_url: str, document: str
) -> None:
    ERRORS.records.clear()
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        response = await http.post(fuzz_url, json={"query": document})
    where = _where(document, response.text)
    assert 200 <= response.status_code < 500, where
    body = response.json()
    check_result(body, where)
    assert body.get("errors"), where  # a subscription needs a streaming transport


@settings(FUZZ, max_examples=15 * SCALE)
@given(document=SUBSCRIPTIONS)
async def test_fuzz_subscriptions_over_sse(fuzz_url: str, document: str) -> None:
    ERRORS.records.clear()
    results: list[Any] = []
    text: list[str] = []
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        async with http.stream(
            "POST", fuzz_url, json={"query": document}, headers={"accept": "text/event-stream"}
        ) as response:
            try:
                async with asyncio.timeout(SSE_READ_SECONDS):
                    async for line in response.aiter_lines():
                        text.append(line)
                        if line.startswith("data:") and line[5:].strip():
                            results.append(json.loads(line[5:]))
            except TimeoutError:
                pass  # still streaming: what arrived so far is what is checked
    where = _where(document, "\n".join(text))
    assert 200 <= response.status_code < 500, where
    for result in results:
        check_result(result, where)

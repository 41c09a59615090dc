"""Authorization filters: what handlers may return, and that the SQL form and the Python form of
a filter select exactly the same metadata (generated filters against a fixed corpus)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import column, select, table
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB

from app.auth.filters import AuthFilter, AuthFilterError, combine
from app.db.engine import asyncpg_url

KEYS = ["owner", "tags", "n", "org"]
SCALARS = st.one_of(
    st.sampled_from(["alice", "bob", "", "a.b"]),
    st.integers(-2, 2),
    st.sampled_from([1.0, 0.5]),
    st.booleans(),
    st.none(),
)
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=3),
    st.dictionaries(st.sampled_from(["x"]), SCALARS, max_size=1),
)
METADATA = st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=4)

CORPUS: list[dict[str, Any]] = [
    {},
    {"owner": "alice"},
    {"owner": "bob"},
    {"owner": "alice", "org": "acme"},
    {"owner": ["alice"]},
    {"tags": ["a", "b"]},
    {"tags": ["a"]},
    {"tags": "a"},
    {"tags": [1, 2.0, True]},
    {"n": 1},
    {"n": 1.0},
    {"n": True},
    {"n": None},
    {"n": "1"},
    {"org": {"x": 1}},
    {"org": {"x": 1, "y": 2}},
    {"owner": "alice", "tags": ["admin", "a"], "n": 2},
]


def eq_filters() -> st.SearchStrategy[dict[str, Any]]:
    key = st.sampled_from(KEYS)
    plain = st.builds(lambda k, v: {k: v}, key, VALUES.filter(lambda v: not isinstance(v, dict)))
    eq = st.builds(lambda k, v: {k: {"$eq": v}}, key, VALUES)
    contains = st.builds(
        lambda k, v: {k: {"$contains": v}},
        key,
        st.one_of(SCALARS, st.lists(SCALARS, min_size=1, max_size=3)),
    )
    return st.one_of(plain, eq, contains)


FILTERS = st.recursive(
    eq_filters(),
    lambda inner: st.one_of(
        st.builds(lambda parts: {"$or": parts}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda parts: {"$and": parts}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda a, b: {**a, **b}, inner, inner),
    ),
    max_leaves=6,
)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def corpus_conn(database_uri: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(asyncpg_url(database_uri))
    await conn.execute("CREATE TEMP TABLE auth_corpus (id int PRIMARY KEY, metadata jsonb)")
    await conn.executemany(
        "INSERT INTO auth_corpus VALUES ($1, $2::jsonb)",
        [(i, json.dumps(m)) for i, m in enumerate(CORPUS)],
    )
    try:
        yield conn
    finally:
        await conn.close()


async def _sql_matches(conn: asyncpg.Connection, flt: AuthFilter) -> set[int]:
    corpus = table("auth_corpus", column("id"), column("metadata", JSONB))
    stmt = select(corpus.c.id).where(flt.to_sql(corpus.c.metadata))
    sql = str(stmt.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    return {r["id"] for r in await conn.fetch(sql)}


def _py_matches(flt: AuthFilter) -> set[int]:
    return {i for i, m in enumerate(CORPUS) if flt.matches(m)}


@settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(raw=FILTERS)
async def test_sql_and_python_select_the_same_metadata(
    corpus_conn: asyncpg.Connection, raw: dict[str, Any]
) -> None:
    try:
        flt = AuthFilter.parse(raw)
    except AuthFilterError:
        return  # e.g. $contains with an object: refused, nothing to compare
    assert await _sql_matches(corpus_conn, flt) == _py_matches(flt), raw


async def test_owner_filter_selects_only_that_owner(corpus_conn: asyncpg.Connection) -> None:
    flt = AuthFilter.parse({"owner": "alice"})
    assert _py_matches(flt) == {1, 3, 16}
    assert await _sql_matches(corpus_conn, flt) == {1, 3, 16}


async def test_contains_needs_every_value_in_a_list(corpus_conn: asyncpg.Connection) -> None:
    both = AuthFilter.parse({"tags": {"$contains": ["a", "b"]}})
    one = AuthFilter.parse({"tags": {"$contains": "a"}})
    assert await _sql_matches(corpus_conn, both) == _py_matches(both) == {5}
    assert await _sql_matches(corpus_conn, one) == _py_matches(one) == {5, 6, 16}


async def test_numbers_compare_as_json_does(corpus_conn: asyncpg.Connection) -> None:
    flt = AuthFilter.parse({"n": 1})
    # 1 == 1.0, but not true and not "1".
    assert await _sql_matches(corpus_conn, flt) == _py_matches(flt) == {9, 10}


async def test_or_and_and(corpus_conn: asyncpg.Connection) -> None:
    flt = AuthFilter.parse({"$or": [{"owner": "bob"}, {"org": "acme"}]})
    assert await _sql_matches(corpus_conn, flt) == _py_matches(flt) == {2, 3}
    both = AuthFilter.parse({"$and": [{"owner": "alice"}, {"org": "acme"}]})
    assert await _sql_matches(corpus_conn, both) == _py_matches(both) == {3}


def test_empty_filter_matches_everything() -> None:
    assert _py_matches(AuthFilter.parse({})) == set(range(len(CORPUS)))


def test_combine_ands_filters() -> None:
    combined = combine(
        AuthFilter.parse({"owner": "alice"}), None, AuthFilter.parse({"org": "acme"})
    )
    assert combined is not None and _py_matches(combined) == {3}
    assert combine(None, None) is None


@pytest.mark.parametrize(
    "raw",
    [
        "owner",
        ["owner"],
        {"owner": {"$eq": 1, "$contains": 2}},
        {"owner": {"$gt": 1}},
        {"$not": {"owner": "a"}},
        {"$or": []},
        {"$or": "alice"},
        {"tags": {"$contains": [{"x": 1}]}},
        {"owner": float("nan")},
        {1: "a"},
    ],
)
def test_malformed_filters_are_refused(raw: Any) -> None:
    with pytest.raises(AuthFilterError):
        AuthFilter.parse(raw)


def test_nesting_is_bounded() -> None:
    raw: dict[str, Any] = {"owner": "a"}
    for _ in range(20):
        raw = {"$or": [raw]}
    with pytest.raises(AuthFilterError, match="deeper"):
        AuthFilter.parse(raw)

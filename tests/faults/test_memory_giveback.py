"""Memory taken by sockets and large frames is given back: documents too large to cache are not
cached, and a burst of closes ends with one trim of the C heap (bench/bench_sockets.py measures
the effect on RSS)."""

from __future__ import annotations

import asyncio

import strawberry
from strawberry.extensions.parser_cache import _get_parse_cache

from app.memory import MemoryGiveBack
from app.settings import Settings
from schema.schema import MAX_CACHED_DOCUMENT_CHARS, _validator, build_schema


async def test_a_document_too_large_to_cache_is_not_kept() -> None:
    schema: strawberry.Schema = build_schema(Settings.model_validate({"port": 0}))
    parse_cache, validate_cache = _get_parse_cache(1024), _validator(1024)
    parse_cache.cache_clear()
    validate_cache.cache_clear()
    big = "{ __typename }" + " " * (MAX_CACHED_DOCUMENT_CHARS + 1)
    result = await schema.execute(big)
    assert result.errors is None and result.data == {"__typename": "Query"}
    assert parse_cache.cache_info().currsize == 0
    assert validate_cache.cache_info().currsize == 0
    # Small documents are still cached.
    await schema.execute("{ __typename }")
    assert parse_cache.cache_info().currsize == 1
    assert validate_cache.cache_info().currsize == 1


async def test_a_burst_of_closes_ends_with_one_trim() -> None:
    give_back = MemoryGiveBack(quiet_seconds=0.01, min_interval=0.01)
    if give_back._trim is None:  # not glibc: nothing to give back through
        return
    for _ in range(50):
        give_back.soon()
        await asyncio.sleep(0)
    task = give_back._task
    assert task is not None
    await task
    assert give_back.trims == 1

"""Validation results are cached by the document's text: a repeat of a document is validated
once, whatever object its parse produced, and a document's errors come back on every repeat."""

from __future__ import annotations

import strawberry
from strawberry.extensions.parser_cache import _get_parse_cache

from app.settings import Settings
from schema.schema import _validator, build_schema


def _schema(**settings: object) -> strawberry.Schema:
    return build_schema(Settings.model_validate({"port": 0, **settings}))


async def test_a_repeated_document_is_validated_once_whatever_its_parse() -> None:
    schema = _schema()
    parse_cache, validated = _get_parse_cache(1024), _validator(1024)
    validated.cache_clear()
    query = "query Twice { __typename }"
    for _ in range(3):
        # A fresh parse each time: a document object the validation cache has never seen.
        parse_cache.cache_clear()
        result = await schema.execute(query)
        assert result.errors is None and result.data == {"__typename": "Query"}
    info = validated.cache_info()
    assert (info.misses, info.hits, info.currsize) == (1, 2, 1)
    # Another text is another entry, never the first one's result.
    result = await schema.execute("query Other { __typename }")
    assert result.errors is None
    assert validated.cache_info().currsize == 2


async def test_an_invalid_document_is_refused_on_every_repeat() -> None:
    schema = _schema(max_query_depth=2)
    deep = "query Deep { threads { edges { node { id } } } }"
    unknown = "query Unknown { noSuchField }"
    for _ in range(2):
        _get_parse_cache(1024).cache_clear()
        result = await schema.execute(deep)
        assert result.errors and "exceeds maximum operation depth" in result.errors[0].message
        result = await schema.execute(unknown)
        assert result.errors and "noSuchField" in result.errors[0].message

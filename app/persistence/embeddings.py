"""The `embed` of langgraph.json's `store.index`, turned into a LangChain `Embeddings`.

Accepted, as in LangGraph Server: a `"provider:model"` string (through LangChain's
`init_embeddings`, which needs the `langchain` package and the provider's), a local
`"./path/to/file.py:function"` (resolved against langgraph.json's folder) or `"package.module:function"`,
where the function is sync or async and maps `list[str]` to `list[list[float]]`, or, from Python, an
`Embeddings` object or such a function. Sync functions and sync `Embeddings` are called in a
worker thread by LangChain's `aembed_*`, so embedding never blocks the event loop.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from langchain_core.embeddings import Embeddings
from langgraph.store.base import ensure_embeddings

from app.runtime.graph_loader import import_graph_value
from app.runtime.langgraph_config import JS_SUFFIXES, GraphSpec, LanggraphConfig


class EmbeddingsConfigError(ValueError):
    """`store.index.embed` names nothing usable; the message says what to change or install."""


def _is_file_spec(target: str) -> bool:
    return "/" in target or "\\" in target or target.endswith((".py", *JS_SUFFIXES))


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def load_embeddings(embed: Any, config: LanggraphConfig) -> Embeddings:
    if embed is None:
        raise EmbeddingsConfigError("store.index.embed is required when store.index is set")
    if not isinstance(embed, str):
        if isinstance(embed, Embeddings) or callable(embed):
            return ensure_embeddings(embed)
        raise EmbeddingsConfigError(
            f"store.index.embed must be a string, an Embeddings object or a function, "
            f"got {type(embed).__name__}"
        )
    target, sep, name = embed.rpartition(":")
    if not sep or not target or not name:
        raise EmbeddingsConfigError(
            f"store.index.embed {embed!r}: expected 'provider:model', "
            "'./path/to/file.py:function' or 'package.module:function'"
        )
    if _is_file_spec(target):
        return _function(config.object_spec("store.index.embed", embed))
    # "openai:text-embedding-3-small" names a model, not a function; a module that exists with an
    # identifier after the colon is taken as code.
    if name.isidentifier() and _module_exists(target):
        return _function(GraphSpec("store.index.embed", embed, "module", target, name))
    return _provider(embed)


def _function(spec: GraphSpec) -> Embeddings:
    try:
        value = import_graph_value(spec)
    except Exception as exc:
        raise EmbeddingsConfigError(f"store.index.embed {spec.source!r}: {exc}") from exc
    if isinstance(value, Embeddings):
        return value
    if not callable(value):
        raise EmbeddingsConfigError(
            f"store.index.embed {spec.source!r}: {spec.variable} is a "
            f"{type(value).__name__}, not a function or an Embeddings object"
        )
    return ensure_embeddings(value)


def _provider(embed: str) -> Embeddings:
    try:
        from langchain.embeddings import init_embeddings
    except ImportError:
        raise EmbeddingsConfigError(
            f"store.index.embed {embed!r} names a provider model, which is loaded through "
            "LangChain's init_embeddings: install the 'langchain' package and the provider's "
            f"(e.g. pip install langchain langchain-{embed.split(':', 1)[0].replace('_', '-')}), "
            "or set embed to './file.py:function'"
        ) from None
    try:
        embeddings: Embeddings = init_embeddings(embed)
    except Exception as exc:
        raise EmbeddingsConfigError(f"store.index.embed {embed!r}: {exc}") from exc
    return embeddings

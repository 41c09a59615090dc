"""Values Postgres cannot store: strings holding U+0000.

Postgres can keep the character in no `text` or `jsonb` column, so a request carrying one (in a
run's input, a thread's metadata, a store item's key...) used to fail where it reached the
database, as an internal error. Every door refuses such a request up front instead, as bad
input: GraphQL (`schema.schema.RefuseNul`), REST (`app.rest.http.read_json`) and JSON-RPC
(`app.jsonrpc.check_envelope`) all ask `nul_at`.
"""

from __future__ import annotations

from typing import Any

import orjson

NUL_MESSAGE = "Strings cannot contain the character U+0000"


def nul_at(value: Any, root: str = "") -> str | None:
    """Where in `value` (a decoded JSON value) a string or an object key holds U+0000, as a
    path (`input.messages[0].content`, starting with `root`); None when nowhere."""
    # Every request's input is checked and almost none holds one: orjson writes U+0000 as the
    # escape `\u0000`, so a quick search of its encoding clears nearly every value (a literal
    # backslash and "u0000" only costs the walk below), and paths are spelled out only for the
    # rest. A value orjson cannot encode is walked.
    try:
        if b"\\u0000" not in orjson.dumps(value):
            return None
    except orjson.JSONEncodeError:
        pass
    stack: list[tuple[str, Any]] = [(root, value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return path
        elif isinstance(item, dict):
            for key, child in item.items():
                where = f"{path}.{key}" if path else str(key)
                if isinstance(key, str) and "\x00" in key:
                    return where.replace("\x00", "\\u0000")
                stack.append((where, child))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", child) for i, child in enumerate(item))
    return None

"""SQL text of the asyncpg store (`app.persistence.store`): one statement per kind of operation.

Namespaces travel as their labels joined with "." (labels never contain one; LangGraph forbids it)
so that a whole batch of gets or puts fits in a few parallel arrays and costs one round trip:
`string_to_array(ns, '.')` turns each back into the `text[]` of the row. `store_items.namespace`
is COLLATE "C", which makes a namespace prefix a range of the primary key (`prefix_range`).

Expired rows (`expires_at` in the past) are never read, even before a sweep deletes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from langgraph.store.base import ListNamespacesOp, MatchCondition, SearchOp

VECTOR_TABLE = "store_vectors"
LIVE = "(i.expires_at IS NULL OR i.expires_at > now())"
_REFRESH = "expires_at = now() + make_interval(secs => i.ttl_minutes * 60)"
COMPARISONS = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
OPERATORS = ("$eq", "$ne", *COMPARISONS)


class FilterError(ValueError):
    """A search filter LangGraph's stores would not accept (unknown operator, bad operand)."""


class Params:
    """Numbered query parameters, in the order the SQL text refers to them."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def __call__(self, value: Any, cast: str = "") -> str:
        self.values.append(value)
        return f"${len(self.values)}{cast}"


def ns_text(namespace: Sequence[str]) -> str:
    return ".".join(namespace)


def jsonb(value: Any) -> str:
    return orjson.dumps(value).decode()


def vector_text(vector: Sequence[float]) -> str:
    """pgvector's text form, so no type codec is needed on the pool."""
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


# -- gets and puts: a whole batch in one statement ---------------------------------------------

# The refreshing UPDATE and the SELECT see the same snapshot, so items come back as they were read.
GET_MANY = f"""
WITH req AS (
    SELECT string_to_array(r.ns, '.') AS namespace, r.key, r.refresh, r.ord
      FROM unnest($1::text[], $2::text[], $3::bool[]) WITH ORDINALITY AS r(ns, key, refresh, ord)
), refreshed AS (
    UPDATE store_items i SET {_REFRESH}
      FROM req
     WHERE i.namespace = req.namespace AND i.key = req.key AND req.refresh
       AND i.ttl_minutes IS NOT NULL AND {LIVE}
)
SELECT req.ord, i.namespace, i.key, i.value::text AS value, i.created_at, i.updated_at
  FROM req JOIN store_items i ON i.namespace = req.namespace AND i.key = req.key
 WHERE {LIVE}
"""

# Deletes (value NULL) and upserts of distinct items in one statement. An expired row that is
# written again starts a new life: its creation time is reset.
_PUT_ITEMS = f"""
WITH req AS (
    SELECT string_to_array(r.ns, '.') AS namespace, r.key, r.value::jsonb AS value, r.ttl
      FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[]) AS r(ns, key, value, ttl)
), deleted AS (
    DELETE FROM store_items i USING req
     WHERE req.value IS NULL AND i.namespace = req.namespace AND i.key = req.key
), upserted AS (
    INSERT INTO store_items AS i (namespace, key, value, ttl_minutes, expires_at,
                                  created_at, updated_at)
    SELECT namespace, key, value, ttl, now() + make_interval(secs => ttl * 60), now(), now()
      FROM req WHERE value IS NOT NULL
    ON CONFLICT (namespace, key) DO UPDATE
       SET value = EXCLUDED.value, ttl_minutes = EXCLUDED.ttl_minutes,
           expires_at = EXCLUDED.expires_at, updated_at = now(),
           created_at = CASE WHEN {LIVE} THEN i.created_at ELSE now() END
){{vectors}}
SELECT 1
"""

# The vectors of the items written: those of fields no longer indexed go, the new ones are
# upserted (disjoint rows, so the two can share the statement). Deleted items lose theirs by
# the foreign key's cascade.
_PUT_VECTORS = f""", vec AS (
    SELECT string_to_array(v.ns, '.') AS namespace, v.key, v.field, v.embedding::vector AS embedding
      FROM unnest($5::text[], $6::text[], $7::text[], $8::text[]) AS v(ns, key, field, embedding)
), stale AS (
    DELETE FROM {VECTOR_TABLE} sv USING req
     WHERE req.value IS NOT NULL AND sv.namespace = req.namespace AND sv.key = req.key
       AND NOT EXISTS (SELECT 1 FROM vec WHERE vec.namespace = sv.namespace
                          AND vec.key = sv.key AND vec.field = sv.field)
), fresh AS (
    INSERT INTO {VECTOR_TABLE} (namespace, key, field, embedding)
    SELECT namespace, key, field, embedding FROM vec
    ON CONFLICT (namespace, key, field) DO UPDATE SET embedding = EXCLUDED.embedding
)"""

PUT_ITEMS = _PUT_ITEMS.format(vectors="")
# The common case, one item written and nothing to embed, without the batch's arrays and CTEs.
PUT_ONE = f"""
INSERT INTO store_items AS i (namespace, key, value, ttl_minutes, expires_at, created_at, updated_at)
VALUES ($1::text[], $2, $3::jsonb, $4::float8, now() + make_interval(secs => $4::float8 * 60),
        now(), now())
ON CONFLICT (namespace, key) DO UPDATE
   SET value = EXCLUDED.value, ttl_minutes = EXCLUDED.ttl_minutes,
       expires_at = EXCLUDED.expires_at, updated_at = now(),
       created_at = CASE WHEN {LIVE} THEN i.created_at ELSE now() END
"""
PUT_ITEMS_AND_VECTORS = _PUT_ITEMS.format(vectors=_PUT_VECTORS)

SWEEP = "DELETE FROM store_items WHERE expires_at <= now()"

# An expired item not swept yet is deleted too, but reported as absent, as reads saw it.
DELETE_ONE = f"""
DELETE FROM store_items i WHERE i.namespace = string_to_array($1, '.') AND i.key = $2
RETURNING {LIVE}
"""


def vector_ddl(dims: int) -> list[str]:
    """The vector table, made at start-up (its type depends on `dims`), not by Alembic."""
    return [
        f"""CREATE TABLE IF NOT EXISTS {VECTOR_TABLE} (
            namespace text[] COLLATE "C" NOT NULL,
            key text NOT NULL,
            field text NOT NULL,
            embedding vector({int(dims)}) NOT NULL,
            PRIMARY KEY (namespace, key, field),
            FOREIGN KEY (namespace, key) REFERENCES store_items (namespace, key) ON DELETE CASCADE
        )""",
    ]


VECTOR_DIMS = """
SELECT a.atttypmod FROM pg_attribute a
 WHERE a.attrelid = to_regclass($1) AND a.attname = 'embedding' AND NOT a.attisdropped
"""


# -- search ----------------------------------------------------------------------------------


def prefix_range(column: str, prefix: Sequence[str], p: Params) -> str:
    """`column` starts with `prefix`, as a range the primary key's btree can answer.

    Bytewise, the arrays starting with (a, b) are those from (a, b) up to, excluded,
    (a, b || chr(1)): no label holds chr(0), so nothing sorts between b and b || chr(1).
    """
    upper = [*prefix[:-1], prefix[-1] + "\x01"]
    return f"{column} >= {p(list(prefix), '::text[]')} AND {column} < {p(upper, '::text[]')}"


def filter_conditions(flt: dict[str, Any] | None, p: Params) -> list[str]:
    """SQL conditions on `i.value` for a LangGraph search filter.

    Same meaning as LangGraph's InMemoryStore: each key names a top-level field; a value is
    matched exactly, a dict of `$` operators compares, any other dict matches nested fields.
    """
    conds: list[str] = []
    if not flt:
        return conds
    if not isinstance(flt, dict):
        raise FilterError(f"filter must be an object, got {type(flt).__name__}")
    for key, value in flt.items():
        _walk([str(key)], value, conds, p)
    if scalars := _scalar_equalities(flt):
        # Implied by the exact conditions above; lets the planner use the GIN index on value.
        conds.insert(0, f"i.value @> {p(jsonb(scalars), '::jsonb')}")
    return conds


def _scalar_equalities(flt: dict[str, Any]) -> dict[str, Any]:
    """The plain equalities of a filter on strings, numbers and booleans, as one JSON document
    the matching values contain (lists and nulls are left out: containment differs for them)."""
    doc: dict[str, Any] = {}
    for key, value in flt.items():
        if isinstance(value, dict):
            if value and not any(str(k).startswith("$") for k in value):
                if nested := _scalar_equalities(value):
                    doc[str(key)] = nested
        elif isinstance(value, str | int | float | bool):
            doc[str(key)] = value
    return doc


def _walk(path: list[str], value: Any, conds: list[str], p: Params) -> None:
    if isinstance(value, dict):
        if any(str(k).startswith("$") for k in value):
            for op, operand in value.items():
                conds.append(_operator(path, str(op), operand, p))
        elif not value:
            conds.append(f"jsonb_typeof(i.value #> {p(path, '::text[]')}) = 'object'")
        else:
            for k, v in value.items():
                _walk([*path, str(k)], v, conds, p)
        return
    conds.append(_equals(path, value, p))


def _equals(path: list[str], value: Any, p: Params, *, negate: bool = False) -> str:
    at = f"i.value #> {p(path, '::text[]')}"
    if value is None:  # a missing field counts as null, as in InMemoryStore
        return f"coalesce({at}, 'null'::jsonb) {'<>' if negate else '='} 'null'::jsonb"
    if negate:
        return f"{at} IS DISTINCT FROM {p(jsonb(value), '::jsonb')}"
    return f"{at} = {p(jsonb(value), '::jsonb')}"


def _operator(path: list[str], op: str, operand: Any, p: Params) -> str:
    if op == "$eq":
        return _equals(path, operand, p)
    if op == "$ne":
        return _equals(path, operand, p, negate=True)
    sign = COMPARISONS.get(op)
    if sign is None:
        raise FilterError(
            f"unsupported filter operator {op!r} on {'.'.join(path)!r}; "
            f"use one of {', '.join(OPERATORS)}"
        )
    at = f"i.value #> {p(path, '::text[]')}"
    # Compared only with a field of the operand's JSON type (jsonb orders across types).
    if isinstance(operand, str):
        return (
            f"(jsonb_typeof({at}) = 'string' AND "
            f"({at} #>> '{{}}') COLLATE \"C\" {sign} {p(operand, '::text')})"
        )
    if isinstance(operand, bool | int | float):
        kind = "boolean" if isinstance(operand, bool) else "number"
        return f"(jsonb_typeof({at}) = '{kind}' AND {at} {sign} {p(jsonb(operand), '::jsonb')})"
    raise FilterError(
        f"filter operator {op!r} on {'.'.join(path)!r} needs a number, string or boolean, "
        f"got {type(operand).__name__}"
    )


def search_query(op: SearchOp, vector: str | None) -> tuple[str, list[Any]]:
    """One search: by `updated_at` desc, or by cosine similarity to `vector` when given (items
    without vectors follow, unscored, as in InMemoryStore). Refreshes the TTL of what it returns
    when `op.refresh_ttl`."""
    p = Params()
    conds = [LIVE]
    if op.namespace_prefix:
        conds.append(prefix_range("i.namespace", op.namespace_prefix, p))
    conds.extend(filter_conditions(op.filter, p))
    if vector is not None:
        score = f"""(SELECT max(1 - (sv.embedding <=> {p(vector, "::vector")}))
                       FROM {VECTOR_TABLE} sv
                      WHERE sv.namespace = i.namespace AND sv.key = i.key)"""
        order = "score DESC NULLS LAST, i.updated_at DESC"
    else:
        score = "NULL::float8"
        order = "i.updated_at DESC"
    select = f"""
        SELECT i.namespace, i.key, i.value::text AS value, i.created_at, i.updated_at,
               {score} AS score
          FROM store_items i
         WHERE {" AND ".join(conds)}
         ORDER BY {order}
         LIMIT {p(op.limit)} OFFSET {p(op.offset)}"""
    if not op.refresh_ttl:
        return select, p.values
    # The UPDATE sees the snapshot the search ran in; the order of the CTE's rows is kept.
    query = f"""
        WITH found AS ({select}),
        refreshed AS (
            UPDATE store_items i SET {_REFRESH}
              FROM found f
             WHERE i.namespace = f.namespace AND i.key = f.key AND i.ttl_minutes IS NOT NULL
        )
        SELECT * FROM found"""
    return query, p.values


# -- list namespaces -------------------------------------------------------------------------


def _match(condition: MatchCondition, p: Params) -> list[str]:
    path = list(condition.path)
    if not path:  # constrains nothing, as in LangGraph's stores
        return []
    conds = [f"cardinality(i.namespace) >= {len(path)}"]
    if condition.match_type == "prefix":
        fixed = 0
        while fixed < len(path) and path[fixed] != "*":
            fixed += 1
        if fixed:
            conds.append(prefix_range("i.namespace", path[:fixed], p))
        for n, label in enumerate(path[fixed:], start=fixed + 1):
            if label != "*":
                conds.append(f"i.namespace[{n}] = {p(label)}")
    elif condition.match_type == "suffix":
        for back, label in enumerate(reversed(path)):
            if label != "*":
                conds.append(f"i.namespace[cardinality(i.namespace) - {back}] = {p(label)}")
    else:
        raise ValueError(f"unsupported match type: {condition.match_type!r}")
    return conds


def list_namespaces_query(op: ListNamespacesOp) -> tuple[str, list[Any]]:
    """Distinct namespaces by a loose index scan: one primary-key probe per namespace (the
    next one after the last found) rather than reading every item. The scan stays within the
    range of the first prefix condition's fixed labels; the other conditions and the
    truncation to `max_depth` apply to the namespaces found."""
    p = Params()
    within = "true"
    conds: list[str] = []
    for condition in op.match_conditions or ():
        if (
            within == "true"
            and condition.match_type == "prefix"
            and condition.path[:1]
            not in (
                (),
                ("*",),
            )
        ):
            fixed = list(condition.path)
            if "*" in fixed:
                fixed = fixed[: fixed.index("*")]
            within = prefix_range("i.namespace", fixed, p)
        conds.extend(_match(condition, p))
    outer = " AND ".join(conds).replace("i.namespace", "s.namespace") or "true"
    ns = "s.namespace" if op.max_depth is None else f"s.namespace[1:{p(op.max_depth, '::int')}]"
    query = f"""
        WITH RECURSIVE scan(namespace) AS (
            (SELECT i.namespace FROM store_items i WHERE {within} AND {LIVE}
              ORDER BY i.namespace LIMIT 1)
            UNION ALL
            SELECT (SELECT i.namespace FROM store_items i
                     WHERE i.namespace > scan.namespace AND {within} AND {LIVE}
                     ORDER BY i.namespace LIMIT 1)
              FROM scan WHERE scan.namespace IS NOT NULL
        )
        SELECT DISTINCT {ns} AS namespace FROM scan s
         WHERE s.namespace IS NOT NULL AND {outer}
         ORDER BY 1 LIMIT {p(op.limit)} OFFSET {p(op.offset)}"""
    return query, p.values

"""The layers point one way (docs/architecture.md): an AST walk over the packages fails when a
module imports one it must not.

    lgql (the CLI) ─▶ app.server, doors, schema ─▶ app.services ─▶ app.db, app.runtime (graph
    execution) ─▶ app.persistence (LangGraph's checkpointer and store on Postgres), app.messaging
    (Redis) ─▶ neutral modules (app.settings, app.errors, app.pagination, app.faults);
    workers ─▶ app.services.

Only direct imports count (a lazy import inside a function too); what a module reaches through
another is that module's business.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("app", "schema", "workers", "lgql")

_MESSAGING = ("app.messaging",)
_DOORS = (
    "app.a2a",
    "app.mcp",
    "app.doors",
    "app.graphql_app",
    "app.server",
    "app.console",
    "app.health",
)
_TRANSPORTS = (*_DOORS, "app.rest")
_NEUTRAL = ("app.settings", "app.errors", "app.pagination", "app.faults")

# (modules, the modules they must not import). A module is named by itself or a package above
# it: "app.db" covers app.db.runs. The first rule is the one `app` keeps with `workers`: the
# worker sits beside the API, above the services, and only `lgql` (the CLI) assembles both.
RULES: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
    (("app", "schema"), ("workers", "lgql")),
    # The worker executes graphs and leaves every end of a run to app.services.run_execution:
    # no database, stream or checkpointer of its own.
    (
        ("workers",),
        (
            "lgql",
            "schema",
            "app.db",
            "app.messaging.streams",
            "app.messaging.notices",
            "app.persistence.checkpointer",
            "app.persistence.fenced_checkpointer",
            *_TRANSPORTS,
        ),
    ),
    (
        ("schema",),
        ("app.db", "app.runtime", "app.persistence", "app.auth", *_MESSAGING, *_TRANSPORTS),
    ),
    (("app.a2a", "app.mcp"), ("app.db", "app.runtime", "app.persistence", *_MESSAGING)),
    # LangGraph's REST API is a transport as schema/ is: routes call services, nothing below.
    (
        ("app.rest",),
        ("app.db", "app.runtime", "app.persistence", "schema", *_MESSAGING, *_DOORS),
    ),
    (("app.services",), ("schema", *_TRANSPORTS)),
    (("app.auth",), ("app.services", "schema", "app.db", *_MESSAGING, *_TRANSPORTS)),
    (
        ("app.db",),
        (
            "app.services",
            "app.runtime",
            "app.persistence",
            "app.auth",
            "schema",
            *_MESSAGING,
            *_TRANSPORTS,
        ),
    ),
    (
        ("app.runtime",),
        (
            "app.services",
            "app.db",
            "app.auth",
            "app.persistence",
            "schema",
            *_MESSAGING,
            *_TRANSPORTS,
        ),
    ),
    # The persistence adapters read langgraph.json (app.runtime.langgraph_config, and the loader
    # for a custom embedding function) and nothing else of execution.
    (
        ("app.persistence",),
        (
            "app.services",
            "app.db",
            "app.auth",
            "app.runtime.executor",
            "app.runtime.graphs",
            "app.runtime.state",
            "app.runtime.stream_events",
            "schema",
            *_MESSAGING,
            *_TRANSPORTS,
        ),
    ),
    (_MESSAGING, ("app.services", "app.db", "app.auth", "schema", *_TRANSPORTS)),
    # Observability is called from every layer (one-line hooks) and imports none of them: what
    # it samples from services (the queue, the pools) is handed to it.
    (
        ("app.observability",),
        (
            "app.services",
            "app.db",
            "app.runtime",
            "app.persistence",
            "app.auth",
            "schema",
            "workers",
            "lgql",
            *_MESSAGING,
            *_DOORS,
        ),
    ),
    (
        _NEUTRAL,
        (
            "app.services",
            "app.db",
            "app.runtime",
            "app.persistence",
            "app.auth",
            "schema",
            *_MESSAGING,
        ),
    ),
]


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Every module `module`'s `source` imports, absolute (`from x import y` counts as x and
    x.y)."""
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = package.split(".")
                here = here[: len(here) - (node.level - 1)]
                base = ".".join([*here, base] if base else here)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _violations() -> list[str]:
    found: list[str] = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = _module_name(path)
            imported = _imports(path.read_text(), module, is_package=path.name == "__init__.py")
            for sources, forbidden in RULES:
                if not _within(module, sources):
                    continue
                for target in sorted(imported):
                    if _within(target, forbidden) and not _within(target, (module,)):
                        found.append(f"{module} imports {target}")
    return sorted(set(found))


def test_layers_point_one_way() -> None:
    assert _violations() == []


def test_the_walk_sees_lazy_and_relative_imports() -> None:
    # The rules are only as good as the walk: it must see an import inside a function, and
    # resolve a relative one.
    source = "def f():\n    from workers.worker import build_worker\nfrom ..db import runs\n"
    found = _imports(source, "app.services.runs")
    assert {"workers.worker", "app.db", "app.db.runs"} <= found

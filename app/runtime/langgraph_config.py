"""``langgraph.json``: its model, loading, and the process setup it asks for (env, sys.path).

Relative paths in the file (graph files, the env file, local dependencies) are resolved against the
folder holding the file, never the working directory, so ``lgql serve -c some/dir/langgraph.json``
behaves the same from anywhere (LangGraph's Docker build and deploy commands do the same; only
``langgraph dev`` happens to use the working directory, which is that folder in practice).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

logger = logging.getLogger(__name__)

__all__ = [
    "SERVER_ENV_VARS",
    "ConfigError",
    "ConfigNotFoundError",
    "GraphDefinition",
    "GraphSpec",
    "LanggraphConfig",
    "add_dependency_paths",
    "apply_env",
    "load_langgraph_config",
    "missing_env_file",
    "parse_langgraph_config",
    "resolve_env",
]

JS_SUFFIXES = (".js", ".mjs", ".cjs", ".ts", ".mts", ".cts", ".jsx", ".tsx")

# Settings that belong to whoever runs the server (the platform, the operator), not to the project:
# a value already in the process environment is never replaced by langgraph.json's ``env``.
# LangGraph does the same: ``langgraph dev`` skips the keys it sets itself, ``langgraph deploy``
# drops its reserved variables, and docker compose lets ``environment:`` win over ``env_file:``.
SERVER_ENV_VARS = frozenset(
    {
        "DATABASE_URI",
        "DATABASE_URL",
        "POSTGRES_URI",
        "POSTGRES_URI_CUSTOM",
        "REDIS_URI",
        "REDIS_URL",
        "REDIS_URI_CUSTOM",
        "REDIS_KEY_PREFIX",
        "N_JOBS_PER_WORKER",
        "BG_JOB_TIMEOUT_SECS",
        "PORT",
        "MOUNT_PREFIX",
        "LANGGRAPH_AUTH_TYPE",
    }
)
SERVER_ENV_PREFIXES = ("LGQL_",)


class ConfigError(ValueError):
    """langgraph.json is missing, unreadable or malformed; the message names the file."""


class ConfigNotFoundError(ConfigError):
    """No langgraph.json where it was looked for; the message has the full path."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(f"{path}: config file not found")


class GraphDefinition(BaseModel):
    """The object form of a ``graphs`` entry: ``{"path": "./g.py:graph", "description": "..."}``."""

    model_config = ConfigDict(extra="allow")

    path: str
    description: str | None = None


@dataclass(frozen=True, slots=True)
class GraphSpec:
    """One ``graphs`` entry, resolved: where to import it from and which variable to take."""

    graph_id: str
    source: str
    """The spec string exactly as written, e.g. ``./src/agent.py:graph`` or ``pkg.mod:graph``."""
    kind: Literal["file", "module"]
    location: str
    """Absolute file path for ``kind == "file"``, dotted module name for ``kind == "module"``."""
    variable: str
    description: str | None = None

    @property
    def is_js(self) -> bool:
        return self.kind == "file" and self.location.endswith(JS_SUFFIXES)


class LanggraphConfig(BaseModel):
    """The keys lgql reads; every other key (``python_version``, ``dockerfile_lines``…) is kept."""

    model_config = ConfigDict(extra="allow")

    graphs: dict[str, str | GraphDefinition]
    env: str | dict[str, Any] | None = None
    dependencies: list[str] = Field(default_factory=list)
    store: dict[str, Any] | None = None
    checkpointer: dict[str, Any] | None = None
    auth: dict[str, Any] | None = None
    http: dict[str, Any] | None = None
    webhooks: dict[str, Any] | None = None
    encryption: dict[str, Any] | None = None
    ui: dict[str, Any] | None = None

    _config_path: Path | None = PrivateAttr(default=None)

    @field_validator("graphs")
    @classmethod
    def _check_graphs(
        cls, graphs: dict[str, str | GraphDefinition]
    ) -> dict[str, str | GraphDefinition]:
        for graph_id, value in graphs.items():
            source = value if isinstance(value, str) else value.path
            target, sep, variable = source.rpartition(":")
            if not sep or not target or not variable:
                raise ValueError(
                    f"graph '{graph_id}': invalid spec {source!r}, expected "
                    "'./path/to/file.py:variable' or 'package.module:variable'"
                )
        return graphs

    @property
    def config_path(self) -> Path | None:
        """The file this config was read from (``None`` when built in memory)."""
        return self._config_path

    @property
    def base_dir(self) -> Path:
        """The folder relative paths are resolved against."""
        if self._config_path is not None:
            return self._config_path.parent
        return Path.cwd()

    def resolve_path(self, value: str) -> Path:
        return (self.base_dir / Path(value).expanduser()).resolve()

    def graph_specs(self) -> list[GraphSpec]:
        return [self._spec(graph_id, value) for graph_id, value in self.graphs.items()]

    def object_spec(self, name: str, source: str) -> GraphSpec:
        """Where `source` (``./file.py:variable`` or ``package.module:variable``) points, for
        the other objects langgraph.json names the same way (auth, embedding functions).
        Raises ConfigError (naming `name`) when `source` has no ``:variable``."""
        target, sep, variable = source.rpartition(":")
        if not sep or not target or not variable:
            raise ConfigError(
                f"{name}: invalid path {source!r}, expected './path/to/file.py:variable' "
                "or 'package.module:variable'"
            )
        return self._spec(name, source)

    def _spec(self, graph_id: str, value: str | GraphDefinition) -> GraphSpec:
        source = value if isinstance(value, str) else value.path
        description = None if isinstance(value, str) else value.description
        target, _, variable = source.rpartition(":")
        # LangGraph tells a file from a module by a "/" in it; a bare "graph.py" is also a file
        # here, since no module is ever named like that.
        if "/" in target or "\\" in target or target.endswith((".py", *JS_SUFFIXES)):
            return GraphSpec(
                graph_id, source, "file", str(self.resolve_path(target)), variable, description
            )
        return GraphSpec(graph_id, source, "module", target, variable, description)


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(root)"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def parse_langgraph_config(data: Any, path: Path | None = None) -> LanggraphConfig:
    """Validate an already-decoded langgraph.json; ``path`` anchors its relative paths."""
    where = str(path) if path is not None else "langgraph config"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")
    try:
        config = LanggraphConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{where}: invalid langgraph.json: {_describe(exc)}") from exc
    if path is not None:
        config._config_path = path.expanduser().resolve()
    return config


def load_langgraph_config(path: Path) -> LanggraphConfig:
    """Read and validate ``path``; every failure is a :class:`ConfigError` naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigNotFoundError(path.expanduser().absolute()) from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{path}: is a directory, expected a langgraph.json file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    return parse_langgraph_config(data, path)


def resolve_env(config: LanggraphConfig) -> dict[str, str]:
    """The variables ``env`` names, without touching ``os.environ``.

    A missing env file is a warning, not an error, as in LangGraph's CLI: the same langgraph.json
    is used where the variables come from the platform instead.
    """
    env = config.env
    if env is None:
        return {}
    if isinstance(env, dict):
        return {str(k): _env_str(v) for k, v in env.items() if v is not None}
    env_path = config.resolve_path(env)
    if not env_path.is_file():
        logger.warning("env file %s named in %s not found", env_path, config.config_path)
        return {}
    return {k: v for k, v in dotenv_values(env_path).items() if v is not None}


def missing_env_file(config: LanggraphConfig) -> Path | None:
    """The `env` file langgraph.json names when it does not exist (`lgql dev` refuses to start
    without it, as `langgraph dev` does; `serve` and `worker` only warn)."""
    if not isinstance(config.env, str):
        return None
    path = config.resolve_path(config.env)
    return None if path.is_file() else path


def _env_str(value: Any) -> str:
    # JSON true/false become "true"/"false", which is what a shell user would have typed.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _server_owned(name: str) -> bool:
    return name in SERVER_ENV_VARS or name.startswith(SERVER_ENV_PREFIXES)


def apply_env(config: LanggraphConfig, *, override: bool = True) -> dict[str, str]:
    """Put langgraph.json's ``env`` into ``os.environ``; returns what was set.

    Project variables replace values already in the environment, as ``langgraph dev`` does
    (``override=False`` keeps the environment's values instead). Server-owned settings
    (:data:`SERVER_ENV_VARS`, ``LGQL_*``) are only filled in when the environment lacks them.
    """
    applied: dict[str, str] = {}
    for name, value in resolve_env(config).items():
        if name in os.environ and (not override or _server_owned(name)):
            if os.environ[name] != value:
                logger.debug("env %s from %s not applied: already set", name, config.config_path)
            continue
        os.environ[name] = value
        applied[name] = value
    return applied


def _is_local_dependency(dep: str) -> bool:
    return dep in (".", "..") or dep.startswith(("./", "../", "/", "~", ".\\", "..\\"))


def add_dependency_paths(config: LanggraphConfig) -> list[Path]:
    """Append the config folder and local ``dependencies`` folders to ``sys.path``.

    The config folder comes first, as ``langgraph dev`` appends its working directory. Appending
    (not prepending) keeps installed packages ahead of same-named local folders, as LangGraph does.
    Package specs (``langchain-openai``, ``git+https://…``) are install-time concerns: skipped.
    """
    candidates = [config.base_dir.resolve()]
    for dep in config.dependencies:
        if not _is_local_dependency(dep):
            logger.debug("dependency %r is a package spec, not a local path: ignored", dep)
            continue
        path = config.resolve_path(dep)
        if not path.is_dir():
            logger.warning("local dependency %r (%s) is not a directory: ignored", dep, path)
            continue
        candidates.append(path)
    added: list[Path] = []
    for path in candidates:
        if str(path) not in sys.path:
            sys.path.append(str(path))
            added.append(path)
    return added

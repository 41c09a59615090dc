"""What reloading a project's graphs touches (`lgql dev`'s hot reload): the project's own modules,
forgotten before the graphs are imported again and put back when that fails, and the files whose
change asks for a reload. Watching them is the CLI's (`lgql/reload.py`); swapping the graphs is
:meth:`app.runtime.graphs.GraphRegistry.reload`.

A module is the project's when its file lies under the folder of langgraph.json or one of its
local `dependencies`, and not under the Python installation (a virtualenv inside the project
folder holds libraries, not project code) nor in lgql's own packages.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import site
import sys
import sysconfig
import traceback
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from app.runtime.langgraph_config import LanggraphConfig

__all__ = [
    "ModuleSnapshot",
    "error_location",
    "forget_project_modules",
    "project_modules",
    "project_roots",
    "watched_files",
]

#: lgql's own packages: never the project's, even when langgraph.json sits in lgql's checkout.
_OWN_ROOT = Path(__file__).resolve().parents[2]
_OWN_PACKAGES = tuple(
    _OWN_ROOT / name for name in ("app", "schema", "workers", "lgql", "migrations")
)


def _library_roots() -> tuple[Path, ...]:
    found: set[Path] = set()
    for value in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix):
        found.add(Path(value).resolve())
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        with_path = sysconfig.get_paths().get(key)
        if with_path:
            found.add(Path(with_path).resolve())
    try:
        found.update(Path(p).resolve() for p in site.getsitepackages())
    except AttributeError:  # some embedded interpreters lack it
        pass
    return tuple(found)


_LIBRARIES = _library_roots()


def _under(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def project_roots(config: LanggraphConfig) -> list[Path]:
    """The config's folder and its local dependency folders."""
    roots = [config.base_dir.resolve()]
    for dep in config.dependencies:
        if dep in (".", "..") or dep.startswith(("./", "../", "/", "~")):
            path = config.resolve_path(dep)
            if path.is_dir() and path not in roots:
                roots.append(path)
    return roots


def _is_project_file(path: Path, roots: list[Path]) -> bool:
    return (
        _under(path, roots)
        and not _under(path, _LIBRARIES)
        and not _under(path, _OWN_PACKAGES)
        and "site-packages" not in path.parts
    )


def _module_file(module: ModuleType) -> Path | None:
    file = getattr(module, "__file__", None)
    if not isinstance(file, str):
        return None
    try:
        return Path(file).resolve()
    except OSError:
        return None


def project_modules(roots: list[Path]) -> dict[str, ModuleType]:
    """The loaded modules whose file is the project's."""
    # Thousands of modules are loaded: only those whose file is written under a root are
    # resolved (a syscall or more each).
    prefixes = tuple(str(root) for root in roots)
    found: dict[str, ModuleType] = {}
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if not isinstance(file, str) or (os.path.isabs(file) and not file.startswith(prefixes)):
            continue
        path = _module_file(module)
        if path is not None and _is_project_file(path, roots):
            found[name] = module
    return found


class ModuleSnapshot:
    """The project's modules taken out of ``sys.modules``; :meth:`restore` puts them back (and
    drops whatever a failed import left in their place)."""

    def __init__(self, roots: list[Path], modules: dict[str, ModuleType]) -> None:
        self.roots = roots
        self.modules = modules

    def restore(self) -> None:
        for name in project_modules(self.roots):
            sys.modules.pop(name, None)
        sys.modules.update(self.modules)


def forget_project_modules(*configs: LanggraphConfig) -> ModuleSnapshot:
    """Take the project's modules out of ``sys.modules`` so the next import runs their current
    code. Code already running keeps the module objects it holds."""
    roots: list[Path] = []
    for config in configs:
        roots.extend(r for r in project_roots(config) if r not in roots)
    modules = project_modules(roots)
    for name, module in modules.items():
        del sys.modules[name]
        _drop_bytecode(module)
    importlib.invalidate_caches()  # files created since the last import must be found
    return ModuleSnapshot(roots, modules)


def _drop_bytecode(module: ModuleType) -> None:
    """Python trusts a cached .pyc whose source has the same size and mtime (to the second): an
    edit saved within the second of the last import would not be seen. Recompile instead."""
    file = getattr(module, "__file__", None)
    if not isinstance(file, str) or not file.endswith(".py"):
        return
    try:
        os.remove(importlib.util.cache_from_source(file))
    except (OSError, NotImplementedError, ValueError):
        pass


def watched_files(config: LanggraphConfig) -> set[Path]:
    """The files whose change asks for a reload: langgraph.json, its `env` file, the graph files and
    every loaded module of the project (the graphs' local imports)."""
    files: set[Path] = set()
    if config.config_path is not None:
        files.add(config.config_path)
    if isinstance(config.env, str):
        files.add(config.resolve_path(config.env))
    for spec in config.graph_specs():
        if spec.kind == "file":
            files.add(Path(spec.location))
    for module in project_modules(project_roots(config)).values():
        path = _module_file(module)
        if path is not None:
            files.add(path)
    return files


def error_location(exc: BaseException) -> str | None:
    """``file, line N`` of the user code where `exc` was raised: a syntax error's own position,
    else the innermost traceback frame outside the Python installation and lgql."""
    if isinstance(exc, SyntaxError) and exc.filename and exc.lineno:
        return f"{exc.filename}, line {exc.lineno}"
    frames = traceback.extract_tb(exc.__traceback__)
    for frame in reversed(frames):
        if frame.filename.startswith("<"):
            continue
        path = Path(frame.filename)
        if _under(path, _LIBRARIES) or _under(path, _OWN_PACKAGES) or "site-packages" in path.parts:
            continue
        return f"{frame.filename}, line {frame.lineno}"
    return None

"""`lgql dev`'s hot reload: watch the project's files, reload its graphs when one changes.

The files are langgraph.json, its `env` file, the graph files and every module of the project they
import (`app.runtime.reload.watched_files`), recomputed after each reload. Their folders are
watched, not recursively, so an editor that saves by writing a new file and renaming it is seen,
and so is a new `.py` file next to them; a virtualenv or the engines' data folder inside the
project is never walked.

A reload re-imports every graph (`GraphRegistry.reload`) in the same process: the embedded
Postgres and Valkey, the API and the in-process worker go on, and share the one registry, so new
runs take the new code while runs already started finish on theirs. A reload that fails leaves
the previous graphs serving and logs why, in one line.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from watchfiles import Change, awatch

from app.runtime.graphs import GraphLoadError
from app.runtime.langgraph_config import ConfigError, LanggraphConfig
from app.runtime.reload import watched_files
from app.services.container import Services

log = logging.getLogger("lgql.reload")
# Its "N changes detected" at INFO would precede each of our own lines.
logging.getLogger("watchfiles").setLevel(logging.WARNING)

#: langgraph.json keys a reload applies; the others are read once, at start-up.
RELOADED_KEYS = frozenset({"graphs", "env", "dependencies"})


def _restart_keys(old: LanggraphConfig, new: LanggraphConfig) -> list[str]:
    before = old.model_dump(exclude=set(RELOADED_KEYS))
    after = new.model_dump(exclude=set(RELOADED_KEYS))
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


async def reload_graphs(services: Services, changed: list[str] | None = None) -> bool:
    """Reload the graphs and give new ones their default assistant. True when it worked."""
    old = services.graphs.config
    what = f" ({', '.join(changed)} changed)" if changed else ""
    try:
        config = await services.graphs.reload()
    except (ConfigError, GraphLoadError) as exc:
        log.error("reload failed, still serving the previous graphs%s: %s", what, exc)
        return False
    except Exception as exc:  # anything user code raises while imported must not end dev
        log.error(
            "reload failed, still serving the previous graphs%s: %s: %s",
            what,
            type(exc).__name__,
            exc,
        )
        return False
    services.langgraph_config = config
    try:
        await services.assistants.ensure_default_assistants()
    except Exception as exc:  # the graphs are reloaded; their assistants come at the next one
        log.error("reloaded graphs, but their default assistants could not be saved: %s", exc)
    log.info("reloaded graphs %s%s", ", ".join(services.graphs.graph_ids), what)
    if old is not None:
        ignored = _restart_keys(old, config)
        if ignored:
            log.warning(
                "langgraph.json %s changed: restart lgql dev to apply (a reload applies %s)",
                ", ".join(ignored),
                ", ".join(sorted(RELOADED_KEYS)),
            )
    return True


async def watch_and_reload(services: Services, *, stop: asyncio.Event | None = None) -> None:
    """Reload the graphs whenever a watched file changes, until `stop` is set (or cancelled).
    Never raises: a watcher that fails says so and starts again, `lgql dev` goes on."""
    stop = stop or asyncio.Event()
    while not stop.is_set():
        try:
            await _watch(services, stop)
            return
        except Exception as exc:
            log.error(
                "watching the project's files failed (%s: %s); watching again",
                type(exc).__name__,
                exc,
            )
            await asyncio.sleep(1)


async def _watch(services: Services, stop: asyncio.Event) -> None:
    """One watcher stays open across reloads, so a change made while a reload runs is seen next;
    it is replaced only when a reload brings files in other folders."""
    while not stop.is_set():
        config = services.graphs.config
        if config is None or config.config_path is None:
            return
        files = await asyncio.to_thread(watched_files, config)
        folders = _folders(files)
        watched = set(files)  # refreshed in place after each reload

        def wanted(
            change: Change,
            path: str,
            watched: set[Path] = watched,
            folders: frozenset[Path] = folders,
        ) -> bool:
            found = Path(path)
            return found in watched or (found.suffix == ".py" and found.parent in folders)

        log.debug("watching %d files in %d folders", len(files), len(folders))
        async for changes in awatch(
            *sorted(folders), watch_filter=wanted, recursive=False, stop_event=stop, debounce=800
        ):
            base = config.base_dir
            names = sorted({_relative(Path(p), base) for _, p in changes})
            await reload_graphs(services, names)
            config = services.graphs.config or config
            files = await asyncio.to_thread(watched_files, config)
            if _folders(files) != folders:
                break  # new local imports elsewhere: watch their folders too
            watched.clear()
            watched.update(files)


def _folders(files: set[Path]) -> frozenset[Path]:
    return frozenset(f.parent for f in files if f.parent.is_dir())

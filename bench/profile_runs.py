"""Profile lgql under the background-throughput load: py-spy on the API and on the worker.

    python bench/profile_runs.py [--bg-runs 500 --clients 20] [--rate 200] [--out DIR]

Starts `lgql serve` + one `lgql worker` the way `bench_runs.py` does (`servers.lgql_server`: a
scratch database of DATABASE_URI's server and a Redis key prefix of REDIS_URI's, both removed at
the end; default the local ones), warms up, creates one thread per run, then records
`py-spy record --format raw` of both processes while `--clients` clients create `--bg-runs`
`steps` runs and wait for them all to end (the load of `bench_runs.py`'s throughput figure).

Writes to `--out` (default a new temporary folder), per process (`api`, `worker-0`):
- `ROLE.folded`: py-spy's raw output, collapsed stacks ("a;b;c count"): input of flamegraph.pl /
  inferno-flamegraph, and opens as is in https://www.speedscope.app;
- `ROLE.speedscope.json`: the same samples in speedscope's own format;
and prints, per process, the top functions by self time (share of samples where the function is
the innermost frame) and the share of samples by package (self time, then inclusive). Samples
whose innermost frame is a wait (the event loop in epoll, an idle thread-pool thread, a lock
wait: `IDLE_LEAVES`) are left out of the shares (py-spy does not always recognize them as idle);
the files keep every sample.
py-spy needs ptrace rights (root, or CAP_SYS_PTRACE).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from drivers import LgqlDriver
from servers import ROOT, cancel_on_signals, lgql_server

# Leaf frames of a thread waiting, not working, that py-spy's idle detection lets through here:
# the event loop in epoll, idle thread-pool threads, threads waiting on a lock.
IDLE_LEAVES = (
    "select (selectors.py)",
    "_worker (thread.py)",
    "wait (threading.py)",
    "_wait_for_tstate_lock (threading.py)",
)
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


def py_spy() -> str:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        raise SystemExit('py-spy not found: pip install -e ".[dev]" (or pip install py-spy)')
    return exe


def read_folded(path: Path) -> Counter[tuple[str, ...]]:
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def function_of(frame: str) -> str:
    """`func (path/file.py:12)` → `func (file.py)`: one entry per function, not per line."""
    m = FRAME.match(frame)
    if not m:
        return frame
    return f"{m['func']} ({Path(m['file']).name})"


def package_of(frame: str, root: Path = ROOT) -> str:
    """The distribution (`sqlalchemy`), lgql's package and module folder (`app/runtime`), or
    stdlib module (`stdlib:asyncio`) a frame's file belongs to (py-spy's full file names)."""
    m = FRAME.match(frame)
    path = m["file"] if m else frame
    for marker in ("site-packages/", "dist-packages/"):
        if marker in path:
            return path.split(marker, 1)[1].split("/", 1)[0].removesuffix(".py")
    if path.startswith(f"{root}/"):
        parts = path.removeprefix(f"{root}/").split("/")
        return "/".join(parts[:2]) if len(parts) > 2 else "/".join(parts)
    stdlib = re.search(r"/lib/python3\.\d+/([^/]+)", path)
    if stdlib:
        return "stdlib:" + stdlib[1].removesuffix(".py")
    if path.startswith("<frozen "):
        return "stdlib:" + path.removeprefix("<frozen ").rstrip(">").split(".")[0]
    return path


def write_speedscope(stacks: Counter[tuple[str, ...]], name: str, path: Path) -> None:
    index: dict[str, int] = {}
    frames: list[dict[str, object]] = []
    samples, weights = [], []
    for stack, count in stacks.items():
        ids = []
        for frame in stack:
            if frame not in index:
                index[frame] = len(frames)
                m = FRAME.match(frame)
                entry: dict[str, object] = {"name": m["func"] if m else frame}
                if m:
                    entry["file"] = m["file"]
                    if m["line"]:
                        entry["line"] = int(m["line"])
                frames.append(entry)
            ids.append(index[frame])
        samples.append(ids)
        weights.append(count)
    doc = {
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "shared": {"frames": frames},
        "profiles": [
            {
                "type": "sampled",
                "name": name,
                "unit": "none",
                "startValue": 0,
                "endValue": sum(weights),
                "samples": samples,
                "weights": weights,
            }
        ],
        "name": name,
        "exporter": "lgql bench/profile_runs.py",
    }
    path.write_text(json.dumps(doc))


def is_idle(leaf: str) -> bool:
    return function_of(leaf).endswith(IDLE_LEAVES)


def summarize(role: str, stacks: Counter[tuple[str, ...]], top: int, root: Path = ROOT) -> None:
    idle = sum(c for stack, c in stacks.items() if stack and is_idle(stack[-1]))
    total = sum(stacks.values()) - idle
    print(f"\n== {role}: {total:,} samples ({idle:,} idle-wait samples left out) ==")
    if total <= 0:
        return
    self_time: Counter[str] = Counter()
    self_pkg: Counter[str] = Counter()
    incl_pkg: Counter[str] = Counter()
    for stack, count in stacks.items():
        frames = [f for f in stack if not f.startswith(("process ", "thread "))]
        if not frames or is_idle(frames[-1]):
            continue
        self_time[function_of(frames[-1])] += count
        self_pkg[package_of(frames[-1], root)] += count
        for pkg in {package_of(f, root) for f in frames}:
            incl_pkg[pkg] += count
    print(f"top {top} functions by self time:")
    for func, count in self_time.most_common(top):
        print(f"  {100 * count / total:5.1f}%  {func}")
    print("packages by self time (inclusive in brackets):")
    for pkg, count in self_pkg.most_common(15):
        print(f"  {100 * count / total:5.1f}%  ({100 * incl_pkg[pkg] / total:5.1f}%)  {pkg}")


async def run(args: argparse.Namespace) -> None:
    cancel_on_signals()
    exe = py_spy()
    out = args.out or Path(tempfile.mkdtemp(prefix="lgql-profile-"))
    out.mkdir(parents=True, exist_ok=True)
    log_dir = out / "logs"
    log_dir.mkdir(exist_ok=True)
    async with lgql_server(1, log_dir, root=args.lgql_root) as server:
        print(f"- lgql: {server.mode}; pids {server.roles}", flush=True)
        driver = LgqlDriver(server.url)
        spies: dict[str, asyncio.subprocess.Process] = {}
        try:
            for _ in range(5):
                await driver.new_thread_wait("steps")
            thread_ids = await driver.create_threads("steps", args.bg_runs)
            per_client = [thread_ids[i :: args.clients] for i in range(args.clients)]
            for role, pid in server.roles.items():
                spies[role] = await asyncio.create_subprocess_exec(
                    exe,
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    str(args.rate),
                    "--format",
                    "raw",
                    "--full-filenames",
                    "--output",
                    str(out / f"{role}.folded"),
                    *(["--gil"] if args.gil else []),
                    *(["--nonblocking"] if args.nonblocking else []),
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=(log_dir / f"py-spy-{role}.log").open("wb"),
                )
            await asyncio.sleep(1.0)  # py-spy attaches
            for role, spy in spies.items():
                if spy.returncode is not None:
                    raise SystemExit(f"py-spy on {role} exited; see {log_dir}/py-spy-{role}.log")
            t0 = time.perf_counter()
            await driver.background("steps", per_client)
            elapsed = time.perf_counter() - t0
            print(
                f"load: {args.bg_runs} runs from {args.clients} clients in {elapsed:.1f} s "
                f"({args.bg_runs / elapsed:.1f} runs/s, under py-spy at {args.rate} Hz)"
            )
        finally:
            for spy in spies.values():
                if spy.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        spy.send_signal(signal.SIGINT)
            for spy in spies.values():
                try:
                    await asyncio.wait_for(spy.wait(), 60)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        spy.kill()
                    await spy.wait()
            await driver.close()
    for role in spies:
        folded = out / f"{role}.folded"
        if not folded.exists():
            print(f"\n== {role}: no profile written (see {log_dir}/py-spy-{role}.log) ==")
            continue
        stacks = read_folded(folded)
        write_speedscope(stacks, f"lgql {role}", out / f"{role}.speedscope.json")
        summarize(role, stacks, args.top, args.lgql_root.resolve())
    print(f"\nprofiles: {out} (*.folded: flamegraph.pl / speedscope; *.speedscope.json)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bg-runs", type=int, default=500)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument(
        "--gil", action="store_true", help="py-spy --gil: only samples holding the GIL"
    )
    parser.add_argument(
        "--nonblocking",
        action="store_true",
        help="py-spy --nonblocking: never pause the processes (less overhead, less exact)",
    )
    parser.add_argument("--top", type=int, default=25, help="functions listed per process")
    parser.add_argument("--out", type=Path, default=None, help="folder for the profiles")
    parser.add_argument(
        "--lgql-root",
        type=Path,
        default=ROOT,
        help="the lgql source tree to run (default: this checkout)",
    )
    args = parser.parse_args()
    os.environ.setdefault("DATABASE_URI", "postgresql://postgres@127.0.0.1:5432/test")
    os.environ.setdefault("REDIS_URI", "redis://127.0.0.1:6379/0")
    try:
        asyncio.run(run(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: servers stopped, scratch databases dropped", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()

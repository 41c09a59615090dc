"""lgql behind PgBouncer in transaction pooling mode (issue 12.6, docs/operations.md).

Debian's `pgbouncer` (1.18: no support for protocol-level prepared statements) is started in
transaction mode on a free port in front of the test Postgres, with fewer server connections than
lgql opens, so that clients' transactions keep landing on each other's server connections. Then:

- asyncpg's statement cache really breaks there (the failure lgql must avoid), and lgql's
  detection of a pooler answers yes through PgBouncer and no on Postgres itself;
- an `lgql serve` and an `lgql worker` pointed at PgBouncer (nothing said: detected) serve threads,
  runs (waited on and streamed over WebSocket), crons and the store, with no error in their logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
import pytest_asyncio
from gql import Client, gql
from gql.transport.websockets import WebsocketsTransport

from app.db.engine import asyncpg_url, behind_pooler, pool_options
from app.db.migrate import upgrade
from tests.conftest import EngineUrls, free_port, scratch_database
from tests.processes import LgqlCluster, poll_until

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"

pytestmark = pytest.mark.skipif(
    not Path(PGBOUNCER).exists(), reason="pgbouncer is not installed (apt-get install pgbouncer)"
)

#: Fewer server connections than the API and the worker open between them.
SERVER_POOL_SIZE = 6


@dataclass(frozen=True)
class Bouncer:
    port: int
    upstream: str  # the database URL PgBouncer connects to

    def url(self, database_url: str) -> str:
        """`database_url` (on the upstream server), reached through PgBouncer."""
        parts = urlsplit(asyncpg_url(database_url))
        user = parts.username or "postgres"
        return f"postgresql://{user}@127.0.0.1:{self.port}{parts.path}"


@contextlib.contextmanager
def run_pgbouncer(upstream: str) -> Iterator[Bouncer]:
    parts = urlsplit(asyncpg_url(upstream))
    user = parts.username or "postgres"
    folder = Path(tempfile.mkdtemp(prefix="lgql-pgbouncer-"))
    folder.chmod(0o755)
    port = free_port()
    (folder / "users.txt").write_text(f'"{user}" ""\n')
    (folder / "pgbouncer.ini").write_text(
        f"""[databases]
* = host={parts.hostname or "127.0.0.1"} port={parts.port or 5432} user={user}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {folder / "users.txt"}
pool_mode = transaction
default_pool_size = {SERVER_POOL_SIZE}
max_client_conn = 1000
ignore_startup_parameters = extra_float_digits
logfile = {folder / "pgbouncer.log"}
pidfile =
"""
    )
    for name in ("users.txt", "pgbouncer.ini"):
        (folder / name).chmod(0o644)
    args = [PGBOUNCER, str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        owner = next((n for n in ("postgres", "nobody") if _has_user(n)), None)
        assert owner, "no unprivileged user to run pgbouncer as"
        shutil.chown(folder, owner)
        args[1:1] = ["-u", owner]
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        yield Bouncer(port=port, upstream=upstream)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(folder, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


async def _wait_listening(bouncer: Bouncer, database_url: str) -> None:
    async def connects() -> bool | None:
        try:
            conn = await asyncpg.connect(bouncer.url(database_url), statement_cache_size=0)
        except (OSError, asyncpg.PostgresError):
            return None
        await conn.close()
        return True

    await poll_until(connects, deadline=30, what="pgbouncer to accept connections")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def database(engines: EngineUrls) -> AsyncIterator[str]:
    async with scratch_database(engines.database_uri, prefix="lgql_bouncer") as url:
        # Migrations go to Postgres directly, as docs/operations.md says to.
        await upgrade(url)
        yield url


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def bouncer(database: str) -> AsyncIterator[Bouncer]:
    with run_pgbouncer(database) as running:
        await _wait_listening(running, database)
        yield running


async def _statement_errors(pool: asyncpg.Pool, rounds: int = 40) -> list[str]:
    """Run the same statements from many clients at once; the errors met."""
    errors: list[str] = []

    async def client(n: int) -> None:
        for i in range(rounds):
            try:
                async with pool.acquire() as conn:
                    await conn.fetchval("SELECT $1::int + 1", n + i)
                    await conn.fetchval("SELECT count(*) FROM runs WHERE status = $1", "pending")
            except asyncpg.PostgresError as exc:
                errors.append(type(exc).__name__)

    await asyncio.gather(*(client(n) for n in range(12)))
    return errors


async def test_named_statements_break_behind_pgbouncer_and_lgql_avoids_them(
    bouncer: Bouncer, database: str
) -> None:
    url = bouncer.url(database)
    assert await behind_pooler(url) is True
    assert await behind_pooler(database) is False

    # asyncpg's default: named statements, cached per client connection. PgBouncer hands the
    # next transaction another server connection, which lacks them or has another's.
    cached = await asyncpg.create_pool(url, min_size=12, max_size=12)
    try:
        errors = await _statement_errors(cached)
    finally:
        await cached.close()
    assert errors, "expected prepared-statement errors with asyncpg's statement cache"
    assert {"InvalidSQLStatementNameError", "DuplicatePreparedStatementError"} & set(errors)

    safe = await asyncpg.create_pool(url, min_size=12, max_size=12, **pool_options(pgbouncer=True))
    try:
        assert await _statement_errors(safe) == []
    finally:
        await safe.close()


RUN = """mutation($t: ID!) { runAndWait(input: {assistantId: "echo", threadId: $t,
  input: {messages: [{role: "user", content: "hi"}]}}) { run { id status } values } }"""
STREAM = """subscription($t: ID!) { runStream(input: {assistantId: "steps", threadId: $t, input: {count: 0}},
  streamMode: [VALUES, UPDATES]) { id event data } }"""
MEMORY = """mutation($t: ID!, $input: JSON!) { runAndWait(input: {assistantId: "memory",
  threadId: $t, input: $input}) { run { status } values } }"""
CRON = """mutation { createCron(input: {assistantId: "echo", schedule: "0 0 1 1 *", onRunCompleted: KEEP,
  input: {messages: [{role: "user", content: "from cron"}]}}) { id } }"""
CRON_RUNS = "{ runs(first: 100) { edges { node { id status metadata } } } }"


async def test_lgql_serves_through_pgbouncer(
    engines: EngineUrls, bouncer: Bouncer, database: str
) -> None:
    env = {
        "DATABASE_URI": bouncer.url(database),
        # Postgres itself for anything that migrates (none of these processes does).
        "LGQL_MIGRATION_DATABASE_URI": database,
    }
    async with LgqlCluster(
        database, engines.redis_uri, apis=1, workers=1, env_overrides=env
    ) as cluster:
        client = cluster.client(0)

        # Threads and runs, several at once.
        async def one_run(n: int) -> None:
            thread = (await client.data("mutation { createThread { id } }"))["createThread"]["id"]
            for _ in range(3):
                result = (await client.data(RUN, {"t": thread}))["runAndWait"]
                assert result["run"]["status"] == "SUCCESS", result

        await asyncio.gather(*(one_run(n) for n in range(6)))

        # A stream over WebSocket.
        thread = (await client.data("mutation { createThread { id } }"))["createThread"]["id"]
        transport = WebsocketsTransport(
            url=cluster.graphql_urls[0].replace("http://", "ws://"),
            subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
        )
        async with Client(transport=transport) as session:
            events = [
                r["runStream"]
                async for r in session.subscribe(gql(STREAM), variable_values={"t": thread})
            ]
        assert events[0]["event"] == "metadata" and events[-1]["event"] == "end"
        assert any(e["event"] == "values" for e in events)

        # The store, from inside runs and through the API.
        for fact in ("tea", "jazz"):
            memory_thread = (await client.data("mutation { createThread { id } }"))["createThread"][
                "id"
            ]
            variables = {"t": memory_thread, "input": {"user": "ada", "fact": fact, "key": fact}}
            done = (await client.data(MEMORY, variables))["runAndWait"]
            assert done["run"]["status"] == "SUCCESS", done
        assert done["values"]["memories"] == ["jazz", "tea"]
        await client.data(
            """mutation { putStoreItem(input: {namespace: ["notes"], key: "k",
               value: {text: "through pgbouncer"}}) { key } }"""
        )
        item = await client.data('{ storeItem(namespace: ["notes"], key: "k") { value } }')
        assert item["storeItem"]["value"] == {"text": "through pgbouncer"}

        # A cron, made due now (in SQL, on Postgres itself), fired by the worker.
        cron_id = (await client.data(CRON))["createCron"]["id"]
        admin = await asyncpg.connect(asyncpg_url(database))
        try:
            await admin.execute(
                "UPDATE crons SET next_run_at = now() - interval '1 second' WHERE cron_id = $1",
                uuid.UUID(cron_id),
            )
        finally:
            await admin.close()

        async def cron_ran() -> bool | None:
            runs = (await client.data(CRON_RUNS))["runs"]["edges"]
            ran = any(
                (r["node"]["metadata"] or {}).get("cron_id") == cron_id
                and r["node"]["status"] == "SUCCESS"
                for r in runs
            )
            return True if ran else None

        await poll_until(cron_ran, deadline=90, what="the cron's run", cluster=cluster)

        logs = cluster.logs(400)
        for symptom in ("prepared statement", "InvalidSQLStatementName", "DuplicatePrepared"):
            assert symptom not in logs, logs

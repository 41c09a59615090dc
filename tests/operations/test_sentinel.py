"""lgql on Redis Sentinel follows a failover (issue 12.7, docs/operations.md).

A primary, a replica and one Sentinel, from Debian's `redis-server` and `redis-sentinel`, on free
ports; an `lgql serve` and an `lgql worker` with `REDIS_URI=redis+sentinel://…/service`. Runs
complete (waited on, streamed); the primary is killed; once the Sentinel announces the replica's
promotion (`+switch-master`, waited for, then read back from the Sentinel), runs keep completing:
queued, waited on through run-end notices, streamed, and cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from gql import Client, gql
from gql.transport.websockets import WebsocketsTransport

from app.db.migrate import upgrade
from app.messaging.redis_client import redis_client, sentinel_target
from tests.conftest import EngineUrls, GraphQLClient, free_port, scratch_database
from tests.processes import LgqlCluster, poll_until

SERVICE = "lgqltest"

pytestmark = pytest.mark.skipif(
    not (shutil.which("redis-server") and shutil.which("redis-sentinel")),
    reason="redis-server and redis-sentinel are not installed (apt-get install redis-sentinel)",
)


@dataclass
class SentinelSet:
    folder: Path
    primary_port: int = field(default_factory=free_port)
    replica_port: int = field(default_factory=free_port)
    sentinel_port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{SERVICE}/0"

    def spawn(self, name: str, args: list[str]) -> None:
        with (self.folder / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                args,
                cwd=self.folder,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def logs(self) -> str:
        return "\n".join(
            f"--- {name} ---\n" + (self.folder / f"{name}.log").read_text(errors="replace")[-3000:]
            for name in self.procs
        )


def _server_args(port: int, *extra: str) -> list[str]:
    return [
        "redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
        "--appendonly", "no", "--daemonize", "no", *extra,
    ]  # fmt: skip


@contextlib.contextmanager
def sentinel_set() -> Iterator[SentinelSet]:
    folder = Path(tempfile.mkdtemp(prefix="lgql-sentinel-"))
    s = SentinelSet(folder)
    try:
        s.spawn("primary", _server_args(s.primary_port))
        s.spawn(
            "replica",
            _server_args(s.replica_port, "--replicaof", "127.0.0.1", str(s.primary_port)),
        )
        conf = folder / "sentinel.conf"  # Sentinel rewrites its configuration: a file of its own
        conf.write_text(
            f"""port {s.sentinel_port}
bind 127.0.0.1
daemonize no
dir {folder}
sentinel monitor {SERVICE} 127.0.0.1 {s.primary_port} 1
sentinel down-after-milliseconds {SERVICE} 1000
sentinel failover-timeout {SERVICE} 10000
sentinel parallel-syncs {SERVICE} 1
"""
        )
        s.spawn("sentinel", ["redis-sentinel", str(conf)])
        yield s
    finally:
        for proc in s.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        shutil.rmtree(folder, ignore_errors=True)


async def _until(probe, *, what: str, deadline: float = 60) -> None:  # type: ignore[no-untyped-def]
    async def wrapped() -> bool | None:
        try:
            return True if await probe() else None
        except (aioredis.ConnectionError, OSError):
            return None

    await poll_until(wrapped, deadline=deadline, what=what)


async def _wait_replicated(s: SentinelSet) -> None:
    """Until the replica follows the primary and the Sentinel knows both."""
    primary = aioredis.from_url(f"redis://127.0.0.1:{s.primary_port}")
    sentinel = aioredis.Redis(port=s.sentinel_port, decode_responses=True)
    try:

        async def replica_online() -> bool:
            info = await primary.info("replication")
            return bool(info.get("connected_slaves") == 1 and "online" in str(info.get("slave0")))

        async def sentinel_sees_both() -> bool:
            master = await sentinel.execute_command("SENTINEL", "MASTER", SERVICE)
            fields = dict(zip(master[::2], master[1::2], strict=True))
            return int(fields["num-slaves"]) == 1 and "s_down" not in fields["flags"]

        await _until(replica_online, what="the replica to follow the primary")
        await _until(sentinel_sees_both, what="the Sentinel to see primary and replica")
    finally:
        await primary.aclose()
        await sentinel.aclose()


async def _sentinel_view(s: SentinelSet) -> str:
    """What the Sentinel says of the service's primary (its flags), for a failure's report."""
    sentinel = aioredis.Redis(port=s.sentinel_port, decode_responses=True)
    try:
        master = await sentinel.execute_command("SENTINEL", "MASTER", SERVICE)
        fields = dict(zip(master[::2], master[1::2], strict=True))
        return f"--- SENTINEL MASTER {SERVICE} ---\n{fields}"
    except (aioredis.RedisError, OSError) as failed:
        return f"--- SENTINEL MASTER {SERVICE} --- unavailable: {failed!r}"
    finally:
        await sentinel.aclose()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def database(engines: EngineUrls) -> AsyncIterator[str]:
    async with scratch_database(engines.database_uri, prefix="lgql_sentinel") as url:
        await upgrade(url)
        yield url


def test_sentinel_uri_format() -> None:
    target = sentinel_target("redis+sentinel://:secret@10.0.0.1:26379,[::1],s3:26380/mymaster/2")
    assert target is not None
    assert target.sentinels == [("10.0.0.1", 26379), ("::1", 26379), ("s3", 26380)]
    assert (target.service_name, target.db, target.password) == ("mymaster", 2, "secret")
    assert sentinel_target("redis://127.0.0.1:6379/0") is None
    for bad in ("redis+sentinel://h:1", "redis+sentinel:///m", "redis+sentinel://h:x/m"):
        with pytest.raises(ValueError):
            sentinel_target(bad)


async def test_start_up_check_names_unreachable_sentinels() -> None:
    """`lgql serve`'s start-up check speaks Sentinel, and says which Sentinels it could not reach
    (a list of hosts once made it fail on the URL itself)."""
    from lgql.startup import StartupError, check_redis

    down = f"redis+sentinel://:pw@127.0.0.1:{free_port()},127.0.0.1:{free_port()}/{SERVICE}"
    with pytest.raises(StartupError) as failed:
        await check_redis(down)
    where = down.partition("@")[2]
    assert f"cannot reach Redis at {where}" in str(failed.value)
    assert ":pw@" not in str(failed.value)


RUN = """mutation($t: ID!, $input: JSON!) { runAndWait(input: {assistantId: "steps",
  threadId: $t, input: $input}) { run { status } values } }"""
CREATE_RUN = """mutation($t: ID!) { createRun(input: {assistantId: "slow", threadId: $t,
  input: {seconds: 60}}) { id } }"""
CANCEL = "mutation($r: ID!) { cancelRun(id: $r, wait: true) { status } }"
STREAM = """subscription($t: ID!) { runStream(input: {assistantId: "steps", threadId: $t,
  input: {count: 0}}, streamMode: [VALUES]) { event data } }"""


async def _runs_complete(client: GraphQLClient, url: str, rounds: int) -> None:
    async def one(n: int) -> None:
        thread = (await client.data("mutation { createThread { id } }"))["createThread"]["id"]
        done = (await client.data(RUN, {"t": thread, "input": {"count": n}}))["runAndWait"]
        assert done["run"]["status"] == "SUCCESS", done
        assert done["values"]["count"] == n + 5

    await asyncio.gather(*(one(n) for n in range(rounds)))
    thread = (await client.data("mutation { createThread { id } }"))["createThread"]["id"]
    transport = WebsocketsTransport(
        url=url.replace("http://", "ws://"),
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
    )
    request = gql(STREAM)
    request.variable_values = {"t": thread}
    async with Client(transport=transport) as session:
        events = [r["runStream"] async for r in session.subscribe(request)]
    assert events[-1]["event"] == "end"
    assert [e["data"]["count"] for e in events if e["event"] == "values"][-1] == 5


async def test_runs_go_on_after_a_failover(engines: EngineUrls, database: str) -> None:
    with sentinel_set() as s:
        await _wait_replicated(s)
        async with LgqlCluster(
            database,
            f"redis://127.0.0.1:{s.primary_port}/0",  # the cluster's own look at heartbeats
            apis=1,
            workers=1,
            env_overrides={"REDIS_URI": s.uri},
        ) as cluster:
            client = cluster.client(0)
            try:
                await _runs_complete(client, cluster.graphql_urls[0], rounds=4)

                sentinel = aioredis.Redis(port=s.sentinel_port, decode_responses=True)
                switched = sentinel.pubsub()
                try:
                    await switched.subscribe("+switch-master")
                    s.procs["primary"].send_signal(signal.SIGKILL)
                    message = None
                    async with asyncio.timeout(90):
                        while message is None:
                            message = await switched.get_message(
                                ignore_subscribe_messages=True, timeout=5
                            )
                    # "<service> <old ip> <old port> <new ip> <new port>"
                    assert message["data"].split()[-1] == str(s.replica_port), message
                    master = await sentinel.execute_command(
                        "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE
                    )
                    assert int(master[1]) == s.replica_port
                finally:
                    await switched.aclose()
                    await sentinel.aclose()

                # The same processes, on the promoted replica: runs queued and waited on,
                # streamed, and cancelled.
                await _runs_complete(client, cluster.graphql_urls[0], rounds=4)
                thread = (await client.data("mutation { createThread { id } }"))["createThread"][
                    "id"
                ]
                run_id = (await client.data(CREATE_RUN, {"t": thread}))["createRun"]["id"]

                async def running() -> bool:
                    found = await client.data(
                        "query($r: ID!) { run(id: $r) { status } }", {"r": run_id}
                    )
                    return found["run"]["status"] == "RUNNING"

                await _until(running, what="the slow run to start")
                cancelled = (await client.data(CANCEL, {"r": run_id}))["cancelRun"]
                assert cancelled["status"] == "INTERRUPTED", cancelled

                # The worker's heartbeat reaches the new primary: the API is ready again.
                async def ready() -> bool:
                    answer = await client.http.get(f"{cluster.api_urls[0]}/ready")
                    return answer.status_code == 200

                await _until(ready, what="/ready after the failover")

                # The library's own client follows the promotion too. A Sentinel told to call a
                # server down after 1 s can flag the new primary down for a moment on a loaded
                # machine (CI once saw MasterNotFoundError here): a moment, not a failure.
                direct = redis_client(s.uri)
                try:

                    async def on_the_new_primary() -> bool:
                        return bool((await direct.info("replication"))["role"] == "master")

                    await _until(on_the_new_primary, what="the library's client on the new primary")
                finally:
                    await direct.aclose()
            except BaseException:
                print(s.logs())
                print(await _sentinel_view(s))
                raise

"""Clients of the benchmarked servers: what a figure needs from a server, whatever its API.

Every timed call returns its own elapsed time in ms (so the floor, driven over a pipe, times
itself without the pipe). `LgqlDriver` speaks lgql's GraphQL through aiohttp (HTTP for queries
and mutations, graphql-transport-ws for `runStream`); `LangGraphSdkDriver` speaks
LangGraph's API through its Python SDK; `FloorDriver` drives `floor.py` (the graphs in-process
with `AsyncPostgresSaver`) over a pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from workload import INPUTS, STREAM_EVENTS, ms_since

FLOOR = Path(__file__).resolve().parent / "floor.py"


class StreamError(RuntimeError):
    """A streamed run that did not deliver its events (counted, not fatal, by the bench)."""


class Driver:
    name = "?"

    async def new_thread_wait(self, graph: str) -> float:
        raise NotImplementedError

    async def stateless_wait(self, graph: str) -> float:
        raise NotImplementedError

    async def stream(self, graph: str) -> tuple[float, float]:
        """A run streaming custom events: ms to the first and to the last (`STREAM_EVENTS`th)."""
        raise NotImplementedError

    async def create_threads(self, graph: str, n: int) -> list[str]:
        raise NotImplementedError

    async def background(self, graph: str, threads: list[list[str]], poll: float = 0.1) -> int:
        """Create one run on each thread, one client per list; return when all ended, with the
        number of completion polls it sent the server (0 if it does not poll)."""
        raise NotImplementedError

    async def close(self) -> None:
        pass


RUN_AND_WAIT = """mutation($input: RunInput!) {
  runAndWait(input: $input) { run { id status } error { type message } }
}"""
CREATE_RUN = "mutation($input: RunInput!) { createRun(input: $input) { id } }"
CREATE_THREAD = "mutation($graph: String!) { createThread(input: {graphId: $graph}) { id } }"
ACTIVE = "{ p: runs(status: PENDING) { totalCount } r: runs(status: RUNNING) { totalCount } }"
RUN_STREAM = """subscription($input: RunInput!) {
  runStream(input: $input, streamMode: [CUSTOM]) { id event data } }"""
GRAPHQL_TRANSPORT_WS = "graphql-transport-ws"


class LgqlDriver(Driver):
    """lgql's GraphQL over aiohttp: HTTP for queries and mutations, graphql-transport-ws for
    `runStream`.

    aiohttp rather than httpx because the client's own cost is timed with the server's: measured
    side by side on one server (medians), a `createThread` took 1.41 ms back to back / 4.64 ms
    after a second idle over a bare socket, 1.62 / 4.85 ms through aiohttp and 2.12 / 6.36 ms
    through httpx; a new-thread wait is two such requests."""

    name = "lgql"

    def __init__(self, url: str) -> None:
        self.base = url
        self.url = f"{url}/graphql"
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600))
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.ids = itertools.count(1)

    async def _data(
        self, http: aiohttp.ClientSession, query: str, variables: dict[str, Any]
    ) -> Any:
        payload = {"query": query, "variables": variables}
        try:
            async with http.post(self.url, json=payload) as response:
                body = await response.json()
        except aiohttp.ClientConnectionResetError:
            # A pooled connection the server closed (idle past uvicorn's keep-alive timeout)
            # as it was taken: the request was not written. Once more, on a new connection.
            async with http.post(self.url, json=payload) as response:
                body = await response.json()
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    async def _wait(self, graph: str, thread_id: str | None) -> None:
        run_input: dict[str, Any] = {"assistantId": graph, "input": INPUTS[graph]}
        if thread_id is not None:
            run_input["threadId"] = thread_id
        data = await self._data(self.http, RUN_AND_WAIT, {"input": run_input})
        result = data["runAndWait"]
        if result["run"]["status"] != "SUCCESS":
            raise RuntimeError(f"run did not succeed: {result}")

    async def new_thread_wait(self, graph: str) -> float:
        t0 = time.perf_counter()
        thread = await self._data(self.http, CREATE_THREAD, {"graph": graph})
        await self._wait(graph, thread["createThread"]["id"])
        return ms_since(t0)

    async def stateless_wait(self, graph: str) -> float:
        t0 = time.perf_counter()
        await self._wait(graph, None)
        return ms_since(t0)

    async def _socket(self) -> aiohttp.ClientWebSocketResponse:
        if self.ws is None:  # one connection, one subscription after the other
            ws = await self.http.ws_connect(
                self.base.replace("http://", "ws://", 1) + "/graphql",
                protocols=[GRAPHQL_TRANSPORT_WS],
                max_msg_size=0,
                autoping=True,
            )
            await ws.send_str(json.dumps({"type": "connection_init", "payload": {}}))
            ack = json.loads(await ws.receive_str())
            if ack["type"] != "connection_ack":
                raise RuntimeError(f"no connection_ack: {ack}")
            self.ws = ws
        return self.ws

    async def stream(self, graph: str) -> tuple[float, float]:
        ws = await self._socket()
        sub_id = str(next(self.ids))
        payload = {"query": RUN_STREAM, "variables": {"input": {"assistantId": graph, "input": {}}}}
        t0 = time.perf_counter()
        await ws.send_str(json.dumps({"id": sub_id, "type": "subscribe", "payload": payload}))
        first = last = 0.0
        customs = 0
        others: list[dict[str, Any]] = []  # the non-custom events, for the error message
        while True:
            frame = await ws.receive()
            now = ms_since(t0)
            if frame.type is not aiohttp.WSMsgType.TEXT:
                raise StreamError(f"socket closed mid-stream: {frame.type.name} {frame.data!r}")
            message = json.loads(frame.data)
            if message.get("id") != sub_id:
                continue  # the server's keep-alive pings
            if message["type"] == "next":
                if message["payload"].get("errors"):
                    raise StreamError(message["payload"]["errors"])
                event = message["payload"]["data"]["runStream"]
                if event["event"] != "custom":
                    others.append(event)
                if event["event"] == "custom":
                    customs += 1
                    if customs == 1:
                        first = now
                    if customs == STREAM_EVENTS:
                        last = now
                elif event["event"] == "error":
                    raise StreamError(f"the run failed: {event}")
            elif message["type"] == "complete":
                break
            else:
                raise StreamError(f"stream stopped: {message}")
        if customs != STREAM_EVENTS:
            raise StreamError(
                f"{customs} custom events, expected {STREAM_EVENTS}; other events: {others}"
            )
        return first, last

    async def create_threads(self, graph: str, n: int) -> list[str]:
        sem = asyncio.Semaphore(20)

        async def one() -> str:
            async with sem:
                data = await self._data(self.http, CREATE_THREAD, {"graph": graph})
                thread_id: str = data["createThread"]["id"]
                return thread_id

        return list(await asyncio.gather(*(one() for _ in range(n))))

    async def active(self) -> int:
        data = await self._data(self.http, ACTIVE, {})
        return int(data["p"]["totalCount"] + data["r"]["totalCount"])

    async def background(self, graph: str, threads: list[list[str]], poll: float = 0.1) -> int:
        async def client(thread_ids: list[str]) -> None:
            timeout = aiohttp.ClientTimeout(total=60)
            async with aiohttp.ClientSession(timeout=timeout) as http:
                for thread_id in thread_ids:
                    run_input = {
                        "assistantId": graph,
                        "threadId": thread_id,
                        "input": INPUTS[graph],
                    }
                    await self._data(http, CREATE_RUN, {"input": run_input})

        await asyncio.gather(*(client(ids) for ids in threads))
        polls = 0
        while True:
            polls += 1
            if await self.active() == 0:
                return polls
            # Each poll costs the server CPU that the batch is charged with: not too often.
            await asyncio.sleep(poll)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        await self.http.close()


class LangGraphSdkDriver(Driver):
    name = "langgraph dev"

    def __init__(self, url: str) -> None:
        from langgraph_sdk import get_client

        self.url = url
        self.client = get_client(url=url, api_key=None, timeout=600)

    async def new_thread_wait(self, graph: str) -> float:
        t0 = time.perf_counter()
        thread = await self.client.threads.create()
        await self.client.runs.wait(thread["thread_id"], graph, input=INPUTS[graph])
        return ms_since(t0)

    async def stateless_wait(self, graph: str) -> float:
        t0 = time.perf_counter()
        await self.client.runs.wait(None, graph, input=INPUTS[graph])
        return ms_since(t0)

    async def stream(self, graph: str) -> tuple[float, float]:
        first = last = 0.0
        customs = 0
        t0 = time.perf_counter()
        async for chunk in self.client.runs.stream(
            None, graph, input=INPUTS[graph], stream_mode="custom"
        ):
            if chunk.event == "custom":
                customs += 1
                if customs == 1:
                    first = ms_since(t0)
                if customs == STREAM_EVENTS:
                    last = ms_since(t0)
            elif chunk.event == "error":
                raise StreamError(f"the run failed: {chunk.data}")
        if customs != STREAM_EVENTS:
            raise StreamError(f"{customs} custom events, expected {STREAM_EVENTS}")
        return first, last

    async def create_threads(self, graph: str, n: int) -> list[str]:
        sem = asyncio.Semaphore(20)

        async def one() -> str:
            async with sem:
                thread = await self.client.threads.create()
                thread_id: str = thread["thread_id"]
                return thread_id

        return list(await asyncio.gather(*(one() for _ in range(n))))

    async def background(self, graph: str, threads: list[list[str]], poll: float = 0.1) -> int:
        from langgraph_sdk import get_client

        async def client(thread_ids: list[str]) -> None:
            sdk = get_client(url=self.url, api_key=None, timeout=600)
            runs = []
            for thread_id in thread_ids:
                run = await sdk.runs.create(thread_id, graph, input=INPUTS[graph])
                runs.append((thread_id, run["run_id"]))
            for thread_id, run_id in runs:
                await sdk.runs.join(thread_id, run_id)

        await asyncio.gather(*(client(ids) for ids in threads))
        return 0


# ---- the floor (bench/floor.py in a child process) -------------------------------------------------


class FloorDriver(Driver):
    name = "floor"

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lock = asyncio.Lock()

    async def call(self, **req: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        async with self.lock:
            self.proc.stdin.write((json.dumps(req) + "\n").encode())
            await self.proc.stdin.drain()
            line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the floor process ended (see floor*.log)")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def new_thread_wait(self, graph: str) -> float:
        return float((await self.call(op="new_thread_wait", graph=graph))["ms"])

    async def stateless_wait(self, graph: str) -> float:
        return float((await self.call(op="stateless_wait", graph=graph))["ms"])

    async def stream(self, graph: str) -> tuple[float, float]:
        answer = await self.call(op="stream", graph=graph)
        if answer["events"] != STREAM_EVENTS:
            raise StreamError(f"{answer['events']} custom events, expected {STREAM_EVENTS}")
        return float(answer["first"]), float(answer["last"])

    async def create_threads(self, graph: str, n: int) -> list[str]:
        return [str(uuid.uuid4()) for _ in range(n)]

    async def background(self, graph: str, threads: list[list[str]], poll: float = 0.1) -> int:
        await self.call(op="background", graph=graph, threads=threads)
        return 0

    async def close(self) -> None:
        if self.proc.returncode is None and self.proc.stdin is not None:
            with contextlib.suppress(Exception):
                self.proc.stdin.write(b'{"op": "quit"}\n')
                await self.proc.stdin.drain()


@contextlib.asynccontextmanager
async def floor_process(dsn: str, log: Path) -> AsyncIterator[tuple[FloorDriver, int]]:
    """Start the floor's child on `dsn`; yield its driver and pid; stop it."""
    with log.open("ab") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(FLOOR),
            dsn,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            start_new_session=True,
        )
    driver = FloorDriver(proc)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 120)
        if not line:
            raise SystemExit(f"the floor process did not start; see {log}")
        yield driver, proc.pid
    finally:
        await driver.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

"""`/a2a/{assistant_id}` and the agent cards, proved with the official `a2a-sdk` client against a
live server, in both protocol versions it speaks (1.0, and 0.3 as LangGraph Server's clients
use), plus raw JSON-RPC for what a client would never send."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import pytest_asyncio
from a2a.client import ClientConfig, ClientFactory
from a2a.client.card_resolver import A2ACardResolver
from a2a.client.client import Client
from a2a.types.a2a_pb2 import (
    AgentCard,
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    StreamResponse,
    SubscribeToTaskRequest,
    Task,
    TaskState,
)
from a2a.utils.constants import PROTOCOL_VERSION_0_3
from google.protobuf.json_format import MessageToDict, ParseDict
from google.protobuf.struct_pb2 import Value

from app.db.migrate import upgrade
from tests.conftest import (
    ALICE,
    AUTH_CONFIG,
    BOB,
    ROOT,
    EngineUrls,
    GraphQLClient,
    LiveServer,
    make_settings,
    scratch_database,
    start_server,
)

VERSIONS = ["1.0", "0.3"]


async def _assistant_id(gql_client: GraphQLClient, graph_id: str) -> str:
    data = await gql_client.data(
        "query($g: String!) { assistants(filter: {graphId: $g}, first: 1) { edges { node { id } } } }",
        {"g": graph_id},
    )
    return str(data["assistants"]["edges"][0]["node"]["id"])


@asynccontextmanager
async def a2a_client(
    server: LiveServer,
    assistant_id: str,
    *,
    version: str = "1.0",
    streaming: bool = False,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[Client]:
    """The SDK's client for one assistant, resolved from its card; `version` "0.3" keeps only
    the card's 0.3 interface, so the client speaks `message/send` and friends."""
    async with httpx.AsyncClient(timeout=60, headers=headers) as http:
        config = ClientConfig(httpx_client=http, streaming=streaming)
        factory = ClientFactory(config)
        base = f"{server.url}/a2a/{assistant_id}"
        card = await A2ACardResolver(http, base).get_agent_card()
        if version == PROTOCOL_VERSION_0_3:
            keep = [i for i in card.supported_interfaces if i.protocol_version == "0.3"]
            del card.supported_interfaces[:]
            card.supported_interfaces.extend(keep)
        client = factory.create(card)
        try:
            yield client
        finally:
            await client.close()


def user_message(
    *,
    text: str | None = None,
    data: dict[str, Any] | None = None,
    context_id: str = "",
    task_id: str = "",
) -> Message:
    parts = []
    if text is not None:
        parts.append(Part(text=text))
    if data is not None:
        parts.append(Part(data=ParseDict(data, Value())))
    return Message(
        message_id=str(uuid.uuid4()),
        role=Role.ROLE_USER,
        parts=parts,
        context_id=context_id,
        task_id=task_id,
    )


async def send(client: Client, message: Message, **config: Any) -> Task:
    request = SendMessageRequest(message=message, configuration=SendMessageConfiguration(**config))
    responses = [r async for r in client.send_message(request)]
    assert len(responses) == 1 and responses[0].HasField("task"), responses
    return responses[0].task


def artifact_data(task: Task) -> Any:
    parts = [p for a in task.artifacts for p in a.parts if p.HasField("data")]
    return MessageToDict(parts[-1].data)


def artifact_text(task: Task) -> str:
    return "".join(p.text for a in task.artifacts for p in a.parts if p.HasField("text"))


# --- cards -------------------------------------------------------------------------------------


async def test_agent_card_describes_the_assistant_in_both_versions(
    live_server: LiveServer, gql_client: GraphQLClient
) -> None:
    aid = await _assistant_id(gql_client, "ctx")
    async with httpx.AsyncClient() as http:
        well_known = await http.get(
            f"{live_server.url}/.well-known/agent-card.json?assistant_id={aid}"
        )
        per_assistant = await http.get(f"{live_server.url}/a2a/{aid}/.well-known/agent-card.json")
        missing = await http.get(f"{live_server.url}/.well-known/agent-card.json")
        unknown = await http.get(
            f"{live_server.url}/.well-known/agent-card.json?assistant_id={uuid.uuid4()}"
        )
        card = await A2ACardResolver(http, f"{live_server.url}/a2a/{aid}").get_agent_card()
    assert well_known.status_code == per_assistant.status_code == 200
    assert well_known.json() == per_assistant.json()
    assert missing.status_code == 400 and unknown.status_code == 404
    assert isinstance(card, AgentCard)
    assert card.description == "Greets the user named in the run context."
    assert card.capabilities.streaming is True
    assert {(i.protocol_binding, i.protocol_version) for i in card.supported_interfaces} == {
        ("JSONRPC", "1.0"),
        ("JSONRPC", "0.3"),
    }
    assert all(i.url == f"{live_server.url}/a2a/{aid}" for i in card.supported_interfaces)
    # The 0.3 fields ride along for 0.3 clients.
    assert well_known.json()["url"] == f"{live_server.url}/a2a/{aid}"


# --- message/send, message/stream, tasks/get, tasks/cancel ------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
async def test_send_message_runs_the_graph_and_returns_a_completed_task(
    live_server: LiveServer, gql_client: GraphQLClient, version: str
) -> None:
    aid = await _assistant_id(gql_client, "echo")
    async with a2a_client(live_server, aid, version=version) as client:
        task = await send(client, user_message(text="hello there"))
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert artifact_text(task) == "hello there"
    assert [m["content"] for m in artifact_data(task)["messages"]] == ["hello there"] * 2
    uuid.UUID(task.id), uuid.UUID(task.context_id)


@pytest.mark.parametrize("version", VERSIONS)
async def test_data_parts_are_the_graph_input(
    live_server: LiveServer, gql_client: GraphQLClient, version: str
) -> None:
    aid = await _assistant_id(gql_client, "slow")
    async with a2a_client(live_server, aid, version=version) as client:
        task = await send(client, user_message(data={"seconds": 0, "count": 41}))
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert artifact_data(task)["count"] == 42


@pytest.mark.parametrize("version", VERSIONS)
async def test_graph_error_is_a_failed_task(
    live_server: LiveServer, gql_client: GraphQLClient, version: str
) -> None:
    aid = await _assistant_id(gql_client, "fail")
    async with a2a_client(live_server, aid, version=version) as client:
        task = await send(client, user_message(data={"message": "kaboom"}))
    assert task.status.state == TaskState.TASK_STATE_FAILED
    assert "ValueError: kaboom" in "".join(p.text for p in task.status.message.parts)


@pytest.mark.parametrize("version", VERSIONS)
async def test_context_id_continues_the_conversation_on_one_thread(
    live_server: LiveServer, gql_client: GraphQLClient, version: str
) -> None:
    aid = await _assistant_id(gql_client, "echo")
    async with a2a_client(live_server, aid, version=version) as client:
        first = await send(client, user_message(text="one"))
        second = await send(client, user_message(text="two", context_id=first.context_id))
    assert second.context_id == first.context_id and second.id != first.id
    assert [m["content"] for m in artifact_data(second)["messages"]] == ["one", "one", "two", "two"]
    thread = await gql_client.data(
        "query($id: ID!) { thread(id: $id) { runs { totalCount } } }", {"id": first.context_id}
    )
    assert thread["thread"]["runs"]["totalCount"] == 2


@pytest.mark.parametrize("version", VERSIONS)
async def test_stream_message_sends_status_and_artifact_updates(
    live_server: LiveServer, gql_client: GraphQLClient, version: str
) -> None:
    aid = await _assistant_id(gql_client, "echo")
    async with a2a_client(live_server, aid, version=version, streaming=True) as client:
        request = SendMessageRequest(message=user_message(text="streamed"))
        events: list[StreamResponse] = [e async for e in client.send_message(request)]
    kinds = [e.WhichOneof("payload") for e in events]
    assert kinds[0] == "task"
    assert events[0].task.status.state == TaskState.TASK_STATE_SUBMITTED
    assert "status_update" in kinds and "artifact_update" in kinds
    states = [e.status_update.status.state for e in events if e.HasField("status_update")]
    assert states[0] == TaskState.TASK_STATE_WORKING
    assert states[-1] == TaskState.TASK_STATE_COMPLETED
    last_artifact = [e.artifact_update for e in events if e.HasField("artifact_update")][-1]
    assert last_artifact.last_chunk is True
    assert "".join(p.text for p in last_artifact.artifact.parts if p.HasField("text")) == "streamed"


@pytest.mark.parametrize("version", VERSIONS)
async def test_interrupt_is_input_required_and_a_follow_up_resumes_it(
    live_server: LiveServer, gql_client: GraphQLClient, version: str
) -> None:
    aid = await _assistant_id(gql_client, "interrupt")
    async with a2a_client(live_server, aid, version=version) as client:
        asked = await send(client, user_message(data={"question": "Proceed?"}))
        assert asked.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        assert asked.status.message.parts[0].text == "Proceed?"
        resumed = await send(
            client,
            user_message(text="yes please", context_id=asked.context_id, task_id=asked.id),
        )
    assert resumed.status.state == TaskState.TASK_STATE_COMPLETED
    assert resumed.context_id == asked.context_id
    assert artifact_data(resumed)["answer"] == "yes please"


@pytest.mark.parametrize("version", VERSIONS)
async def test_get_task_follows_a_task_to_its_end(
    live_server: LiveServer, gql_client: GraphQLClient, version: str
) -> None:
    aid = await _assistant_id(gql_client, "slow")
    async with a2a_client(live_server, aid, version=version) as client:
        submitted = await send(
            client, user_message(data={"seconds": 0.3, "count": 1}), return_immediately=True
        )
        assert submitted.status.state == TaskState.TASK_STATE_SUBMITTED
        states = []
        for _ in range(400):
            task = await client.get_task(GetTaskRequest(id=submitted.id))
            states.append(task.status.state)
            if task.status.state == TaskState.TASK_STATE_COMPLETED:
                break
            await asyncio.sleep(0.05)
    assert states[-1] == TaskState.TASK_STATE_COMPLETED
    assert artifact_data(task)["count"] == 2


async def test_subscribe_follows_a_running_task(
    live_server: LiveServer, gql_client: GraphQLClient
) -> None:
    aid = await _assistant_id(gql_client, "slow")
    async with a2a_client(live_server, aid, streaming=True) as client:
        submitted = await send_nonstreaming(live_server, aid, {"seconds": 0.5, "count": 5})
        events = [e async for e in client.subscribe(SubscribeToTaskRequest(id=submitted.id))]
    assert events[0].task.id == submitted.id
    final = [e.status_update.status.state for e in events if e.HasField("status_update")][-1]
    assert final == TaskState.TASK_STATE_COMPLETED


async def send_nonstreaming(server: LiveServer, aid: str, data: dict[str, Any]) -> Task:
    async with a2a_client(server, aid) as client:
        return await send(client, user_message(data=data), return_immediately=True)


@pytest.mark.parametrize("version", VERSIONS)
async def test_cancel_task_cancels_the_run(
    live_server: LiveServer, gql_client: GraphQLClient, version: str
) -> None:
    aid = await _assistant_id(gql_client, "slow")
    async with a2a_client(live_server, aid, version=version) as client:
        task = await send(client, user_message(data={"seconds": 120}), return_immediately=True)
        cancelled = await client.cancel_task(CancelTaskRequest(id=task.id))
        again = await client.get_task(GetTaskRequest(id=task.id))
    assert cancelled.status.state == TaskState.TASK_STATE_CANCELED
    assert again.status.state == TaskState.TASK_STATE_CANCELED
    run = await gql_client.data("query($id: ID!) { run(id: $id) { status } }", {"id": task.id})
    assert run["run"]["status"] == "INTERRUPTED"


@pytest.mark.parametrize("version", VERSIONS)
async def test_stream_ends_failed_or_input_required_as_the_run_does(
    live_server: LiveServer, gql_client: GraphQLClient, version: str
) -> None:
    fail = await _assistant_id(gql_client, "fail")
    ask = await _assistant_id(gql_client, "interrupt")
    finals = []
    for aid, data in ((fail, {"message": "kaboom"}), (ask, {"question": "Sure?"})):
        async with a2a_client(live_server, aid, version=version, streaming=True) as client:
            request = SendMessageRequest(message=user_message(data=data))
            events = [e async for e in client.send_message(request)]
        finals.append([e.status_update.status for e in events if e.HasField("status_update")][-1])
    failed, asked = finals
    assert failed.state == TaskState.TASK_STATE_FAILED
    assert "kaboom" in failed.message.parts[0].text
    assert asked.state == TaskState.TASK_STATE_INPUT_REQUIRED
    assert asked.message.parts[0].text == "Sure?"


async def test_a_task_belongs_to_its_assistant(
    live_server: LiveServer, gql_client: GraphQLClient
) -> None:
    slow = await _assistant_id(gql_client, "slow")
    echo = await _assistant_id(gql_client, "echo")
    task = await send_nonstreaming(live_server, slow, {"seconds": 0})
    async with a2a_client(live_server, echo) as client:
        with pytest.raises(Exception) as caught:
            await client.get_task(GetTaskRequest(id=task.id))
    assert "not found" in str(caught.value).lower()


async def test_a_long_send_keeps_the_connection_alive(
    live_server: LiveServer, gql_client: GraphQLClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 5 s in production; shortened so the proof takes a second. The client's read timeout
    # (0.5 s) is far shorter than the run (1.5 s): only the keep-alive newlines save the call.
    from app import keep_alive

    monkeypatch.setattr(keep_alive, "KEEP_ALIVE_AFTER", 0.1)
    monkeypatch.setattr(keep_alive, "KEEP_ALIVE_EVERY", 0.1)
    aid = await _assistant_id(gql_client, "slow")
    async with httpx.AsyncClient(timeout=0.5) as http:
        card = await A2ACardResolver(http, f"{live_server.url}/a2a/{aid}").get_agent_card()
        client = ClientFactory(ClientConfig(httpx_client=http, streaming=False)).create(card)
        task = await send(client, user_message(data={"seconds": 1.5, "count": 0}))
    async with httpx.AsyncClient(timeout=0.5) as http:  # no A2A-Version header: a 0.3 call
        raw = await http.post(
            f"{live_server.url}/a2a/{aid}",
            json={
                "jsonrpc": "2.0",
                "id": 1,
                "method": "message/send",
                "params": {
                    "message": {
                        "messageId": "m",
                        "role": "user",
                        "parts": [{"kind": "data", "data": {"seconds": 0.5}}],
                    }
                },
            },
        )
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert raw.text.startswith("\n")
    assert raw.json()["result"]["status"]["state"] == "completed"


# --- the same runs as every other door ---------------------------------------------------------

JOIN = "subscription($id: ID!) { joinRunStream(runId: $id) { id event data } }"


async def _join(server: LiveServer, run_id: str) -> list[dict[str, Any]]:
    from gql import Client as GqlClient
    from gql import gql
    from gql.transport.websockets import WebsocketsTransport

    transport = WebsocketsTransport(
        url=server.graphql_url.replace("http://", "ws://"),
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
    )
    events: list[dict[str, Any]] = []
    async with GqlClient(transport=transport) as session:
        query = gql(JOIN)
        query.variable_values = {"id": run_id}
        async for result in session.subscribe(query):
            events.append(result["joinRunStream"])
    return events


async def test_a2a_task_is_a_run_in_graphql_and_joinable(
    live_server: LiveServer, gql_client: GraphQLClient
) -> None:
    aid = await _assistant_id(gql_client, "slow")
    task = await send_nonstreaming(live_server, aid, {"seconds": 0.3, "count": 7})
    events = await _join(live_server, task.id)
    runs = await gql_client.data(
        "query($t: ID!) { runs(threadId: $t) { edges { node { id threadId assistantId status metadata } } } }",
        {"t": task.context_id},
    )
    [node] = [e["node"] for e in runs["runs"]["edges"]]
    assert node["id"] == task.id and node["assistantId"] == aid
    assert node["status"] == "SUCCESS" and node["metadata"]["source"] == "a2a"
    assert events[0]["event"] == "metadata" and events[-1]["event"] == "end"
    assert [e for e in events if e["event"] == "values"][-1]["data"]["count"] == 8


# --- the wire: what the SDK client would never send ------------------------------------------


async def _rpc(server: LiveServer, path: str, body: bytes, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(
            f"{server.url}{path}",
            content=body,
            headers={"content-type": "application/json", **headers},
        )


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"jsonrpc": "2.0", "id": 1, "method": ', -32700),
        (b'\xff\xfe{"jsonrpc": "2.0"}', -32700),
        (b"[" * 5000 + b"]" * 5000, -32700),
        (b'{"jsonrpc": "1.0", "id": 1, "method": "message/send"}', -32600),
        (b'[{"jsonrpc": "2.0", "id": 1, "method": "tasks/get", "params": {"id": "x"}}]', -32600),
        (b'{"jsonrpc": "2.0", "id": 1, "method": 3}', -32600),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "tasks/frobnicate"}', -32601),
        (
            b'{"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": 5}}',
            -32602,
        ),
    ],
)
async def test_malformed_json_rpc_gets_its_error_code(
    live_server: LiveServer, body: bytes, code: int
) -> None:
    response = await _rpc(live_server, "/a2a/echo", body)
    assert response.status_code == 200
    assert response.json()["error"]["code"] == code


async def test_huge_body_is_refused(live_server: LiveServer) -> None:
    big = b'{"jsonrpc": "2.0", "id": 1, "method": "message/send", "pad": "' + b"x" * (11 << 20)
    response = await _rpc(live_server, "/a2a/echo", big + b'"}')
    assert response.status_code == 413
    assert response.json()["error"]["code"] == -32600


async def test_unknown_task_and_unknown_assistant_are_errors_not_crashes(
    live_server: LiveServer,
) -> None:
    get = {"jsonrpc": "2.0", "id": 1, "method": "tasks/get", "params": {"id": str(uuid.uuid4())}}
    missing_task = await _rpc(live_server, "/a2a/echo", json.dumps(get).encode())
    send_body = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "message/send",
        "params": {
            "message": {
                "messageId": "m1",
                "role": "user",
                "parts": [{"kind": "text", "text": "hi"}],
            }
        },
    }
    missing_assistant = await _rpc(
        live_server, f"/a2a/{uuid.uuid4()}", json.dumps(send_body).encode()
    )
    file_part = json.loads(json.dumps(send_body))
    file_part["params"]["message"]["parts"] = [
        {"kind": "file", "file": {"uri": "http://example.invalid/x.png"}}
    ]
    unsupported = await _rpc(live_server, "/a2a/echo", json.dumps(file_part).encode())
    # `slow` takes no `messages`: a text part has nowhere to go.
    text_to_data_graph = await _rpc(live_server, "/a2a/slow", json.dumps(send_body).encode())
    bad_context = json.loads(json.dumps(send_body))
    bad_context["params"]["message"]["contextId"] = "not-a-uuid"
    not_a_uuid = await _rpc(live_server, "/a2a/echo", json.dumps(bad_context).encode())
    assert missing_task.json()["error"]["code"] == -32001  # TaskNotFoundError
    assert text_to_data_graph.json()["error"]["code"] == -32602
    assert "messages" in text_to_data_graph.json()["error"]["message"]
    assert not_a_uuid.json()["error"]["code"] == -32602
    assert missing_assistant.json()["error"]["code"] == -32602
    assert unsupported.json()["error"]["code"] in (-32005, -32602)


# --- auth and the off switch -------------------------------------------------------------------

DOORS_OFF = ROOT / "tests" / "fixtures" / "doors_off" / "langgraph.json"


@asynccontextmanager
async def _server(engines: EngineUrls, prefix: str, config: Any) -> AsyncIterator[LiveServer]:
    async with scratch_database(engines.database_uri, prefix="lgql_a2a") as url:
        await upgrade(url)
        server = await start_server(
            make_settings(prefix, config=config), database_uri=url, redis_uri=engines.redis_uri
        )
        try:
            yield server
        finally:
            await server.stop()


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def auth_server(engines: EngineUrls, redis_prefix: str) -> AsyncIterator[LiveServer]:
    async with _server(engines, f"{redis_prefix}_a2a_auth", AUTH_CONFIG) as server:
        yield server


async def test_cards_and_calls_need_credentials(auth_server: LiveServer) -> None:
    async with httpx.AsyncClient() as http:
        card = await http.get(f"{auth_server.url}/.well-known/agent-card.json?assistant_id=echo")
        rpc = await http.post(
            f"{auth_server.url}/a2a/echo",
            json={"jsonrpc": "2.0", "id": 1, "method": "tasks/get", "params": {"id": "x"}},
        )
    assert card.status_code == 401 and rpc.status_code == 401


async def test_users_reach_only_the_agents_and_tasks_the_handlers_allow(
    auth_server: LiveServer, unique: str
) -> None:
    alice_gql = GraphQLClient(auth_server.graphql_url, headers=ALICE)
    try:
        created = await alice_gql.data(
            """mutation($n: String!) { createAssistant(input: {graphId: "whoami", name: $n}) { id } }""",
            {"n": f"alice_agent_{unique}"},
        )
    finally:
        await alice_gql.close()
    aid = created["createAssistant"]["id"]
    async with a2a_client(auth_server, aid, headers=ALICE) as client:
        task = await send(client, user_message(data={}))
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert artifact_data(task) == {"user_id": "alice", "user": "alice"}
    async with httpx.AsyncClient(headers=BOB) as http:
        card = await http.get(f"{auth_server.url}/a2a/{aid}/.well-known/agent-card.json")
        get = await http.post(
            f"{auth_server.url}/a2a/{aid}",
            json={"jsonrpc": "2.0", "id": 1, "method": "tasks/get", "params": {"id": task.id}},
        )
    assert card.status_code == 404
    assert get.json()["error"]["code"] in (-32001, -32602)
    # Bob's own task on a graph's assistant, and Alice cannot see it.
    async with a2a_client(auth_server, "whoami", headers=BOB) as client:
        bobs = await send(client, user_message(data={}))
    assert artifact_data(bobs) == {"user_id": "bob", "user": "bob"}
    async with a2a_client(auth_server, "whoami", headers=ALICE) as client:
        with pytest.raises(Exception) as caught:
            await client.get_task(GetTaskRequest(id=bobs.id))
        # Nor can she continue his conversation: his thread is not hers to see.
        with pytest.raises(Exception) as continued:
            await send(client, user_message(data={}, context_id=bobs.context_id))
    assert "not found" in str(caught.value).lower()
    assert "not found" in str(continued.value).lower()


async def test_disable_a2a_turns_the_endpoints_off(engines: EngineUrls, redis_prefix: str) -> None:
    async with _server(engines, f"{redis_prefix}_a2a_off", DOORS_OFF) as server:
        async with httpx.AsyncClient() as http:
            card = await http.get(f"{server.url}/.well-known/agent-card.json?assistant_id=echo")
            per = await http.get(f"{server.url}/a2a/echo/.well-known/agent-card.json")
            rpc = await http.post(f"{server.url}/a2a/echo", json={"jsonrpc": "2.0", "id": 1})
    assert card.status_code == per.status_code == rpc.status_code == 404


async def test_a_nul_character_in_a_message_is_invalid_params(live_server: LiveServer) -> None:
    """Postgres can store U+0000 nowhere: refused up front, naming where it is."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "message/send",
        "params": {
            "message": {
                "role": "user",
                "parts": [{"kind": "text", "text": "a\x00b"}],
                "messageId": str(uuid.uuid4()),
            }
        },
    }
    response = await _rpc(live_server, "/a2a/echo", json.dumps(body).encode())
    assert response.json()["error"]["code"] == -32602
    assert "params.message.parts[0].text" in response.json()["error"]["message"]

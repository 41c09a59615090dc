"""Cross-origin pages: off unless configured; `LGQL_ALLOWED_ORIGINS` (and
`LGQL_CORS_ALLOW_CREDENTIALS`) and langgraph.json `http.cors` turn it on, the environment winning
key by key, for HTTP (CORS) and WebSocket handshakes alike; under `lgql dev`, local frontends
(`http://localhost:*`, `http://127.0.0.1:*`) are let in by default."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import websockets
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin, Subprotocol

from app.runtime.langgraph_config import ConfigError
from app.server import CorsConfig, cors_config
from app.settings import Settings
from tests.conftest import (
    FIXTURE_GRAPHS,
    EngineUrls,
    LiveServer,
    free_port,
    make_settings,
    start_server,
)
from tests.dev_project import DevProject, LgqlCommand, child_env

UI = "http://ui.example"
OTHER_UI = "https://other.example"
EVIL = "http://evil.example"
QUERY = {"query": "{ __typename }"}


def preflight_headers(origin: str) -> dict[str, str]:
    return {
        "origin": origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type, authorization",
    }


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


# --- The policy -------------------------------------------------------------------------------


def test_no_policy_by_default() -> None:
    assert cors_config(make_settings("unused"), None) is None
    assert cors_config(make_settings("unused"), {"disable_store": True}) is None


def test_policy_from_the_environment() -> None:
    settings = make_settings(
        "unused", allowed_origins=f" {UI} , {OTHER_UI},", cors_allow_credentials=True
    )

    config = cors_config(settings, None)

    assert config == CorsConfig(allow_origins=[UI, OTHER_UI], allow_credentials=True)


def test_policy_from_langgraph_json() -> None:
    http = {
        "cors": {
            "allow_origins": [UI],
            "allow_methods": ["POST"],
            "allow_headers": ["x-api-key"],
            "allow_credentials": True,
            "allow_origin_regex": r"https://.*\.example",
            "expose_headers": ["x-request-id"],
            "max_age": 60,
        }
    }

    config = cors_config(make_settings("unused"), http)

    assert config is not None
    assert config.model_dump() == {**http["cors"], "allow_private_network": False}


def test_environment_wins_over_langgraph_json_key_by_key() -> None:
    settings = make_settings("unused", allowed_origins=OTHER_UI, cors_allow_credentials=False)
    http = {"cors": {"allow_origins": [UI], "allow_credentials": True, "max_age": 60}}

    config = cors_config(settings, http)

    assert config is not None
    assert config.allow_origins == [OTHER_UI]
    assert config.allow_credentials is False
    assert config.max_age == 60  # what the environment does not set comes from the file


@pytest.mark.parametrize(
    "cors",
    [{"allow_origins": UI}, {"allow_orgins": [UI]}, {"max_age": "long"}],
    ids=["origins-not-a-list", "misspelt-key", "max-age-not-int"],
)
def test_malformed_http_cors_is_a_config_error(cors: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"http\.cors"):
        cors_config(make_settings("unused"), {"cors": cors})


# --- Over HTTP ----------------------------------------------------------------------------------


async def test_no_cors_headers_when_not_configured(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        preflight = await http.options(live_server.graphql_url, headers=preflight_headers(UI))
        simple = await http.post(live_server.graphql_url, json=QUERY, headers={"origin": UI})

    assert cors_headers(preflight) == {}
    assert preflight.status_code == 405  # the GraphQL view's own answer to OPTIONS
    assert simple.status_code == 200
    assert cors_headers(simple) == {}


@pytest_asyncio.fixture(loop_scope="session")
async def env_cors_server(
    engines: EngineUrls, database_uri: str, redis_prefix: str, live_server: LiveServer
) -> AsyncIterator[LiveServer]:
    server = await start_server(
        make_settings(redis_prefix, allowed_origins=f"{UI},{OTHER_UI}"),
        database_uri=database_uri,
        redis_uri=engines.redis_uri,
        embedded_worker=False,
    )
    try:
        yield server
    finally:
        await server.stop()


async def test_env_configured_preflight_and_simple_request(env_cors_server: LiveServer) -> None:
    url = env_cors_server.graphql_url
    async with httpx.AsyncClient(timeout=30) as http:
        preflight = await http.options(url, headers=preflight_headers(UI))
        simple = await http.post(url, json=QUERY, headers={"origin": OTHER_UI})

    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == UI
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert preflight.headers["access-control-max-age"] == "600"
    assert "access-control-allow-credentials" not in preflight.headers
    assert simple.status_code == 200
    assert simple.json() == {"data": {"__typename": "Query"}}
    assert simple.headers["access-control-allow-origin"] == OTHER_UI


async def test_env_configured_refuses_other_origins(env_cors_server: LiveServer) -> None:
    url = env_cors_server.graphql_url
    async with httpx.AsyncClient(timeout=30) as http:
        preflight = await http.options(url, headers=preflight_headers(EVIL))
        simple = await http.post(url, json=QUERY, headers={"origin": EVIL})

    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers
    # The request itself is served (CORS is enforced by the browser), without the header
    # that would let the page read the answer.
    assert simple.status_code == 200
    assert "access-control-allow-origin" not in simple.headers


@pytest_asyncio.fixture(loop_scope="session")
async def file_cors_server(
    tmp_path_factory: pytest.TempPathFactory,
    engines: EngineUrls,
    database_uri: str,
    redis_prefix: str,
    live_server: LiveServer,
) -> AsyncIterator[LiveServer]:
    # The fixture graphs, from another folder, with an `http.cors` section.
    fixture = json.loads(FIXTURE_GRAPHS.read_text())
    base = FIXTURE_GRAPHS.parent
    graphs = {
        graph_id: (
            str(base / spec)
            if isinstance(spec, str)
            else {**spec, "path": str(base / spec["path"])}
        )
        for graph_id, spec in fixture["graphs"].items()
    }
    config: dict[str, Any] = {
        "dependencies": [str(base)],
        "graphs": graphs,
        "http": {
            "cors": {
                "allow_origins": [UI],
                "allow_credentials": True,
                "expose_headers": ["x-request-id"],
                "max_age": 60,
            }
        },
    }
    path: Path = tmp_path_factory.mktemp("cors") / "langgraph.json"
    await asyncio.to_thread(path.write_text, json.dumps(config))
    server = await start_server(
        make_settings(redis_prefix, config=path),
        database_uri=database_uri,
        redis_uri=engines.redis_uri,
        embedded_worker=False,
    )
    try:
        yield server
    finally:
        await server.stop()


async def test_langgraph_json_configured_cors(file_cors_server: LiveServer) -> None:
    url = file_cors_server.graphql_url
    async with httpx.AsyncClient(timeout=30) as http:
        preflight = await http.options(url, headers=preflight_headers(UI))
        simple = await http.post(url, json=QUERY, headers={"origin": UI})
        refused = await http.options(url, headers=preflight_headers(OTHER_UI))

    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == UI
    assert preflight.headers["access-control-allow-credentials"] == "true"
    assert preflight.headers["access-control-max-age"] == "60"
    assert simple.headers["access-control-allow-origin"] == UI
    assert simple.headers["access-control-allow-credentials"] == "true"
    assert simple.headers["access-control-expose-headers"] == "x-request-id"
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers


# --- One policy for HTTP and WebSocket; localhost under `lgql dev` (issue 13.5) ----------------


def test_one_setting_for_both_under_either_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LGQL_ALLOWED_ORIGINS", UI)
    assert Settings().allowed_origins == UI
    monkeypatch.delenv("LGQL_ALLOWED_ORIGINS")
    monkeypatch.setenv("LGQL_CORS_ALLOW_ORIGINS", OTHER_UI)  # its former name still works
    assert Settings().allowed_origins == OTHER_UI


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://localhost:5173", True),
        ("http://localhost", True),
        ("http://127.0.0.1:3000", True),
        ("http://localhost.evil.example", False),
        ("http://evil.example", False),
        ("https://localhost:5173", False),
        ("http://localhost:5173/path", False),
    ],
)
def test_dev_allows_local_frontends_by_default(origin: str, allowed: bool) -> None:
    config = cors_config(make_settings("unused", dev=True), None)

    assert config is not None
    assert config.allows(origin) is allowed


def test_dev_adds_local_frontends_to_the_projects_policy() -> None:
    http = {"cors": {"allow_origin_regex": r"https://.*\.example"}}

    config = cors_config(make_settings("unused", dev=True), http)

    assert config is not None
    assert config.allows("https://app.example")
    assert config.allows("http://localhost:8080")
    assert not config.allows(EVIL)
    # Outside dev, the project's policy alone.
    production = cors_config(make_settings("unused"), http)
    assert production is not None and not production.allows("http://localhost:8080")


async def websocket_allowed(url: str, origin: str) -> bool:
    """Whether a browser page of `origin` may open a GraphQL WebSocket to `url`."""
    ws_url = url.replace("http://", "ws://")
    try:
        async with websockets.connect(
            ws_url, origin=Origin(origin), subprotocols=[Subprotocol("graphql-transport-ws")]
        ) as socket:
            await socket.send(json.dumps({"type": "connection_init"}))
            return bool(json.loads(await socket.recv())["type"] == "connection_ack")
    except InvalidStatus as refused:
        assert refused.response.status_code == 403
        return False


async def test_websocket_origins_follow_lgql_allowed_origins(env_cors_server: LiveServer) -> None:
    url = env_cors_server.graphql_url

    assert await websocket_allowed(url, UI)
    assert await websocket_allowed(url, OTHER_UI)
    assert not await websocket_allowed(url, EVIL)
    assert not await websocket_allowed(url, "http://localhost:5173")  # not under dev


async def test_websocket_origins_follow_langgraph_json(file_cors_server: LiveServer) -> None:
    assert await websocket_allowed(file_cors_server.graphql_url, UI)
    assert not await websocket_allowed(file_cors_server.graphql_url, OTHER_UI)


async def test_no_policy_means_same_origin_websockets_only(live_server: LiveServer) -> None:
    assert not await websocket_allowed(live_server.graphql_url, UI)


async def test_lgql_dev_lets_local_frontends_in_over_http_and_websocket(
    tmp_path: Path, engines: EngineUrls, database_uri: str
) -> None:
    project = DevProject.create(tmp_path / "project")
    port = free_port()
    env = child_env(
        DATABASE_URI=database_uri,
        REDIS_URI=engines.redis_uri,
        REDIS_KEY_PREFIX=f"lgql_test_{uuid.uuid4().hex[:12]}",
    )
    async with LgqlCommand.start(
        ["dev", "--no-reload", "--port", str(port)], cwd=project.root, env=env, log=tmp_path / "log"
    ) as lgql:
        await lgql.wait_for_log("GraphiQL:")
        url = f"http://127.0.0.1:{port}/graphql"
        local = "http://localhost:5173"
        async with httpx.AsyncClient(timeout=30) as http:
            preflight = await http.options(url, headers=preflight_headers(local))
            simple = await http.post(url, json=QUERY, headers={"origin": local})
            refused = await http.options(url, headers=preflight_headers(EVIL))

        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == local
        assert simple.headers["access-control-allow-origin"] == local
        assert refused.status_code == 400
        assert await websocket_allowed(url, local)
        assert await websocket_allowed(url, "http://127.0.0.1:3000")
        assert not await websocket_allowed(url, EVIL)

"""Running a `langgraph_sdk.Auth` as LangGraph Server does: what `@auth.authenticate` is given
and may return, which `@auth.on` handler answers an action, and what its answers mean."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk import Auth
from langgraph_sdk.auth.types import StudioUser
from starlette.requests import HTTPConnection

from app.auth.context import Authorization, acting_as
from app.auth.filters import AuthFilter
from app.auth.handlers import AuthHandlerError, AuthHandlers, Credentials
from app.auth.users import AuthUser, normalize_user
from app.errors import Forbidden, NotFound, Unauthenticated
from app.runtime.langgraph_config import ConfigError, LanggraphConfig

ALICE = AuthUser(identity="alice", permissions=("read",))


def _credentials(
    headers: dict[str, str] | None = None,
    *,
    path: str = "/graphql",
    query: bytes = b"",
    kind: str = "http",
    extra: dict[str, str] | None = None,
) -> Credentials:
    scope: dict[str, Any] = {
        "type": kind,
        "path": path,
        "query_string": query,
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    if kind == "http":
        scope["method"] = "POST"
    return Credentials(HTTPConnection(scope), extra or {})


# -- authenticate ---------------------------------------------------------------------------


async def test_authenticate_gets_the_parameters_it_names() -> None:
    auth = Auth()
    seen: dict[str, Any] = {}

    @auth.authenticate
    async def authenticate(
        authorization: str | None, headers: dict, path: str, method: str, query_params: Any
    ) -> str:
        seen.update(
            authorization=authorization,
            api_key=headers.get(b"x-api-key"),
            api_key_str=headers.get("X-Api-Key"),
            path=path,
            method=method,
            org=query_params.get("org"),
        )
        return "alice"

    user = await AuthHandlers(auth).authenticate(
        _credentials({"Authorization": "Bearer t", "X-Api-Key": "k"}, query=b"org=acme")
    )
    assert user.identity == "alice"
    assert seen == {
        "authorization": "Bearer t",
        "api_key": b"k",
        "api_key_str": b"k",
        "path": "/graphql",
        "method": "POST",
        "org": "acme",
    }


async def test_websocket_credentials_can_come_from_connection_init() -> None:
    auth = Auth()

    @auth.authenticate
    async def authenticate(authorization: str | None) -> str:
        assert authorization == "Bearer from-payload"
        return "bob"

    user = await AuthHandlers(auth).authenticate(
        _credentials(kind="websocket", extra={"Authorization": "Bearer from-payload"})
    )
    assert user.identity == "bob"


async def test_a_handler_wanting_the_request_refuses_websockets_clearly() -> None:
    auth = Auth()

    @auth.authenticate
    async def authenticate(request: Any) -> str:
        return "x"

    with pytest.raises(Forbidden, match="WebSocket"):
        await AuthHandlers(auth).authenticate(_credentials(kind="websocket"))


@pytest.mark.parametrize(
    ("raised", "error"),
    [
        (Auth.exceptions.HTTPException(status_code=401, detail="bad token"), Unauthenticated),
        (Auth.exceptions.HTTPException(status_code=403, detail="no"), Forbidden),
        (Auth.exceptions.HTTPException(status_code=404), NotFound),
        (AssertionError("nope"), Forbidden),
    ],
)
async def test_authenticate_rejections_map_to_codes(raised: Exception, error: type) -> None:
    auth = Auth()

    @auth.authenticate
    async def authenticate(headers: dict) -> str:
        raise raised

    with pytest.raises(error):
        await AuthHandlers(auth).authenticate(_credentials())


def _auth_answering(result: Any) -> Auth:
    auth = Auth()

    async def authenticate(headers: dict) -> Any:
        if isinstance(result, Exception):
            raise result
        return result

    auth.authenticate(authenticate)
    return auth


@pytest.mark.parametrize("result", [ValueError("boom"), 42, {"name": "no identity"}])
async def test_a_crashing_or_confused_authenticate_is_a_server_error(result: Any) -> None:
    with pytest.raises(AuthHandlerError):
        await AuthHandlers(_auth_answering(result)).authenticate(_credentials())


async def test_no_user_is_unauthenticated() -> None:
    with pytest.raises(Unauthenticated):
        await AuthHandlers(_auth_answering(None)).authenticate(_credentials())


async def test_sync_authenticate_runs_off_the_loop() -> None:
    auth = Auth()

    @auth.authenticate  # type: ignore[arg-type]
    def authenticate(authorization: str | None) -> dict[str, Any]:
        return {"identity": "carol", "permissions": ["p"], "org": "acme"}

    user = await AuthHandlers(auth).authenticate(_credentials({"Authorization": "x"}))
    assert isinstance(user, AuthUser)
    assert (user.identity, user.permissions, user["org"], user.org) == (
        "carol",
        ("p",),
        "acme",
        "acme",
    )


def test_users_are_normalized_from_every_shape_langgraph_allows() -> None:
    assert normalize_user("dave").identity == "dave"
    as_tuple = normalize_user((["a"], {"identity": "erin"}))
    assert isinstance(as_tuple, AuthUser) and as_tuple.permissions == ("a",)

    class Obj:
        identity = "frank"
        display_name = "Frank"
        permissions = ["x"]

    obj = normalize_user(Obj())
    assert isinstance(obj, AuthUser) and (obj.display_name, obj.permissions) == ("Frank", ("x",))
    studio = StudioUser("langgraph-studio-user")
    assert normalize_user(studio) is studio
    with pytest.raises(ValueError):
        normalize_user({"identity": ""})


async def test_studio_requests_act_as_studio_under_dev_only() -> None:
    auth = Auth()

    @auth.authenticate
    async def authenticate(authorization: str | None) -> str:
        raise Auth.exceptions.HTTPException(status_code=401)

    studio = _credentials({"x-auth-scheme": "langsmith"})
    user = await AuthHandlers(auth, studio_auth=True).authenticate(studio)
    assert isinstance(user, StudioUser)
    with pytest.raises(Unauthenticated):
        await AuthHandlers(auth, studio_auth=False).authenticate(studio)


# -- authorize ------------------------------------------------------------------------------


async def test_the_most_specific_handler_answers() -> None:
    auth = Auth()
    calls: list[str] = []

    @auth.on
    async def everything(ctx: Any, value: Any) -> None:
        calls.append("global")

    @auth.on.threads
    async def threads(ctx: Any, value: Any) -> None:
        calls.append("threads")

    @auth.on.threads.create
    async def thread_create(ctx: Any, value: Any) -> None:
        calls.append("threads.create")

    handlers = AuthHandlers(auth)
    await handlers.authorize(ALICE, "threads", "create", {})
    await handlers.authorize(ALICE, "threads", "read", {})
    await handlers.authorize(ALICE, "crons", "read", {})
    assert calls == ["threads.create", "threads", "global"]


async def test_handler_answers_mean_allow_refuse_or_filter() -> None:
    auth = Auth()

    @auth.on.threads.read
    async def read(ctx: Any, value: Any) -> Any:
        return {"owner": ctx.user.identity}

    @auth.on.threads.delete
    async def delete(ctx: Any, value: Any) -> bool:
        return "admin" in ctx.permissions

    @auth.on.threads.update
    async def update(ctx: Any, value: Any) -> Any:
        return {"owner": {"$gt": 1}}

    handlers = AuthHandlers(auth)
    assert await handlers.authorize(ALICE, "threads", "read", {}) == AuthFilter.parse(
        {"owner": "alice"}
    )
    with pytest.raises(Forbidden):
        await handlers.authorize(ALICE, "threads", "delete", {})
    admin = AuthUser(identity="root", permissions=("admin",))
    assert await handlers.authorize(admin, "threads", "delete", {}) is None
    with pytest.raises(AuthHandlerError):  # a filter the server cannot apply
        await handlers.authorize(ALICE, "threads", "update", {})
    assert await handlers.authorize(ALICE, "assistants", "read", {}) is None  # no handler


async def test_handlers_may_stamp_the_value() -> None:
    auth = Auth()

    @auth.on
    async def stamp(ctx: Any, value: dict[str, Any]) -> None:
        value.setdefault("metadata", {})["owner"] = ctx.user.identity

    value: dict[str, Any] = {"metadata": {"a": 1}}
    await AuthHandlers(auth).authorize(ALICE, "threads", "create", value)
    assert value["metadata"] == {"a": 1, "owner": "alice"}


async def test_authorization_checks_only_for_a_current_user() -> None:
    auth = Auth()

    @auth.on
    async def deny(ctx: Any, value: Any) -> bool:
        return False

    checks = Authorization(AuthHandlers(auth))
    # The server's own work (workers, sweepers) runs with no user and is not filtered.
    assert await checks.check("threads", "read", {}) is None
    with acting_as(ALICE), pytest.raises(Forbidden):
        await checks.check("threads", "read", {})
    assert Authorization(None).user_fields() == {}
    with acting_as(ALICE):
        assert checks.user_fields()["langgraph_auth_user_id"] == "alice"
        assert checks.identity() == "alice"


# -- loading ---------------------------------------------------------------------------------


def _config(tmp_path: Path, auth: dict[str, Any] | None, source: str) -> LanggraphConfig:
    (tmp_path / "my_auth.py").write_text(source)
    (tmp_path / "langgraph.json").write_text("{}")
    config = LanggraphConfig.model_validate({"graphs": {}, "auth": auth})
    config._config_path = tmp_path / "langgraph.json"
    return config


def test_loading_finds_the_auth_object(tmp_path: Path) -> None:
    source = "from langgraph_sdk import Auth\nauth = Auth()\nnot_auth = 3\n"
    loaded = AuthHandlers.load(_config(tmp_path, {"path": "./my_auth.py:auth"}, source), dev=False)
    assert loaded is not None and not loaded.studio_auth
    assert AuthHandlers.load(_config(tmp_path, None, source), dev=False) is None
    noop = _config(tmp_path, {"path": "./my_auth.py:auth"}, source)
    assert AuthHandlers.load(noop, dev=False, auth_type="noop") is None
    dev = AuthHandlers.load(noop, dev=True)
    assert dev is not None and dev.studio_auth
    quiet = _config(tmp_path, {"path": "./my_auth.py:auth", "disable_studio_auth": True}, source)
    assert not AuthHandlers.load(quiet, dev=True).studio_auth  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("./my_auth.py:not_auth", "expected a langgraph_sdk.Auth"),
        ("./missing.py:auth", "no such file"),
        ("./my_auth.py", "invalid path"),
    ],
)
def test_a_bad_auth_path_is_a_clear_start_up_error(tmp_path: Path, path: str, message: str) -> None:
    source = "from langgraph_sdk import Auth\nauth = Auth()\nnot_auth = 3\n"
    with pytest.raises(ConfigError, match=message):
        AuthHandlers.load(_config(tmp_path, {"path": path}, source), dev=False)


def test_unknown_auth_types_are_refused(tmp_path: Path) -> None:
    config = _config(tmp_path, None, "")
    with pytest.raises(ConfigError, match="LANGGRAPH_AUTH_TYPE"):
        AuthHandlers.load(config, dev=False, auth_type="langsmith")

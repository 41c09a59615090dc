"""Authorization at the service layer, without the transport: the same owner rules hold for any
caller of the services, and the server's own work (no user) is not filtered."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from app.auth.context import acting_as
from app.auth.users import AuthUser
from app.errors import NotFound
from app.pagination import PageRequest
from app.services.container import Services
from app.services.run_request import RunRequest
from app.services.threads import ThreadFilter
from tests.conftest import AUTH_CONFIG, EngineUrls, private_services

ALICE = AuthUser(identity="alice")
BOB = AuthUser(identity="bob")


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def services(engines: EngineUrls, redis_prefix: str) -> AsyncIterator[Services]:
    async with private_services(engines, redis_prefix, name="authsvc", config=AUTH_CONFIG) as s:
        yield s


async def test_owners_are_stamped_and_filters_hide_other_users_threads(
    services: Services,
) -> None:
    with acting_as(ALICE):
        thread = await services.threads.create(metadata={"topic": "x"})
    assert thread.metadata_ == {"topic": "x", "owner": "alice"}
    with acting_as(BOB):
        with pytest.raises(NotFound):
            await services.threads.get(thread.thread_id)
        page = await services.threads.search(ThreadFilter(), PageRequest(first=50))
        assert page.items == []
        assert await services.threads.count(ThreadFilter()) == 0
        with pytest.raises(NotFound):
            await services.threads.update(str(thread.thread_id), metadata={"owner": "bob"})
        with pytest.raises(NotFound):
            await services.threads.delete(str(thread.thread_id))
    # The server's own work acts for no user: it sees everything.
    assert (await services.threads.get(thread.thread_id)).metadata_["owner"] == "alice"


async def test_runs_follow_their_thread(services: Services) -> None:
    with acting_as(ALICE):
        thread = await services.threads.create(graph_id="echo")
        run = await services.runs.create(
            RunRequest(assistant_id="echo", thread_id=str(thread.thread_id), input={})
        )
    assert run.kwargs["config"]["configurable"]["langgraph_auth_user_id"] == "alice"
    with acting_as(BOB):
        with pytest.raises(NotFound):
            await services.runs.get(run.run_id)
        assert await services.runs.count(thread_id=str(thread.thread_id)) == 0
        assert await services.runs.count() == 0
        with pytest.raises(NotFound):
            await services.runs.cancel(str(run.run_id), "interrupt")
        with pytest.raises(NotFound):
            await services.runs.create(
                RunRequest(assistant_id="echo", thread_id=str(thread.thread_id), input={})
            )
    with acting_as(ALICE):
        assert (await services.runs.get(run.run_id)).run_id == run.run_id


async def test_store_namespaces_are_per_user(services: Services) -> None:
    with acting_as(ALICE):
        item = await services.store.put_item(["prefs"], "theme", {"dark": True})
        assert item.namespace == ("alice", "prefs")
    with acting_as(BOB):
        assert await services.store.get_item(["prefs"], "theme") is None
        assert await services.store.search_items([]) == []
        assert await services.store.list_namespaces() == []
    with acting_as(ALICE):
        got = await services.store.get_item(["prefs"], "theme")
        assert got is not None and got.value == {"dark": True}


async def test_the_user_reaches_the_graph_but_not_clients_or_webhooks(services: Services) -> None:
    """authenticate may return the user's own tokens (LangGraph's docs do) for graphs to use:
    they are in the run's config, never in what the API or a webhook shows."""
    import json

    from app.services.run_outcome import EndedRun
    from app.services.run_request import public_kwargs

    user = AuthUser(identity="alice", fields={"github_token": "s3cret-token"})
    with acting_as(user):
        thread = await services.threads.create(graph_id="echo")
        run = await services.runs.create(
            RunRequest(assistant_id="echo", thread_id=str(thread.thread_id), input={})
        )
    configurable = run.kwargs["config"]["configurable"]
    assert configurable["langgraph_auth_user"]["github_token"] == "s3cret-token"
    shown = public_kwargs(run.kwargs)
    assert shown["config"]["configurable"]["langgraph_auth_user_id"] == "alice"
    assert "s3cret-token" not in json.dumps(shown)
    assert "s3cret-token" not in json.dumps(EndedRun.of(run, status="success").webhook_json(None))


def test_a_store_auth_filter_is_anded_with_the_clients_filter() -> None:
    from app.auth.filters import AuthFilter
    from app.services.store import _store_filter

    owner = AuthFilter.parse({"owner": "alice"})
    assert _store_filter(owner, {}) == {"owner": {"$eq": "alice"}}
    assert _store_filter(owner, {"owner": "alice"}) == {"owner": {"$eq": "alice"}}
    assert _store_filter(owner, {"owner": {"$ne": "bob"}}) == {
        "owner": {"$ne": "bob", "$eq": "alice"}
    }
    impossible = {"owner": {"$eq": "alice", "$ne": "alice"}}
    assert _store_filter(owner, {"owner": "bob"}) == impossible
    assert _store_filter(owner, {"owner": {"$eq": "bob"}}) == impossible

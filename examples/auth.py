"""An example `langgraph.json` auth file: bearer tokens name users, and each user sees and
changes only what they own. It works unchanged on lgql and on LangGraph Server.

Enable it with `"auth": {"path": "./examples/auth.py:auth"}` in langgraph.json. The tokens come
from `EXAMPLE_AUTH_TOKENS` ("token:user,token:user"); replace `authenticate` with a check of your
identity provider's JWTs (or a call to it) before using it for real.
"""

from __future__ import annotations

import os
from typing import Any

from langgraph_sdk import Auth

auth = Auth()


def _tokens() -> dict[str, str]:
    raw = os.environ.get("EXAMPLE_AUTH_TOKENS", "alice-token:alice,bob-token:bob,admin-token:admin")
    pairs = (item.split(":", 1) for item in raw.split(",") if ":" in item)
    return {token.strip(): user.strip() for token, user in pairs}


TOKENS = _tokens()


@auth.authenticate
async def authenticate(authorization: str | None) -> Auth.types.MinimalUserDict:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Auth.exceptions.HTTPException(status_code=401, detail="Missing bearer token")
    user = TOKENS.get(authorization[len("bearer ") :].strip())
    if user is None:
        raise Auth.exceptions.HTTPException(status_code=401, detail="Invalid token")
    return {"identity": user, "permissions": ["admin"] if user == "admin" else []}


@auth.on
async def owner_only(ctx: Auth.types.AuthContext, value: dict[str, Any]) -> Auth.types.FilterType:
    """Stamp the owner on what is created; show each user only what they own."""
    owner = {"owner": ctx.user.identity}
    if value.get("metadata") is None:
        value["metadata"] = {}
    value["metadata"].update(owner)
    return owner


@auth.on.assistants
async def own_assistants(
    ctx: Auth.types.AuthContext, value: dict[str, Any]
) -> Auth.types.FilterType:
    """As `owner_only`, except that everyone may read the graphs' own (system) assistants."""
    owner = await owner_only(ctx, value)
    if ctx.action in ("read", "search"):
        return {"$or": [owner, {"created_by": "system"}]}
    return owner


@auth.on.store
async def own_namespace(ctx: Auth.types.AuthContext, value: dict[str, Any]) -> None:
    """Every user's items live under a namespace that starts with their identity."""
    namespace = tuple(value.get("namespace") or ())
    if namespace[:1] != (ctx.user.identity,):
        value["namespace"] = (ctx.user.identity, *namespace)


@auth.on.assistants.delete
async def admins_delete_assistants(ctx: Auth.types.AuthContext, value: dict[str, Any]) -> bool:
    """Only admins delete assistants (an example of a handler that refuses: FORBIDDEN)."""
    return "admin" in ctx.permissions

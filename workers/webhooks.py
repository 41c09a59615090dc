"""Placeholder: the webhook delivery task (issue 5, webhook part) is being written here."""

from __future__ import annotations

from typing import Any


async def send_webhook(ctx: dict[str, Any], delivery_id: str) -> None:
    return None

"""The webhook delivery task: one attempt of one delivery per job (retries are new jobs)."""

from __future__ import annotations

from typing import Any

from app.services.container import Services


async def send_webhook(ctx: dict[str, Any], delivery_id: str) -> None:
    services: Services = ctx["services"]
    await services.webhooks.deliver(delivery_id)

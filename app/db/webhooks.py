"""Persistence of the webhook outbox (`webhook_deliveries`), and the run times webhooks report.

A delivery is claimed one attempt at a time: the claim bumps `attempts` and pushes
`next_attempt_at` forward as a lease, so a duplicate job or the sweeper cannot send it twice at
once; the attempt's result is written only by the claim that made it (`attempts` is the fence).
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import orjson
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import WebhookDelivery

_INSERT_DELIVERY = """
INSERT INTO webhook_deliveries (delivery_id, run_id, url, payload, status)
VALUES ($1, $2, $3, $4::jsonb, 'pending')
"""


async def insert_delivery(
    conn: asyncpg.Connection,
    *,
    delivery_id: uuid.UUID,
    run_id: uuid.UUID,
    url: str,
    payload: dict[str, Any],
) -> None:
    """Write a delivery to the outbox, in the caller's transaction (on the run state machine's
    connection: it ends runs in raw SQL, `app.db.run_queue`)."""
    await conn.execute(_INSERT_DELIVERY, delivery_id, run_id, url, orjson.dumps(payload).decode())


async def get(session: AsyncSession, delivery_id: uuid.UUID) -> WebhookDelivery | None:
    stmt = select(WebhookDelivery).where(col(WebhookDelivery.delivery_id) == delivery_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def for_run(session: AsyncSession, run_id: uuid.UUID) -> list[WebhookDelivery]:
    stmt = (
        select(WebhookDelivery)
        .where(col(WebhookDelivery.run_id) == run_id)
        .order_by(col(WebhookDelivery.created_at))
    )
    return list((await session.execute(stmt)).scalars())


_CLAIM = text(
    """
    UPDATE webhook_deliveries
       SET attempts = attempts + 1,
           next_attempt_at = now() + make_interval(secs => :lease),
           updated_at = now()
     WHERE delivery_id = :delivery_id AND status = 'pending' AND next_attempt_at <= now()
    RETURNING *
    """
)


async def claim_attempt(
    session: AsyncSession, delivery_id: uuid.UUID, *, lease_seconds: float
) -> WebhookDelivery | None:
    """Take the next attempt of a pending, due delivery; None when it is not (sent, failed, not
    due yet, or being attempted right now by someone else)."""
    stmt = select(WebhookDelivery).from_statement(_CLAIM)
    result = await session.execute(stmt, {"delivery_id": delivery_id, "lease": lease_seconds})
    return result.scalar_one_or_none()


async def finish_attempt(
    session: AsyncSession,
    delivery_id: uuid.UUID,
    attempt: int,
    *,
    status: str,
    last_error: str | None,
    retry_in_seconds: float | None = None,
) -> bool:
    """Record how attempt `attempt` went: `sent`, `failed`, or `pending` again with the next
    attempt due in `retry_in_seconds`. False when that attempt is no longer the latest."""
    values: dict[str, Any] = {
        "status": status,
        "last_error": last_error,
        "updated_at": text("now()"),
    }
    if status == "sent":
        values["sent_at"] = text("now()")
    if retry_in_seconds is not None:
        values["next_attempt_at"] = text("now() + make_interval(secs => :retry)").bindparams(
            retry=float(retry_in_seconds)
        )
    stmt = (
        update(WebhookDelivery)
        .where(
            col(WebhookDelivery.delivery_id) == delivery_id,
            col(WebhookDelivery.attempts) == attempt,
            col(WebhookDelivery.status) == "pending",
        )
        .values(**values)
        .returning(col(WebhookDelivery.delivery_id))
    )
    return (await session.execute(stmt)).scalar_one_or_none() is not None


_DUE = text(
    """
    SELECT delivery_id, attempts FROM webhook_deliveries
     WHERE status = 'pending' AND next_attempt_at <= now()
     ORDER BY next_attempt_at
     LIMIT :limit
    """
)


async def due(session: AsyncSession, *, limit: int = 500) -> list[tuple[uuid.UUID, int]]:
    """Pending deliveries whose next attempt is due: (delivery_id, attempts made so far)."""
    result = await session.execute(_DUE, {"limit": limit})
    return [(row[0], int(row[1])) for row in result]

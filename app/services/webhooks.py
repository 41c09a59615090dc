"""Webhooks: a run with `webhook` set is POSTed to that URL when it ends, whatever its status.

The delivery is written to an outbox (`webhook_deliveries`) in the transaction that ends the run
(`record_run_end`, called by the run state machine), then sent by arq jobs, one attempt per job
(`WebhookService.deliver`). A failed attempt schedules the next one in the row and as a deferred
job; the sweeper (`requeue_due`) re-enqueues any due delivery whose job was lost, so a Redis
restart or a crashed worker delays a webhook but never drops it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from app import __version__
from app.db import webhooks as db
from app.db.engine import Database
from app.db.models import Run
from app.errors import BadUserInput
from app.messaging.queue import Broker
from app.observability import metrics
from app.runtime.langgraph_config import LanggraphConfig
from app.services.common import new_id, parse_uuid, utcnow
from app.services.run_outcome import EndedRun
from app.services.webhook_policy import (
    WebhookPolicy,
    allowed_fields,
    configured_headers,
    literal_address,
    retry_delay,
    retryable_status,
    signature,
)
from app.settings import Settings

log = logging.getLogger("lgql.webhooks")

CONNECT_TIMEOUT_SECONDS = 5.0
# Where a session keeps the deliveries recorded in its transaction, for `enqueue_recorded`.
_RECORDED = "lgql_webhook_deliveries"


async def record_run_end(
    conn: asyncpg.Connection,
    run: Run,
    *,
    status: str | None = None,
    values: dict[str, Any] | None = None,
) -> uuid.UUID | None:
    """Write the webhook of a run reaching its final `status` (default: the run's) to the
    outbox, in the caller's transaction (`conn`); its delivery id, or None when the run has no
    webhook. Once committed, `enqueue_recorded` sends it at once (else the sweeper does)."""
    if not run.webhook:
        return None
    delivery_id = new_id()
    await db.insert_delivery(
        conn,
        delivery_id=delivery_id,
        run_id=run.run_id,
        url=run.webhook,
        payload=EndedRun.of(run, status=status or run.status).webhook_json(values),
    )
    return delivery_id


def recorded_in(session: AsyncSession) -> list[uuid.UUID]:
    """The deliveries recorded in `session`'s transaction: the list to append to, and that
    `enqueue_recorded` empties once it is committed."""
    recorded: list[uuid.UUID] = session.info.setdefault(_RECORDED, [])
    return recorded


async def enqueue_recorded(broker: Broker, deliveries: list[uuid.UUID]) -> None:
    """Enqueue the first attempt of deliveries recorded in a committed transaction (and empty
    the list). A failure is only logged: the sweeper enqueues them a little later."""
    while deliveries:
        delivery_id = deliveries.pop(0)
        try:
            await broker.enqueue_webhook(str(delivery_id), 1)
        except Exception:
            log.warning("could not enqueue webhook %s; the sweep will", delivery_id, exc_info=True)


def _host_for_logs(url: str) -> str:
    """The URL's host alone: the rest of a webhook URL may carry a token."""
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


async def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, without blocking the event loop. Raises OSError."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    # An IPv6 scope id ("%eth0") is not part of the address.
    return [str(info[4][0]).split("%", 1)[0] for info in infos]


class _Outcome:
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"


class WebhookService:
    def __init__(
        self, settings: Settings, langgraph_config: LanggraphConfig, db: Database, broker: Broker
    ) -> None:
        """Raises ConfigError when langgraph.json's `webhooks` is malformed (or its header
        templates name variables that are not set)."""
        self.settings = settings
        self.langgraph_config = langgraph_config
        self.db = db
        self.broker = broker
        config = langgraph_config.webhooks
        self.policy = WebhookPolicy.from_config(settings, config)
        self.headers = configured_headers(config)
        self.fields = allowed_fields(config)
        self.disabled = bool((langgraph_config.http or {}).get("disable_webhooks", False))
        secret = settings.webhook_secret
        self._secret = secret.get_secret_value().encode() if secret is not None else None
        self._client: httpx.AsyncClient | None = None

    # --- the process's HTTP client -----------------------------------------------------------

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            timeout = self.settings.webhook_timeout_seconds
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT_SECONDS, timeout)),
                # A redirect or a proxy would reach an address we did not check.
                follow_redirects=False,
                trust_env=False,
                # No reuse: connections are to checked addresses, and an https one is verified
                # for one host name; another host on the same address must not ride on it.
                limits=httpx.Limits(max_keepalive_connections=0),
            )
        return self._client

    async def close(self) -> None:
        """Close the HTTP client (the container calls this on shutdown)."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # --- the sweeper's part ------------------------------------------------------------------

    async def requeue_due(self) -> int:
        """Enqueue every pending delivery whose next attempt is due: its job was lost, or never
        enqueued. Jobs are named by delivery and attempt, so one already queued is not doubled;
        one being attempted is not due (its claim pushed `next_attempt_at` on)."""
        async with self.db.sessions() as session:
            due = await db.due(session)
        for delivery_id, attempts in due:
            await self.broker.enqueue_webhook(str(delivery_id), attempts + 1)
        return len(due)

    # --- one delivery attempt ----------------------------------------------------------------

    async def deliver(self, delivery_id: str | uuid.UUID) -> str | None:
        """Make the next attempt of a delivery, if it is pending and due; returns its status
        afterwards (`sent`, `pending` for a retry, `failed`), None when there was nothing to do.
        Never sleeps for a retry: the next attempt is another job, deferred."""
        did = parse_uuid(delivery_id, "delivery")
        total = self.settings.webhook_timeout_seconds + CONNECT_TIMEOUT_SECONDS
        async with self.db.sessions.begin() as session:
            delivery = await db.claim_attempt(session, did, lease_seconds=total + 30)
        if delivery is None:
            return None
        attempt = delivery.attempts
        host = _host_for_logs(delivery.url)
        try:
            outcome, error = await self._attempt(did, delivery.url, delivery.payload)
        except Exception as exc:  # a bug must not leave the row leased until it lapses
            log.exception("webhook %s: attempt %s crashed", did, attempt)
            outcome, error = _Outcome.RETRY, f"internal error ({type(exc).__name__})"
        retry_in = None
        if outcome == _Outcome.RETRY and attempt < self.settings.webhook_max_attempts:
            retry_in = retry_delay(attempt)
            status = "pending"
        else:
            status = "sent" if outcome == _Outcome.SENT else "failed"
        async with self.db.sessions.begin() as session:
            recorded = await db.finish_attempt(
                session, did, attempt, status=status, last_error=error, retry_in_seconds=retry_in
            )
        if not recorded:  # our lease ran out and another attempt took over: it decides
            return None
        metrics.webhook_delivery(status)
        if status == "sent":
            log.info("webhook %s of run %s sent to %s", did, delivery.run_id, host)
        elif status == "failed":
            log.error(
                "webhook %s of run %s to %s failed after %s attempt(s): %s",
                did,
                delivery.run_id,
                host,
                attempt,
                error,
            )
        else:
            assert retry_in is not None
            log.warning(
                "webhook %s to %s: attempt %s failed (%s); retrying in %.1f s",
                did,
                host,
                attempt,
                error,
                retry_in,
            )
            try:
                await self.broker.enqueue_webhook(str(did), attempt + 1, defer_seconds=retry_in)
            except Exception as exc:  # the sweeper enqueues it when due
                log.warning("could not schedule webhook %s's retry (%s); the sweep will", did, exc)
        return status

    async def _attempt(
        self, delivery_id: uuid.UUID, url: str, payload: dict[str, Any]
    ) -> tuple[str, str | None]:
        """POST the payload once. Returns (outcome, error); errors name no URL and no header."""
        if self.disabled:
            return _Outcome.FAILED, "webhooks are disabled (langgraph.json http.disable_webhooks)"
        try:
            self.policy.check_url(url)
            target = httpx.URL(url)
        except (BadUserInput, httpx.InvalidURL) as exc:
            return _Outcome.FAILED, f"refused: {exc}"
        host = target.raw_host.decode("ascii")
        port = target.port or (443 if target.scheme == "https" else 80)
        try:
            address = await self._checked_address(host, port)
        except BadUserInput as exc:
            return _Outcome.FAILED, f"refused: {exc}"
        except OSError as exc:
            return _Outcome.RETRY, f"could not resolve the host ({type(exc).__name__})"
        body = orjson.dumps(self._body(payload))
        headers = {
            **self.headers,
            "Host": target.netloc.decode("ascii"),
            "Content-Type": "application/json",
            "User-Agent": f"lgql/{__version__}",
            "X-Lgql-Delivery": str(delivery_id),
        }
        if self._secret is not None:
            headers["X-Lgql-Signature"] = signature(self._secret, int(time.time()), body)
        extensions = {}
        if target.scheme == "https" and literal_address(host) is None:
            # TLS to the checked address, still verified against the URL's host name.
            extensions["sni_hostname"] = host
        try:
            async with asyncio.timeout(self.settings.webhook_timeout_seconds + 5):
                response = await self.client.post(
                    target.copy_with(host=address),
                    content=body,
                    headers=headers,
                    extensions=extensions,
                )
        except (httpx.TimeoutException, TimeoutError):
            return _Outcome.RETRY, "timed out"
        except httpx.TransportError as exc:
            return _Outcome.RETRY, f"network error ({type(exc).__name__})"
        code = response.status_code
        if 200 <= code < 300:
            return _Outcome.SENT, None
        if retryable_status(code):
            return _Outcome.RETRY, f"HTTP {code}"
        return _Outcome.FAILED, f"HTTP {code}"

    async def _checked_address(self, host: str, port: int) -> str:
        """The address to connect to: `host` resolved now, every address it has checked
        against the policy, and the first one used, so that no second lookup (DNS rebinding)
        can send the request elsewhere. Raises BadUserInput (refused), OSError (no answer)."""
        literal = literal_address(host)
        if literal is not None:
            self.policy.check_address(literal, host)
            return str(literal)
        addresses = []
        for raw in await resolve(host, port):
            address = literal_address(raw)
            if address is None:
                raise OSError(f"unexpected address {raw!r}")
            self.policy.check_address(address, host)
            addresses.append(str(address))
        if not addresses:
            raise OSError("no address")
        return addresses[0]

    def _body(self, payload: dict[str, Any]) -> dict[str, Any]:
        body = {**payload, "webhook_sent_at": utcnow().isoformat()}
        if self.fields is None:
            return body
        return {k: v for k, v in body.items() if k in self.fields}

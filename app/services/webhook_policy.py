"""Which webhook targets lgql may call (SSRF rules), how a webhook is signed, when it is retried.

Pure functions and values: no I/O. The same policy checks a URL when a run is created (literal
addresses and names only) and again at send time, on every address its host resolves to.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import random
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from app.errors import BadUserInput
from app.runtime.langgraph_config import ConfigError
from app.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_MAX_URL_LENGTH = 4096
DEFAULT_ENV_PREFIX = "LG_WEBHOOK_"
# Retry schedule: 1 s, 2 s, 4 s… (each with up to half taken off at random), at most 10 minutes.
RETRY_BASE_SECONDS = 1.0
RETRY_MAX_SECONDS = 600.0
# Names that always mean this machine, whatever a resolver says.
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
_ENV_TEMPLATE = re.compile(r"\$\{\{\s*env\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def _patterns(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(v.strip().lower().rstrip(".") for v in values if v and v.strip())


def host_matches(host: str, patterns: Iterable[str]) -> bool:
    """`host` equals a pattern, or is a subdomain of a `*.corp.com` pattern."""
    host = host.lower().rstrip(".")
    for pattern in patterns:
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False


def literal_address(host: str) -> IPAddress | None:
    """The address `host` spells, if it is one: dotted, bracketed IPv6, or the short and
    numeric IPv4 forms (`127.1`, `2130706433`, `0x7f.1`) resolvers also accept."""
    bare = host.strip("[]")
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    if re.fullmatch(r"[0-9a-fA-FxX.]+", bare) and not re.fullmatch(r"[a-fA-F.]+", bare):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(bare))
        except OSError:
            return None
    return None


def is_public(address: IPAddress) -> bool:
    """A globally routable unicast address (not loopback, private, link-local, shared,
    reserved, multicast or unspecified); IPv4 mapped into IPv6 is judged as IPv4."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            return is_public(embedded)
    return address.is_global and not address.is_multicast


def is_loopback(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


@dataclass(frozen=True)
class WebhookPolicy:
    """Where webhooks may go. Built from lgql's settings and langgraph.json's `webhooks.url`;
    where both speak, the stricter wins."""

    allow_private: bool = False
    allow_loopback: bool = False
    require_https: bool = False
    allowed_hosts: tuple[str, ...] = ()
    allowed_domains: tuple[str, ...] = ()
    allowed_ports: tuple[int, ...] = ()
    max_url_length: int = DEFAULT_MAX_URL_LENGTH

    @classmethod
    def from_config(cls, settings: Settings, webhooks: Mapping[str, Any] | None) -> WebhookPolicy:
        """Raises ConfigError when langgraph.json's `webhooks.url` is malformed."""
        allow_private = (
            settings.webhook_allow_private
            if settings.webhook_allow_private is not None
            else settings.dev
        )
        url_rules = (webhooks or {}).get("url") or {}
        if not isinstance(url_rules, Mapping):
            raise ConfigError("langgraph.json: `webhooks.url` must be an object")
        try:
            ports = tuple(int(p) for p in url_rules.get("allowed_ports") or ())
            max_length = int(url_rules.get("max_url_length") or DEFAULT_MAX_URL_LENGTH)
            domains = _patterns(url_rules.get("allowed_domains") or ())
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"langgraph.json: invalid `webhooks.url`: {exc}") from exc
        # LangGraph's flags can only take permissions away from what lgql's settings give.
        private = allow_private and not url_rules.get("disable_private_ips", False)
        loopback = private and url_rules.get("disable_loopback") is not True
        return cls(
            allow_private=private,
            allow_loopback=loopback,
            require_https=bool(url_rules.get("require_https", False)),
            allowed_hosts=_patterns(settings.webhook_allowed_hosts.split(",")),
            allowed_domains=domains,
            allowed_ports=ports,
            max_url_length=min(max_length, DEFAULT_MAX_URL_LENGTH),
        )

    def check_url(self, url: str) -> None:
        """Raise BadUserInput (field `webhook`) unless `url` is a target this policy allows,
        judged from the URL alone (its host's addresses are checked again at send time)."""
        if len(url) > self.max_url_length:
            raise _refused(f"is longer than {self.max_url_length} characters")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise _refused(f"is not a valid URL ({exc})") from None
        if parts.scheme not in ("http", "https"):
            raise _refused("must be an absolute http(s) URL")
        if self.require_https and parts.scheme != "https":
            raise _refused("must use https")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise _refused("must name a host")
        port = port or (443 if parts.scheme == "https" else 80)
        if self.allowed_ports and port not in self.allowed_ports:
            raise _refused(f"port {port} is not allowed")
        if self.allowed_hosts and not host_matches(host, self.allowed_hosts):
            raise _refused(f"host {host} is not in LGQL_WEBHOOK_ALLOWED_HOSTS")
        if self.allowed_domains and not host_matches(host, self.allowed_domains):
            raise _refused(f"host {host} is not in langgraph.json's allowed_domains")
        address = literal_address(host)
        if address is not None:
            self.check_address(address, host)
        elif host.lower() in _LOCAL_NAMES or host.lower().endswith(".localhost"):
            if not self.allow_loopback:
                raise _refused(f"host {host} is this machine (loopback targets are not allowed)")

    def check_address(self, address: IPAddress, host: str) -> None:
        """Raise BadUserInput unless a connection to `address` (for `host`) is allowed."""
        if is_public(address):
            return
        if is_loopback(address):
            if not self.allow_loopback:
                raise _refused(f"host {host} is this machine (loopback targets are not allowed)")
            return
        if not self.allow_private:
            raise _refused(
                f"host {host} is a private, link-local or reserved address "
                "(set LGQL_WEBHOOK_ALLOW_PRIVATE=true to allow it)"
            )


def _refused(reason: str) -> BadUserInput:
    return BadUserInput(f"`webhook` {reason}", field="webhook")


def configured_headers(
    webhooks: Mapping[str, Any] | None, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """langgraph.json's `webhooks.headers`, `${{ env.NAME }}` templates resolved (once, at
    start-up). Only variables starting with `webhooks.env_prefix` (`LG_WEBHOOK_`) may be read,
    so a config cannot leak the server's other secrets. Raises ConfigError."""
    webhooks = webhooks or {}
    environ = os.environ if environ is None else environ
    prefix = str(webhooks.get("env_prefix") or DEFAULT_ENV_PREFIX)
    headers = webhooks.get("headers") or {}
    if not isinstance(headers, Mapping):
        raise ConfigError("langgraph.json: `webhooks.headers` must be an object")

    def resolve(match: re.Match[str]) -> str:
        name = match.group(1)
        if not name.startswith(prefix):
            raise ConfigError(
                f"langgraph.json: webhook header template reads {name}, "
                f"which does not start with the env_prefix {prefix!r}"
            )
        if name not in environ:
            raise ConfigError(f"langgraph.json: webhook header template reads {name}, not set")
        return environ[name]

    return {str(k): _ENV_TEMPLATE.sub(resolve, str(v)) for k, v in headers.items()}


def allowed_fields(webhooks: Mapping[str, Any] | None) -> frozenset[str] | None:
    """langgraph.json's `webhooks.allowed_fields`: the payload keys sent (None: all)."""
    fields = (webhooks or {}).get("allowed_fields")
    return None if fields is None else frozenset(str(f) for f in fields)


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The `X-Lgql-Signature` header: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>`."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def retry_delay(attempt: int, *, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): exponential, capped,
    with jitter so that many webhooks failing together do not retry together."""
    ceiling = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** max(attempt - 1, 0))
    return ceiling * (0.5 + 0.5 * (rng or random).random())


def retryable_status(status_code: int) -> bool:
    """A receiver's answer worth trying again: overloaded or broken, not a refusal."""
    return status_code == 429 or status_code >= 500

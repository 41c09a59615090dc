"""Every Redis client lgql opens, from `REDIS_URI`: one Redis (or Valkey) server, or the primary
a Redis Sentinel names.

    redis://[[user]:password@]host[:port][/db]          one server (also rediss://, unix://)
    redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db]
                                                        the primary of `service_name`, as the
                                                        Sentinels at host:port say

Through Sentinel every connection is opened to the primary the Sentinels name at that moment: when
the primary fails and a replica is promoted, connections to the old one fail (lgql retries, as
through any Redis outage) and new ones reach the new primary. The queue, run streams, notices and
the cancel channel all reconnect so (`app.messaging.queue`, `.streams`, `.notices`). The password
of the URL is the Redis servers'; the Sentinels are asked without one, and without TLS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from arq.connections import RedisSettings
from redis.asyncio.sentinel import Sentinel

SENTINEL_SCHEME = "redis+sentinel"
DEFAULT_SENTINEL_PORT = 26379


@dataclass(frozen=True)
class SentinelTarget:
    sentinels: list[tuple[str, int]]
    service_name: str
    db: int
    username: str | None
    password: str | None


def _host_port(text: str) -> tuple[str, int]:
    if text.startswith("["):  # [IPv6]:port
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    if not host:
        raise ValueError(f"a Sentinel address without a host: {text!r}")
    try:
        return host, int(port) if port else DEFAULT_SENTINEL_PORT
    except ValueError:
        raise ValueError(f"a Sentinel address with a bad port: {text!r}") from None


def sentinel_target(url: str) -> SentinelTarget | None:
    """The Sentinel service `url` names, or None for a URL of one server.

    Raises ValueError when a `redis+sentinel://` URL is malformed.
    """
    scheme, _, rest = url.partition("://")
    if scheme != SENTINEL_SCHEME:
        return None
    # urlsplit cannot read a list of hosts: only the credentials and the path are taken from it.
    parts = urlsplit(f"redis://{rest}")
    credentials, _, hosts = parts.netloc.rpartition("@")
    username, _, password = credentials.partition(":") if credentials else ("", "", "")
    sentinels = [_host_port(h) for h in hosts.split(",") if h]
    segments = [s for s in parts.path.split("/") if s]
    if not sentinels:
        raise ValueError("REDIS_URI names no Sentinel: redis+sentinel://host:port/service_name")
    if not segments or len(segments) > 2:
        raise ValueError(
            "REDIS_URI must name the Sentinel service: redis+sentinel://host:port/service_name[/db]"
        )
    try:
        db = int(segments[1]) if len(segments) == 2 else 0
    except ValueError:
        raise ValueError(f"REDIS_URI: the database must be a number, not {segments[1]!r}") from None
    return SentinelTarget(
        sentinels=sentinels,
        service_name=unquote(segments[0]),
        db=db,
        username=unquote(username) or None,
        password=unquote(password) or None,
    )


def redis_settings(url: str) -> RedisSettings:
    """arq's settings for `url` (the queue client and the worker's, `app.messaging.queue`)."""
    target = sentinel_target(url)
    if target is None:
        settings = RedisSettings.from_dsn(url)
    else:
        settings = RedisSettings(
            # arq takes the Sentinels' addresses in `host` when `sentinel` is set.
            host=target.sentinels,
            sentinel=True,
            sentinel_master=target.service_name,
            database=target.db,
            username=target.username,
            password=target.password,
        )
    # Retries keep a worker alive through a Redis restart (arq#386, #435).
    settings.retry_on_timeout = True
    settings.conn_retries = 10
    return settings


def redis_client(url: str, **options: Any) -> aioredis.Redis:
    """A plain client on `url` (no arq), with redis-py `options` (timeouts…)."""
    target = sentinel_target(url)
    if target is None:
        return aioredis.from_url(url, **options)
    socket_options = {k: v for k, v in options.items() if k.startswith("socket_")}
    sentinel = Sentinel(target.sentinels, sentinel_kwargs=socket_options)
    client: aioredis.Redis = sentinel.master_for(
        target.service_name,
        db=target.db,
        username=target.username,
        password=target.password,
        **options,
    )
    return client

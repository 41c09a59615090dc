"""The webhook policy on its own: SSRF rules, langgraph.json's `webhooks`, signing, retry schedule."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import random
from typing import Any

import pytest

from app.errors import BadUserInput
from app.runtime.langgraph_config import ConfigError
from app.services.webhook_policy import (
    WebhookPolicy,
    allowed_fields,
    configured_headers,
    host_matches,
    is_public,
    literal_address,
    retry_delay,
    retryable_status,
    signature,
)
from app.settings import Settings


def policy(webhooks: dict[str, Any] | None = None, **settings: Any) -> WebhookPolicy:
    return WebhookPolicy.from_config(Settings.model_validate(settings), webhooks)


def refused(p: WebhookPolicy, url: str) -> str:
    with pytest.raises(BadUserInput) as caught:
        p.check_url(url)
    assert caught.value.details == {"field": "webhook"}
    return caught.value.message


PRIVATE_TARGETS = [
    "http://127.0.0.1/hook",
    "http://127.1/hook",  # short form
    "http://2130706433/hook",  # 127.0.0.1 as one number
    "http://0x7f000001/hook",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped
    "http://localhost:8000/hook",
    "http://api.localhost/hook",
    "http://10.0.0.5/hook",
    "http://172.16.3.4/hook",
    "http://192.168.1.1/hook",
    "http://169.254.169.254/latest/meta-data",  # cloud metadata (link-local)
    "http://100.64.0.1/hook",  # carrier-grade NAT
    "http://0.0.0.0/hook",
    "http://[fd00::1]/hook",
    "http://[fe80::1]/hook",
    "http://224.0.0.1/hook",
]


def test_production_refuses_loopback_private_and_reserved_targets() -> None:
    p = policy()
    for url in PRIVATE_TARGETS:
        refused(p, url)


def test_public_targets_pass() -> None:
    p = policy()
    for url in (
        "https://hooks.example.com/x?token=abc",
        "http://93.184.216.34:8080/x",
        "https://[2606:4700::1111]/x",
        "https://user:pw@example.com/x",
    ):
        p.check_url(url)


def test_dev_allows_private_targets_unless_explicitly_refused() -> None:
    for url in PRIVATE_TARGETS:
        policy(dev=True).check_url(url)
        policy(LGQL_WEBHOOK_ALLOW_PRIVATE="true").check_url(url)
        refused(policy(dev=True, LGQL_WEBHOOK_ALLOW_PRIVATE="false"), url)


def test_langgraph_flags_only_take_permissions_away() -> None:
    refused(policy({"url": {"disable_private_ips": True}}, dev=True), "http://10.0.0.5/")
    refused(policy({"url": {"disable_loopback": True}}, dev=True), "http://127.0.0.1/")
    policy({"url": {"disable_loopback": True}}, dev=True).check_url("http://10.0.0.5/")
    # `false` cannot open what lgql's settings keep closed.
    refused(
        policy({"url": {"disable_private_ips": False, "disable_loopback": False}}),
        "http://10.0.0.5/",
    )


def test_scheme_host_length_and_https_rules() -> None:
    p = policy()
    assert "http(s)" in refused(p, "ftp://example.com/x")
    assert "http(s)" in refused(p, "/relative/path")
    assert "host" in refused(p, "http:///no-host")
    assert "valid URL" in refused(p, "http://example.com:99999/")
    assert "longer" in refused(p, "https://example.com/" + "a" * 5000)
    assert "longer" in refused(
        policy({"url": {"max_url_length": 30}}), "https://example.com/" + "a" * 20
    )
    assert "https" in refused(policy({"url": {"require_https": True}}), "http://example.com/")
    policy({"url": {"require_https": True}}).check_url("https://example.com/")


def test_allowed_hosts_domains_and_ports_all_apply() -> None:
    p = policy(LGQL_WEBHOOK_ALLOWED_HOSTS="hooks.example.com, *.corp.com")
    p.check_url("https://hooks.example.com/x")
    p.check_url("https://a.b.corp.com/x")
    assert "LGQL_WEBHOOK_ALLOWED_HOSTS" in refused(p, "https://corp.com/x")
    refused(p, "https://evilcorp.com/x")
    refused(p, "https://example.com/x")
    both = policy(
        {"url": {"allowed_domains": ["*.corp.com"], "allowed_ports": [443]}},
        LGQL_WEBHOOK_ALLOWED_HOSTS="*.example.com,api.corp.com",
    )
    both.check_url("https://api.corp.com/x")
    assert "allowed_domains" in refused(both, "https://hooks.example.com/x")
    assert "port 8443" in refused(both, "https://api.corp.com:8443/x")


def test_host_matching() -> None:
    assert host_matches("A.Corp.COM.", ["*.corp.com"])
    assert not host_matches("corp.com", ["*.corp.com"])
    assert not host_matches("xcorp.com", ["*.corp.com"])
    assert host_matches("corp.com", ["corp.com"])


def test_literal_addresses_and_publicness() -> None:
    assert literal_address("127.1") == ipaddress.ip_address("127.0.0.1")
    assert literal_address("0x7f.1") == ipaddress.ip_address("127.0.0.1")
    assert literal_address("[::1]") == ipaddress.ip_address("::1")
    assert literal_address("example.com") is None
    assert literal_address("cafe.be") is None
    assert literal_address("deadbeef") is None
    assert is_public(ipaddress.ip_address("8.8.8.8"))
    assert not is_public(ipaddress.ip_address("::ffff:10.0.0.1"))
    assert not is_public(ipaddress.ip_address("2002:7f00:1::"))  # 6to4 of 127.0.0.1


def test_configured_headers_resolve_prefixed_env_templates() -> None:
    env = {"LG_WEBHOOK_TOKEN": "t0k", "DATABASE_URI": "postgres://secret"}
    headers = configured_headers(
        {"headers": {"Authorization": "Bearer ${{ env.LG_WEBHOOK_TOKEN }}", "X-Team": "core"}},
        env,
    )
    assert headers == {"Authorization": "Bearer t0k", "X-Team": "core"}
    with pytest.raises(ConfigError, match="env_prefix"):
        configured_headers({"headers": {"X": "${{ env.DATABASE_URI }}"}}, env)
    with pytest.raises(ConfigError, match="not set"):
        configured_headers({"headers": {"X": "${{ env.LG_WEBHOOK_MISSING }}"}}, env)
    custom = configured_headers(
        {"env_prefix": "HOOK_", "headers": {"X": "${{env.HOOK_A}}"}}, {"HOOK_A": "1"}
    )
    assert custom == {"X": "1"}
    assert configured_headers(None, env) == {}


def test_allowed_fields() -> None:
    assert allowed_fields(None) is None
    assert allowed_fields({"allowed_fields": ["run_id", "status"]}) == {"run_id", "status"}


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    body = b'{"run_id":"x"}'
    header = signature(b"s3cret", 1700000000, body)
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


def test_retry_schedule_grows_with_jitter_and_is_capped() -> None:
    rng = random.Random(7)
    for attempt, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (20, 600.0)):
        for _ in range(20):
            assert ceiling / 2 <= retry_delay(attempt, rng=rng) <= ceiling
    assert retryable_status(500) and retryable_status(503) and retryable_status(429)
    assert not retryable_status(404) and not retryable_status(400) and not retryable_status(301)

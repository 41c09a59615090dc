"""The real lgql endpoint passes the GraphQL-over-HTTP audit (graphql-http) in full."""

from __future__ import annotations

import asyncio

from tests.conformance.audit import EXPECTED_AUDIT_COUNT, run_graphql_http_audit
from tests.conftest import LiveServer


async def test_lgql_endpoint_passes_graphql_http_audit(live_server: LiveServer) -> None:
    # The audit is a Node subprocess: run it off the loop so this server keeps answering it.
    results = await asyncio.to_thread(run_graphql_http_audit, live_server.graphql_url)
    assert len(results) == EXPECTED_AUDIT_COUNT
    not_ok = [(r["id"], r["name"], r.get("reason")) for r in results if r["status"] != "ok"]
    assert not_ok == []

"""Properly signed but arbitrary message bodies never crash the federation inbox: every answer is a
202 or a 4xx problem, and nothing is recorded for a refused message."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kizuna.auth import generate_private_key_pem, load_private_key
from services.gateway.federation.signing import sign
from tests.federation.test_inbox_security import known_to_the_gateway
from tests.support import Ecosystem

KEY_PEM = generate_private_key_pem()
TYPES = ["partnership.proposed", "partnership.accepted", "partnership.ended", "job.shared", "job.status",
         "job.offer", "unknown.kind"]
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=8)


@pytest.fixture
async def inbox(ecosystem: Ecosystem) -> AsyncIterator[tuple[httpx.AsyncClient, str, str]]:
    # The deployment signs as itself, so the inbox finds the key at its own well-known address.
    ecosystem.start("members", "gateway", KIZUNA_FEDERATION_PRIVATE_KEY=KEY_PEM)
    async with httpx.AsyncClient(base_url=ecosystem.url("gateway"), timeout=30) as http:
        founded = (await http.post("/v1/communities", headers=ecosystem.operator_headers(),
                                   json={"name": "Hikari", "owner_display_name": "Yui"})).json()
        # The gateway learns the community from the bus; until then every message to it is a 404.
        await known_to_the_gateway(http, ecosystem, founded["community_id"], founded["owner_member_id"])
        yield http, ecosystem.url("gateway"), founded["community_id"]
    log = ecosystem.processes["gateway"].log_path.read_text()
    assert "unhandled error" not in log, log[-3000:]


def message(kind: str, origin: str, cid: str, payload: Any, pid: str) -> dict[str, Any]:
    return {"protocol": "kizuna-federation/1", "message_id": secrets.token_hex(8), "type": kind,
            "partnership_id": pid, "sent_at": "2026-11-27T00:00:00+00:00",
            "from": {"origin": origin, "community_id": "elsewhere"}, "to": {"origin": origin, "community_id": cid},
            "payload": payload}


async def test_fuzzed_signed_bodies_get_4xx_never_5xx(inbox: tuple[httpx.AsyncClient, str, str],
                                                      ecosystem: Ecosystem) -> None:
    http, origin, cid = inbox
    key = load_private_key(KEY_PEM)
    answers: list[int] = []

    async def post(body: bytes, message_id: str) -> int:
        headers = sign(key, method="POST", path="/federation/inbox", body=body, origin=origin, message_id=message_id,
                       created=int(time.time()), nonce=secrets.token_urlsafe(12))
        response = await http.post("/federation/inbox", content=body, headers={**headers,
                                                                             "Content-Type": "application/json"})
        assert response.status_code < 500, response.text
        if response.status_code >= 400:
            assert response.json()["status"] == response.status_code
        return response.status_code

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(kind=st.sampled_from(TYPES), payload=JSON, pid=st.text(min_size=1, max_size=70))
    def shapes(kind: str, payload: Any, pid: str) -> None:
        examples.append(message(kind, origin, cid, payload, pid))

    examples: list[dict[str, Any]] = []
    shapes()
    for body in examples:
        answers.append(await post(json.dumps(body).encode(), body["message_id"]))
    for raw in (b"", b"{", b"[]", b'{"protocol": 1}', json.dumps({"a": "\u0000\ud7ff"}).encode(), b"9" * 5000):
        answers.append(await post(raw, "raw-message-1"))
    assert answers and all(code < 500 for code in answers)
    assert len(set(answers)) >= 3, f"the bodies should reach different checks, got {sorted(set(answers))}"

    conn = await asyncpg.connect(ecosystem.database_url("gateway"))
    try:
        kinds = await conn.fetch("SELECT DISTINCT event_type FROM events WHERE stream_id LIKE 'partnership-%'")
    finally:
        await conn.close()
    assert {r["event_type"] for r in kinds} <= {"PartnershipRequested"}, "only a well-formed proposal may land"

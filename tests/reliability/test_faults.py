"""Faults under a steady write load through the gateway: nothing accepted is lost or doubled, and
secrets never reach logs or events."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from tests.gateway.test_gateway import SESSION, bearer
from tests.reliability.harness import scheduled_sessions
from tests.support import REPLICAS, BusPublisher, Ecosystem, eventually, issue, sessions_behind_gateway

WRITES = int(os.environ.get("KIZUNA_FAULT_WRITES", "120"))


@pytest.fixture
async def replicated(ecosystem: Ecosystem) -> AsyncIterator[tuple[BusPublisher, httpx.AsyncClient]]:
    """Sessions and the gateway, ``REPLICAS`` processes each (issue 18)."""
    async with sessions_behind_gateway(ecosystem, "faults-test", replicas=REPLICAS) as running:
        yield running


async def test_kill_9_of_a_service_under_write_load_loses_no_accepted_write(
    replicated: tuple[BusPublisher, httpx.AsyncClient], ecosystem: Ecosystem
) -> None:
    """Every replica of the sessions service killed with SIGKILL mid-load, then started again: writers see
    honest refusals meanwhile, and nothing accepted is lost or stored twice. (One replica of two killed:
    tests/reliability/test_replicas.py.)"""
    bus, http = replicated
    cid, owner = await bus.found({})
    token = await issue(http, ecosystem, cid, owner)
    await eventually(lambda: _ready(http, cid, token))
    accepted: list[str] = []
    refused = 0

    async def writer(n: int) -> None:
        nonlocal refused
        body = {**SESSION, "title": f"write {n}"}
        headers = {**bearer(token), "Idempotency-Key": str(uuid.uuid4())}
        try:
            response = await http.post(f"/v1/communities/{cid}/sessions", headers=headers, json=body)
        except httpx.HTTPError:
            refused += 1
            return
        if response.status_code == 201:
            accepted.append(response.json()["session_id"])
        else:
            assert response.status_code in (503, 504), response.text  # an honest error, never a fake success
            assert response.headers["content-type"].startswith("application/problem+json")
            refused += 1

    sessions = ecosystem.replicas_of("sessions")
    for n in range(WRITES):
        await writer(n)
        if n == WRITES // 3:
            for proc in sessions:
                proc.kill()  # kill -9 mid-load
        if n == WRITES // 2:
            for proc in sessions:
                proc.start()
            for proc in sessions:
                proc.wait_ready()
    assert refused > 0, "the kill should have been visible to some writers"
    assert len(accepted) + refused == WRITES

    stored = await scheduled_sessions(ecosystem)
    assert set(accepted) <= set(stored), "a 2xx write was lost"
    assert len(stored) == len(set(stored)), "a write was applied twice"
    listed = await http.get(f"/v1/communities/{cid}/sessions?limit=200", headers=bearer(token))
    assert {s["session_id"] for s in listed.json()["items"]} >= set(accepted)


async def _ready(http: httpx.AsyncClient, cid: str, token: str) -> bool:
    return (await http.get(f"/v1/communities/{cid}/sessions", headers=bearer(token))).status_code == 200


async def test_secrets_never_appear_in_logs_or_events(
    stack: tuple[BusPublisher, httpx.AsyncClient], ecosystem: Ecosystem
) -> None:
    bus, http = stack
    cid, owner = await bus.found({"aiko": "member"})
    token = await issue(http, ecosystem, cid, owner)
    await eventually(lambda: _ready(http, cid, token))
    await http.post(f"/v1/communities/{cid}/sessions", headers=bearer(token), json=SESSION)
    await http.post(f"/v1/communities/{cid}/sessions", headers=bearer(token), json={"capacity": -1})
    await http.get(f"/v1/communities/{cid}/health", headers={"Authorization": f"Bearer {token}x"})
    await asyncio.sleep(0.5)
    secrets = [ecosystem.operator_token, token, token.split(".")[2],
               ecosystem.private_key_pem.splitlines()[1]]
    for name, proc in ecosystem.processes.items():
        log = proc.log_path.read_text()
        assert log, f"{name} wrote no log"
        for secret in secrets:
            assert secret not in log, f"a secret leaked into the {name} log"
    for service in ("sessions", "gateway"):
        conn = await asyncpg.connect(ecosystem.database_url(service))
        try:
            dump = "".join(r["row"] for r in await conn.fetch("SELECT events::text AS row FROM events"))
        finally:
            await conn.close()
        assert dump, f"{service} stored no events"
        for secret in secrets:
            assert secret not in dump, f"a secret leaked into the {service} event store"

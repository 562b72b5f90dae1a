"""What the fault tests share: their short/long settings, a steady write load through the gateway, and
the checks that every accepted write is stored exactly once and every read model converges.

Settings come from the environment, as in ``test_faults.py``: ``make test`` runs the defaults (short),
``make soak`` sets the long ones.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from nats.js import JetStreamContext

from kizuna.devstack import NatsServer, PostgresServer
from tests.support import SERVICES, Ecosystem, eventually

WRITES = int(os.environ.get("KIZUNA_FAULT_WRITES", "120"))
NATS_OUTAGE_SECONDS = float(os.environ.get("KIZUNA_NATS_OUTAGE_SECONDS", "5"))
PG_OUTAGE_SECONDS = float(os.environ.get("KIZUNA_PG_OUTAGE_SECONDS", "4"))
DUPLICATE_FLOOD = int(os.environ.get("KIZUNA_DUPLICATE_FLOOD", "5"))
CONVERGENCE_TIMEOUT = float(os.environ.get("KIZUNA_CONVERGENCE_TIMEOUT", "90"))


@asynccontextmanager
async def running_stack(postgres: PostgresServer, nats: NatsServer, prefix: str,
                        workdir: Path) -> AsyncIterator[tuple[Ecosystem, httpx.AsyncClient]]:
    """Every service, ``REPLICAS`` processes each, on these servers, and a client for the first gateway;
    afterwards, no unhandled error logged."""
    eco = Ecosystem(postgres=postgres, nats=nats, prefix=prefix, workdir=workdir)
    # A replica cut off from NATS or PostgreSQL leaves what it had fetched unacknowledged; until the ack wait
    # sends those to the other replica, the events behind them on their streams are held (order first). The
    # default 30 s would only make the test wait; 5 s exercises the same path.
    eco.start_replicated(*SERVICES, KIZUNA_CONSUMER_ACK_WAIT_SECONDS="5")
    try:
        async with httpx.AsyncClient(base_url=eco.url("gateway"), timeout=30) as http:
            yield eco, http
    finally:
        eco.stop_all()
    for name, proc in eco.processes.items():
        # A server outage is an expected condition: answered with a problem response, never an unhandled error.
        assert "unhandled error" not in proc.log_path.read_text(), (name, logged_errors(eco)[-5000:])


def logged_errors(eco: Ecosystem) -> str:
    return "\n".join(line for proc in eco.processes.values()
                     for line in proc.log_path.read_text().splitlines() if '"level": "error"' in line)


def figures(test: str, **values: Any) -> None:
    """The figures a run obtained, printed (``pytest -s``) and appended to ``$KIZUNA_RELIABILITY_REPORT``."""
    line = json.dumps({"test": test, **values}, default=str)
    print(f"\nFIGURES {line}")
    target = os.environ.get("KIZUNA_RELIABILITY_REPORT")
    if target:
        with open(target, "a") as out:
            out.write(line + "\n")


async def found(http: httpx.AsyncClient, eco: Ecosystem, name: str, cap: int = 10_000) -> tuple[str, str]:
    response = await http.post("/v1/communities", headers=eco.operator_headers(),
                               json={"name": name, "owner_display_name": "Owner", "member_cap": cap})
    assert response.status_code == 201, response.text
    return response.json()["community_id"], response.json()["owner_member_id"]


@dataclass
class JoinLoad:
    """Members joining communities through the gateway, several writers at once, until told to stop; with
    several gateway replicas running, the writers spread over them (each writer keeps to one).

    Every answer is classified: a 201 is an accepted write (its member id is kept), anything else
    must be an honest 5xx problem; a 2xx that is not a 201 fails the test."""

    eco: Ecosystem
    communities: list[tuple[str, str]]
    writers: int = 4
    accepted: dict[str, list[str]] = field(default_factory=dict)
    refused: Counter[int] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    attempted: int = 0
    last_accepted_at: float = 0.0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _gateways: list[httpx.AsyncClient] = field(default_factory=list)

    @property
    def total_accepted(self) -> int:
        return sum(len(ids) for ids in self.accepted.values())

    def start(self) -> None:
        self._gateways = [httpx.AsyncClient(base_url=url, timeout=30) for url in self.eco.replica_urls("gateway")]
        self._tasks = [asyncio.create_task(self._writer(w)) for w in range(self.writers)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        for client in self._gateways:
            await client.aclose()

    async def until(self, attempted: int) -> None:
        while self.attempted < attempted:
            await asyncio.sleep(0.02)

    async def until_accepted(self, accepted: int) -> None:
        while self.total_accepted < accepted:
            await asyncio.sleep(0.02)

    async def _writer(self, w: int) -> None:
        n = 0
        gateway = self._gateways[w % len(self._gateways)]
        while not self._stop.is_set():
            cid, owner = self.communities[(w + n) % len(self.communities)]
            n += 1
            self.attempted += 1
            headers = {**self.eco.headers(cid, owner, "owner"), "Idempotency-Key": str(uuid.uuid4())}
            try:
                response = await gateway.post(f"/v1/communities/{cid}/members", headers=headers,
                                                json={"display_name": f"writer {w} #{n}"}, timeout=15)
            except httpx.HTTPError as error:
                self.refused[0] += 1  # no answer at all: the client knows nothing was promised
                self.unexpected.append(f"transport error {error!r}")
                await asyncio.sleep(0.05)
                continue
            if response.status_code == 201:
                self.accepted.setdefault(cid, []).append(response.json()["member_id"])
                self.last_accepted_at = time.monotonic()
            elif response.status_code >= 500 and response.headers.get("content-type", "").startswith(
                    "application/problem+json"):
                self.refused[response.status_code] += 1
                await asyncio.sleep(0.05)  # a client backing off a little
            else:
                self.unexpected.append(f"{response.status_code} {response.text[:300]}")


async def stored_joins(eco: Ecosystem, cids: list[str]) -> dict[str, list[str]]:
    """Member ids per community as the members event store has them (founder first), repeats kept."""
    conn = await asyncpg.connect(eco.database_url("members"))
    try:
        rows = await conn.fetch(
            "SELECT stream_id, event_type, data FROM events WHERE stream_id = ANY($1::text[]) "
            "AND event_type IN ('CommunityFounded', 'MemberJoined') ORDER BY global_position",
            [f"community-{c}" for c in cids])
    finally:
        await conn.close()
    out: dict[str, list[str]] = {c: [] for c in cids}
    for row in rows:
        data = json.loads(row["data"]) if isinstance(row["data"], str) else row["data"]
        key = "owner_member_id" if row["event_type"] == "CommunityFounded" else "member_id"
        out[row["stream_id"].removeprefix("community-")].append(data[key])
    return out


def assert_exactly_once(load: JoinLoad, stored: dict[str, list[str]]) -> None:
    for cid, ids in stored.items():
        assert len(ids) == len(set(ids)), f"a join was stored twice in {cid}"
        accepted = load.accepted.get(cid, [])
        assert set(accepted) <= set(ids), f"{len(set(accepted) - set(ids))} accepted (2xx) writes lost in {cid}"


ROSTERS = {"gateway": "directory", "referrals": "roster", "sessions": "roster", "identity": "roster",
           "notifications": "roster"}


async def roster_rows(eco: Ecosystem, service: str, cids: list[str]) -> dict[str, set[str]]:
    conn = await asyncpg.connect(eco.database_url(service))
    try:
        rows = await conn.fetch(f"SELECT community_id, member_id FROM {ROSTERS[service]} "
                                "WHERE active AND community_id = ANY($1::text[])", cids)
    finally:
        await conn.close()
    out: dict[str, set[str]] = {c: set() for c in cids}
    for row in rows:
        out[row["community_id"]].add(row["member_id"])
    return out


async def converge(eco: Ecosystem, http: httpx.AsyncClient, stored: dict[str, list[str]]) -> float:
    """Waits until every service's read model of these communities holds exactly the stored members
    (what a replay of the members event store gives), and the gateway's health figure agrees.
    Returns the seconds it took."""
    began = time.monotonic()
    expected = {cid: set(ids) for cid, ids in stored.items()}
    cids = list(stored)

    async def converged() -> bool:
        for service in [name for name in ROSTERS if name in eco.processes]:  # the followers this test runs
            if await roster_rows(eco, service, cids) != expected:
                return False
        return True

    try:
        await eventually(converged, timeout=CONVERGENCE_TIMEOUT, interval=0.25)
    except AssertionError as error:
        differences = {}
        for service in [name for name in ROSTERS if name in eco.processes]:
            rows = await roster_rows(eco, service, cids)
            differences[service] = {cid: {"missing": len(expected[cid] - rows[cid]),
                                           "extra": len(rows[cid] - expected[cid])} for cid in cids}
        raise AssertionError(f"read models did not converge: {differences}\n{logged_errors(eco)[-3000:]}") from error
    for cid, members in expected.items():
        health = await http.get(f"/v1/communities/{cid}/health", headers=eco.operator_headers())
        assert health.status_code == 200 and health.json()["members"] == len(members), health.text
    return time.monotonic() - began


async def bus_messages(js: JetStreamContext, stream: str, subject: str) -> list[dict[str, Any]]:
    """Every message of ``stream`` on ``subject`` (wildcards allowed), read with an ephemeral consumer."""
    info = await js.stream_info(stream, subjects_filter=subject)
    expected = sum((info.state.subjects or {}).values())
    sub = await js.pull_subscribe(subject, durable=None, stream=stream)
    out: list[dict[str, Any]] = []
    try:
        while len(out) < expected:
            for msg in await sub.fetch(500, timeout=5):
                out.append(json.loads(msg.data))
                await msg.ack()
    finally:
        await sub.unsubscribe()
    return out


async def scheduled_sessions(eco: Ecosystem) -> list[str]:
    """Every session id the sessions event store holds a ``SessionScheduled`` for, repeats included."""
    conn = await asyncpg.connect(eco.database_url("sessions"))
    try:
        return [r["stream_id"].removeprefix("session-") for r in await conn.fetch(
            "SELECT stream_id FROM events WHERE event_type = 'SessionScheduled'")]
    finally:
        await conn.close()

"""One federation deliverer at a time, fenced (issue 18, item 3): two deliverers on one gateway database,
messages queued while the lock holder's own connection is killed again and again; whoever holds the lock
delivers, every message arrives, first arrivals keep the queue's order, and a deliverer that lost its
lock sends at most the message it had in flight again (the partner's inbox drops such a repeat by its
message id) instead of delivering beside the new holder (real PostgreSQL; deliveries to this
deployment's own origin go to a local receiver, so no network is needed)."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kizuna.service import migrate
from services.gateway.app import SPEC
from services.gateway.federation.delivery import LOCK_HOLDER_NAME, Deliverer, LocalReceiver, RetryPolicy
from services.gateway.federation.identity import Identity
from tests.support import eventually

ORIGIN = "https://here.example"


async def queue(pool: asyncpg.Pool, n: int) -> None:
    body = {"type": "job.shared", "from": {"origin": ORIGIN}, "payload": {"n": n}}
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO federation_outbox (message_id, partnership_id, community_id, destination, "
                           "type, body) VALUES ($1, 'p1', 'c1', $2, 'job.shared', $3::jsonb)",
                           uuid.uuid4(), ORIGIN, json.dumps(body))


async def test_a_deliverer_that_loses_its_lock_stops_and_the_other_delivers_the_rest(database_url: str) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=10)
    await migrate(pool, SPEC.migrations)
    arrived: list[tuple[str, int]] = []

    def receiver(name: str) -> LocalReceiver:
        async def receive(body: bytes) -> str:
            await asyncio.sleep(0.02)  # a partner that takes a moment: rounds of two deliverers would overlap
            arrived.append((name, json.loads(body)["payload"]["n"]))
            return "accepted"
        return receive

    identity = Identity(origin=ORIGIN, key=Ed25519PrivateKey.generate())
    total = 60
    async with httpx.AsyncClient() as http:
        deliverers = [Deliverer(pool, http, identity, RetryPolicy(), receiver(name), database_url=database_url)
                      for name in ("first", "second")]
        tasks = [asyncio.create_task(d.run(idle_seconds=0.02, lock_retry_seconds=0.05)) for d in deliverers]
        kills = 0
        for n in range(total):
            await queue(pool, n)
            if n % 10 == 5:
                async with pool.acquire() as conn:
                    kills += await conn.fetchval(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1 "
                        "AND datname = current_database() AND pid IN (SELECT pid FROM pg_locks WHERE "
                        "locktype = 'advisory' AND granted)", LOCK_HOLDER_NAME)
            await asyncio.sleep(0.03)
        await eventually(lambda: _count(arrived, total), timeout=30)
        await asyncio.sleep(0.5)  # anything delivered twice would arrive by now
        for task in tasks:
            task.cancel()
    await pool.close()
    assert kills >= 3, "the lock holder's connection was killed while it delivered"
    first_arrivals = list(dict.fromkeys(n for _, n in arrived))
    assert first_arrivals == list(range(total)), arrived
    repeats = len(arrived) - total
    assert repeats <= kills, f"{repeats} repeats for {kills} lost locks: two deliverers delivered side by side"


async def _count(items: list[tuple[str, int]], n: int) -> bool:
    return len(items) >= n

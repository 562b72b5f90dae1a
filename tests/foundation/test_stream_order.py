"""Per-stream order on every write path (issue 18, item 1): a transaction that wrote before it appends (as
a reaction writes its inbox row first) and a plain append on the same stream, at once, with the first
write deliberately slow: the bus order of the stream equals its version order, and nothing is lost."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import asyncpg
from nats.js import JetStreamContext

from kizuna.eventstore import EventStore, NewEvent
from tests.foundation.test_relay_and_consumer import relay_for, stream_messages
from tests.support import eventually

ROUNDS = 12


async def test_a_transaction_that_wrote_first_cannot_publish_out_of_version_order(
    pool: asyncpg.Pool, js: JetStreamContext, unique: str, database_url: str
) -> None:
    store = EventStore(pool)
    async with pool.acquire() as conn:
        await conn.execute("CREATE TABLE reaction_inbox (message_id text PRIMARY KEY)")
    refused = 0

    async def reaction(n: int, wrote: asyncio.Event) -> None:
        """Writes its inbox row (so it holds a transaction id), waits, then appends to the stream."""
        nonlocal refused
        while True:
            try:
                async with pool.acquire() as conn, conn.transaction():
                    await conn.execute("INSERT INTO reaction_inbox VALUES ($1)", f"m{n}")
                    wrote.set()
                    await asyncio.sleep(0.15)  # the slow first write: a command appends meanwhile
                    await store.append("job-1", [NewEvent("Reacted", {"n": n}, {"community_id": "c"})],
                                       connection=conn)
                return
            except asyncpg.SerializationError:
                refused += 1  # refused to keep the order: run the whole transaction again

    async def command(n: int, after: asyncio.Event) -> None:
        await after.wait()
        await store.append("job-1", [NewEvent("Commanded", {"n": n}, {"community_id": "c"})])

    for n in range(ROUNDS):
        wrote = asyncio.Event()
        await asyncio.gather(reaction(n, wrote), command(n, wrote))
    assert refused >= ROUNDS // 2, "the race was not provoked"

    relay = relay_for(store, js, unique, database_url)
    running = asyncio.create_task(relay.run())
    await eventually(lambda: _published(relay, 2 * ROUNDS))
    running.cancel()
    messages = await stream_messages(js, unique)
    versions: dict[str, list[int]] = defaultdict(list)
    for message in messages:
        versions[str(message["subject"])].append(int(str(message["streamversion"])))
    assert versions["job-1"] == list(range(1, 2 * ROUNDS + 1)), versions["job-1"]


async def _published(relay: object, total: int) -> bool:
    return bool(getattr(relay, "published", 0) >= total)

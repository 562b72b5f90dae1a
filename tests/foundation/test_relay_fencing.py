"""Two relays on one database, and the lock holder's connection killed under write load (issue 18,
item 3): the relay that lost its lock stops publishing before its next batch, the other takes over,
and the stream holds every event once, each source stream in version order; the checkpoint never
moves back."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import asyncpg
from nats.js import JetStreamContext

from kizuna.eventstore import EventStore, NewEvent
from kizuna.relay import LOCK_HOLDER_NAME, OutboxRelay
from tests.foundation.test_relay_and_consumer import relay_for, stream_messages
from tests.support import eventually


async def test_a_relay_that_loses_its_lock_stops_and_the_other_takes_over(
    pool: asyncpg.Pool, js: JetStreamContext, unique: str, database_url: str
) -> None:
    store = EventStore(pool)
    first, second = relay_for(store, js, unique, database_url), relay_for(store, js, unique, database_url)
    # The second stands by trying often, so it takes the lock well before the first tries again (half a
    # second after losing it): the first publishing after that could only be a relay that never noticed.
    second.lock_retry_seconds = 0.05
    running = [asyncio.create_task(first.run())]
    await asyncio.sleep(0.3)  # the first takes the lock
    running.append(asyncio.create_task(second.run()))
    streams, per_stream = 10, 60
    versions: dict[str, int] = defaultdict(int)
    stop = asyncio.Event()

    async def writer(s: int) -> None:
        for n in range(per_stream):
            await store.append(f"w-{s}", [NewEvent("Wrote", {"n": n}, {"community_id": "c"})], n)
            versions[f"w-{s}"] = n + 1
            await asyncio.sleep(0.005)

    writers = [asyncio.create_task(writer(s)) for s in range(streams)]
    await eventually(lambda: _published_some(first))
    async with pool.acquire() as conn:
        # Only the holder's session: the standby's waits under the same name, and killing it too would let
        # the first relay win the lock back on reconnecting.
        killed = await conn.fetchval(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 "
            "AND datname = current_database() AND pid IN "
            "(SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted)", LOCK_HOLDER_NAME)
    assert killed
    published_by_first = first.published
    await asyncio.gather(*writers)
    stop.set()
    total = streams * per_stream
    await eventually(lambda: _stream_has(js, unique, total), timeout=30)
    # The first relay noticed at its next round and never published again; the second finished the work.
    # (If the first won the lock back it would have to go through the check again: it may only grow after
    # the second gives the lock up, which it never does here.)
    assert first.published <= published_by_first + 200, (first.published, published_by_first)
    assert second.published > 0

    async def checkpoint_at_the_end() -> bool:  # the relay records its checkpoint just after its last publish
        async with pool.acquire() as conn:
            return bool(await conn.fetchval("SELECT (SELECT global_position FROM checkpoints WHERE name = 'relay') "
                                            "= (SELECT max(global_position) FROM events)"))

    await eventually(checkpoint_at_the_end, timeout=30)
    for task in running:
        task.cancel()
    messages = await stream_messages(js, unique)
    assert len(messages) == total and len({m["id"] for m in messages}) == total
    seen: dict[str, list[int]] = defaultdict(list)
    for message in messages:
        seen[str(message["subject"])].append(int(str(message["streamversion"])))
    for stream_id, order in seen.items():
        assert order == sorted(order), f"{stream_id} published out of order: {order}"
    async with pool.acquire() as conn:
        last = await conn.fetchval("SELECT max(global_position) FROM events")
        checkpoint = await conn.fetchval("SELECT global_position FROM checkpoints WHERE name = 'relay'")
    assert checkpoint == last


async def _published_some(relay: OutboxRelay) -> bool:
    return relay.published >= 50


async def _stream_has(context: JetStreamContext, unique: str, total: int) -> bool:
    info = await context.stream_info(f"S{unique}")
    return int(info.state.messages) >= total

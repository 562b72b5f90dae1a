"""An event that arrives before an earlier one of its stream is held; it is applied anyway only when its
predecessors are truly lost — not merely late (issue 18).

Found with two replicas of every service through a NATS outage: every replica's clock ran out while the
missing events were still unacknowledged at another replica, so they were skipped, and dropped when they
came: a hundred members missing from a read model for good. The wait now also asks JetStream: a gap is given
up only once every message before the early one is settled for the durable (its ack floor has reached it).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from kizuna.consumer import InboxConsumer, Subscription
from kizuna.envelope import Envelope, subject_for, to_cloudevent
from kizuna.eventstore import RecordedEvent
from kizuna.ordering import APPLIED_VERSIONS_SQL
from tests.support import eventually

ACK_WAIT = 2.0
ORDER_WAIT = 0.5


async def publish(js: JetStreamContext, unique: str, stream_id: str, version: int) -> None:
    event = RecordedEvent(global_position=version, transaction_id=1, stream_id=stream_id, stream_version=version,
                          event_id=uuid.uuid4(), type="Wrote", data={"community_id": "c", "n": version},
                          metadata={"community_id": "c", "actor": "test"}, recorded_at=datetime.now(UTC))
    await js.publish(subject_for(f"p{unique}", "test", event),
                     json.dumps(to_cloudevent("test", event), default=str).encode(),
                     headers={"Nats-Msg-Id": str(event.event_id)})


@pytest.fixture
async def tables(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute(APPLIED_VERSIONS_SQL)
        await conn.execute("CREATE TABLE applied (stream_id text, n int, at timestamptz DEFAULT clock_timestamp())")


def consumer_for(js: JetStreamContext, pool: asyncpg.Pool, unique: str) -> InboxConsumer:
    async def handle(conn: asyncpg.Connection, envelope: Envelope) -> None:
        await conn.execute("INSERT INTO applied (stream_id, n) VALUES ($1, $2)", envelope.subject,
                           envelope.data["n"])

    return InboxConsumer(js, pool, Subscription("follower", ["*.test.>"], handle), stream=f"S{unique}",
                         prefix=f"p{unique}", ack_wait=ACK_WAIT, order_wait=ORDER_WAIT, together=False)


async def applied_order(pool: asyncpg.Pool, stream_id: str) -> list[int]:
    async with pool.acquire() as conn:
        return [row["n"] for row in await conn.fetch("SELECT n FROM applied WHERE stream_id = $1 ORDER BY at",
                                                     stream_id)]


async def test_a_late_event_held_by_another_replica_is_waited_for_past_order_wait(
    pool: asyncpg.Pool, js: JetStreamContext, unique: str, tables: None
) -> None:
    """Another replica fetches version 2 and goes quiet (cut off, say) for ack_wait, four times order_wait;
    version 3 reaches our consumer early. It must wait for version 2 however long that takes — never skip it."""
    consumer = consumer_for(js, pool, unique)
    await js.add_consumer(f"S{unique}", ConsumerConfig(
        durable_name=consumer.durable, ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT, max_deliver=6,
        filter_subject=f"p{unique}.*.test.>", max_ack_pending=1000))
    for version in (1, 2, 3):
        await publish(js, unique, "x-1", version)
    other_replica = await js.pull_subscribe_bind(durable=consumer.durable, stream=f"S{unique}")
    taken = await other_replica.fetch(2, timeout=5)  # versions 1 and 2: it applies 1 and stalls on 2
    assert [Envelope.from_bytes(m.data).stream_version for m in taken] == [1, 2]
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO applied (stream_id, n) VALUES ('x-1', 1)")
        await conn.execute("INSERT INTO applied_versions VALUES ('follower', 'test', 'x-1', 1)")
    await taken[0].ack()
    consuming = asyncio.create_task(consumer.run())
    try:
        await asyncio.sleep(ORDER_WAIT * 3)  # version 3 has waited past order_wait: version 2 is still unsettled
        assert await applied_order(pool, "x-1") == [1], "version 3 was applied while version 2 was in flight"
        assert consumer.held == 1
        await eventually(lambda: _applied(pool, "x-1", [1, 2, 3]), timeout=ACK_WAIT * 5)
    finally:
        consuming.cancel()
        await other_replica.unsubscribe()


async def test_an_event_whose_predecessor_never_comes_is_applied_after_order_wait(
    pool: asyncpg.Pool, js: JetStreamContext, unique: str, tables: None
) -> None:
    """Version 2 was never published (lost before the bus, or removed by retention): once everything before
    version 3 is settled and order_wait is over, version 3 is applied, and so is what follows it."""
    for version in (1, 3, 4):
        await publish(js, unique, "y-1", version)
    consumer = consumer_for(js, pool, unique)
    consuming = asyncio.create_task(consumer.run())
    try:
        await eventually(lambda: _applied(pool, "y-1", [1, 3, 4]), timeout=ORDER_WAIT * 20)
    finally:
        consuming.cancel()


async def _applied(pool: asyncpg.Pool, stream_id: str, expected: list[int]) -> bool:
    return await applied_order(pool, stream_id) == expected

"""Outbox relay and inbox consumers over real NATS JetStream and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg
import pytest
from nats.js import JetStreamContext

from kizuna import bus
from kizuna.consumer import InboxConsumer, Subscription
from kizuna.devstack import NatsServer
from kizuna.envelope import Envelope
from kizuna.eventstore import Checkpoint, EventStore, NewEvent
from kizuna.relay import OutboxRelay
from tests.support import eventually


def relay_for(store: EventStore, js: JetStreamContext, unique: str, database_url: str) -> OutboxRelay:
    return OutboxRelay(store, js, service="test", prefix=f"p{unique}", database_url=database_url,
                       batch_size=200, idle_seconds=0.05)


async def stream_messages(js: JetStreamContext, unique: str) -> list[dict[str, Any]]:
    """Every CloudEvent on the test stream, as parsed JSON."""
    info = await js.stream_info(f"S{unique}")
    sub = await js.pull_subscribe(f"p{unique}.>", durable=None, stream=f"S{unique}")
    out: list[dict[str, Any]] = []
    while len(out) < info.state.messages:
        for msg in await sub.fetch(500, timeout=2):
            out.append(json.loads(msg.data))
            await msg.ack()
    await sub.unsubscribe()
    return out


async def test_every_event_reaches_jetstream_once_in_stream_order(
    pool: asyncpg.Pool, js: JetStreamContext, unique: str, database_url: str
) -> None:
    store = EventStore(pool)
    relay = relay_for(store, js, unique, database_url)
    running = asyncio.create_task(relay.run())
    streams, per_stream = 30, 40

    async def writer(s: int) -> None:
        for n in range(per_stream):
            await store.append(f"w-{s}", [NewEvent("Wrote", {"n": n}, {"community_id": "c"})], n)

    await asyncio.gather(*(writer(s) for s in range(streams)))
    total = streams * per_stream
    await eventually(lambda: _published(relay, total), timeout=60)
    running.cancel()
    messages = await stream_messages(js, unique)
    assert len(messages) == total
    assert len({m["id"] for m in messages}) == total
    by_stream: dict[str, list[int]] = {}
    for m in messages:
        by_stream.setdefault(str(m["subject"]), []).append(int(m["streamversion"]))
    assert all(versions == list(range(1, per_stream + 1)) for versions in by_stream.values())
    first = messages[0]
    assert first["specversion"] == "1.0" and first["communityid"] == "c" and first["type"] == "Wrote"


async def _published(relay: OutboxRelay, total: int) -> bool:
    return relay.published >= total


async def test_relay_crash_between_publish_and_checkpoint_loses_and_duplicates_nothing(
    pool: asyncpg.Pool, js: JetStreamContext, unique: str, database_url: str
) -> None:
    store = EventStore(pool)
    for n in range(50):
        await store.append(f"c-{n % 5}", [NewEvent("Wrote", {"n": n}, {"community_id": "c"})])

    crashing = relay_for(store, js, unique, database_url)
    original = crashing.store.save_checkpoint

    async def crash(name: str, checkpoint: Checkpoint) -> None:
        raise SystemExit("relay process died before saving its checkpoint")

    crashing.store.save_checkpoint = crash  # type: ignore[method-assign]
    with pytest.raises(SystemExit):
        await crashing.run()
    crashing.store.save_checkpoint = original  # type: ignore[method-assign]

    restarted = relay_for(store, js, unique, database_url)
    running = asyncio.create_task(restarted.run())
    await eventually(lambda: _published(restarted, 50))
    running.cancel()
    messages = await stream_messages(js, unique)
    assert len(messages) == 50 and len({m["id"] for m in messages}) == 50


async def test_consumer_applies_once_despite_redelivery_and_dead_letters_poison(
    pool: asyncpg.Pool, js: JetStreamContext, unique: str, database_url: str
) -> None:
    async with pool.acquire() as conn:
        await conn.execute("CREATE TABLE applied (event_id uuid, n int)")

    async def handle(conn: asyncpg.Connection, envelope: Envelope) -> None:
        if envelope.data.get("poison"):
            raise ValueError("cannot digest this event")
        await conn.execute("INSERT INTO applied VALUES ($1, $2)", envelope.id, envelope.data["n"])

    store = EventStore(pool)
    relay = relay_for(store, js, unique, database_url)
    relaying = asyncio.create_task(relay.run())
    for n in range(20):
        await store.append("x-1", [NewEvent("Wrote", {"n": n, "poison": n == 7}, {"community_id": "c"})])
    await eventually(lambda: _published(relay, 20))

    subscription = Subscription("applier", ["*.test.>"], handle)
    consumer = InboxConsumer(js, pool, subscription, stream=f"S{unique}", prefix=f"p{unique}",
                             max_deliver=3, ack_wait=1)
    consuming = asyncio.create_task(consumer.run())

    async def all_applied() -> bool:
        async with pool.acquire() as conn:
            return bool(await conn.fetchval("SELECT count(*) FROM applied") == 19 and consumer.dead_lettered == 1)

    await eventually(all_applied, timeout=30)

    # A duplicate flood: the same messages delivered again change nothing.
    for msg_id in range(3):
        raw = await js.get_msg(f"S{unique}", seq=msg_id + 1)
        assert raw.data is not None  # the relay published every event with a body
        await consumer._apply_once(Envelope.from_bytes(raw.data))
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM applied") == 19
        assert await conn.fetchval("SELECT count(DISTINCT event_id) FROM applied") == 19

    dlq = await js.pull_subscribe(f"p{unique}_dlq.>", durable=None, stream=f"S{unique}_DLQ")
    [dead] = await dlq.fetch(1, timeout=5)
    body = json.loads(dead.data)
    assert body["consumer"] == "applier" and "cannot digest" in body["error"] and body["event"]["data"]["n"] == 7
    consuming.cancel()
    relaying.cancel()


async def test_a_fetched_batch_is_applied_in_one_transaction_in_order_and_once(
    pool: asyncpg.Pool, js: JetStreamContext, unique: str, database_url: str
) -> None:
    async with pool.acquire() as conn:
        await conn.execute("CREATE TABLE applied (seq serial, event_id uuid, n int, xact xid8)")

    async def handle(conn: asyncpg.Connection, envelope: Envelope) -> None:
        await conn.execute("INSERT INTO applied (event_id, n, xact) VALUES ($1, $2, pg_current_xact_id())",
                           envelope.id, envelope.data["n"])

    store = EventStore(pool)
    relay = relay_for(store, js, unique, database_url)
    relaying = asyncio.create_task(relay.run())
    for n in range(40):
        await store.append(f"x-{n % 3}", [NewEvent("Wrote", {"n": n}, {"community_id": "c"})])
    await eventually(lambda: _published(relay, 40))
    relaying.cancel()
    # The stream also holds copies of three events (published without a message id, so JetStream keeps them).
    for seq in (2, 5, 9):
        raw = await js.get_msg(f"S{unique}", seq=seq)
        assert raw.subject is not None and raw.data is not None  # a stored message has both
        await js.publish(raw.subject, raw.data)

    consumer = InboxConsumer(js, pool, Subscription("batcher", ["*.test.>"], handle), stream=f"S{unique}",
                             prefix=f"p{unique}")
    consuming = asyncio.create_task(consumer.run())

    async def all_applied() -> bool:
        async with pool.acquire() as conn:
            return bool(await conn.fetchval("SELECT count(*) FROM applied") >= 40)

    await eventually(all_applied, timeout=30)
    await asyncio.sleep(0.3)  # a late duplicate would land now
    consuming.cancel()
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT n, xact FROM applied ORDER BY seq")
    assert [r["n"] for r in rows] == list(range(40))  # each once, in stream order
    assert len({r["xact"] for r in rows}) < 40  # fetched together, committed together
    assert consumer.applied == 40


async def test_nats_restart_while_writing_delivers_everything(
    pool: asyncpg.Pool, unique: str, database_url: str, workdir: object
) -> None:
    from pathlib import Path

    server = NatsServer(Path(str(workdir)) / f"nats-restart-{unique}").start()
    nc = await bus.connect(server.url, "restart-test")
    js = nc.jetstream()
    await bus.ensure_streams(js, f"S{unique}", f"p{unique}")
    store = EventStore(pool)
    relay = relay_for(store, js, unique, database_url)
    relaying = asyncio.create_task(relay.run())
    ids: list[uuid.UUID] = []

    async def write(count: int) -> None:
        for n in range(count):
            [event] = await store.append(f"r-{n % 3}", [NewEvent("Wrote", {"n": n}, {"community_id": "c"})])
            ids.append(event.event_id)
            await asyncio.sleep(0.002)

    await write(30)
    server.stop()  # NATS goes away while writes continue
    await write(30)
    server.start()  # same port, same JetStream store
    await write(30)
    await eventually(lambda: _published(relay, 90), timeout=60)
    relaying.cancel()
    messages = await stream_messages(js, unique)
    assert sorted(str(i) for i in ids) == sorted(str(m["id"]) for m in messages)
    await nc.close()
    server.stop()

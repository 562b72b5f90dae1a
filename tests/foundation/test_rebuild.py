"""Projection rebuild: a fresh read model replayed from the store and the bus equals the live one."""

from __future__ import annotations

import asyncio

import asyncpg
import nats

from kizuna import bus
from kizuna.consumer import Subscription
from kizuna.devstack import NatsServer, PostgresServer
from kizuna.envelope import Envelope
from kizuna.eventstore import EventStore, NewEvent, RecordedEvent
from kizuna.rebuild import rebuild
from kizuna.relay import OutboxRelay
from kizuna.service import Migration, ServiceSpec, migrate
from kizuna.settings import ServiceSettings
from tests.support import eventually

SQL = """
CREATE TABLE totals (stream_id text PRIMARY KEY, n int NOT NULL);
CREATE TABLE foreign_seen (event_id uuid PRIMARY KEY, kind text NOT NULL);
"""


async def count_event(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    await conn.execute("INSERT INTO totals VALUES ($1, $2) ON CONFLICT (stream_id) DO UPDATE SET n = $2",
                       event.stream_id, event.stream_version)


async def remember(conn: asyncpg.Connection, envelope: Envelope) -> None:
    await conn.execute("INSERT INTO foreign_seen VALUES ($1, $2) ON CONFLICT DO NOTHING", envelope.id, envelope.type)


async def test_rebuild_replays_own_and_bus_events(
    pool: asyncpg.Pool, database_url: str, nats_server: NatsServer, unique: str, postgres: PostgresServer
) -> None:
    spec = ServiceSpec(name="tally", title="t", description="t", routers=[],
                       migrations=[Migration("tally_0001", SQL)], inline_projections=[count_event],
                       subscriptions=[Subscription("tally-foreign", ["*.other.>"], remember)],
                       read_model_tables=["totals", "foreign_seen"])
    settings = ServiceSettings(service_name="tally", database_url=database_url, nats_url=nats_server.url,
                               subject_prefix=f"p{unique}", stream_name=f"S{unique}")
    async with pool.acquire() as conn:
        await conn.execute(SQL)
        await conn.execute("INSERT INTO schema_migrations (name) VALUES ('tally_0001')")
    store = EventStore(pool, [count_event])
    for n in range(300):
        await store.append(f"tally-{n % 7}", [NewEvent("Counted", {"n": n}, {"community_id": "c"})])

    # Another service's events, from its own database, on the bus.
    other_url = postgres.create_database(f"other_{unique}")
    other_pool = await asyncpg.create_pool(other_url, min_size=1, max_size=4)
    await migrate(other_pool, [])
    other_store = EventStore(other_pool)
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await bus.ensure_streams(js, f"S{unique}", f"p{unique}")
    foreign = []
    for n in range(40):
        foreign += await other_store.append(f"o-{n}", [NewEvent("Happened", {"n": n}, {"community_id": "c"})])
    relay = OutboxRelay(EventStore(other_pool), js, service="other", prefix=f"p{unique}",
                        database_url=other_url, idle_seconds=0.05)
    relaying = asyncio.create_task(relay.run())

    async def relayed() -> bool:
        return relay.published >= 40

    await eventually(relayed)
    relaying.cancel()
    async with pool.acquire() as conn:
        live = await conn.fetch("SELECT * FROM totals ORDER BY stream_id")
        await conn.execute("UPDATE totals SET n = -1")  # corrupt the read model

    counts = await rebuild(spec, settings)
    assert counts["bus_events"] == 40
    async with pool.acquire() as conn:
        rebuilt = await conn.fetch("SELECT * FROM totals ORDER BY stream_id")
        seen = await conn.fetchval("SELECT count(*) FROM foreign_seen")
    assert [tuple(r) for r in rebuilt] == [tuple(r) for r in live]
    assert {r["stream_id"]: r["n"] for r in rebuilt}["tally-0"] == 43
    assert seen == 40
    await nc.close()
    await other_pool.close()


async def count_in_order(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    """Moves a stream's total only from the previous version: an event applied out of order is lost."""
    await conn.execute("INSERT INTO totals VALUES ($1, $2) ON CONFLICT (stream_id) DO UPDATE SET n = EXCLUDED.n "
                       "WHERE totals.n = EXCLUDED.n - 1", event.stream_id, event.stream_version)
    if event.stream_version % 10 == 0:  # a read between writes must see every write issued before it
        seen = await conn.fetchval("SELECT n FROM totals WHERE stream_id = $1", event.stream_id)
        assert seen == event.stream_version


async def test_partitioned_replay_keeps_each_partitions_order(pool: asyncpg.Pool, database_url: str,
                                                                unique: str) -> None:
    spec = ServiceSpec(name="ordered", title="t", description="t", routers=[],
                       migrations=[Migration("ordered_0001", SQL)], inline_projections=[count_in_order],
                       replay_partition=lambda event: event.stream_id, read_model_tables=["totals", "foreign_seen"])
    settings = ServiceSettings(service_name="ordered", database_url=database_url, subject_prefix=f"p{unique}",
                               stream_name=f"S{unique}")
    store = EventStore(pool)
    for n in range(0, 1200, 20):  # 13 streams, interleaved in the log, in appends of several events
        await store.append(f"ordered-{n % 13}", [NewEvent("Counted", {"n": n + k}, {}) for k in range(20)])
    counts = await rebuild(spec, settings, batch=97, include_bus=False)
    assert counts["own_events"] == 1200
    async with pool.acquire() as conn:
        totals = {r["stream_id"]: r["n"] for r in await conn.fetch("SELECT * FROM totals")}
        heads = {r["stream_id"]: r["v"] for r in await conn.fetch(
            "SELECT stream_id, max(stream_version) AS v FROM events GROUP BY stream_id")}
    assert totals == heads

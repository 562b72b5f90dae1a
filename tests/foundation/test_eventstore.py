"""The event store against a real PostgreSQL: concurrency, idempotence and commit-order reads."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from kizuna.errors import ConcurrencyConflict, Conflict
from kizuna.eventstore import ANY_VERSION, NO_STREAM, READ_ALL_SQL, Checkpoint, EventStore, NewEvent


def ev(kind: str = "Happened", **data: object) -> NewEvent:
    return NewEvent(type=kind, data=dict(data), metadata={"community_id": "c1"})


async def test_append_and_read_stream(pool: asyncpg.Pool) -> None:
    store = EventStore(pool)
    recorded = await store.append("thing-1", [ev(n=1), ev(n=2)], NO_STREAM)
    assert [e.stream_version for e in recorded] == [1, 2]
    await store.append("thing-1", [ev(n=3)], 2)
    events = await store.read_stream("thing-1")
    assert [e.data["n"] for e in events] == [1, 2, 3]
    assert events[0].metadata["community_id"] == "c1"
    assert await store.stream_version("thing-1") == 3


async def test_wrong_expected_version_is_a_typed_conflict(pool: asyncpg.Pool) -> None:
    store = EventStore(pool)
    await store.append("thing-2", [ev()], NO_STREAM)
    with pytest.raises(ConcurrencyConflict) as raised:
        await store.append("thing-2", [ev()], NO_STREAM)
    assert (raised.value.expected, raised.value.actual, raised.value.status) == (0, 1, 409)
    assert await store.stream_version("thing-2") == 1


async def test_twenty_concurrent_appenders_one_winner_per_version(pool: asyncpg.Pool) -> None:
    store = EventStore(pool)
    outcomes: list[str] = []

    async def writer(i: int) -> None:
        try:
            await store.append("race-1", [ev(writer=i)], NO_STREAM)
            outcomes.append("won")
        except ConcurrencyConflict:
            outcomes.append("conflict")

    await asyncio.gather(*(writer(i) for i in range(20)))
    assert outcomes.count("won") == 1 and outcomes.count("conflict") == 19

    # Now 20 writers each retrying until they land: versions 2..21, no gap, no duplicate.
    async def persistent(i: int) -> None:
        while True:
            version = await store.stream_version("race-1")
            try:
                await store.append("race-1", [ev(writer=i)], version)
                return
            except ConcurrencyConflict:
                await asyncio.sleep(0)

    await asyncio.gather(*(persistent(i) for i in range(20)))
    versions = [e.stream_version for e in await store.read_stream("race-1")]
    assert versions == list(range(1, 22))


async def test_reappending_the_same_event_ids_is_idempotent(pool: asyncpg.Pool) -> None:
    store = EventStore(pool)
    batch = [ev(n=1), ev(n=2)]
    first = await store.append("idem-1", batch, NO_STREAM)
    again = await store.append("idem-1", batch, NO_STREAM)  # a retried request: same ids
    assert [e.event_id for e in again] == [e.event_id for e in first]
    assert await store.stream_version("idem-1") == 2
    with pytest.raises(Conflict):
        await store.append("idem-1", [batch[0], ev(n=3)], ANY_VERSION)  # half-known batch is refused
    assert await store.count() == 2


async def test_retried_appends_and_reused_ids_at_any_version(pool: asyncpg.Pool) -> None:
    store = EventStore(pool)
    batch = [ev(n=1), ev(n=2)]
    first = await store.append("retry-1", batch)
    again = await store.append("retry-1", batch)  # no version check: still recognised as the same append
    assert [(e.event_id, e.stream_version, e.data) for e in again] == \
        [(e.event_id, e.stream_version, e.data) for e in first]
    with pytest.raises(Conflict) as refused:  # the same ids under another stream
        await store.append("retry-2", batch, NO_STREAM)
    assert set(refused.value.extensions["event_ids"]) == {str(e.event_id) for e in batch}
    with pytest.raises(Conflict):
        await store.append("retry-2", [ev(n=9), batch[1]])  # one new, one stored: nothing of it is kept
    with pytest.raises(ConcurrencyConflict):
        await store.append("retry-1", [ev(n=3)], 1)  # new ids, wrong version
    assert await store.count() == 2 and await store.stream_version("retry-2") == 0


async def test_read_category_and_read_all(pool: asyncpg.Pool) -> None:
    store = EventStore(pool)
    await store.append("alpha-1", [ev(n=1)])
    await store.append("beta-1", [ev(n=2)])
    await store.append("alpha-2", [ev(n=3)])
    assert [e.data["n"] for e in await store.read_category("alpha")] == [1, 3]
    everything = await store.read_all(Checkpoint())
    assert [e.data["n"] for e in everything] == [1, 2, 3]
    last = everything[1]
    rest = await store.read_all(Checkpoint(last.transaction_id, last.global_position))
    assert [e.data["n"] for e in rest] == [3]


async def test_a_late_commit_is_never_skipped(pool: asyncpg.Pool, database_url: str) -> None:
    """Transaction A takes a position, B takes a later one and commits first. A reader must not
    move past A's row: it sees nothing until A commits, then A and B in commit order."""
    store = EventStore(pool)
    slow = await asyncpg.connect(database_url)
    try:
        tx = slow.transaction()
        await tx.start()
        await store.append("slow-1", [ev(n="early")], connection=slow)  # position taken, not committed
        await store.append("fast-1", [ev(n="late")])  # later position, committed first

        visible = await store.read_all(Checkpoint())
        assert [e.data["n"] for e in visible] == [], "a reader must wait for the older transaction"

        await tx.commit()
        visible = await store.read_all(Checkpoint())
        assert [e.data["n"] for e in visible] == ["early", "late"]
        assert visible[0].global_position < visible[1].global_position
    finally:
        await slow.close()


async def test_no_event_skipped_under_concurrent_writers(pool: asyncpg.Pool) -> None:
    """Many writers on many streams while a reader follows read_all with its checkpoint."""
    store = EventStore(pool)
    total_streams, per_stream = 40, 25
    seen: list[uuid.UUID] = []
    done = asyncio.Event()

    async def reader() -> None:
        checkpoint = Checkpoint()
        while True:
            batch = await store.read_all(checkpoint, 200)
            if batch:
                seen.extend(e.event_id for e in batch)
                checkpoint = Checkpoint(batch[-1].transaction_id, batch[-1].global_position)
            elif done.is_set():
                return
            else:
                await asyncio.sleep(0.005)

    async def writer(stream: int) -> None:
        for n in range(per_stream):
            await store.append(f"load-{stream}", [ev(n=n)], n)
            if n % 5 == 0:
                await asyncio.sleep(0)

    reading = asyncio.create_task(reader())
    await asyncio.gather(*(writer(s) for s in range(total_streams)))
    done.set()
    await reading
    assert len(seen) == total_streams * per_stream
    assert len(set(seen)) == len(seen)


async def test_inline_projection_commits_with_the_append(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute("CREATE TABLE counted (stream_id text PRIMARY KEY, n int)")

    async def project(conn: asyncpg.Connection, event: object) -> None:
        if event.data.get("boom"):  # type: ignore[attr-defined]
            raise RuntimeError("projection failed")
        await conn.execute(
            "INSERT INTO counted VALUES ($1, 1) ON CONFLICT (stream_id) DO UPDATE SET n = counted.n + 1",
            event.stream_id,  # type: ignore[attr-defined]
        )

    store = EventStore(pool, [project])
    await store.append("p-1", [ev(), ev()])
    with pytest.raises(RuntimeError):
        await store.append("p-1", [ev(boom=True)])
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT n FROM counted WHERE stream_id = 'p-1'") == 2
    assert await store.stream_version("p-1") == 2  # the failed append left nothing behind


async def test_read_all_follows_the_commit_order_index_without_sorting(pool: asyncpg.Pool) -> None:
    """A read must cost its batch, not the events after the checkpoint: no sort of what follows it."""
    store = EventStore(pool)
    for n in range(50):
        await store.append(f"plan-{n % 5}", [ev(n=n)])
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {READ_ALL_SQL}", "0", 0, 10))
    assert "events_commit_order" in plan and "Sort" not in plan, plan

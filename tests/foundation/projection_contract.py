"""The contract every bus-fed read model keeps: it converges under any delivery order.

A subclass names one ``Subscription`` (the projection's real handler), the migrations of its service, the
read-model tables it writes and a history: events of several source streams, each stream in version order,
as the writing service recorded them. Hypothesis then draws a delivery schedule — the history shuffled, some
events delivered twice, some nak'ed (handed back later), cut into batches that two replicas apply at the
same time on their own connections — and drives it through the consumer's own rule
(``kizuna.consumer.apply_in_order``, in batches with the one-at-a-time fallback and the held-back retries,
as ``InboxConsumer`` does) against real PostgreSQL. Afterwards every read-model table must equal what a
fresh replay of the history in order wrote.

``KIZUNA_PROPERTY_EXAMPLES`` sets the examples per projection (modest by default, large in ``make soak``).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kizuna.consumer import Subscription, apply_in_order
from kizuna.envelope import Envelope
from kizuna.ordering import NotYetApplicable
from kizuna.service import Migration, migrate

EXAMPLES = max(int(os.environ.get("KIZUNA_PROPERTY_EXAMPLES", "60")) // 4, 10)
CONTRACT = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
START = datetime(2031, 4, 1, 9, 0, tzinfo=UTC)


class History:
    """Builds a history: events appended to named streams, each stream's versions counted from 1."""

    def __init__(self) -> None:
        self.events: list[Envelope] = []
        self._versions: dict[tuple[str, str], int] = {}

    def add(self, service: str, stream_id: str, community_id: str, event_type: str, **data: Any) -> None:
        version = self._versions.get((service, stream_id), 0) + 1
        self._versions[(service, stream_id)] = version
        self.events.append(Envelope(
            id=uuid.uuid4(), source=f"kizuna/{service}", type=event_type, subject=stream_id,
            time=START + timedelta(minutes=len(self.events)), community_id=community_id, stream_version=version,
            data={"community_id": community_id, **data}))


@dataclass(frozen=True)
class Delivery:
    event: int  # position in the history
    replica: int  # which of the two consumers fetches it
    nak: bool  # handed back (as after a failure or a nak with delay) and delivered again at the end
    batch_end: bool  # the replica's current fetch ends after it


def schedules(size: int) -> st.SearchStrategy[list[Delivery]]:
    """Every event at least once, some twice, in any order, each delivery to either replica."""
    return st.lists(st.integers(0, size - 1), max_size=size // 2).flatmap(
        lambda extra: st.permutations([*range(size), *extra])).flatmap(
        lambda order: st.lists(st.tuples(st.integers(0, 1), st.booleans(), st.integers(0, 3)),
                               min_size=len(order), max_size=len(order)).map(
            lambda picks: [Delivery(event, replica, nak and n == 0, n <= 1)
                           for event, (replica, nak, n) in zip(order, picks, strict=True)]))


class ProjectionContract:
    """Subclass with the projection's ``subscription``, ``migrations``, ``tables`` and ``history()``."""

    subscription: ClassVar[Subscription]
    migrations: ClassVar[Sequence[Migration]]
    tables: ClassVar[Sequence[str]]
    # Columns that record arrival order by design (a cursor's seq), not part of what must converge.
    arrival_columns: ClassVar[frozenset[str]] = frozenset()

    def history(self) -> list[Envelope]:
        raise NotImplementedError

    @pytest.fixture
    def database(self, postgres: Any, unique: str) -> str:
        url: str = postgres.create_database(f"c_{unique}")

        async def prepare() -> None:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
            try:
                await migrate(pool, self.migrations)
            finally:
                await pool.close()
        asyncio.run(prepare())
        return url

    def test_converges_under_any_delivery_order(self, database: str) -> None:
        history = self.history()
        expected = asyncio.run(self._in_order(database, history))
        assert any(expected.values()), "the history should write something"

        @CONTRACT
        @given(schedule=schedules(len(history)))
        def converges(schedule: list[Delivery]) -> None:
            assert asyncio.run(self._scheduled(database, history, schedule)) == expected

        converges()

    # ---- driving the consumer's rule ----

    async def _in_order(self, url: str, history: list[Envelope]) -> dict[str, list[tuple[Any, ...]]]:
        async with _Database(url, self) as db:
            for envelope in history:
                async with db.pool.acquire() as conn, conn.transaction():
                    outcome = await apply_in_order(conn, self.subscription, [envelope])
                assert not outcome.early, "a history in order has nothing early"
            return await db.snapshot()

    async def _scheduled(self, url: str, history: list[Envelope],
                         schedule: list[Delivery]) -> dict[str, list[tuple[Any, ...]]]:
        async with _Database(url, self) as db:
            naked: list[Envelope] = []
            replicas = [_Replica(db.pool, self.subscription) for _ in range(2)]
            fetches: list[list[list[Envelope]]] = [[[]], [[]]]
            for delivery in schedule:
                if delivery.nak:
                    naked.append(history[delivery.event])
                    continue
                fetches[delivery.replica][-1].append(history[delivery.event])
                if delivery.batch_end:
                    fetches[delivery.replica].append([])
            await asyncio.gather(*(replica.consume(batches) for replica, batches in zip(replicas, fetches,
                                                                                          strict=True)))
            await replicas[0].consume([naked])
            for _ in range(len(history) + 2):  # each round applies at least the lowest held version
                if not any(replica.held for replica in replicas):
                    break
                for replica in replicas:
                    await replica.retry_held()
            assert not any(replica.held for replica in replicas), "held events never became due"
            return await db.snapshot()


class _Replica:
    """One consumer process: a fetched batch in one transaction, falling back to one at a time, early
    events held and tried again after each fetch (what ``InboxConsumer`` does with a JetStream fetch)."""

    def __init__(self, pool: asyncpg.Pool, subscription: Subscription) -> None:
        self.pool, self.subscription = pool, subscription
        self.held: list[Envelope] = []

    async def consume(self, batches: list[list[Envelope]]) -> None:
        for batch in batches:
            if batch and not (len(batch) > 1 and await self._together(batch)):
                for envelope in batch:
                    await self._one(envelope)
            await asyncio.sleep(0)  # the other replica's turn
            await self.retry_held()

    async def retry_held(self) -> None:
        held, self.held = self.held, []
        for envelope in held:
            await self._one(envelope)

    async def _together(self, batch: list[Envelope]) -> bool:
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                outcome = await apply_in_order(conn, self.subscription, batch)
        except (NotYetApplicable, asyncpg.DeadlockDetectedError):
            return False
        self.held += [batch[i] for i in outcome.early]
        return True

    async def _one(self, envelope: Envelope) -> None:
        for _ in range(5):  # a deadlock with the other replica: redelivered, as a nak would
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    outcome = await apply_in_order(conn, self.subscription, [envelope])
            except NotYetApplicable:
                self.held.append(envelope)
                return
            except asyncpg.DeadlockDetectedError:
                continue
            self.held += [envelope] if outcome.early else []
            return
        raise AssertionError("deadlocked five times in a row")


class _Database:
    """The contract's database with the projection's tables and versions emptied, on entering."""

    def __init__(self, url: str, contract: ProjectionContract) -> None:
        self.url, self.contract = url, contract

    async def __aenter__(self) -> _Database:
        self.pool = await asyncpg.create_pool(self.url, min_size=2, max_size=4)
        async with self.pool.acquire() as conn:
            await conn.execute(f"TRUNCATE {', '.join(self.contract.tables)}")
            await conn.execute("DELETE FROM applied_versions WHERE projection = $1", self.contract.subscription.name)
            await conn.execute("DELETE FROM inbox WHERE consumer = $1", self.contract.subscription.name)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.pool.close()

    async def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        tables: dict[str, list[tuple[Any, ...]]] = {}
        async with self.pool.acquire() as conn:
            for table in self.contract.tables:
                rows = await conn.fetch(f"SELECT * FROM {table}")
                tables[table] = sorted(tuple(repr(v) for k, v in row.items()
                                             if k not in self.contract.arrival_columns) for row in rows)
        return tables

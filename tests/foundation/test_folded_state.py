"""The remembered folded state notices a history that shrank or changed (issue 18, item 6): after a
failover to a replica that missed the last commits, or a restore from backup, a command is decided on
the stream as it is now — no endless 409s, no lost and new events folded together (real PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import asyncpg

from kizuna.domain import Aggregate, DomainEvent
from kizuna.eventstore import EventStore, NewEvent
from kizuna.handling import CommandContext, execute, load


class Counted(DomainEvent):
    label: str


class Tally(Aggregate):
    def __init__(self) -> None:
        self.labels: list[str] = []

    def count(self, label: str) -> Sequence[DomainEvent]:
        return [Counted(label=label)]

    def _on_Counted(self, event: Counted) -> None:
        self.labels.append(event.label)


def counting(label: str) -> Callable[[Tally], Sequence[DomainEvent]]:
    """The decision that counts ``label``, bound now rather than when a loop's lambda would run."""
    return lambda tally: tally.count(label)


async def lose_events_after(pool: asyncpg.Pool, stream_id: str, version: int) -> None:
    """What a restore from an older backup, or an asynchronous replica's promotion, leaves behind."""
    async with pool.acquire() as conn:
        await conn.execute("ALTER TABLE events DISABLE TRIGGER USER")
        await conn.execute("DELETE FROM events WHERE stream_id = $1 AND stream_version > $2", stream_id, version)
        await conn.execute("ALTER TABLE events ENABLE TRIGGER USER")


async def test_a_shorter_or_different_history_is_folded_afresh(pool: asyncpg.Pool) -> None:
    store = EventStore(pool)
    ctx = CommandContext(actor="operator")
    for label in ("a", "b", "c"):
        await execute(store, "tally-1", Tally, counting(label), ctx)
    assert (await load(store, "tally-1", Tally)).labels == ["a", "b", "c"]  # remembered at version 3

    await lose_events_after(pool, "tally-1", 1)
    # Decided on the history as it is: appended as version 2, not refused forever for expecting version 3.
    await execute(store, "tally-1", Tally, lambda t: t.count("d"), ctx)
    after = await load(store, "tally-1", Tally)
    assert after.labels == ["a", "d"] and after.version == 2

    # Same length, another history (written by another process): the remembered version-2 event is gone.
    await lose_events_after(pool, "tally-1", 1)
    await store.append("tally-1", [NewEvent("Counted", {"label": "e"}, {"actor": "operator"})], 1)
    assert (await load(store, "tally-1", Tally)).labels == ["a", "e"]

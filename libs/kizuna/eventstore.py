"""Append-only event store on PostgreSQL (asyncpg).

Ordering guarantee (the "skipped event" trap): a reader following ``global_position`` alone can
move past a row whose transaction commits late. Every row therefore records its writer's
transaction id, and ``read_all`` only returns rows whose transaction id is below the oldest
transaction still in flight (``pg_snapshot_xmin``), ordered by ``(transaction_id, position)``.
Writers to different streams never wait for each other.

Per-stream order: writers to one stream serialise on a transaction-scoped advisory lock taken
*before* the transaction writes anything, so the later writer's transaction id is always
higher — commit order, version order and read order agree within a stream.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg

from .errors import ConcurrencyConflict, Conflict
from .personal import reveal
from .telemetry import tracer
from .upcasting import upcast_recorded

if TYPE_CHECKING:  # the vault opens a pool the way services do (kizuna.service builds on this module)
    from .vault import KeyVault

ANY_VERSION = -1
NO_STREAM = 0


@dataclass(frozen=True)
class NewEvent:
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    event_id: uuid.UUID = field(default_factory=uuid.uuid4)
    schema_version: int = 1  # the shape of ``data`` (kizuna.upcasting); a DomainEvent's class declares it


@dataclass(frozen=True)
class RecordedEvent:
    global_position: int
    transaction_id: int
    stream_id: str
    stream_version: int
    event_id: uuid.UUID
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: datetime
    # The shape of ``data``: as stored for the relay, the current one wherever else the store is read.
    schema_version: int = 1

    @property
    def community_id(self) -> str | None:
        value = self.metadata.get("community_id")
        return str(value) if value else None

    @property
    def category(self) -> str:
        return self.stream_id.split("-", 1)[0]


@dataclass(frozen=True, order=True)
class Checkpoint:
    """A position in commit order: the last (transaction id, global position) a reader has taken."""

    transaction_id: int = 0
    global_position: int = 0


InlineProjection = Callable[[asyncpg.Connection, RecordedEvent], Awaitable[None]]

# The store whose inline projections are running (an append, or a rebuild's replay): a projection that folds a
# stream on its transaction's connection (``read_stream_on``) opens personal fields with that store's vault.
PROJECTING: contextvars.ContextVar[EventStore | None] = contextvars.ContextVar("kizuna_projecting", default=None)

_COLUMNS = ("global_position, transaction_id::text::bigint AS transaction_id, stream_id, stream_version, "
            "event_id, event_type, schema_version, data, metadata, recorded_at")


READ_ALL_SQL = f"""
SELECT {_COLUMNS} FROM events
 WHERE (transaction_id, global_position) > ($1::text::xid8, $2)
   AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
 ORDER BY events.transaction_id, events.global_position
 LIMIT $3
"""  # noqa: S608 - the column list is a module constant


def _row_to_event(row: asyncpg.Record, stream_id: str | None = None) -> RecordedEvent:
    return RecordedEvent(
        global_position=row["global_position"],
        transaction_id=row["transaction_id"],
        stream_id=stream_id or row["stream_id"],
        stream_version=row["stream_version"],
        event_id=row["event_id"],
        type=row["event_type"],
        data=json.loads(row["data"]),
        metadata=json.loads(row["metadata"]),
        recorded_at=row["recorded_at"],
        schema_version=row["schema_version"],
    )


def _recorded(row: asyncpg.Record, stream_id: str, sent: dict[uuid.UUID, NewEvent]) -> RecordedEvent:
    """A row of ``kizuna_append``: new events come back as what the database assigned only (the data is
    what was sent: JSON-ready values, as ``DomainEvent.payload`` gives); a retried append's stored
    events come back whole."""
    if row["data"] is not None:
        return _row_to_event(row, stream_id)
    event = sent[row["event_id"]]
    return RecordedEvent(global_position=row["global_position"], transaction_id=row["transaction_id"],
                         stream_id=stream_id, stream_version=row["stream_version"], event_id=row["event_id"],
                         type=event.type, data=event.data, metadata=event.metadata, recorded_at=row["recorded_at"],
                         schema_version=event.schema_version)


def schema_sql() -> str:
    return (Path(__file__).parent / "schema.sql").read_text()


def append_function_sql(version: str = "") -> str:
    """The ``kizuna_append`` function: the current one, or as migration ``version`` shipped it."""
    return (Path(__file__).parent / (f"append_{version}.sql" if version else "append.sql")).read_text()


class EventStore:
    """One service's event store. ``inline_projections`` run inside each append's transaction.

    With a ``vault``, personal fields (``kizuna.personal``) are sealed before they are stored and opened on every
    read; without one (tests of the store itself), events are stored as given and sealed fields read as erased."""

    def __init__(self, pool: asyncpg.Pool, inline_projections: Sequence[InlineProjection] = (), *,
                 vault: KeyVault | None = None) -> None:
        self.pool = pool
        self.vault = vault
        self.inline_projections = list(inline_projections)
        self._commit_listeners: list[Callable[[], None]] = []
        self._notify_wanted = False
        self._notifier: asyncio.Task[None] | None = None

    def add_commit_listener(self, listener: Callable[[], None]) -> None:
        """Called after each append this store commits (the active relay of this process listens)."""
        self._commit_listeners.append(listener)

    def remove_commit_listener(self, listener: Callable[[], None]) -> None:
        if listener in self._commit_listeners:
            self._commit_listeners.remove(listener)

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected_version: int = ANY_VERSION,
        *,
        connection: asyncpg.Connection | None = None,
    ) -> list[RecordedEvent]:
        """Append ``events`` atomically; raises ConcurrencyConflict if the stream is not at
        ``expected_version`` (``NO_STREAM`` = must not exist, ``ANY_VERSION`` = no check).
        Re-appending events whose ids are already stored returns the stored events unchanged."""
        if not events:
            return []
        with tracer().start_as_current_span("eventstore.append") as span:
            span.set_attribute("kizuna.stream_id", stream_id)
            span.set_attribute("kizuna.event_count", len(events))
            if connection is not None:  # the caller commits: notify from inside its transaction
                async with connection.transaction():
                    return await self._append(connection, stream_id, events, expected_version, notify=True)
            async with self.pool.acquire() as conn:
                if self.inline_projections:
                    async with conn.transaction():
                        recorded = await self._append(conn, stream_id, events, expected_version)
                else:  # one statement is its own transaction: no BEGIN/COMMIT round trips
                    recorded = await self._append(conn, stream_id, events, expected_version)
            self._after_commit()
            return recorded

    def _after_commit(self) -> None:
        """Wake the relay. In this process directly; otherwise by a NOTIFY sent after the commit,
        coalesced (one in flight, requests meanwhile folded into the next), because PostgreSQL
        commits notifying transactions one at a time — a NOTIFY in each append serialised all writers.
        Relays also poll, so a lost wake-up costs latency, never an event."""
        if self._commit_listeners:
            for listener in self._commit_listeners:
                listener()
            return
        self._notify_wanted = True
        if self._notifier is None or self._notifier.done():
            self._notifier = asyncio.get_running_loop().create_task(self._notify_relays())

    async def _notify_relays(self) -> None:
        while self._notify_wanted:
            self._notify_wanted = False
            try:
                async with self.pool.acquire() as conn:
                    await conn.execute("SELECT pg_notify('kizuna_events', '')")
            except Exception:  # pool closing or database away: the relay's poll covers it
                return

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[asyncpg.Connection]:
        """One transaction for several appends (and read-model writes) that must land together."""
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn

    async def _append(
        self, conn: asyncpg.Connection, stream_id: str, events: Sequence[NewEvent], expected_version: int,
        *, notify: bool = False,
    ) -> list[RecordedEvent]:
        # One statement (libs/kizuna/append.sql): the advisory lock is taken before the append writes
        # anything, so an append that is its transaction's first write gets its transaction id after the
        # previous writer of this stream committed (see module docstring). One inside a transaction that
        # wrote earlier, with an id older than that writer's, is refused with SQLSTATE 40001
        # (asyncpg.SerializationError): the caller runs its transaction again.
        stored = [event.data for event in events]
        if self.vault is not None:  # the plaintext never reaches the events table, nor the bus after it
            stored = await self.vault.seal_all([(event.type, event.data) for event in events])
        try:
            rows = await conn.fetch(
                "SELECT * FROM kizuna_append($1, $2, $3::uuid[], $4::text[], $5::int[], $6::text[], $7::text[], $8)",
                stream_id, expected_version, [event.event_id for event in events], [event.type for event in events],
                [event.schema_version for event in events],
                [json.dumps(data) for data in stored], [json.dumps(event.metadata) for event in events],
                notify,
            )
        except asyncpg.PostgresError as error:
            if error.sqlstate == "KZ409":
                raise ConcurrencyConflict(stream_id, expected_version, int(error.detail or 0)) from error
            if error.sqlstate == "KZ410":
                raise Conflict(
                    "some of these event ids are already stored in another append",
                    slug="duplicate-event", event_ids=(error.detail or "").split(","),
                ) from error
            raise
        sent = {event.event_id: event for event in events}
        # A retried append returns the stored events, which may be older than this code writes.
        recorded = sorted(await self.readable([_recorded(row, stream_id, sent) for row in rows]),
                          key=lambda event: event.stream_version)
        token = PROJECTING.set(self)
        try:
            for event in recorded:
                for project in self.inline_projections:
                    await project(conn, event)
        finally:
            PROJECTING.reset(token)
        return recorded

    async def read_stream(self, stream_id: str, from_version: int = 1) -> list[RecordedEvent]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM events WHERE stream_id = $1 AND stream_version >= $2 "  # noqa: S608 - the column list is a module constant
                "ORDER BY stream_version",
                stream_id, from_version,
            )
        return await self.readable([_row_to_event(row) for row in rows])

    async def read_events(self, stream_id: str, event_ids: Sequence[uuid.UUID], *,
                          connection: asyncpg.Connection | None = None) -> list[RecordedEvent]:
        """Those of ``event_ids`` stored in ``stream_id``, in stream order (how a retried command finds
        what an earlier attempt appended; one index lookup per id)."""
        query = (f"SELECT {_COLUMNS} FROM events WHERE event_id = ANY($1::uuid[]) AND stream_id = $2 "  # noqa: S608 - the column list is a module constant
                 "ORDER BY stream_version")
        if connection is not None:
            rows = await connection.fetch(query, list(event_ids), stream_id)
        else:
            async with self.pool.acquire() as conn:
                rows = await conn.fetch(query, list(event_ids), stream_id)
        return await self.readable([_row_to_event(row) for row in rows])

    async def stream_version(self, stream_id: str) -> int:
        async with self.pool.acquire() as conn:
            return int(await conn.fetchval("SELECT max(stream_version) FROM events WHERE stream_id = $1",
                                            stream_id) or 0)

    async def read_category(self, category: str, after_position: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM events WHERE split_part(stream_id, '-', 1) = $1 "  # noqa: S608 - the column list is a module constant
                "AND global_position > $2 ORDER BY global_position LIMIT $3",
                category, after_position, limit,
            )
        return await self.readable([_row_to_event(row) for row in rows])

    async def read_all(self, after: Checkpoint = Checkpoint(), limit: int = 1000, *,
                       as_stored: bool = False) -> list[RecordedEvent]:
        """Committed events after ``after`` in commit order, never skipping a late commit; upcast to their
        current versions unless ``as_stored`` (the relay publishes what is stored, understood or not).

        ORDER BY names the table's columns: a bare ``transaction_id`` there means the selected bigint
        alias, which no index is ordered by, so every read sorted all the events after the checkpoint
        (a replay of 1,000,000 events read at 15k events/s, slowest at the start)."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(READ_ALL_SQL, str(after.transaction_id), after.global_position, limit)
        events = [_row_to_event(row) for row in rows]
        return events if as_stored else await self.readable(events)

    async def readable(self, events: list[RecordedEvent]) -> list[RecordedEvent]:
        """Stored events as code reads them: personal fields opened (their placeholders where the subject was
        erased), then upcast to their current versions."""
        if self.vault is not None:
            opened = await self.vault.reveal_all([event.data for event in events])
        else:
            opened = [reveal(event.data, {}) for event in events]
        return [upcast_recorded(event if data is event.data else dataclasses.replace(event, data=data))
                for event, data in zip(events, opened, strict=True)]

    async def count(self) -> int:
        async with self.pool.acquire() as conn:
            return int(await conn.fetchval("SELECT count(*) FROM events"))

    async def load_checkpoint(self, name: str) -> Checkpoint:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT transaction_id::text::bigint AS t, global_position AS p FROM checkpoints WHERE name = $1",
                name,
            )
        return Checkpoint(row["t"], row["p"]) if row else Checkpoint()

    async def save_checkpoint(self, name: str, checkpoint: Checkpoint) -> None:
        """Moves the checkpoint forward, never back: a writer that lost its lock cannot undo progress."""
        async with self.pool.acquire() as conn:
            await conn.execute(
                """
                INSERT INTO checkpoints (name, transaction_id, global_position) VALUES ($1, $2::text::xid8, $3)
                ON CONFLICT (name) DO UPDATE SET transaction_id = EXCLUDED.transaction_id,
                       global_position = EXCLUDED.global_position, updated_at = now()
                 WHERE (checkpoints.transaction_id, checkpoints.global_position)
                     < (EXCLUDED.transaction_id, EXCLUDED.global_position)
                """,
                name, str(checkpoint.transaction_id), checkpoint.global_position,
            )


def new_events(items: Iterable[tuple[str, dict[str, Any]]], metadata: dict[str, Any]) -> list[NewEvent]:
    return [NewEvent(type=kind, data=data, metadata=dict(metadata)) for kind, data in items]


async def read_stream_on(conn: asyncpg.Connection, stream_id: str) -> list[RecordedEvent]:
    """A stream's events read on ``conn`` (an inline projection's transaction, which sees the append being
    projected), opened and upcast as the store's reads are."""
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM events WHERE stream_id = $1 ORDER BY stream_version",  # noqa: S608 - the column list is a module constant
                            stream_id)
    store = PROJECTING.get()
    events = [_row_to_event(row) for row in rows]
    if store is not None:
        return await store.readable(events)
    return [upcast_recorded(dataclasses.replace(event, data=reveal(event.data, {}))) for event in events]

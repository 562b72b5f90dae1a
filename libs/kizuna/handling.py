"""The one way a command becomes events: load the aggregate, decide, append with its version.

Commands without a caller-supplied version retry on a concurrency conflict — the decision is
simply made again on fresh state, so an invariant such as the member cap is checked against
every concurrent writer. A caller who sent ``If-Match`` gets the 409 instead.

Within one process, commands on the same stream take turns (an asyncio lock per stream): fifty
concurrent joins to one community then cost fifty appends, not a spiral of conflicts and
re-reads of the stream. Across processes (replicas), and inside a caller's wider transaction,
the optimistic check alone decides.

A request carrying an ``Idempotency-Key`` gets ids derived from it: the aggregates it creates
(``CommandContext.new_id``) and the events it appends (``CommandContext.event_ids``). A retry of a
write that committed — after a 5xx, a timeout, a crash before the answer — then names the very same
events, and ``execute`` recognises them as stored and answers with them instead of deciding again
against a state that already contains them (which would be a 409 "already exists" or a duplicate).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import random
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
from fastapi import Request

from .auth import Principal
from .domain import Aggregate, DomainEvent
from .errors import ConcurrencyConflict, Invalid, NotFound
from .eventstore import EventStore, NewEvent, RecordedEvent
from .telemetry import current_trace_headers

log = logging.getLogger("kizuna.handling")

A = TypeVar("A", bound=Aggregate)
T = TypeVar("T")
# PostgreSQL refuses a transaction to keep a stream's events in order (kizuna_append, SQLSTATE 40001) or
# to break a deadlock between two multi-stream writers (40P01): run it again, in a new transaction.
REFUSED_TRANSACTIONS = (asyncpg.SerializationError, asyncpg.DeadlockDetectedError)
TRANSACTION_ATTEMPTS = 20
MAX_RETRIES = 100
# The namespace of every id derived from an idempotency key (uuid5): fixed forever, or retries of
# writes made before a change would no longer be recognised.
IDEMPOTENT_IDS = uuid.UUID("5b0f3c1e-8a52-4d59-9a1e-6f4c2b7d9e10")
# A retry looks for at most this many stored events of one append (no decision here emits more).
MAX_EVENTS_PER_APPEND = 64
_turns: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()


def _turn(stream_id: str) -> asyncio.Lock:
    lock = _turns.get(stream_id)
    if lock is None:
        lock = _turns[stream_id] = asyncio.Lock()
    return lock


@dataclass(frozen=True)
class CommandContext:
    """Who acts and why: becomes every resulting event's metadata."""

    actor: str
    community_id: str | None = None
    correlation_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    causation_id: str | None = None
    expected_version: int | None = None
    idempotency_key: str | None = None
    # How many appends this command has made to each stream so far: the n-th append to a stream gets
    # the same event ids on every retry of the request (the handler's path is deterministic).
    _appends: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def _derived(self, *parts: str) -> uuid.UUID:
        if self.idempotency_key is None:  # an invariant, kept under python -O too
            raise RuntimeError("self.idempotency_key is missing: an invariant of this code was broken")
        return uuid.uuid5(IDEMPOTENT_IDS, "\x1f".join((self.actor, self.community_id or "", self.idempotency_key,
                                                         *parts)))

    def new_id(self, purpose: str) -> str:
        """The id of an aggregate this command creates (``purpose``: "job", "owner", …): the same on every
        retry with the same idempotency key by the same actor in the same community, else random."""
        if self.idempotency_key is None:
            return str(uuid.uuid4())
        return str(self._derived("id", purpose))

    def next_append(self, stream_id: str) -> int:
        """Numbers this command's appends to ``stream_id`` (0, 1, …) for ``event_ids``."""
        number = self._appends.get(stream_id, 0)
        self._appends[stream_id] = number + 1
        return number

    def event_ids(self, stream_id: str, append_number: int, count: int) -> list[uuid.UUID] | None:
        """The ids of the events of this command's ``append_number``-th append to ``stream_id``; None
        (random ids) without an idempotency key."""
        if self.idempotency_key is None:
            return None
        return [self._derived("event", stream_id, str(append_number), str(index)) for index in range(count)]

    def new_events(self, stream_id: str, events: Sequence[DomainEvent],
                   community_id: str | None = None) -> list[NewEvent]:
        """``events`` ready for a direct ``store.append`` to ``stream_id`` (outside ``execute``), ids derived
        from the idempotency key when there is one, so a retried append returns what is stored."""
        ids = self.event_ids(stream_id, self.next_append(stream_id), len(events))
        return to_new_events(events, self.metadata(community_id), ids)

    def metadata(self, community_id: str | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {"actor": self.actor, "correlation_id": self.correlation_id,
                                "community_id": community_id or self.community_id}
        if self.causation_id:
            meta["causation_id"] = self.causation_id
        meta.update(current_trace_headers())
        return meta

    @classmethod
    def from_request(cls, request: Request, who: Principal, community_id: str | None = None) -> CommandContext:
        if_match = request.headers.get("if-match")
        expected = None
        if if_match:
            try:
                expected = int(if_match.strip('"W/'))
            except ValueError as error:
                raise Invalid("If-Match", "must be the resource version as a number, e.g. \"3\"") from error
        key = request.headers.get("idempotency-key") or None
        # Every visitor acts as the same "member:visitor": ids derived from a visitor's key would let one
        # visitor's request pass for another's retry, so theirs stay random.
        return cls(actor=who.actor, community_id=community_id,
                   correlation_id=request.headers.get("x-correlation-id") or str(uuid.uuid4()),
                   causation_id=request.headers.get("idempotency-key"), expected_version=expected,
                   idempotency_key=None if who.scope == "visitor" else key)


def to_new_events(events: Sequence[DomainEvent], metadata: dict[str, Any],
                  ids: Sequence[uuid.UUID] | None = None) -> list[NewEvent]:
    if ids is None:
        return [NewEvent(type=e.event_type(), data=e.payload(), metadata=dict(metadata),
                         schema_version=e.schema_version) for e in events]
    return [NewEvent(type=e.event_type(), data=e.payload(), metadata=dict(metadata), event_id=event_id,
                     schema_version=e.schema_version)
            for e, event_id in zip(events, ids, strict=True)]


class _Folded:
    """The last folded state of recently used streams, per event store: a command reads only the events
    appended since (by any process) instead of the whole stream. Streams are append-only with gapless
    versions, so a state at version v plus the events after v is the state now — as long as the stream
    still holds the very event v the state was folded up to. After a failover to a replica that had not
    received the last commits, or a restore from a backup, it may not: ``load`` checks the event id of
    version v and folds afresh when it is gone or different (tests/foundation/test_handling_ids.py)."""

    def __init__(self, size: int = 2048) -> None:
        self.size = size
        self.states: weakref.WeakKeyDictionary[EventStore, OrderedDict[tuple[str, type], tuple[Aggregate, Any]]] = \
            weakref.WeakKeyDictionary()

    def get(self, store: EventStore, stream_id: str, aggregate: type[A]) -> tuple[A, Any] | None:
        """A private copy of the remembered state (deciding must never touch it) and its last event's id."""
        states = self.states.get(store)
        kept = states.get((stream_id, aggregate)) if states is not None else None
        if kept is None:
            return None
        states.move_to_end((stream_id, aggregate))  # type: ignore[union-attr]
        return copy.deepcopy(kept[0]), kept[1]  # type: ignore[return-value]

    def put(self, store: EventStore, stream_id: str, state: Aggregate, last_event_id: Any) -> None:
        states = self.states.setdefault(store, OrderedDict())
        states[(stream_id, type(state))] = (copy.deepcopy(state), last_event_id)
        states.move_to_end((stream_id, type(state)))
        while len(states) > self.size:
            states.popitem(last=False)

    def forget(self, store: EventStore, stream_id: str, aggregate: type) -> None:
        states = self.states.get(store)
        if states is not None:
            states.pop((stream_id, aggregate), None)


_folded = _Folded()


async def load(store: EventStore, stream_id: str, aggregate: type[A]) -> A:
    kept = _folded.get(store, stream_id, aggregate)
    if kept is None:
        state, recorded = aggregate(), await store.read_stream(stream_id, from_version=1)
    else:
        state, last_event_id = kept
        recorded = await store.read_stream(stream_id, from_version=state.version)
        if not recorded or recorded[0].stream_version != state.version or recorded[0].event_id != last_event_id:
            # The history is shorter, or another history: the remembered state belongs to neither.
            log.warning("stream history changed under the remembered state; folding it afresh",
                        extra={"stream_id": stream_id, "remembered_version": state.version})
            _folded.forget(store, stream_id, aggregate)
            state, recorded = aggregate(), await store.read_stream(stream_id, from_version=1)
        else:
            recorded = recorded[1:]
    for event in recorded:
        decoded = DomainEvent.decode(event.type, event.data, aggregate.__module__, version=event.schema_version)
        if decoded is not None:
            state.apply(decoded)
        state.version = event.stream_version
    if recorded:
        _folded.put(store, stream_id, state, recorded[-1].event_id)
    return state


async def _state_at(store: EventStore, stream_id: str, aggregate: type[A], version: int) -> A:
    """The aggregate as it was right after ``version`` (what a replayed command answers with)."""
    state = aggregate()
    for event in await store.read_stream(stream_id):
        if event.stream_version > version:
            break
        decoded = DomainEvent.decode(event.type, event.data, aggregate.__module__, version=event.schema_version)
        if decoded is not None:
            state.apply(decoded)
        state.version = event.stream_version
    return state


async def load_existing(store: EventStore, stream_id: str, aggregate: type[A], what: str) -> A:
    state = await load(store, stream_id, aggregate)
    if state.version == 0:
        raise NotFound(f"{what} not found")
    return state


async def execute(
    store: EventStore,
    stream_id: str,
    aggregate: type[A],
    decide: Callable[[A], Sequence[DomainEvent]],
    ctx: CommandContext,
    *,
    community_id: str | None = None,
    connection: asyncpg.Connection | None = None,
) -> tuple[A, list[RecordedEvent]]:
    """Decide on fresh state and append; returns the new state and what was recorded."""
    # Inside a caller's wider transaction (a reaction, a unit of work) the stream's database lock may
    # already be held past this call; taking turns there too could wait on ourselves.
    async with contextlib.nullcontext() if connection is not None else _turn(stream_id):
        return await _retrying(store, stream_id, aggregate, decide, ctx, community_id, connection)


async def _retrying(store: EventStore, stream_id: str, aggregate: type[A], decide: Callable[[A], Sequence[DomainEvent]],
                    ctx: CommandContext, community_id: str | None,
                    connection: asyncpg.Connection | None) -> tuple[A, list[RecordedEvent]]:
    append_number = ctx.next_append(stream_id)  # once per command, not per attempt
    for attempt in range(MAX_RETRIES):
        state = await load(store, stream_id, aggregate)
        # After loading: events stored before the load are found here; any stored later were not in the
        # state decided on, so the append below meets its own ids and the store returns them.
        stored = await _stored_by_earlier_attempt(store, stream_id, ctx, append_number, connection)
        if stored:
            return await _state_at(store, stream_id, aggregate, stored[-1].stream_version), stored
        if ctx.expected_version is not None and state.version != ctx.expected_version:
            raise ConcurrencyConflict(stream_id, ctx.expected_version, state.version)
        events = list(decide(state))
        if not events:
            return state, []
        ids = ctx.event_ids(stream_id, append_number, len(events))
        try:
            recorded = await store.append(stream_id, to_new_events(events, ctx.metadata(community_id), ids),
                                          state.version, connection=connection)
        except ConcurrencyConflict:
            if ctx.expected_version is not None:
                raise
            await asyncio.sleep(random.uniform(0, 0.002 * min(attempt + 1, 10)))  # noqa: S311 - jitter, not a secret
            continue
        if ids is not None and [r.stream_version for r in recorded] != list(
                range(state.version + 1, state.version + 1 + len(events))):
            # A concurrent attempt of this same request stored its events after our load (the store
            # returned those): answer as it did.
            return await _state_at(store, stream_id, aggregate, recorded[-1].stream_version), recorded
        for event in events:
            state.apply(event)
            state.version += 1
        return state, recorded
    raise ConcurrencyConflict(stream_id, state.version, -1)


async def _stored_by_earlier_attempt(store: EventStore, stream_id: str, ctx: CommandContext, append_number: int,
                                     connection: asyncpg.Connection | None) -> list[RecordedEvent]:
    """The events an earlier attempt of this request (same idempotency key) stored for this append."""
    ids = ctx.event_ids(stream_id, append_number, MAX_EVENTS_PER_APPEND)
    if ids is None:
        return []
    return await store.read_events(stream_id, ids, connection=connection)


async def run_again_if_refused(transaction: Callable[[], Awaitable[T]]) -> T:
    """Runs ``transaction`` (which opens and commits its own) again while PostgreSQL refuses it to keep
    order or break a deadlock; every attempt starts afresh, so nothing of a refused one remains."""
    for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
        try:
            return await transaction()
        except REFUSED_TRANSACTIONS:
            if attempt == TRANSACTION_ATTEMPTS:
                raise
            await asyncio.sleep(random.uniform(0, 0.01 * attempt))  # noqa: S311 - jitter, not a secret
    raise AssertionError("unreachable")

"""Idempotent JetStream consumers (the inbox pattern).

Each projection that follows the bus has a durable pull consumer. A message's effect and its
inbox row commit in one transaction, so a redelivery finds the row and changes nothing. After
``max_deliver`` failed attempts the message goes to the dead-letter subject with the error and is
terminated, so one poison message never blocks the stream.

When a fetch returns several messages, a projection applies them in one transaction (one inbox
insert, runs of one statement sent together) and acknowledges them after it commits; if anything in
the batch fails, it is rolled back whole and the messages go one at a time, each with its own retries.
Reactions (which append to aggregates) always go one at a time.

A subscription that follows whole services applies each source stream in version order, exactly once, however
many replicas share its durable consumer (``kizuna.ordering``): an event that arrives before an earlier one of
its stream is held here (not nak'ed: a nak would count towards ``max_deliver`` and dead-letter an event whose
only fault was arriving early), kept from redelivery with ``in_progress``, and tried again after each fetch
until the earlier one is applied (by this replica or another). Only when ``order_wait`` is over *and*
JetStream has settled every message before it for this durable (its ack floor has reached it) are its missing
predecessors taken as lost, and it is applied anyway: until then they may still be on their way — held by a
replica cut off from NATS, or coming back after ``ack_wait`` — and a clock alone cannot tell (a NATS outage
once made every replica skip gaps whose events arrived seconds later, losing them from the read model). After
``GIVE_UP_AFTER`` times ``order_wait`` it is applied anyway whatever the floor says.

Every envelope is upcast to the current version of its type before a handler sees it (``kizuna.upcasting``).
One *newer* than this code knows — published by a newer replica during a rolling upgrade — is held the same
way, for as long as this process runs: it is never applied, nak'ed or dead-lettered here, so it counts
towards nothing; a replica that knows its version takes it once this one stops (docs/architecture.md,
"Changing an event"). Its stream's later events wait behind it, as behind any early event.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

import asyncpg
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry import trace

from .bus import dead_letter_subject
from .envelope import Envelope
from .grouped import GroupedWrites
from .handling import run_again_if_refused
from .ordering import NotYetApplicable, StreamVersions, follows_whole_streams, is_versioned, plan, stream_key
from .personal import reveal
from .telemetry import context_from, tracer
from .upcasting import EventVersionTooNew, upcast_envelope
from .vault import KeyVault

log = logging.getLogger("kizuna.consumer")

# How many order_waits an early event waits at most, should JetStream's ack floor never reach it (a message
# before it stuck unacknowledged for good).
GIVE_UP_AFTER = 10

Handler = Callable[[asyncpg.Connection, Envelope], Awaitable[None]]


@dataclass
class Subscription:
    """A named read model fed from the bus: which subjects it follows and how it applies one event.

    ``subjects`` are suffixes after the prefix, e.g. ``"*.members.>"``. Following whole services makes it
    ordered: each source stream applied in version order (see ``kizuna.ordering``)."""

    name: str
    subjects: Sequence[str]
    handle: Handler

    @property
    def ordered(self) -> bool:
        return follows_whole_streams(self.subjects)


@dataclass
class Outcome:
    """What became of a batch: how many events took effect, the positions of those that came early, and of
    those newer than this code knows (both held by the consumer)."""

    applied: int
    early: list[int]
    newer: list[int] = field(default_factory=list)

    @property
    def held(self) -> list[int]:
        return sorted([*self.early, *self.newer])


@dataclass
class _Held:
    msg: Msg
    since: float  # monotonic time it was first found early
    touched: float  # last in_progress sent for it


class InboxConsumer:
    def __init__(self, js: JetStreamContext, pool: asyncpg.Pool, subscription: Subscription, *,
                 stream: str, prefix: str, max_deliver: int = 5, ack_wait: float = 30.0,
                 batch: int = 100, together: bool = True, order_wait: float | None = None,
                 vault: KeyVault | None = None) -> None:
        self.js, self.pool, self.subscription = js, pool, subscription
        self.vault = vault  # opens the personal fields of every envelope before a handler sees it
        self.together = together
        self.stream, self.prefix = stream, prefix
        self.max_deliver, self.ack_wait, self.batch = max_deliver, ack_wait, batch
        # Long enough for an event a stalled replica fetched to come back (after ack_wait) and be applied.
        self.order_wait = order_wait if order_wait is not None else ack_wait + 10.0
        self.applied = 0
        self.dead_lettered = 0
        self._held: dict[int, _Held] = {}  # early messages by stream sequence
        # When each early message was first held, kept across its redeliveries (a forced one that fails
        # and is nak'ed comes back overdue, so a poison message among the early is dead-lettered in time).
        self._early_since: dict[int, float] = {}
        self._newer_seen: set[uuid.UUID] = set()  # events held for a newer replica, told once each

    @property
    def durable(self) -> str:
        return f"{self.prefix}-{self.subscription.name}".replace(".", "_")

    def _config(self) -> ConsumerConfig:
        subjects = [f"{self.prefix}.{suffix}" for suffix in self.subscription.subjects]
        return ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self.ack_wait,
            # One more than ours so that our own dead-lettering on the last attempt always runs.
            max_deliver=self.max_deliver + 1,
            max_ack_pending=1000,
            filter_subjects=subjects if len(subjects) > 1 else None,
            filter_subject=subjects[0] if len(subjects) == 1 else None,
        )

    async def run(self) -> None:
        while True:
            try:
                sub = await self._subscribe()
                await self._consume(sub)
            except asyncio.CancelledError:
                raise
            except Exception:
                if _closed_for_good(self.js):
                    # A closed connection never reconnects (nats-py closes it on close() or after its last
                    # reconnect attempt): retrying would only log this forever. The service's readiness says why.
                    log.error("bus connection closed for good; consumer stopped", extra={"consumer": self.durable})
                    return
                log.exception("consumer interrupted; resubscribing", extra={"consumer": self.durable})
                await asyncio.sleep(0.5)

    async def _subscribe(self) -> JetStreamContext.PullSubscription:
        try:
            await self.js.add_consumer(self.stream, self._config())
        except Exception:
            log.debug("consumer exists", extra={"consumer": self.durable})
        return await self.js.pull_subscribe_bind(durable=self.durable, stream=self.stream)

    @property
    def held(self) -> int:
        """Messages held back because an earlier event of their stream has not been applied yet."""
        return len(self._held)

    async def _consume(self, sub: JetStreamContext.PullSubscription) -> None:
        while True:
            try:
                messages = await sub.fetch(self.batch, timeout=1)
            except (NatsTimeout, TimeoutError):  # nats-py raises either when nothing arrived in time
                messages = []
            if messages and not (self.together and len(messages) > 1 and await self._process_together(messages)):
                settled = _Settled(self)
                for msg in messages:
                    since = self._early_since.get(_sequence(msg))
                    overdue = since is not None and await settled.overdue(msg, time.monotonic() - since)
                    if not await self.process(msg, overdue=overdue):
                        await self._hold(msg)
            if self._held:
                await self._retry_held()

    async def _process_together(self, messages: list[Msg]) -> bool:
        """Applies a fetched batch in one transaction; False (nothing applied) sends it one at a time."""
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                outcome = await apply_new(conn, self.subscription, messages, vault=self.vault)
        except Exception as error:
            log.info("batch rolled back; applying its messages one at a time",
                     extra={"consumer": self.durable, "batch": len(messages), "error": repr(error)})
            return False
        self.applied += outcome.applied
        self._note_newer(outcome, messages)
        early = set(outcome.held)
        for index, msg in enumerate(messages):
            if index in early:
                await self._hold(msg)
            else:
                await msg.ack()
                self._early_since.pop(_sequence(msg), None)
        self._early_since.pop(_sequence(msg), None)
        return True

    async def _hold(self, msg: Msg, touched: float | None = None) -> None:
        now = time.monotonic()
        since = self._early_since.setdefault(_sequence(msg), now)
        held = _Held(msg, since, touched if touched is not None else now)
        if now - held.touched > min(self.ack_wait / 3, 5.0):
            # Keeps JetStream from handing it to another replica, which would only hold it too.
            with contextlib.suppress(Exception):
                await msg.in_progress()
            held.touched = now
        self._held[_sequence(msg)] = held

    async def _retry_held(self) -> None:
        """Held messages again, oldest in the stream first; those still early stay held."""
        held, self._held = self._held, {}
        now = time.monotonic()
        settled = _Settled(self)
        for key in sorted(held):
            entry = held[key]
            if not await self.process(entry.msg, overdue=await settled.overdue(entry.msg, now - entry.since)):
                await self._hold(entry.msg, entry.touched)
        for key, since in list(self._early_since.items()):  # settled by another replica meanwhile
            if key not in self._held and now - since > 10 * self.order_wait:
                del self._early_since[key]

    async def process(self, msg: Msg, *, overdue: bool = False) -> bool:
        """Applies (or nak's, or dead-letters) one message; False when it came early and was left unacknowledged
        for the caller to hold."""
        attempt = msg.metadata.num_delivered if msg.metadata else 1
        with tracer().start_as_current_span(
            f"consume {self.subscription.name}", context=context_from(msg.headers),
            kind=trace.SpanKind.CONSUMER,
        ) as span:
            try:
                envelope = Envelope.from_bytes(msg.data)
                span.set_attribute("kizuna.event_type", envelope.type)
                span.set_attribute("kizuna.consumer", self.subscription.name)
                try:
                    settled = await self._apply_once(envelope, overdue)
                except Exception as error:
                    if not _database_unavailable(error):
                        raise
                    settled = await self._apply_when_database_returns(msg, envelope, error, overdue)
                if not settled:
                    return False
            except Exception as error:
                span.record_exception(error)
                if attempt >= self.max_deliver:
                    await self._dead_letter(msg, error, attempt)
                    self._early_since.pop(_sequence(msg), None)
                    return True
                log.warning("event handling failed; will be redelivered",
                            extra={"consumer": self.durable, "attempt": attempt, "error": repr(error)})
                await msg.nak(delay=min(0.2 * 2**attempt, 5.0))
                return True
        await msg.ack()
        self._early_since.pop(_sequence(msg), None)
        return True

    async def _apply_when_database_returns(self, msg: Msg, envelope: Envelope, error: Exception,
                                           overdue: bool) -> bool:
        """The service's own database is away: not the message's fault, so it must not count towards
        dead-lettering (nor towards JetStream's max_deliver). Hold the message and retry until it applies."""
        delay = 0.2
        while True:
            log.warning("database unavailable; holding the message until it is back",
                        extra={"consumer": self.durable, "error": repr(error)})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            with contextlib.suppress(Exception):
                await msg.in_progress()  # keeps the ack deadline from passing while we wait
            try:
                return await self._apply_once(envelope, overdue)
            except Exception as again:
                if not _database_unavailable(again):
                    raise
                error = again

    async def _apply_once(self, envelope: Envelope, overdue: bool = False) -> bool:
        """Applies the event unless done already; False when it came early (it stays unacknowledged)."""
        async def transaction() -> Outcome:
            async with self.pool.acquire() as conn, conn.transaction():
                return await apply_in_order(conn, self.subscription, [envelope], overdue=lambda _: overdue,
                                            tolerate_missing=overdue, grouped=self.together, vault=self.vault)

        try:
            # A reaction writes its inbox row before it appends, so PostgreSQL may refuse the append to keep
            # the stream in order (40001): that is not the message's fault, so it runs again at once rather
            # than counting towards dead-lettering.
            outcome = await run_again_if_refused(transaction)
        except NotYetApplicable:
            return False
        if outcome.newer:
            self._note_newer(outcome, [envelope])
        if outcome.held:
            return False
        self.applied += outcome.applied
        return True

    def _note_newer(self, outcome: Outcome, events: Sequence[Msg] | Sequence[Envelope]) -> None:
        """Says once per event that this replica holds an event newer than it knows (warning: a rolling upgrade
        in progress, or a replica left behind)."""
        for index in outcome.newer:
            item = events[index]
            envelope = item if isinstance(item, Envelope) else Envelope.from_bytes(item.data)
            if envelope.id not in self._newer_seen:
                self._newer_seen.add(envelope.id)
                log.warning("event newer than this code knows; held for a newer replica",
                            extra={"consumer": self.durable, "event_type": envelope.type,
                                   "event_id": str(envelope.id), "version": envelope.data_version})

    @property
    def held_for_newer(self) -> int:
        """How many events this consumer has held because this code does not know their version (it holds
        them while it runs)."""
        return len(self._newer_seen)

    async def _dead_letter(self, msg: Msg, error: Exception, attempt: int) -> None:
        payload = {
            "consumer": self.subscription.name,
            "subject": msg.subject,
            "attempts": attempt,
            "error": repr(error),
            "event": json.loads(msg.data) if _is_json(msg.data) else msg.data.decode(errors="replace"),
        }
        await self.js.publish(
            dead_letter_subject(self.prefix, self.subscription.name),
            json.dumps(payload, default=str).encode(),
            headers={"Nats-Msg-Id": f"dlq-{self.subscription.name}-{_msg_id(msg)}"},
        )
        self.dead_lettered += 1
        log.error("event dead-lettered", extra={"consumer": self.durable, "error": repr(error)})
        await msg.term()


async def apply_new(conn: asyncpg.Connection, subscription: Subscription, messages: Sequence[Msg],
                    overdue: Callable[[int], bool] = lambda _: False, *, vault: KeyVault | None = None) -> Outcome:
    """Applies, inside the caller's transaction, the messages ``subscription`` has not applied before, each
    source stream in version order (``apply_in_order``); runs of one statement are sent together."""
    envelopes = [Envelope.from_bytes(msg.data) for msg in messages]
    return await apply_in_order(conn, subscription, envelopes, overdue=overdue,
                                trace_headers=[msg.headers for msg in messages], vault=vault)


async def apply_in_order(conn: asyncpg.Connection, subscription: Subscription, envelopes: Sequence[Envelope], *,
                         overdue: Callable[[int], bool] = lambda _: False, tolerate_missing: bool = False,
                         trace_headers: Sequence[dict[str, str] | None] | None = None,
                         grouped: bool = True, vault: KeyVault | None = None) -> Outcome:
    """The one rule every bus-fed read model applies events by, inside the caller's transaction.

    An ordered subscription's versioned events go by their stream's applied version (``kizuna.ordering``):
    done ones are dropped, due ones applied in version order, early ones left out of the outcome's
    ``early`` (positions) unless ``overdue``. Other events are applied once each through the inbox, in the
    order given. ``tolerate_missing`` (one overdue event at a time) logs a handler's ``NotYetApplicable``
    instead of holding the event again. ``grouped=False`` hands the handler the connection itself: a
    reaction runs commands, which open savepoints, where a projection's runs of one statement are sent
    together (``GroupedWrites``). Personal fields are opened with ``vault`` first (their placeholders without
    one, or once their subject is erased)."""
    envelopes, newer = _upcast(await opened(envelopes, vault))
    by_version = [i for i, e in enumerate(envelopes) if i not in newer and subscription.ordered and is_versioned(e)]
    by_inbox = [i for i, e in enumerate(envelopes) if i not in newer and not (subscription.ordered and is_versioned(e))]
    sequence: list[int] = []
    early: list[int] = []
    if by_inbox:
        fresh = {row["event_id"] for row in await conn.fetch(
            "INSERT INTO inbox (consumer, event_id) SELECT $1, unnest($2::uuid[]) "
            "ON CONFLICT DO NOTHING RETURNING event_id", subscription.name, [envelopes[i].id for i in by_inbox])}
        for index in by_inbox:
            if envelopes[index].id in fresh:  # a message the stream holds twice is applied once
                fresh.discard(envelopes[index].id)
                sequence.append(index)
    versions: StreamVersions | None = None
    if by_version:
        versions = await StreamVersions.lock(conn, subscription.name, [stream_key(envelopes[i]) for i in by_version])
        ordering = plan(versions, [envelopes[i] for i in by_version], lambda j: overdue(by_version[j]))
        sequence += [by_version[j] for j in ordering.due]
        early = [by_version[j] for j in ordering.early]
    target = conn if tolerate_missing or not grouped else cast(asyncpg.Connection, GroupedWrites(conn))
    for index in sequence:
        envelope = envelopes[index]
        headers = trace_headers[index] if trace_headers else None
        with tracer().start_as_current_span(f"consume {subscription.name}", context=context_from(headers),
                                            kind=trace.SpanKind.CONSUMER) as span:
            span.set_attribute("kizuna.event_type", envelope.type)
            span.set_attribute("kizuna.consumer", subscription.name)
            if not tolerate_missing:
                await subscription.handle(target, envelope)
                continue
            try:
                async with conn.transaction():  # a savepoint: what the handler wrote goes, the version stays
                    await subscription.handle(conn, envelope)
            except NotYetApplicable as missing:
                log.error("event applied without what it depends on, which never arrived in time",
                          extra={"consumer": subscription.name, "event_type": envelope.type,
                                 "stream_id": envelope.subject, "error": repr(missing)})
    if isinstance(target, GroupedWrites):
        await target.flush()
    if versions is not None:
        await versions.save(conn)
    return Outcome(len(sequence), early, sorted(newer))


async def opened(envelopes: Sequence[Envelope], vault: KeyVault | None) -> list[Envelope]:
    """The envelopes with their personal fields opened (``kizuna.personal``), before anything upcasts them."""
    datas = [envelope.data for envelope in envelopes]
    revealed = await vault.reveal_all(datas) if vault is not None else [reveal(data, {}) for data in datas]
    return [envelope if data is envelope.data else dataclasses.replace(envelope, data=data)
            for envelope, data in zip(envelopes, revealed, strict=True)]


def _upcast(envelopes: Sequence[Envelope]) -> tuple[list[Envelope], set[int]]:
    """The envelopes as their types' current versions, and the positions of those too new to upcast (left
    as they are: never handled, never in the inbox or the applied versions, so a newer replica applies them)."""
    current: list[Envelope] = []
    newer: set[int] = set()
    for index, envelope in enumerate(envelopes):
        try:
            current.append(upcast_envelope(envelope))
        except EventVersionTooNew:
            current.append(envelope)
            newer.add(index)
    return current, newer


def _database_unavailable(error: Exception) -> bool:
    """A failure to reach PostgreSQL (refused, reset, shutting down, starting up), not a fault of the event."""
    if isinstance(error, asyncpg.InterfaceError):
        return "closed" in str(error)
    return isinstance(error, (ConnectionError, TimeoutError, asyncpg.PostgresConnectionError,
                              asyncpg.exceptions.OperatorInterventionError))


def _is_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except ValueError:
        return False
    return True


class _Settled:
    """Whether an early message's missing predecessors can be taken as lost (see the module's docstring):
    JetStream is asked at most once per round, and only when some message has waited ``order_wait``."""

    def __init__(self, consumer: InboxConsumer) -> None:
        self.consumer = consumer
        self.floor: int | None = None

    async def overdue(self, msg: Msg, waited: float) -> bool:
        order_wait = self.consumer.order_wait
        if waited <= order_wait:
            return False
        if waited > GIVE_UP_AFTER * order_wait:
            return True
        if self.floor is None:
            self.floor = await self._floor()
        return _sequence(msg) - 1 <= self.floor

    async def _floor(self) -> int:
        """The stream sequence up to which every message of this durable is settled (acknowledged, terminated,
        or gone from the stream)."""
        consumer = self.consumer
        try:
            info = await consumer.js.consumer_info(consumer.stream, consumer.durable)
            stream = await consumer.js.stream_info(consumer.stream)
        except Exception as error:  # NATS away: nothing is known, so nothing is taken as lost
            log.info("ack floor unknown; early messages stay held", extra={"consumer": consumer.durable,
                                                                         "error": repr(error)})
            return -1
        first = int(stream.state.first_seq or 1)
        return max(int(info.ack_floor.stream_seq if info.ack_floor else 0), first - 1)


def _closed_for_good(js: JetStreamContext) -> bool:
    connection = getattr(js, "_nc", None)
    return bool(connection is not None and connection.is_closed)


def _sequence(msg: Msg) -> int:
    return int(msg.metadata.sequence.stream) if msg.metadata else id(msg)


def _msg_id(msg: Msg) -> str:
    if msg.headers and msg.headers.get("Nats-Msg-Id"):
        return msg.headers["Nats-Msg-Id"]
    return str(msg.metadata.sequence.stream) if msg.metadata else "unknown"

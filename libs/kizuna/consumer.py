"""Idempotent JetStream consumers (the inbox pattern).

Each projection that follows the bus has a durable pull consumer. A message's effect and its
inbox row commit in one transaction, so a redelivery finds the row and changes nothing. After
``max_deliver`` failed attempts the message goes to the dead-letter subject with the error and is
terminated, so one poison message never blocks the stream.

When a fetch returns several messages, a projection applies them in one transaction (one inbox
insert, runs of one statement sent together) and acknowledges them after it commits; if anything in
the batch fails, it is rolled back whole and the messages go one at a time, each with its own retries.
Reactions (which append to aggregates) always go one at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
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
from .telemetry import context_from, tracer

log = logging.getLogger("kizuna.consumer")

Handler = Callable[[asyncpg.Connection, Envelope], Awaitable[None]]


@dataclass
class Subscription:
    """A named read model fed from the bus: which subjects it follows and how it applies one event.

    ``subjects`` are suffixes after the prefix, e.g. ``"*.members.>"``."""

    name: str
    subjects: Sequence[str]
    handle: Handler


class InboxConsumer:
    def __init__(self, js: JetStreamContext, pool: asyncpg.Pool, subscription: Subscription, *,
                 stream: str, prefix: str, max_deliver: int = 5, ack_wait: float = 30.0,
                 batch: int = 100, together: bool = True) -> None:
        self.js, self.pool, self.subscription = js, pool, subscription
        self.together = together
        self.stream, self.prefix = stream, prefix
        self.max_deliver, self.ack_wait, self.batch = max_deliver, ack_wait, batch
        self.applied = 0
        self.dead_lettered = 0

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
                log.exception("consumer interrupted; resubscribing", extra={"consumer": self.durable})
                await asyncio.sleep(0.5)

    async def _subscribe(self) -> JetStreamContext.PullSubscription:
        try:
            await self.js.add_consumer(self.stream, self._config())
        except Exception:
            log.debug("consumer exists", extra={"consumer": self.durable})
        return await self.js.pull_subscribe_bind(durable=self.durable, stream=self.stream)

    async def _consume(self, sub: JetStreamContext.PullSubscription) -> None:
        while True:
            try:
                messages = await sub.fetch(self.batch, timeout=1)
            except (NatsTimeout, TimeoutError):  # nats-py raises either when nothing arrived in time
                continue
            if self.together and len(messages) > 1 and await self._process_together(messages):
                continue
            for msg in messages:
                await self.process(msg)

    async def _process_together(self, messages: list[Msg]) -> bool:
        """Applies a fetched batch in one transaction; False (nothing applied) sends it one at a time."""
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                applied = await apply_new(conn, self.subscription, messages)
        except Exception as error:
            log.info("batch rolled back; applying its messages one at a time",
                     extra={"consumer": self.durable, "batch": len(messages), "error": repr(error)})
            return False
        self.applied += applied
        for msg in messages:
            await msg.ack()
        return True

    async def process(self, msg: Msg) -> None:
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
                    await self._apply_once(envelope)
                except Exception as error:
                    if not _database_unavailable(error):
                        raise
                    await self._apply_when_database_returns(msg, envelope, error)
            except Exception as error:
                span.record_exception(error)
                if attempt >= self.max_deliver:
                    await self._dead_letter(msg, error, attempt)
                    return
                log.warning("event handling failed; will be redelivered",
                            extra={"consumer": self.durable, "attempt": attempt, "error": repr(error)})
                await msg.nak(delay=min(0.2 * 2**attempt, 5.0))
                return
        await msg.ack()

    async def _apply_when_database_returns(self, msg: Msg, envelope: Envelope, error: Exception) -> None:
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
                await self._apply_once(envelope)
                return
            except Exception as again:
                if not _database_unavailable(again):
                    raise
                error = again

    async def _apply_once(self, envelope: Envelope) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            first_time = await conn.fetchval(
                "INSERT INTO inbox (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
                self.subscription.name, envelope.id,
            )
            if first_time:
                await self.subscription.handle(conn, envelope)
                self.applied += 1

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


async def apply_new(conn: asyncpg.Connection, subscription: Subscription, messages: Sequence[Msg]) -> int:
    """Applies, in order and inside the caller's transaction, the messages ``subscription`` has not applied
    before: one inbox insert for all of them (a message the stream holds twice is applied once), runs of
    one statement sent together. Returns how many were applied."""
    envelopes = [Envelope.from_bytes(msg.data) for msg in messages]
    fresh = {row["event_id"] for row in await conn.fetch(
        "INSERT INTO inbox (consumer, event_id) SELECT $1, unnest($2::uuid[]) "
        "ON CONFLICT DO NOTHING RETURNING event_id", subscription.name, [e.id for e in envelopes])}
    grouped, applied = GroupedWrites(conn), 0
    for msg, envelope in zip(messages, envelopes, strict=True):
        with tracer().start_as_current_span(f"consume {subscription.name}", context=context_from(msg.headers),
                                            kind=trace.SpanKind.CONSUMER) as span:
            span.set_attribute("kizuna.event_type", envelope.type)
            span.set_attribute("kizuna.consumer", subscription.name)
            if envelope.id in fresh:
                fresh.discard(envelope.id)
                await subscription.handle(cast(asyncpg.Connection, grouped), envelope)
                applied += 1
    await grouped.flush()
    return applied


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


def _msg_id(msg: Msg) -> str:
    if msg.headers and msg.headers.get("Nats-Msg-Id"):
        return msg.headers["Nats-Msg-Id"]
    return str(msg.metadata.sequence.stream) if msg.metadata else "unknown"

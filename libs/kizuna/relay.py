"""Outbox relay: tails the committed event log and publishes each event to JetStream.

The event table *is* the outbox: the relay reads ``read_all`` from its checkpoint (commit
order, never skipping a late commit), publishes in that order with ``Nats-Msg-Id`` = event id
(each event as stored, with its stored schema version: a relay passes on what it may not understand),
waits for every acknowledgement, and only then moves its checkpoint. A crash anywhere means a
re-publish from the last checkpoint, which JetStream drops as duplicates within its window and
consumers' inboxes drop after it. One relay is active per database (advisory lock), so several
replicas of a service can run safely.

The lock is a session lock on a connection of the relay's own. Losing that connection releases the
lock, and another replica takes it; so the relay checks that the connection still answers before
each batch it publishes and before each checkpoint it saves, and stops publishing the moment it does
not (it then waits for the lock again). A checkpoint only ever moves forward (``save_checkpoint``),
so a relay that lost the lock between its check and its write cannot move it back.
"""

from __future__ import annotations

import asyncio
import json
import logging

from nats.js import JetStreamContext
from opentelemetry import trace

from .envelope import subject_for, to_cloudevent
from .eventstore import Checkpoint, EventStore, RecordedEvent
from .single_runner import LostLock, SessionLock, holding
from .telemetry import context_from, current_trace_headers, tracer

log = logging.getLogger("kizuna.relay")

RELAY_LOCK_KEY = 0x4B495A554E41  # "KIZUNA": one active relay per service database
LOCK_HOLDER_NAME = "kizuna-relay-lock"  # the lock connection's application_name in pg_stat_activity


class OutboxRelay:
    def __init__(self, store: EventStore, js: JetStreamContext, *, service: str, prefix: str,
                 database_url: str, batch_size: int = 500, idle_seconds: float = 0.2,
                 checkpoint_name: str = "relay", lock_retry_seconds: float = 1.0) -> None:
        self.store, self.js = store, js
        self.service, self.prefix = service, prefix
        self.database_url = database_url
        self.batch_size, self.idle_seconds = batch_size, idle_seconds
        self.checkpoint_name = checkpoint_name
        self.lock_retry_seconds = lock_retry_seconds  # how often a standing-by relay tries the lock
        self.published = 0
        self._wake = asyncio.Event()

    async def run(self) -> None:
        """Run until cancelled: wait to be the active relay, then publish forever."""
        while True:
            try:
                async with holding(self.database_url, RELAY_LOCK_KEY, LOCK_HOLDER_NAME,
                                   self.lock_retry_seconds) as lock:
                    # Appends by this process wake the relay directly; other processes send a NOTIFY.
                    await lock.connection.add_listener("kizuna_events", self._on_notify)
                    self.store.add_commit_listener(self._on_notify)
                    try:
                        await self._publish_forever(lock)
                    finally:
                        self.store.remove_commit_listener(self._on_notify)
            except asyncio.CancelledError:
                raise
            except LostLock:
                log.warning("relay lock lost; publishing stopped until it is held again")
                await asyncio.sleep(0.5)
            except Exception:
                log.exception("relay stopped by an error; resuming from its checkpoint")
                await asyncio.sleep(0.5)

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def _publish_forever(self, lock: SessionLock) -> None:
        checkpoint = await self.store.load_checkpoint(self.checkpoint_name)
        while True:
            batch = await self.store.read_all(checkpoint, self.batch_size, as_stored=True)
            if not batch:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.idle_seconds)
                except TimeoutError:
                    pass
                continue
            await lock.check()
            try:
                await self.publish(batch)
            except Exception as error:  # NATS down or slow: retry the same batch; duplicates are dropped
                log.warning("publish failed, retrying", extra={"error": repr(error), "batch": len(batch)})
                await asyncio.sleep(0.5)
                continue
            last = batch[-1]
            checkpoint = Checkpoint(last.transaction_id, last.global_position)
            await lock.check()
            await self.store.save_checkpoint(self.checkpoint_name, checkpoint)
            self.published += len(batch)

    async def publish(self, batch: list[RecordedEvent]) -> None:
        acks = []
        for event in batch:
            parent = context_from(event.metadata)
            with tracer().start_as_current_span(
                "relay.publish", context=parent, kind=trace.SpanKind.PRODUCER
            ) as span:
                span.set_attribute("messaging.system", "nats")
                span.set_attribute("kizuna.event_type", event.type)
                headers = {"Nats-Msg-Id": str(event.event_id), **current_trace_headers()}
                body = to_cloudevent(self.service, event)
                body["traceparent"] = headers.get("traceparent", body.get("traceparent", ""))
                acks.append(await self.js.publish_async(
                    subject_for(self.prefix, self.service, event),
                    json.dumps(body, default=str).encode(),
                    headers=headers,
                    wait_stall=5,
                ))
        await asyncio.wait_for(asyncio.gather(*acks), timeout=10)

"""Each source stream applied in version order, exactly once, whatever the delivery order.

Every replica of a service pulls from one durable JetStream consumer: fetched batches commit concurrently
and in any order, an unacknowledged message comes back ``ack_wait`` later, after the events behind it.
A read model fed from the bus therefore keeps, per source stream (the aggregate's stream id, with the
service that wrote it), the last version it applied — ``applied_versions``, written in the transaction
that writes the read model. An event is

- **done** when its version is at most the applied one (a redelivery or a duplicate): acknowledged, no effect;
- **due** when it is the next version: applied, and the version moves on;
- **early** when versions between are missing (they are still in flight, held by another replica or on
  their way back after a nak): held back by the consumer and tried again, until the missing event is
  applied or the wait is over (``overdue``), when it is applied anyway and the gap logged loudly.

The guard counts versions, so it needs every event of a stream: only a subscription that follows whole
services (``*.members.>``) is ordered. A subscription that picks event types (the reactions, which append
to aggregates whose own rules decide) is applied exactly once through the inbox, in delivery order.

A handler may also find that an event depends on another stream's event it has not seen yet (a profile
update for a member whose joining is still in flight) and raise ``NotYetApplicable``: the event is then
held back exactly like an early one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum

import asyncpg

from .envelope import Envelope

log = logging.getLogger("kizuna.ordering")

APPLIED_VERSIONS_SQL = """
CREATE TABLE IF NOT EXISTS applied_versions (
    projection text NOT NULL, source text NOT NULL, stream_id text NOT NULL, version bigint NOT NULL,
    PRIMARY KEY (projection, source, stream_id)
);
"""

StreamKey = tuple[str, str]  # (service that wrote it, stream id)


class NotYetApplicable(Exception):
    """Raised by a handler when the event depends on one from another stream that has not arrived yet."""


class Verdict(Enum):
    DONE = "done"
    DUE = "due"
    EARLY = "early"


def follows_whole_streams(subjects: Sequence[str]) -> bool:
    """True when every subject takes all of a service's events (``*.members.>``, ``*.>``), not chosen types."""
    for subject in subjects:
        tokens = subject.split(".")
        if tokens[-1] != ">" or len(tokens) > 3:
            return False
    return True


def stream_key(envelope: Envelope) -> StreamKey:
    return (envelope.service, envelope.subject)


def is_versioned(envelope: Envelope) -> bool:
    return envelope.stream_version > 0


@dataclass
class StreamVersions:
    """The applied versions of some source streams for one projection, locked by the caller's transaction
    (two replicas applying the same stream wait for each other, so neither applies a version twice)."""

    projection: str
    versions: dict[StreamKey, int]
    advanced: set[StreamKey] = field(default_factory=set)

    @classmethod
    async def lock(cls, conn: asyncpg.Connection, projection: str, keys: Sequence[StreamKey]) -> StreamVersions:
        ordered = sorted(set(keys))  # one locking order for every transaction: no deadlock between replicas
        sources, streams = [k[0] for k in ordered], [k[1] for k in ordered]
        # A stream seen for the first time gets its row first, so that there is a row to lock.
        await conn.execute(
            "INSERT INTO applied_versions (projection, source, stream_id, version) "
            "SELECT $1, s, t, 0 FROM unnest($2::text[], $3::text[]) AS k(s, t) ORDER BY s, t ON CONFLICT DO NOTHING",
            projection, sources, streams)
        rows = await conn.fetch(
            "SELECT source, stream_id, version FROM applied_versions WHERE projection = $1 AND (source, stream_id) "
            "IN (SELECT * FROM unnest($2::text[], $3::text[])) ORDER BY source, stream_id FOR UPDATE",
            projection, sources, streams)
        return cls(projection, {(r["source"], r["stream_id"]): int(r["version"]) for r in rows})

    def verdict(self, envelope: Envelope) -> Verdict:
        applied = self.versions.get(stream_key(envelope), 0)
        if envelope.stream_version <= applied:
            return Verdict.DONE
        return Verdict.DUE if envelope.stream_version == applied + 1 else Verdict.EARLY

    def advance(self, envelope: Envelope) -> None:
        key = stream_key(envelope)
        applied = self.versions.get(key, 0)
        if envelope.stream_version > applied + 1:
            log.error("source stream gap: applying a version whose predecessors never arrived in time",
                      extra={"projection": self.projection, "source": key[0], "stream_id": key[1],
                             "applied_version": applied, "version": envelope.stream_version,
                             "event_type": envelope.type})
        self.versions[key] = envelope.stream_version
        self.advanced.add(key)

    async def save(self, conn: asyncpg.Connection) -> None:
        if not self.advanced:
            return
        keys = sorted(self.advanced)
        await conn.execute(
            "UPDATE applied_versions a SET version = k.v "
            "FROM unnest($2::text[], $3::text[], $4::bigint[]) AS k(s, t, v) "
            "WHERE a.projection = $1 AND a.source = k.s AND a.stream_id = k.t",
            self.projection, [k[0] for k in keys], [k[1] for k in keys], [self.versions[k] for k in keys])
        self.advanced.clear()


@dataclass
class Plan:
    """What to do with a batch: ``due`` in the order to apply them, and the positions of the rest."""

    due: list[int]
    done: list[int]
    early: list[int]


def plan(versions: StreamVersions, envelopes: Sequence[Envelope],
         overdue: Callable[[int], bool] = lambda _: False) -> Plan:
    """Orders a batch against the applied versions (advancing them as it goes): events that become due once
    an earlier one of the batch is applied are applied after it. When nothing more is due, the lowest
    overdue early event of a stream is applied anyway (its predecessors are taken as lost)."""
    due: list[int] = []
    done: list[int] = []
    waiting = list(range(len(envelopes)))  # delivery order, but for what a stream's order moves later
    while waiting:
        still: list[int] = []
        progressed = False
        for index in waiting:
            verdict = versions.verdict(envelopes[index])
            if verdict is Verdict.DONE:
                done.append(index)
            elif verdict is Verdict.DUE:
                versions.advance(envelopes[index])
                due.append(index)
                progressed = True
            else:
                still.append(index)
        waiting = still
        if progressed:
            continue
        overdue_now = [index for index in waiting if overdue(index)]
        if not overdue_now:
            break
        forced = min(overdue_now, key=lambda index: envelopes[index].stream_version)
        versions.advance(envelopes[forced])
        due.append(forced)
        waiting.remove(forced)
    return Plan(due, done, waiting)

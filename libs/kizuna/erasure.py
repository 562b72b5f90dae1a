"""What every service does when someone is erased: scrub its copies, rewrite its old plaintext events.

The service that owns a subject (members for a member, identity for a person) erases it by deleting its key
(``KeyVault.erase``) and recording an *erasure event* — a past-tense fact carrying ids only, whose class says
whom it erased:

    class MemberErased(DomainEvent):
        erases: ClassVar[Erases] = Erases("member", "member_id")

From then on every read of a sealed field of the subject gives its placeholder. What remains are the copies:
read models that took the plaintext when they were written. Each service lists them next to its read models
(``ServiceSpec.erasure``, one ``Scrub`` per table and subject column), and every service follows every erasure
event on the bus (``erasure_subscription``) and, in one transaction:

- sets the listed columns of the subject's rows to their placeholders (the rows stay: counts, jobs and
  sessions keep their history, with "erased member" where the name was);
- rewrites the personal fields of this service's own events about the subject that were stored before sealing
  existed (plaintext) to the erased envelope — the one sanctioned change to a stored event
  (docs/data-rights.md). Sealed events need nothing: their key is gone.

A rebuild afterwards gives the same read models: the events open to placeholders.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from .consumer import Subscription
from .domain import DomainEvent
from .envelope import Envelope
from .personal import DECLARED, Erases, erased_in_place

log = logging.getLogger("kizuna.erasure")


@dataclass(frozen=True)
class Scrub:
    """A read-model table's copy of a subject's personal data: in ``table``, the rows whose ``subject_column``
    holds the erased id (of ``kind``) get ``columns`` set to the values given (the placeholders). A JSON column
    holding a member's name under a key is scrubbed with ``json_keys`` (column → keys set to "erased member"
    in the rows' document, top level and in its lists of objects whose ``subject_key`` is the id). With ``delete``
    the rows go: state that exists only for the subject (a person's unsubscribe links, digests waiting, exports)."""

    table: str
    subject_column: str
    columns: Mapping[str, Any] = field(default_factory=dict)
    kind: str = "member"
    json_column: str | None = None
    json_subject_key: str = "member_id"
    json_values: Mapping[str, Any] = field(default_factory=dict)
    delete: bool = False  # the subject's rows are deleted instead (state kept only for them: links, queues)


def erasure_events() -> dict[str, Erases]:
    """Every erasure event type this code knows (from every service's domain module)."""
    from .catalog import import_event_modules

    import_event_modules()
    found: dict[str, Erases] = {}
    for module in DomainEvent.registry.values():
        for name, event in module.items():
            erases = getattr(event, "erases", None)
            if isinstance(erases, Erases):
                found[name] = erases
    return found


def erasure_subscription(service: str, scrubs: Sequence[Scrub]) -> Subscription:
    """The subscription every service runs: its copies scrubbed and its old plaintext rewritten on each erasure."""
    events = erasure_events()

    async def handle(conn: asyncpg.Connection, envelope: Envelope) -> None:
        erases = events.get(envelope.type)
        subject = erases.subject_of(envelope.data) if erases else None
        if subject is None:
            return
        kind, subject_id = subject
        scrubbed = await scrub(conn, scrubs, kind, subject_id)
        rewritten = await rewrite_plaintext(conn, f"{kind}:{subject_id}")
        log.info("erased copies", extra={"service": service, "kind": kind, "subject_id": subject_id,
                                         "rows_scrubbed": scrubbed, "events_rewritten": rewritten})

    return Subscription(f"{service}-erasure", [f"*.*.{name}" for name in sorted(events)], handle)


async def scrub(conn: asyncpg.Connection, scrubs: Sequence[Scrub], kind: str, subject_id: str) -> int:
    changed = 0
    for item in scrubs:
        if item.kind != kind:
            continue
        if item.delete:
            result = await conn.execute(f"DELETE FROM {item.table} WHERE {item.subject_column} = $1",  # noqa: S608 - names from the service's own declarations
                                        subject_id)
            changed += int(result.split()[-1])
            continue
        if item.columns:
            assignments = ", ".join(f"{column} = ${n}" for n, column in enumerate(item.columns, start=2))
            result = await conn.execute(
                f"UPDATE {item.table} SET {assignments} WHERE {item.subject_column} = $1",  # noqa: S608 - names from the service's own declarations
                subject_id, *item.columns.values())
            changed += int(result.split()[-1])
        if item.json_column:
            changed += await _scrub_json(conn, item, subject_id)
    return changed


async def _scrub_json(conn: asyncpg.Connection, item: Scrub, subject_id: str) -> int:
    """A JSON document (e.g. an aggregate's snapshot) that names the subject: its top-level keys when the row is
    the subject's, and each object in its lists (or maps) whose ``json_subject_key`` is the subject."""
    column = item.json_column
    rows = await conn.fetch(
        f"SELECT ctid, {column}::text AS doc FROM {item.table} WHERE {column}::text LIKE $1",  # noqa: S608 - names from the service's own declarations
        f"%{subject_id}%")
    changed = 0
    for row in rows:
        document = json.loads(row["doc"])
        scrubbed = _scrub_document(document, item, subject_id)
        if scrubbed != document:
            await conn.execute(f"UPDATE {item.table} SET {column} = $1 WHERE ctid = $2",  # noqa: S608 - names from the service's own declarations
                               json.dumps(scrubbed), row["ctid"])
            changed += 1
    return changed


def _scrub_document(value: Any, item: Scrub, subject_id: str, own: bool = False) -> Any:
    """``own``: inside an object that is the subject's (a goal's revisions and check-ins are the goal's member's)."""
    if isinstance(value, list):
        return [_scrub_document(v, item, subject_id, own) for v in value]
    if not isinstance(value, dict):
        return value
    own = own or str(value.get(item.json_subject_key, "")) == subject_id
    return {key: (item.json_values[key] if own and key in item.json_values
                  else _scrub_document(v, item, subject_id, own)) for key, v in value.items()}


async def rewrite_plaintext(conn: asyncpg.Connection, subject: str) -> int:
    """This service's own events about ``subject`` stored in plaintext (before sealing existed): their personal
    fields rewritten in place to the erased envelope. One pass per declared event type (erasures are rare)."""
    kind, subject_id = subject.split(":", 1)
    rewritten = 0
    for event_type, spec in DECLARED.items():
        if spec.kind != kind:
            continue
        fields = sorted({spec.subject_field, *spec.field_subjects.values()})
        rows = await conn.fetch("SELECT global_position, data::text AS data FROM events "
                                "WHERE event_type = $1 AND EXISTS (SELECT 1 FROM unnest($2::text[]) f "
                                "WHERE data ->> f = $3)", event_type, fields, subject_id)
        for row in rows:
            data = erased_in_place(event_type, json.loads(row["data"]), [subject])
            if data is not None:
                await conn.execute("UPDATE events SET data = $1::jsonb WHERE global_position = $2",
                                   json.dumps(data), row["global_position"])
                rewritten += 1
    return rewritten

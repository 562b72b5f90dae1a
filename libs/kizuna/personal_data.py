"""What a service holds about one member of one community — the part each service gives to a person's export
(docs/data-rights.md, "Export").

Every service answers the same internal route, ``GET /internal/communities/{cid}/members/{mid}/personal-data``,
for that member themself and the operator (anyone else gets the 404 of a member that is not there). It is not
forwarded by the gateway (which forwards only ``/v1``) and not in the public document: the gateway's export
job asks each service directly.

The answer has two parts:

- ``records``: the service's read-model rows about the member, one named section each (a service lists its
  ``Section``s: a query taking the community id and the member id, answering one JSON object per row, with
  secrets' hashes and other people's identities left out in the query itself).
- ``events``: the stored events that *name* the member — an event of this community whose data holds, at any
  depth, a string equal to the member id or ``member:<id>``, or whose ``actor`` is the member — each as the read
  policy shows it to that member (kizuna.read_policy, the viewer being the member with the role ``member``: the
  fields withheld from them stay withheld, so feedback they received does not say who gave it). An event that
  names them but that the policy keeps from them (another member's notification about them, a decision only
  those who run the community read) is not shown; ``withheld_events`` counts those by type, so the person
  knows they exist and may ask the operator.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from fastapi import APIRouter, Depends, Request

from .auth import Principal, principal
from .errors import NotFound
from .eventstore import EventStore, RecordedEvent
from .read_policy import Viewer, rule_for

PATH = "/internal/communities/{community_id}/members/{member_id}/personal-data"


@dataclass(frozen=True)
class Section:
    """One kind of read-model row about a member: ``sql`` takes $1 community id and $2 member id and answers a
    ``row`` column of JSON (``to_jsonb(t) - 'a_secret_hash'`` is the usual shape)."""

    name: str
    sql: str


def names(value: Any, member_id: str) -> bool:
    """Whether ``value`` holds, anywhere inside it, the member's id (or ``member:<id>``) as a whole string."""
    if isinstance(value, str):
        return value in (member_id, f"member:{member_id}")
    if isinstance(value, dict):
        return any(names(item, member_id) for item in value.values())
    if isinstance(value, list):
        return any(names(item, member_id) for item in value)
    return False


def event_as_shown(event: RecordedEvent, member_id: str) -> dict[str, Any] | None:
    """The event as the read policy shows it to the member it names (as a member of the community, plus as its
    subject), or None when the policy keeps it from them. Who acted is said only when it was the member."""
    viewer = Viewer(member_id=member_id, role="member")
    rule = rule_for(event.type)
    if not rule.admits(viewer, event.data):
        return None
    actor = event.metadata.get("actor")
    return {"event_id": str(event.event_id), "type": event.type, "stream_id": event.stream_id,
            "stream_version": event.stream_version, "recorded_at": event.recorded_at.isoformat(),
            "by_me": actor == f"member:{member_id}", "data": rule.shown_fields(viewer, event.data)}


# A text search narrows the rows (member ids are UUIDs, so a false match is rare); ``names`` then decides on
# the event as read through the store, which opens sealed fields and upcasts.
_CANDIDATES_SQL = """
SELECT stream_id, array_agg(event_id ORDER BY stream_version) AS event_ids FROM events
 WHERE ($1::text IS NULL OR metadata->>'community_id' = $1)
   AND (strpos(data::text, $2) > 0 OR metadata->>'actor' = 'member:' || $2)
 GROUP BY stream_id
"""


async def events_naming(store: EventStore, community_id: str | None, subject_id: str) -> list[RecordedEvent]:
    """The stored events (of ``community_id``, or of any when None) that name ``subject_id``, oldest first."""
    async with store.pool.acquire() as conn:
        candidates = await conn.fetch(_CANDIDATES_SQL, community_id, subject_id)
    found: list[RecordedEvent] = []
    for row in candidates:
        ids = [uuid.UUID(str(event_id)) for event_id in row["event_ids"]]
        for event in await store.read_events(row["stream_id"], ids):
            if names(event.data, subject_id) or event.metadata.get("actor") == f"member:{subject_id}":
                found.append(event)
    return sorted(found, key=lambda event: (event.recorded_at, event.global_position))


async def personal_data(pool: asyncpg.Pool, store: EventStore, service: str, sections: Sequence[Section],
                        community_id: str, member_id: str) -> dict[str, Any]:
    records: dict[str, list[Any]] = defaultdict(list)
    async with pool.acquire() as conn:
        for section in sections:
            for row in await conn.fetch(section.sql, community_id, member_id):
                records[section.name].append(json.loads(row["row"]))
    shown, withheld = [], Counter[str]()
    for event in await events_naming(store, community_id, member_id):
        visible = event_as_shown(event, member_id)
        if visible is None:
            withheld[event.type] += 1
        else:
            shown.append(visible)
    return {"service": service, "community_id": community_id, "member_id": member_id,
            "records": {section.name: records.get(section.name, []) for section in sections},
            "events": shown, "withheld_events": dict(sorted(withheld.items()))}


def personal_data_router(service: str, sections: Sequence[Section]) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get(PATH)
    async def what_is_held(community_id: str, member_id: str, request: Request,
                           who: Principal = Depends(principal)) -> dict[str, Any]:
        who.require_community(community_id)
        if not who.is_operator and not (who.scope == "member" and who.is_self(member_id)):
            raise NotFound("member not found")
        runtime = request.app.state.runtime
        return await personal_data(runtime.pool, runtime.store, service, sections, community_id, member_id)

    return router


def roster_section(table: str = "roster") -> Section:
    """The service's copy of who the member is (every service that follows the members service keeps one)."""
    return Section(f"{table}", f"SELECT to_jsonb(t) AS row FROM {table} t "  # noqa: S608 - a fixed table name
                               "WHERE community_id = $1 AND member_id = $2")


__all__ = ["PATH", "Section", "events_naming", "names", "personal_data", "personal_data_router", "roster_section"]

"""CloudEvents 1.0 (structured JSON mode) on the wire, and the one subject scheme.

Subject: ``<prefix>.<community id | ecosystem>.<service>.<EventType>``, e.g.
``kizuna.4f0c….members.MemberJoined``. Dashboards subscribe to ``kizuna.<community>.>``;
a service follows another with ``kizuna.*.members.>``.

The CloudEvents extension ``dataversion`` is the schema version of ``data`` (``kizuna.upcasting``); an
envelope without it was published before events had versions, and is version 1.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .eventstore import RecordedEvent

ECOSYSTEM = "ecosystem"


def subject_for(prefix: str, service: str, event: RecordedEvent) -> str:
    return f"{prefix}.{event.community_id or ECOSYSTEM}.{service}.{event.type}"


def to_cloudevent(service: str, event: RecordedEvent) -> dict[str, Any]:
    meta = event.metadata
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(event.event_id),
        "source": f"kizuna/{service}",
        "type": event.type,
        "subject": event.stream_id,
        "time": event.recorded_at.isoformat(),
        "datacontenttype": "application/json",
        "communityid": event.community_id or ECOSYSTEM,
        "streamversion": event.stream_version,
        "sequence": event.global_position,
        "dataversion": event.schema_version,
        "data": event.data,
    }
    for key, ext in (("correlation_id", "correlationid"), ("causation_id", "causationid"),
                     ("actor", "actor"), ("traceparent", "traceparent")):
        if meta.get(key):
            body[ext] = str(meta[key])
    return body


@dataclass(frozen=True)
class Envelope:
    """An event as a consumer receives it, decoded from its CloudEvent."""

    id: uuid.UUID
    source: str
    type: str
    subject: str
    time: datetime
    community_id: str
    stream_version: int
    data: dict[str, Any]
    correlation_id: str | None = None
    actor: str | None = None
    data_version: int = 1  # the schema version of ``data``: as published, or the current one once upcast

    @property
    def service(self) -> str:
        return self.source.split("/", 1)[-1]

    @classmethod
    def from_cloudevent(cls, body: dict[str, Any]) -> Envelope:
        return cls(
            id=uuid.UUID(body["id"]),
            source=body["source"],
            type=body["type"],
            subject=body["subject"],
            time=datetime.fromisoformat(body["time"]),
            community_id=body.get("communityid", ECOSYSTEM),
            stream_version=int(body.get("streamversion", 0)),
            data=body.get("data") or {},
            correlation_id=body.get("correlationid"),
            actor=body.get("actor"),
            data_version=int(body.get("dataversion", 1)),
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        return cls.from_cloudevent(json.loads(raw))

    @classmethod
    def from_recorded(cls, service: str, event: RecordedEvent) -> Envelope:
        return cls.from_cloudevent(json.loads(json.dumps(to_cloudevent(service, event), default=str)))

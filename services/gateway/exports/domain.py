"""Exports: the facts worth keeping (who asked for whose data, when it was ready, when it was deleted) and the
plan of an export's steps. Pure.

The export's progress and its document are state, not events (services/gateway/exports/projections.py): the
document is every personal datum Kizuna holds about the person, and an append-only log is the one place it
must never be copied to. The events carry ids only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from kizuna.domain import DomainEvent

Language = Literal["ja", "en"]
KEPT_DAYS = 7  # how long a finished export can be downloaded before it is deleted


class ExportRequested(DomainEvent):
    """A person's export was asked for, by the person themself or by the operator on their behalf."""

    export_id: str
    person_id: str
    requested_by: str  # "person" or "operator"
    steps_total: int


class ExportCompleted(DomainEvent):
    export_id: str
    person_id: str


class ExportDeleted(DomainEvent):
    """A finished (or never finished) export's document was deleted: it expired."""

    export_id: str
    person_id: str
    reason: str


@dataclass(frozen=True)
class Step:
    """One part of an export: the person's identity, or one service's data about them in one community."""

    service: str
    community_id: str | None = None
    community_name: str | None = None
    member_id: str | None = None
    standing: str | None = None  # active, left or waiting (identity's word for the membership)

    def as_json(self) -> dict[str, Any]:
        return {"service": self.service, "community_id": self.community_id, "community_name": self.community_name,
                "member_id": self.member_id, "standing": self.standing}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Step:
        return cls(str(data["service"]), data.get("community_id"), data.get("community_name"), data.get("member_id"),
                   data.get("standing"))


# Services that keep something about the person themself, not one of their members: each answers
# ``GET /internal/people/{person_id}/personal-data`` (notifications: preferences, address, unsubscribe links, digests).
PERSON_SERVICES = ("notifications",)


def plan(memberships: list[dict[str, Any]], services: list[str]) -> list[Step]:
    """Identity first, then each service's part about the person (``PERSON_SERVICES``), then every service for
    every community the person has (or had) a member in."""
    steps = [Step("identity"), *(Step(service) for service in PERSON_SERVICES if service in services)]
    for membership in memberships:
        if not membership.get("member_id"):
            continue
        for service in services:
            steps.append(Step(service, str(membership["community_id"]), membership.get("community_name"),
                              str(membership["member_id"]), membership.get("status")))
    return steps


def document(export_id: str, person_id: str, language: str, generated_at: str, steps: list[Step],
             parts: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The export as one JSON document: the identity part, each service's part about the person, then one entry
    per community with each service's part."""
    communities: dict[str, dict[str, Any]] = {}
    person: dict[str, Any] = {}
    for number, step in enumerate(steps):
        if step.community_id is None:
            if number:
                person[step.service] = {k: v for k, v in (parts.get(number) or {}).items()
                                        if k not in ("service", "person_id")}
            continue
        community = communities.setdefault(step.community_id, {
            "community_id": step.community_id, "community_name": step.community_name,
            "member_id": step.member_id, "standing": step.standing, "services": {}})
        part = dict(parts.get(number) or {})
        for echoed in ("service", "community_id", "member_id"):
            part.pop(echoed, None)
        community["services"][step.service] = part
    return {"format": "kizuna-export/1", "export_id": export_id, "person_id": person_id, "language": language,
            "generated_at": generated_at, "identity": parts.get(0, {}), "person": person,
            "communities": list(communities.values())}

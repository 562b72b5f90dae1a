"""Writes the event corpus: one stored example of every event type, as a row of the events table holds it.

``python -m tests.evolution.make_corpus`` adds a file under ``tests/evolution/corpus/<service>/`` for every
catalogued event type (``kizuna.catalog``) at its current version that has none, and never touches a file that
exists: the corpus is what was stored, kept forever, and ``test_corpus.py`` replays every entry through the code
of the day. When a change raises an event's version, the old form's file stays, and this adds the new one.

Examples are built from each event's model: ids are derived from the field's name (every ``community_id`` is
the same community, so the corpus reads as one small history), other values are plain and valid. A model's own
example (``json_schema_extra``) is used when it has a complete one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import enum
import inspect
import json
import types
import uuid
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from kizuna.catalog import events_by_service
from kizuna.domain import Aggregate, DomainEvent

CORPUS = Path(__file__).parent / "corpus"
IDS = uuid.UUID("1c0ffee0-2323-4e23-8e23-0e0e0e0e0e23")  # namespace of the corpus's ids (uuid5 by field name)
WHEN = dt.datetime(2026, 1, 15, 9, 0, tzinfo=dt.UTC)
# The stream each aggregate lives in (the handlers' f"<prefix>-{id}"); an event folded by none goes to one
# named for its service.
STREAM_PREFIXES = {
    "Community": "community", "Profile": "profile", "Person": "person", "Job": "job", "Referral": "referral",
    "Offering": "offering", "Partnership": "partnership", "FederationListing": "federation-listing",
    "IssuedToken": "token", "Session": "session", "CalendarLink": "calendar-link", "Goal": "goal",
    "Notification": "notification", "Preferences": "notification-preferences", "Digest": "notification-digest",
    "WebhookEndpoint": "webhook",
}
# Events appended outside an aggregate's fold (by a handler, or folded by a generic apply), by their stream.
STREAM_OF_UNFOLDED = {
    "MemberProfileUpdated": "profile", "PersonSignedIn": "person", "BrowserSessionEnded": "person",
    "InvitationEmailed": "person", "SignInRefused": "sign-in-refusals", "WebhookSecretRotated": "webhook",
    "SessionTokensRevoked": "session",
}


def entry_path(service: str, event_type: str, version: int) -> Path:
    return CORPUS / service / f"{event_type}.v{version}.json"


def identifier(name: str) -> str:
    return str(uuid.uuid5(IDS, name))


def example_value(name: str, annotation: Any) -> Any:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return example_value(name, next(arg for arg in get_args(annotation) if arg is not type(None)))
    if origin is Literal:
        return get_args(annotation)[0]
    if origin in (list, set, tuple):
        return [example_value(name, get_args(annotation)[0])]
    if origin is dict or annotation is dict:
        return {}
    if inspect.isclass(annotation):
        if issubclass(annotation, BaseModel):
            return example_of(annotation)
        if issubclass(annotation, enum.Enum):
            return next(iter(annotation)).value
        if issubclass(annotation, bool):
            return False  # the usual case (not late, not waitlisted): the corpus reads as one plain history
        if issubclass(annotation, int):
            return 1
        if issubclass(annotation, float):
            return 1.5
        if issubclass(annotation, dt.datetime):
            return WHEN.isoformat()
        if issubclass(annotation, dt.date):
            return WHEN.date().isoformat()
        if issubclass(annotation, dt.time):
            return "09:00:00"
        if issubclass(annotation, str):
            return example_text(name)
    return None


PLAIN_TEXTS = {"deadline": "2026-02-01", "day": "2026-01-15", "expires_at": WHEN.isoformat(),
               "time_zone": "Asia/Tokyo", "currency": "JPY", "role": "member", "vector": "0.1,0.2",
               "partner_origin": "https://partner.example.org", "link": "https://partner.example.org/join"}


def example_text(name: str) -> str:
    if name == "id" or name.endswith("_id") or name.endswith("_ids"):
        return identifier(name.removesuffix("s"))
    if name.endswith("_by") or name == "sister_of":  # who did it: a member of the corpus's community
        return identifier("member_id")
    if name in PLAIN_TEXTS:
        return PLAIN_TEXTS[name]
    if "email" in name:
        return "aiko@example.org"
    if name.endswith("url") or name == "address":
        return "https://partner.example.org/hook"
    if "sha256" in name or "hash" in name:
        return "0" * 64
    return f"example {name.replace('_', ' ')}"


def example_of(model: type[BaseModel]) -> dict[str, Any]:
    given = model.model_config.get("json_schema_extra")
    examples = given.get("examples") if isinstance(given, dict) else None
    for example in examples if isinstance(examples, list) else []:
        if isinstance(example, dict) and set(example) >= set(model.model_fields):
            return example
    return {name: example_value(name, field.annotation) for name, field in model.model_fields.items()}


def stream_of(event: type[DomainEvent], data: dict[str, Any]) -> str:
    module = inspect.getmodule(event)
    folded_by = [cls for _, cls in inspect.getmembers(module, inspect.isclass)
                 if issubclass(cls, Aggregate) and hasattr(cls, f"_on_{event.__name__}")]
    prefix = STREAM_PREFIXES.get(folded_by[0].__name__, "") if folded_by else STREAM_OF_UNFOLDED.get(event.__name__, "")
    if not prefix and hasattr(module, "Partnership"):  # Partnership folds its events in one generic apply
        prefix = "partnership"
    if not prefix:
        return f"{event.__module__.split('.')[1]}-{identifier('stream')}"
    key = {"community": "community_id", "profile": "member_id"}.get(prefix, f"{prefix.replace('-', '_')}_id")
    return f"{prefix}-{data.get(key) or identifier(key)}"


def entry(service: str, event: type[DomainEvent]) -> dict[str, Any]:
    data = event.model_validate(example_of(event)).payload()
    community_id = data.get("community_id")
    return {
        "service": service, "type": event.__name__, "version": event.schema_version,
        "stream_id": stream_of(event, data),
        "data": data,
        "metadata": {"actor": "operator", "correlation_id": identifier("correlation"),
                     "community_id": community_id if isinstance(community_id, str) else None},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args()
    added = 0
    for service, events in events_by_service().items():
        for event in events:
            path = entry_path(service, event.__name__, event.schema_version)
            if path.exists():
                continue  # what was stored stays as it was stored
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(entry(service, event), indent=2, ensure_ascii=False) + "\n")
            added += 1
            print(f"added {path.relative_to(CORPUS.parent.parent.parent)}")
    print(f"{added} entries added")


if __name__ == "__main__":
    main()

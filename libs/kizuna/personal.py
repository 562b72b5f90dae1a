"""Personal fields of events, sealed with their subject's key so that deleting the key erases them everywhere.

An event class says which of its fields are someone's personal data, and whose (one line next to the class):

    class MemberJoined(DomainEvent):
        personal: ClassVar[Personal] = member_data("member_id", names=["display_name"])
        ...

The *subject* is whose data it is: a member of one community (``member:<member id>``, so leaving a community can
erase that membership alone) or a person (``person:<person id>``, identity's data). Each subject has one key in
the deployment's key vault (``kizuna.vault``). When the event is stored, each personal field is replaced by an
envelope ``{"$personal": "<subject>", "c": "<base64 nonce+AES-GCM ciphertext>", "e": <placeholder>}``: the event
table, the bus (the relay publishes what is stored) and every copy of the stream hold ciphertext only. Every read
path opens the envelopes before upcasting (``reveal``); a subject whose key is gone gets the field's placeholder
— "erased member" for a name, "" for free text, an empty list or map — never an error. The placeholder travels in
the envelope, so an event reads the same whatever version of the code (and field names) reads it.

Events stored before sealing existed hold plaintext: they read as they are, and erasure rewrites their personal
fields in place to the erased envelope (``erased_in_place``, docs/data-rights.md).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ERASED_NAME = "erased member"
ERASED_TEXT = ""
# A member's card (what they consented to show partner communities) once erased: it still has a name to show.
ERASED_CARD: dict[str, Any] = {"display_name": ERASED_NAME}
MARK = "$personal"
NONCE_BYTES = 12


@dataclass(frozen=True)
class Personal:
    """Which fields of an event are personal data (each with what it reads as once erased), and whose: the
    subject is ``<kind>:<value of the subject field>`` — or, for a field named in ``field_subjects``, of the
    field named there (an event that quotes two people: a notification to one of what another said)."""

    subject_field: str
    kind: str
    placeholders: Mapping[str, Any]
    field_subjects: Mapping[str, str] = field(default_factory=dict)

    def subject_of(self, data: Mapping[str, Any], field_name: str | None = None) -> str | None:
        value = data.get(self.field_subjects.get(field_name, self.subject_field) if field_name else
                         self.subject_field)
        return f"{self.kind}:{value}" if value else None

    def subjects_of(self, data: Mapping[str, Any]) -> set[str]:
        return {s for name in self.placeholders if (s := self.subject_of(data, name)) is not None}


def _placeholders(names: Sequence[str], texts: Sequence[str], lists: Sequence[str],
                  maps: Sequence[str], cards: Sequence[str] = ()) -> dict[str, Any]:
    return {**{f: ERASED_NAME for f in names}, **{f: ERASED_TEXT for f in texts},
            **{f: [] for f in lists}, **{f: {} for f in maps}, **{f: dict(ERASED_CARD) for f in cards}}


def member_data(subject_field: str, *, names: Sequence[str] = (), texts: Sequence[str] = (),
                lists: Sequence[str] = (), maps: Sequence[str] = (), cards: Sequence[str] = (),
                field_subjects: Mapping[str, str] | None = None) -> Personal:
    """Fields that are the data of the member whose id is in ``subject_field`` (or, for a field named in
    ``field_subjects``, of the member whose id is in the field named there). ``cards``: a member's consented
    card, read as ``{"display_name": "erased member"}`` once erased."""
    return Personal(subject_field, "member", _placeholders(names, texts, lists, maps, cards),
                    dict(field_subjects or {}))


PARTNER_MEMBER = "partner-member"


def partner_member_data(subject_field: str, *, names: Sequence[str] = (), texts: Sequence[str] = (),
                        cards: Sequence[str] = (), field_subjects: Mapping[str, str] | None = None) -> Personal:
    """Fields that are the data of a member of a *partner deployment* (docs/federation.md §8): the subject is
    ``partner-member:<origin>/<member ref>``, ``subject_field`` holding ``<origin>/<member ref>`` (the
    partnership's reference to that member, never their id). The partner's erasure notice deletes that key here."""
    return Personal(subject_field, PARTNER_MEMBER, _placeholders(names, texts, (), (), cards),
                    dict(field_subjects or {}))


def partner_member(origin: str, member_ref: str) -> str:
    """The value of a ``partner_member`` field: whose (which deployment's) member, by the partnership's ref."""
    return f"{origin.rstrip('/')}/{member_ref}"


def person_data(subject_field: str, *, names: Sequence[str] = (), texts: Sequence[str] = (),
                lists: Sequence[str] = (), maps: Sequence[str] = ()) -> Personal:
    """Fields that are the data of the person (identity's account holder) whose id is in ``subject_field``."""
    return Personal(subject_field, "person", _placeholders(names, texts, lists, maps))


@dataclass(frozen=True)
class Erases:
    """On an erasure event's class: the kind of subject it erases and the field holding the subject's id
    (``kizuna.erasure``: every service scrubs its copies when it receives one)."""

    kind: str
    subject_field: str

    def subject_of(self, data: Mapping[str, Any]) -> tuple[str, str] | None:
        value = data.get(self.subject_field)
        return (self.kind, str(value)) if value else None


# Every event type's declaration, by type name (filled by DomainEvent.__init_subclass__).
DECLARED: dict[str, Personal] = {}


def declared(event_type: str) -> Personal | None:
    from .upcasting import current_version  # imports every service's events, so their declarations are known

    current_version(event_type)
    return DECLARED.get(event_type)


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and MARK in value


def subjects_to_seal(event_type: str, data: Mapping[str, Any]) -> set[str]:
    spec = declared(event_type)
    if spec is None:
        return set()
    return {subject for f in spec.placeholders
            if data.get(f) not in (None, "", [], {}) and not is_sealed(data.get(f))
            and (subject := spec.subject_of(data, f)) is not None}


def seal(event_type: str, data: dict[str, Any], keys: Mapping[str, bytes | None]) -> dict[str, Any]:
    """``data`` as stored: each declared personal field replaced by its envelope (sealed with the subject's key;
    already erased when the subject has none). Empty values stay as they are: there is nothing to hide."""
    spec = declared(event_type)
    if spec is None:
        return data
    sealed = dict(data)
    for name, placeholder in spec.placeholders.items():
        value = data.get(name)
        subject = spec.subject_of(data, name)
        if value in (None, "", [], {}) or is_sealed(value) or subject is None:
            continue
        envelope: dict[str, Any] = {MARK: subject, "e": placeholder}
        key = keys.get(subject)
        if key is not None:
            nonce = os.urandom(NONCE_BYTES)
            secret = AESGCM(key).encrypt(nonce, json.dumps(value).encode(), _bound_to(subject, name))
            envelope["c"] = base64.b64encode(nonce + secret).decode()
        sealed[name] = envelope
    return sealed


def sealed_subjects(data: Mapping[str, Any]) -> set[str]:
    """The subjects whose keys ``reveal`` needs for ``data``."""
    return {value[MARK] for value in data.values() if is_sealed(value) and "c" in value}


def reveal(data: dict[str, Any], keys: Mapping[str, bytes | None]) -> dict[str, Any]:
    """``data`` with each envelope opened: the value when its subject's key is there, else the placeholder.
    Returned as given when it holds none."""
    if not any(is_sealed(value) for value in data.values()):
        return data
    opened = dict(data)
    for name, value in data.items():
        if not is_sealed(value):
            continue
        key = keys.get(value[MARK])
        opened[name] = value.get("e")
        if key is None or "c" not in value:
            continue
        raw = base64.b64decode(value["c"])
        try:
            opened[name] = json.loads(AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:],
                                                          _bound_to(value[MARK], name)))
        except InvalidTag:  # not this subject's key for this field: treated as erased, never shown wrong
            pass
    return opened


def erased_in_place(event_type: str, data: dict[str, Any], subjects: Iterable[str]) -> dict[str, Any] | None:
    """A stored event's data with the plaintext personal fields of ``subjects`` replaced by the erased envelope
    (events stored before sealing existed); None when there is nothing to rewrite."""
    spec = declared(event_type)
    erased = set(subjects)
    if spec is None or not spec.subjects_of(data) & erased:
        return None
    # Sealed with no keys, each field becomes its erased envelope: kept only for the fields of ``subjects``.
    blank = seal(event_type, data, {})
    rewritten = {name: blank[name] if spec.subject_of(data, name) in erased else value
                 for name, value in data.items()}
    return rewritten if rewritten != data else None


def _bound_to(subject: str, field_name: str) -> bytes:
    # The ciphertext only opens as this subject's value of this field: one cannot be moved onto another.
    return f"{subject}\x00{field_name}".encode()

"""Personal fields sealed with their subject's key, opened on every read, placeholders once the key is gone
(kizuna.personal, kizuna.vault, kizuna.erasure; docs/data-rights.md)."""

from __future__ import annotations

import json
from typing import ClassVar

import asyncpg
import pytest

from kizuna.domain import DomainEvent
from kizuna.erasure import rewrite_plaintext
from kizuna.eventstore import Checkpoint, EventStore, NewEvent
from kizuna.personal import ERASED_NAME, Personal, member_data, new_key, reveal, seal
from kizuna.vault import KeyVault

NAME, STORY = "Zephyrine Quillfeather", "I restore antique harmoniums in Kamakura"


class ErasureProbeNoted(DomainEvent):
    personal: ClassVar[Personal] = member_data("member_id", names=["display_name"], texts=["story"], lists=["tags"])
    member_id: str
    display_name: str
    story: str = ""
    tags: list[str] = []
    count: int = 0


def probe(member_id: str = "m-1") -> dict[str, object]:
    return ErasureProbeNoted(member_id=member_id, display_name=NAME, story=STORY, tags=["organ"], count=3).payload()


def test_sealed_fields_open_with_the_key_and_read_as_placeholders_without_it() -> None:
    key = new_key()
    sealed = seal("ErasureProbeNoted", probe(), {"member:m-1": key})
    assert NAME not in json.dumps(sealed) and STORY not in json.dumps(sealed) and "organ" not in json.dumps(sealed)
    assert sealed["member_id"] == "m-1" and sealed["count"] == 3  # ids and figures stay readable
    assert reveal(sealed, {"member:m-1": key}) == probe()
    erased = reveal(sealed, {})
    assert erased["display_name"] == ERASED_NAME and erased["story"] == "" and erased["tags"] == []
    assert ErasureProbeNoted.model_validate(erased).count == 3
    # Another subject's key, or a field moved to another subject, never opens: it reads as erased.
    assert reveal(sealed, {"member:m-1": new_key()})["display_name"] == ERASED_NAME
    moved = {**sealed, "display_name": {**sealed["display_name"], "$personal": "member:m-2"}}
    assert reveal(moved, {"member:m-2": key})["display_name"] == ERASED_NAME
    # Data stored before sealing existed reads as it is.
    assert reveal(probe(), {}) == probe()


async def test_the_store_and_its_bus_form_hold_ciphertext_and_erasure_leaves_placeholders(
        pool: asyncpg.Pool, database_url: str) -> None:
    vault = await KeyVault.open(database_url)
    try:
        store = EventStore(pool, vault=vault)
        await store.append("probe-1", [NewEvent("ErasureProbeNoted", probe("m-1")),
                                       NewEvent("ErasureProbeNoted", probe("m-2"))])
        async with pool.acquire() as conn:
            raw = await conn.fetchval("SELECT string_agg(data::text, ' ') FROM events")
        assert NAME not in raw and STORY not in raw
        as_published = await store.read_all(Checkpoint(), as_stored=True)  # what the relay sends
        assert NAME not in json.dumps([e.data for e in as_published])
        assert [e.data["display_name"] for e in await store.read_stream("probe-1")] == [NAME, NAME]

        await vault.erase(["member:m-1"])
        names = [e.data["display_name"] for e in await store.read_all(Checkpoint())]
        assert names == [ERASED_NAME, NAME]  # only the erased member's fields are gone
        stories = [e.data["story"] for e in await store.read_category("probe")]
        assert stories == ["", STORY]
        # Written about an erased member afterwards: stored erased, never under a new key.
        await store.append("probe-1", [NewEvent("ErasureProbeNoted", probe("m-1"))])
        assert (await store.read_stream("probe-1", from_version=3))[0].data["display_name"] == ERASED_NAME
        assert await vault.erased(["member:m-1", "member:m-2"]) == {"member:m-1"}
    finally:
        await vault.close()


async def test_erasure_rewrites_events_stored_in_plaintext_before_sealing_existed(
        pool: asyncpg.Pool, database_url: str) -> None:
    await EventStore(pool).append("probe-1", [NewEvent("ErasureProbeNoted", probe("m-1")),
                                              NewEvent("ErasureProbeNoted", probe("m-2"))])
    async with pool.acquire() as conn:
        assert await rewrite_plaintext(conn, "member:m-1") == 1
        rows = await conn.fetch("SELECT data::text AS data FROM events ORDER BY global_position")
    raw = [json.loads(row["data"]) for row in rows]
    assert NAME not in json.dumps(raw[0]) and NAME in json.dumps(raw[1])
    vault = await KeyVault.open(database_url)
    try:
        events = await EventStore(pool, vault=vault).read_stream("probe-1")
    finally:
        await vault.close()
    assert [e.data["display_name"] for e in events] == [ERASED_NAME, NAME]
    assert events[0].data["count"] == 3


@pytest.mark.parametrize("service", ["members", "referrals", "sessions", "identity", "notifications", "gateway"])
def test_every_declared_event_of_the_corpus_still_parses_once_its_subject_is_erased(service: str) -> None:
    """The placeholders must be valid values of their fields: an erased event still folds and projects."""
    from tests.evolution.test_corpus import corpus, event_class

    for entry in (e for e in corpus() if e["service"] == service):
        model = event_class(service, entry["type"])
        if model.personal is None:
            continue
        # Stored before the event carried its subject (a goal's later events): as it is written today.
        data = {model.personal.subject_field: "someone", **{k: v for k, v in entry["data"].items() if v != ""}}
        data = {**entry["data"], model.personal.subject_field: data[model.personal.subject_field]}
        # A field sealed with another field's subject (a note's author): that subject too, as written today.
        data.update({f: data.get(f) or "someone-else" for f in model.personal.field_subjects.values()})
        subject = model.personal.subject_of(data)
        assert subject, f"{entry['type']}: no subject in {model.personal.subject_field}"
        erased = reveal(seal(entry["type"], data, {s: new_key() for s in model.personal.subjects_of(data)}), {})
        decoded = DomainEvent.decode(entry["type"], erased, model.__module__, version=entry["version"])
        assert isinstance(decoded, model)
        for field, placeholder in model.personal.placeholders.items():
            if data.get(field) not in (None, "", [], {}):
                assert erased[field] == placeholder, (entry["type"], field)

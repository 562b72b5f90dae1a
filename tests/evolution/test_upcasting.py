"""Upcasting on every read path, with a test-only event whose version 1 said ``text`` and version 2 ``note``."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from kizuna.consumer import Subscription, apply_in_order
from kizuna.domain import DomainEvent
from kizuna.envelope import Envelope
from kizuna.eventstore import ANY_VERSION, EventStore, NewEvent
from kizuna.service import migrate
from kizuna.upcasting import EventVersionTooNew, MissingUpcaster, current_version, missing_upcasters, upcast, upcaster

from .probe import ProbeNoted


def test_an_old_payload_is_upcast_step_by_step_and_a_current_one_is_left_alone() -> None:
    assert current_version("ProbeNoted") == 2
    original = {"text": "hello"}
    assert upcast("ProbeNoted", 1, original) == (2, {"note": "hello", "language": "ja"})
    assert original == {"text": "hello"}, "the payload read is never changed"
    current = {"note": "hi", "language": "en"}
    assert upcast("ProbeNoted", 2, current)[1] is current
    assert current_version("NeverHeardOf") == 1


def test_the_live_event_stream_sends_the_current_form_and_a_newer_one_as_published() -> None:
    """Dashboards read the gateway's stream (GET /v1/communities/{cid}/events) as every reader in Kizuna does."""
    from services.gateway.stream import current_form

    old = {"type": "ProbeNoted", "dataversion": 1, "id": "e1", "data": {"text": "hello"}}
    assert current_form(old) == {**old, "dataversion": 2, "data": {"note": "hello", "language": "ja"}}
    unversioned = {"type": "ProbeNoted", "id": "e0", "data": {"text": "before versions"}}
    assert current_form(unversioned)["dataversion"] == 2
    newer = {"type": "ProbeNoted", "dataversion": 3, "id": "e2", "data": {"note": "from the future"}}
    assert current_form(newer) is newer
    current = {"type": "MemberJoined", "dataversion": 1, "id": "e3", "data": {"member_id": "m"}}
    assert current_form(current) is current


def test_a_newer_version_than_this_code_knows_is_refused_by_name() -> None:
    with pytest.raises(EventVersionTooNew) as refused:
        upcast("ProbeNoted", 3, {"note": "from the future"})
    assert (refused.value.event_type, refused.value.version, refused.value.known) == ("ProbeNoted", 3, 2)
    assert refused.value.status == 503


def test_a_missing_step_is_a_bug_named_as_such() -> None:
    upcaster("GappyProbe", from_version=2)(lambda data: data)
    with pytest.raises(MissingUpcaster, match="GappyProbe has no upcaster from version 1"):
        upcast("GappyProbe", 1, {})


def test_every_event_class_above_version_1_has_an_upcaster_from_each_older_version() -> None:
    current_version("MemberJoined")  # every service's events imported
    assert missing_upcasters() == [], "raise an event's version together with its upcaster from the old one"


async def test_every_read_of_the_store_upcasts_and_the_relay_reads_what_is_stored(pool: asyncpg.Pool) -> None:
    store = EventStore(pool)
    projected: list[tuple[int, dict[str, object]]] = []

    async def project(_: asyncpg.Connection, event: object) -> None:
        projected.append((event.schema_version, event.data))  # type: ignore[attr-defined]

    store.inline_projections.append(project)
    old_id = uuid.uuid4()
    # As the release before version 2 stored it (one that appends raw, or an older replica).
    await store.append("probe-1", [NewEvent("ProbeNoted", {"text": "old"}, {"community_id": "c1"}, old_id)],
                       ANY_VERSION)
    await store.append("probe-1", [NewEvent("ProbeNoted", ProbeNoted(note="new", language="en").payload(),
                                            {"community_id": "c1"}, schema_version=2)], ANY_VERSION)
    assert projected == [(2, {"note": "old", "language": "ja"}), (2, {"note": "new", "language": "en"})]
    async with pool.acquire() as conn:
        stored = [(r["schema_version"], json.loads(r["data"])) for r in await conn.fetch(
            "SELECT schema_version, data FROM events ORDER BY global_position")]
    assert stored == [(1, {"text": "old"}), (2, {"note": "new", "language": "en"})]

    current = [(2, {"note": "old", "language": "ja"}), (2, {"note": "new", "language": "en"})]
    assert [(e.schema_version, e.data) for e in await store.read_stream("probe-1")] == current
    assert [(e.schema_version, e.data) for e in await store.read_category("probe")] == current
    assert [(e.schema_version, e.data) for e in await store.read_all()] == current
    assert [(e.schema_version, e.data) for e in await store.read_events("probe-1", [old_id])] == current[:1]
    assert [(e.schema_version, e.data) for e in await store.read_all(as_stored=True)] == stored
    decoded = DomainEvent.decode("ProbeNoted", {"text": "old"}, ProbeNoted.__module__, version=1)
    assert decoded == ProbeNoted(note="old", language="ja")

    async with pool.acquire() as conn:  # a newer replica of the service appends version 3
        await conn.fetch("SELECT * FROM kizuna_append('probe-1', -1, $1::uuid[], '{ProbeNoted}', '{3}', "
                         "ARRAY['{\"note\": \"x\", \"tone\": \"?\"}'], '{\"{}\"}', false)", [uuid.uuid4()])
    with pytest.raises(EventVersionTooNew):
        await store.read_stream("probe-1")
    assert len(await store.read_all(as_stored=True)) == 3, "the relay still publishes what it cannot read"


async def test_rows_stored_before_versions_existed_read_as_version_1(pool: asyncpg.Pool) -> None:
    """An existing deployment: rows written before migration 0005, and by replicas still running the code
    before it (the seven-argument append the migration keeps), are version 1."""
    async with pool.acquire() as conn:  # undo migration 0005, as the database was before it
        await conn.execute("DROP FUNCTION kizuna_append(text, bigint, uuid[], text[], int[], text[], text[], boolean)")
        await conn.execute("ALTER TABLE events DROP COLUMN schema_version")
        await conn.execute("DELETE FROM schema_migrations WHERE name = '0005_event_schema_version'")
        await conn.fetch("SELECT * FROM kizuna_append('probe-old', -1, $1::uuid[], '{ProbeNoted}', "
                         "ARRAY['{\"text\": \"before\"}'], '{\"{}\"}', false)", [uuid.uuid4()])
    await migrate(pool, [])
    async with pool.acquire() as conn:  # an old replica appending after the migration
        await conn.fetch("SELECT * FROM kizuna_append('probe-old', -1, $1::uuid[], '{ProbeNoted}', "
                         "ARRAY['{\"text\": \"during\"}'], '{\"{}\"}', false)", [uuid.uuid4()])
        assert [r["schema_version"] for r in await conn.fetch("SELECT schema_version FROM events")] == [1, 1]
    assert [e.data["note"] for e in await EventStore(pool).read_stream("probe-old")] == ["before", "during"]


def _envelope(version: int, data: dict[str, object], stream_version: int = 1) -> Envelope:
    return Envelope(id=uuid.uuid4(), source="kizuna/probe", type="ProbeNoted", subject="probe-1",
                    time=datetime.now(UTC), community_id="c1", stream_version=stream_version, data=data,
                    data_version=version)


@pytest.mark.parametrize("ordered", [True, False])
async def test_the_consumer_hands_over_the_current_form_and_holds_a_newer_one(pool: asyncpg.Pool,
                                                                               ordered: bool) -> None:
    seen: list[tuple[int, dict[str, object]]] = []

    async def handle(_: asyncpg.Connection, envelope: Envelope) -> None:
        seen.append((envelope.data_version, envelope.data))

    subscription = Subscription("probe-reader", ["*.probe.>"] if ordered else ["*.probe.ProbeNoted"], handle)
    old, newer, after = (_envelope(1, {"text": "old"}), _envelope(3, {"note": "?"}, 2),
                         _envelope(2, {"note": "b", "language": "en"}, 3))
    async with pool.acquire() as conn, conn.transaction():
        outcome = await apply_in_order(conn, subscription, [old, newer, after])
    assert seen[0] == (2, {"note": "old", "language": "ja"})
    assert outcome.newer == [1]
    # Ordered, the event after the held one waits behind it; by inbox, it goes in delivery order.
    assert outcome.early == ([2] if ordered else [])
    async with pool.acquire() as conn:
        in_inbox = {r["event_id"] for r in await conn.fetch("SELECT event_id FROM inbox")}
        applied = await conn.fetchval("SELECT max(version) FROM applied_versions")
    assert newer.id not in in_inbox, "a held event leaves no trace: a newer replica applies it"
    assert applied == (1 if ordered else None)

"""Every event type as it was stored replays through the code of the day (issue 23).

The corpus (``corpus/<service>/<Type>.v<version>.json``, written once by ``make_corpus``, never rewritten)
holds one stored example of every catalogued event type at every version it has had. Each entry must parse
as its event class after upcasting, and be accepted by every projection that may receive it: the producing
service's inline projections (appended through the event store, as rows are), its rebuild's replay, and every
service's bus-fed read models that follow it (through the consumer's own rule, ``apply_in_order``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from kizuna.catalog import events_by_service
from kizuna.consumer import apply_in_order
from kizuna.domain import DomainEvent
from kizuna.envelope import Envelope, subject_for
from kizuna.eventstore import ANY_VERSION, EventStore, NewEvent, RecordedEvent
from kizuna.rebuild import load_spec, replay_own
from kizuna.service import ServiceSpec, migrate

from .make_corpus import CORPUS, entry_path

PREFIX = "kizuna"


def corpus() -> list[dict[str, Any]]:
    """The entries in catalogue order (a small history: communities founded before members join), each type's
    older versions first."""
    order = {event.__name__: n for n, event in enumerate(e for es in events_by_service().values() for e in es)}
    entries = [json.loads(path.read_text()) for path in sorted(CORPUS.glob("*/*.json"))]
    return sorted(entries, key=lambda e: (order.get(e["type"], len(order)), e["version"]))


def event_class(service: str, event_type: str) -> type[DomainEvent]:
    return next(event for event in events_by_service()[service] if event.__name__ == event_type)


def test_every_catalogued_event_type_has_a_corpus_entry_at_its_current_version() -> None:
    missing = [f"{service}/{event.__name__}.v{event.schema_version}" for service, events in events_by_service().items()
               for event in events if not entry_path(service, event.__name__, event.schema_version).exists()]
    assert not missing, f"no stored example of {missing}: run `.venv/bin/python -m tests.evolution.make_corpus`"


def test_every_entry_parses_as_its_event_after_upcasting() -> None:
    entries = corpus()
    assert len(entries) >= sum(len(events) for events in events_by_service().values())
    for entry in entries:
        model = event_class(entry["service"], entry["type"])
        decoded = DomainEvent.decode(entry["type"], entry["data"], model.__module__, version=entry["version"])
        assert isinstance(decoded, model), entry


def _subjects_match(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a final ``>`` the rest."""
    wanted, tokens = pattern.split("."), subject.split(".")
    for index, token in enumerate(wanted):
        if token == ">":
            return len(tokens) > index
        if index >= len(tokens) or token not in ("*", tokens[index]):
            return False
    return len(wanted) == len(tokens)


def _specs() -> Iterator[ServiceSpec]:
    for service in events_by_service():
        yield load_spec(service)


async def _store_and_project(url: str, spec: ServiceSpec, entries: list[dict[str, Any]]) -> list[RecordedEvent]:
    """Appends the service's entries as they were stored (their own versions), through its inline projections;
    then replays them as its rebuild does; returns them as stored, for the bus."""
    pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
    try:
        await migrate(pool, spec.migrations)
        store = EventStore(pool, spec.inline_projections)
        for entry in entries:
            try:
                await store.append(entry["stream_id"], [NewEvent(entry["type"], entry["data"], entry["metadata"],
                                                                  schema_version=entry["version"])], ANY_VERSION)
            except Exception as error:
                raise AssertionError(f"{spec.name}'s inline projections refused {entry['type']}: {error!r}") from error
        if spec.read_model_tables:
            async with pool.acquire() as conn:
                await conn.execute(f"TRUNCATE {', '.join(spec.read_model_tables)}")
        assert await replay_own(pool, spec, batch=50) == len(entries)
        return await store.read_all(limit=100_000, as_stored=True)
    finally:
        await pool.close()


async def _follow(url: str, spec: ServiceSpec, published: list[Envelope]) -> int:
    """Hands every published event each bus-fed read model of ``spec`` follows to it, one at a time."""
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    handed = 0
    try:
        for subscription in spec.subscriptions:
            for envelope in published:
                subject = subject_for(PREFIX, envelope.service, _as_recorded(envelope)).removeprefix(f"{PREFIX}.")
                if not any(_subjects_match(pattern, subject) for pattern in subscription.subjects):
                    continue
                try:
                    async with pool.acquire() as conn, conn.transaction():
                        outcome = await apply_in_order(conn, subscription, [envelope], overdue=lambda _: True,
                                                       tolerate_missing=True)
                except Exception as error:
                    raise AssertionError(f"{subscription.name} refused {envelope.service}'s {envelope.type}: "
                                         f"{error!r}") from error
                assert not outcome.newer, f"{envelope.type} version {envelope.data_version} unknown to the code"
                handed += 1
    finally:
        await pool.close()
    return handed


def _as_recorded(envelope: Envelope) -> RecordedEvent:
    return RecordedEvent(global_position=0, transaction_id=0, stream_id=envelope.subject,
                         stream_version=envelope.stream_version, event_id=envelope.id, type=envelope.type,
                         data=envelope.data, metadata={"community_id": envelope.community_id},
                         recorded_at=envelope.time)


@pytest.mark.timeout(600)
def test_every_entry_replays_through_every_projection_that_receives_it(postgres: Any, unique: str) -> None:
    entries = corpus()
    specs = list(_specs())
    urls = {spec.name: postgres.create_database(f"corpus_{spec.name}_{unique}") for spec in specs}

    async def replay() -> dict[str, int]:
        published: list[Envelope] = []
        for spec in specs:
            own = [entry for entry in entries if entry["service"] == spec.name]
            stored = await _store_and_project(urls[spec.name], spec, own)
            assert {(e.type, e.schema_version) for e in stored} == {(e["type"], e["version"]) for e in own}
            published += [Envelope.from_recorded(spec.name, event) for event in stored]
        return {spec.name: await _follow(urls[spec.name], spec, published) for spec in specs if spec.subscriptions}

    handed = asyncio.run(replay())
    assert all(handed.values()), f"every bus-fed service should have received some of the corpus: {handed}"

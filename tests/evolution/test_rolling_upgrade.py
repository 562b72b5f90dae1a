"""A rolling upgrade on one bus: an event of a newer version reaches a replica still running the release before
it. The old replica holds it (never applied, never dead-lettered however often it would have failed), keeps
applying what it knows, and once it stops, the new replica — which knows the version, and upcasts the old form
— applies it. Real processes (``tests/evolution/probe_service.py``), real NATS and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from kizuna import bus
from kizuna.envelope import subject_for, to_cloudevent
from kizuna.eventstore import RecordedEvent
from tests.support import Ecosystem, ServiceProcess, eventually, unclaimed_port

ACK_WAIT = 2.0
MAX_DELIVER = 2  # a message failing here would be dead-lettered within two deliveries


def start_probe(eco: Ecosystem, knows: int, number: int) -> ServiceProcess:
    port = unclaimed_port()
    env = eco.env("members", KIZUNA_SERVICE_NAME="probe", KIZUNA_DATABASE_URL=eco.database_url("probe"),
                  KIZUNA_HTTP_PORT=str(port), KIZUNA_PROBE_KNOWS=str(knows),
                  KIZUNA_CONSUMER_ACK_WAIT_SECONDS=str(ACK_WAIT), KIZUNA_CONSUMER_MAX_DELIVER=str(MAX_DELIVER))
    proc = ServiceProcess("probe", port, env, eco.workdir / f"probe-{number}.log",
                          module="tests.evolution.probe_service").start()
    eco.processes[f"probe#{number}"] = proc
    proc.wait_ready()
    return proc


async def publish(js: Any, eco: Ecosystem, stream_id: str, version: int, data: dict[str, Any]) -> uuid.UUID:
    """A ProbeNoted as a replica's relay publishes it: what is stored, with the version stored."""
    event = RecordedEvent(global_position=1, transaction_id=1, stream_id=stream_id, stream_version=1,
                          event_id=uuid.uuid4(), type="ProbeNoted", data=data, metadata={"community_id": "c1"},
                          recorded_at=datetime.now(UTC), schema_version=version)
    await js.publish(subject_for(eco.prefix, "probe", event),
                     json.dumps(to_cloudevent("probe", event), default=str).encode(),
                     headers={"Nats-Msg-Id": str(event.event_id)})
    return event.event_id


async def noted(proc: ServiceProcess) -> dict[str, dict[str, Any]]:
    async with httpx.AsyncClient(base_url=proc.url, timeout=5) as client:
        return {row["event_id"]: row for row in (await client.get("/probe/noted")).json()}


async def test_an_old_replica_holds_a_newer_event_and_the_new_one_applies_it(ecosystem: Ecosystem) -> None:
    old = start_probe(ecosystem, knows=1, number=1)
    nc = await bus.connect(ecosystem.nats.url, "rolling-upgrade-test")
    try:
        js = nc.jetstream()
        stream = ecosystem.prefix.upper()
        # Written by the new release (which a replica of it published), then one the old release knows.
        newer = await publish(js, ecosystem, "probe-a", 2, {"note": "ようこそ", "language": "ja"})
        older = await publish(js, ecosystem, "probe-b", 1, {"text": "hello"})

        async def old_applied_what_it_knows() -> bool:
            return set(await noted(old)) == {str(older)}

        await eventually(old_applied_what_it_knows)
        # Longer than the old replica would take to fail it MAX_DELIVER times and dead-letter it.
        await asyncio.sleep(ACK_WAIT * (MAX_DELIVER + 2))
        assert set(await noted(old)) == {str(older)}
        info = await js.consumer_info(stream, f"{ecosystem.prefix}-probe-noter")
        assert info.num_ack_pending == 1, "the old replica holds the newer event, unacknowledged"
        assert (await js.stream_info(f"{stream}_DLQ")).state.messages == 0, "held, never dead-lettered"
        assert "event newer than this code knows; held for a newer replica" in old.log_path.read_text()

        # The upgrade: a replica of the new release joins, the old one stops; the held event goes to the new.
        new = start_probe(ecosystem, knows=2, number=2)
        old.stop()
        newest = await publish(js, ecosystem, "probe-c", 1, {"text": "an old form, upcast"})

        async def new_applied_everything() -> dict[str, dict[str, Any]] | None:
            rows = await noted(new)
            return rows if {str(newer), str(older), str(newest)} <= set(rows) else None

        rows = await eventually(new_applied_everything, timeout=30)
        held = rows[str(newer)]
        assert (held["note"], held["noted_by"], held["version"]) == ("ようこそ", 2, 2)
        assert (rows[str(newest)]["note"], rows[str(newest)]["version"]) == ("an old form, upcast", 2)
        assert rows[str(older)]["noted_by"] == 1
        assert (await js.stream_info(f"{stream}_DLQ")).state.messages == 0
    finally:
        await nc.close()

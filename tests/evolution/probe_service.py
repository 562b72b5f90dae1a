"""A service that notes ``ProbeNoted`` events from the bus, as an old or a new release of it would.

``KIZUNA_PROBE_KNOWS=1`` is the release before the event's version 2: it has never heard of the new shape and
reads ``text``. ``KIZUNA_PROBE_KNOWS=2`` is the release after: it imports ``tests.evolution.probe`` (the class
at version 2 and its upcaster) and reads ``note``. Both share one database and one durable consumer, as two
replicas of one service do in the middle of a rolling upgrade."""

from __future__ import annotations

import os

import asyncpg
from fastapi import APIRouter, Request

from kizuna.consumer import Subscription
from kizuna.envelope import Envelope
from kizuna.serve import serve
from kizuna.service import Migration, ServiceSpec, create_service, runtime_of
from kizuna.settings import ServiceSettings

KNOWS = int(os.environ.get("KIZUNA_PROBE_KNOWS", "1"))
if KNOWS >= 2:
    import tests.evolution.probe  # noqa: F401 - registers ProbeNoted version 2 and its upcaster

router = APIRouter()


@router.get("/probe/noted")
async def noted(request: Request) -> list[dict[str, object]]:
    async with runtime_of(request).pool.acquire() as conn:
        rows = await conn.fetch("SELECT event_id::text, version, note, noted_by FROM noted ORDER BY note")
    return [dict(row) for row in rows]


async def note(conn: asyncpg.Connection, envelope: Envelope) -> None:
    # The old release reads the old field: a version 2 payload handed to it would fail here, every time.
    text = envelope.data["note"] if KNOWS >= 2 else envelope.data["text"]
    await conn.execute("INSERT INTO noted (event_id, version, note, noted_by) VALUES ($1, $2, $3, $4)",
                       envelope.id, envelope.data_version, text, KNOWS)


SPEC = ServiceSpec(
    name="probe", title="Probe", description="Rolling-upgrade test service", routers=[router],
    migrations=[Migration("probe_0001", "CREATE TABLE noted (event_id uuid PRIMARY KEY, version int NOT NULL, "
                                        "note text NOT NULL, noted_by int NOT NULL)")],
    subscriptions=[Subscription("probe-noter", ["*.probe.>"], note)],
)

if __name__ == "__main__":
    settings = ServiceSettings(service_name="probe")
    serve(create_service(SPEC, settings), settings)

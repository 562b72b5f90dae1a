"""An export's state: its plan, the parts gathered so far (so a restarted job goes on where it was), and the
finished document. Deleted with its parts when it expires (the job's sweep, services/gateway/exports/job.py)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import asyncpg

from kizuna.erasure import Scrub
from kizuna.service import Migration

from .domain import Step

SQL = """
CREATE TABLE exports (
    export_id    text PRIMARY KEY,
    person_id    text NOT NULL,
    requested_by text NOT NULL,
    language     text NOT NULL,
    status       text NOT NULL DEFAULT 'running',
    steps        jsonb NOT NULL,
    last_error   text,
    requested_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    expires_at   timestamptz NOT NULL,
    document     jsonb,
    html         text
);
CREATE INDEX exports_by_person ON exports (person_id, requested_at);
CREATE INDEX exports_running ON exports (requested_at) WHERE status = 'running';
CREATE TABLE export_parts (
    export_id text NOT NULL REFERENCES exports ON DELETE CASCADE,
    step      int NOT NULL,
    part      jsonb NOT NULL,
    PRIMARY KEY (export_id, step)
);
"""
MIGRATIONS = [Migration("gateway_exports_0001", SQL)]
# An erased person's exports (every personal datum about them, by design) go with their parts (kizuna.erasure).
ERASURE = [Scrub("exports", "person_id", kind="person", delete=True)]
# Not read models (nothing rebuilds them from events): the rebuild leaves them alone.


def progress(row: asyncpg.Record, done: set[int], base: str) -> dict[str, Any]:
    """What the person sees of their export while it runs and once it is ready."""
    steps = [Step.from_json(step) for step in json.loads(row["steps"])]
    view: dict[str, Any] = {
        "export_id": row["export_id"], "status": row["status"], "language": row["language"],
        "requested_by": row["requested_by"], "requested_at": _iso(row["requested_at"]),
        "completed_at": _iso(row["completed_at"]), "expires_at": _iso(row["expires_at"]),
        "steps_done": len(done), "steps_total": len(steps),
        "steps": [{**step.as_json(), "done": number in done} for number, step in enumerate(steps)],
        "waiting_for": row["last_error"],
    }
    if row["status"] == "ready":
        view["links"] = {"json": f"{base}/export.json", "html": f"{base}/export.html"}
    return view


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


async def one(conn: asyncpg.Connection, export_id: str) -> tuple[asyncpg.Record, set[int]] | None:
    row = await conn.fetchrow("SELECT export_id, person_id, requested_by, language, status, steps, last_error, "
                              "requested_at, completed_at, expires_at FROM exports WHERE export_id = $1", export_id)
    if row is None:
        return None
    done = {r["step"] for r in await conn.fetch("SELECT step FROM export_parts WHERE export_id = $1", export_id)}
    return row, done


async def of_person(conn: asyncpg.Connection, person_id: str) -> list[tuple[asyncpg.Record, set[int]]]:
    found = []
    for row in await conn.fetch("SELECT export_id FROM exports WHERE person_id = $1 ORDER BY requested_at DESC",
                                person_id):
        held = await one(conn, row["export_id"])
        if held is not None:
            found.append(held)
    return found

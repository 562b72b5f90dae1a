"""Read models of offerings, kept inside each append's transaction, and their queries.

The projection refolds the offering's stream on the append's own connection and upserts a snapshot
guarded by version (as the sessions service does), so replaying any event converges to the same rows.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import asyncpg

from kizuna.domain import DomainEvent
from kizuna.errors import Invalid
from kizuna.eventstore import RecordedEvent, read_stream_on
from kizuna.service import Migration

from . import domain
from .domain import Offering

SQL = """
CREATE TABLE offerings_view (
    offering_id text PRIMARY KEY, community_id text NOT NULL, producer_id text NOT NULL, status text NOT NULL,
    visibility text NOT NULL, commitment_deadline timestamptz NOT NULL, version bigint NOT NULL,
    seq bigint NOT NULL, state jsonb NOT NULL
);
CREATE INDEX offerings_view_by_community ON offerings_view (community_id, seq);
CREATE INDEX offerings_view_due ON offerings_view (commitment_deadline) WHERE status = 'open';
CREATE TABLE offering_commitments (
    offering_id text NOT NULL, community_id text NOT NULL, member_id text NOT NULL, shares int NOT NULL,
    status text NOT NULL, reason text NOT NULL, PRIMARY KEY (offering_id, member_id)
);
CREATE INDEX offering_commitments_by_member ON offering_commitments (community_id, member_id);
CREATE TABLE offering_feedback (
    offering_id text NOT NULL, community_id text NOT NULL, producer_id text NOT NULL, member_id text NOT NULL,
    good text NOT NULL, improve text NOT NULL, would_commit_again boolean NOT NULL, given_at timestamptz NOT NULL,
    PRIMARY KEY (offering_id, member_id)
);
CREATE INDEX offering_feedback_by_producer ON offering_feedback (community_id, producer_id);
-- An introduction whose subject is a producer's offering ("introduce a trusted producer").
ALTER TABLE referrals ADD COLUMN offering_id text;
"""
MIGRATIONS = [Migration("referrals_offerings_0001", SQL)]
READ_MODEL_TABLES = ["offerings_view", "offering_commitments", "offering_feedback"]


async def _fold(conn: asyncpg.Connection, stream_id: str) -> tuple[Offering, int]:
    events = await read_stream_on(conn, stream_id)  # personal fields opened, as the store reads them
    decoded = [DomainEvent.decode(e.type, e.data, domain.__name__, version=e.schema_version) for e in events]
    state = Offering.from_events([e for e in decoded if e is not None])
    state.version = len(events)
    return state, (events[0].global_position if events else 0)


async def project_offering(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    if event.type == "ReferralMade" and event.data.get("offering_id"):
        await conn.execute("UPDATE referrals SET offering_id = $2 WHERE referral_id = $1",
                           event.data["referral_id"], event.data["offering_id"])
        return
    if not event.stream_id.startswith("offering-"):
        return
    offering, seq = await _fold(conn, event.stream_id)
    if offering.terms is None:
        return
    snap = offering.snapshot()
    updated = await conn.fetchval(
        "INSERT INTO offerings_view (offering_id, community_id, producer_id, status, visibility, commitment_deadline, "
        "version, seq, state) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (offering_id) DO UPDATE SET "
        "status = EXCLUDED.status, visibility = EXCLUDED.visibility, commitment_deadline = "
        "EXCLUDED.commitment_deadline, version = EXCLUDED.version, state = EXCLUDED.state "
        "WHERE offerings_view.version <= EXCLUDED.version RETURNING version",
        snap["offering_id"], snap["community_id"], snap["producer_id"], snap["status"], offering.current.visibility,
        offering.current.commitment_deadline, snap["version"], seq, json.dumps(snap))
    if updated is None:
        return
    await conn.executemany(
        "INSERT INTO offering_commitments VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (offering_id, member_id) "
        "DO UPDATE SET shares = EXCLUDED.shares, status = EXCLUDED.status, reason = EXCLUDED.reason",
        [(snap["offering_id"], snap["community_id"], c["member_id"], c["shares"], c["status"], c["reason"])
         for c in snap["commitments"]])
    if event.type == "LeadUserFeedbackGiven":
        d = event.data
        await conn.execute(
            "INSERT INTO offering_feedback VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            d["offering_id"], d["community_id"], d["producer_id"], d["member_id"], d["good"], d["improve"],
            d["would_commit_again"], datetime.fromisoformat(d["given_at"]))


INLINE_PROJECTIONS = [project_offering]


# ---- queries ----

def days_to_deadline(deadline: datetime, now: datetime | None = None) -> int:
    """Whole days left to commit, rounded up (0 once the deadline has passed)."""
    seconds = (deadline - (now or datetime.now(UTC))).total_seconds()
    return max(math.ceil(seconds / 86400), 0)


def status_view(state: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """What every member (and, for a partners offering, a partner) sees of an offering."""
    deadline = datetime.fromisoformat(state["terms"]["commitment_deadline"])
    return {**{k: state[k] for k in (
        "offering_id", "community_id", "producer_id", "status", "terms", "published_at", "committed",
        "minimum_shares", "shares", "available", "committed_members", "pending_terms_change", "settlement",
        "progress", "version")},
        "minimum_reached": state["committed"] >= state["minimum_shares"],
        "days_to_deadline": days_to_deadline(deadline, now) if state["status"] == "open" else 0,
        "help_shifts": [{k: s[k] for k in ("shift_id", "date", "place", "hands", "what", "hands_missing")}
                        | {"signed_up": len(s["signed_up"])} for s in state["help_shifts"]]}


async def offering(conn: asyncpg.Connection, community_id: str, offering_id: str) -> dict[str, Any] | None:
    state = await conn.fetchval("SELECT state FROM offerings_view WHERE community_id = $1 AND offering_id = $2",
                                community_id, offering_id)
    return json.loads(state) if state else None


async def offerings(conn: asyncpg.Connection, community_id: str, status: str | None, partners_only: bool,
                    cursor: str | None, limit: int) -> dict[str, Any]:
    if cursor is not None and not cursor.isdigit():
        raise Invalid("cursor", "not a cursor from an earlier page")
    rows = await conn.fetch(
        "SELECT seq, state FROM offerings_view WHERE community_id = $1 AND seq > $2 AND ($3::text IS NULL OR "
        "status = $3) AND (NOT $4 OR visibility = 'partners') ORDER BY seq LIMIT $5",
        community_id, int(cursor or 0), status, partners_only, limit + 1)
    return {"items": [status_view(json.loads(r["state"])) for r in rows[:limit]],
            "next_cursor": str(rows[limit - 1]["seq"]) if len(rows) > limit else None}


async def producer_view(conn: asyncpg.Connection, state: dict[str, Any]) -> dict[str, Any]:
    names = {r["member_id"]: r["display_name"] for r in await conn.fetch(
        "SELECT member_id, display_name FROM roster WHERE community_id = $1", state["community_id"])}
    intro = await conn.fetchrow(
        "SELECT count(*) AS made, count(*) FILTER (WHERE worked) AS worked, count(*) FILTER (WHERE worked IS NOT NULL)"
        " AS with_outcome FROM referrals WHERE community_id = $1 AND offering_id = $2",
        state["community_id"], state["offering_id"])
    feedback = state["feedback"]
    again = sum(1 for f in feedback if f["would_commit_again"])
    return {
        **status_view(state),
        "commitments": [{**c, "display_name": names.get(c["member_id"]) or c.get("display_name") or c["member_id"]}
                        for c in state["commitments"]],
        "help_coverage": [{**s, "covered": not s["hands_missing"]} for s in state["help_shifts"]],
        "deliveries": state["deliveries"],
        "deliveries_outstanding": state["deliveries_outstanding"],
        "feedback": feedback,
        "would_commit_again": {"yes": again, "of": len(feedback),
                               "rate": round(again / len(feedback), 3) if feedback else None},
        "introductions": {"made": intro["made"], "worked": intro["worked"],
                          "success_rate": round(intro["worked"] / intro["with_outcome"], 3)
                          if intro["with_outcome"] else None},
    }


async def member_offerings(conn: asyncpg.Connection, community_id: str, member_id: str) -> list[dict[str, Any]]:
    """Offerings the member committed to (now or before) or helps at, newest first."""
    rows = await conn.fetch(
        "SELECT v.state FROM offerings_view v WHERE v.community_id = $1 AND (v.state->'helpers' ? $2 OR EXISTS "
        "(SELECT 1 FROM offering_commitments c WHERE c.offering_id = v.offering_id AND c.member_id = $2)) "
        "ORDER BY v.seq DESC", community_id, member_id)
    return [json.loads(r["state"]) for r in rows]


def member_commitment(state: dict[str, Any], member_id: str) -> dict[str, Any]:
    mine = next((c for c in state["commitments"] if c["member_id"] == member_id), None)
    return {
        "offering_id": state["offering_id"], "title": state["terms"]["title"], "season": state["terms"]["season"],
        "producer_id": state["producer_id"], "offering_status": state["status"],
        "shares": mine["shares"] if mine else 0, "commitment_status": mine["status"] if mine else None,
        "reason": mine["reason"] if mine else "", "price": state["terms"]["price"],
        "commitment_deadline": state["terms"]["commitment_deadline"],
        "delivery_dates": state["terms"]["delivery_dates"],
        "deliveries": [d for d in state["deliveries"] if d["member_id"] == member_id],
        "help_shifts": [{k: s[k] for k in ("shift_id", "date", "place", "what")}
                        for s in state["help_shifts"] if member_id in s["signed_up"]],
    }


async def due_for_settlement(conn: asyncpg.Connection, limit: int = 100) -> list[asyncpg.Record]:
    return list(await conn.fetch(
        "SELECT offering_id, community_id FROM offerings_view WHERE status = 'open' AND commitment_deadline <= now() "
        "ORDER BY commitment_deadline LIMIT $1", limit))


async def lead_user_reputation(conn: asyncpg.Connection, community_id: str, producer_id: str) -> dict[str, Any]:
    """Lead-user feedback on a producer's offerings, counted beside the 360° feedback of job requests."""
    row = await conn.fetchrow(
        "SELECT count(*) AS n, count(DISTINCT offering_id) AS offerings, count(*) FILTER (WHERE would_commit_again) "
        "AS again FROM offering_feedback WHERE community_id = $1 AND producer_id = $2", community_id, producer_id)
    return {"feedback_count": row["n"], "offerings": row["offerings"], "would_commit_again": row["again"],
            "would_commit_again_rate": round(row["again"] / row["n"], 3) if row["n"] else None}

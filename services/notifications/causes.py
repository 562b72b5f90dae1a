"""Who hears about what: each event of the bus that needs someone becomes notifications — a kind, the members
it is for and the facts its message tells. The few facts an event does not carry (a job's title and
requester, a session's title, a community's name, who runs it) come from small tables kept from earlier
events in the same ordered consumer (``remember``), so they are there before anything that needs them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from kizuna.envelope import Envelope

LOOKUPS_SQL = """
CREATE TABLE known_communities (community_id text PRIMARY KEY, name text NOT NULL);
CREATE TABLE known_jobs (job_id text PRIMARY KEY, community_id text NOT NULL, requester_id text NOT NULL,
                         title text NOT NULL);
CREATE TABLE known_sessions (session_id text PRIMARY KEY, community_id text NOT NULL, title text NOT NULL,
                             starts_at timestamptz NOT NULL, ends_at timestamptz NOT NULL, time_zone text NOT NULL,
                             place text, sequence int NOT NULL DEFAULT 0);
"""
# What reminders need (the second migration: the first was already applied where the service runs).
REMINDER_LOOKUPS_SQL = """
ALTER TABLE known_sessions ADD COLUMN cancelled boolean NOT NULL DEFAULT false;
CREATE TABLE known_registrations (session_id text NOT NULL, member_id text NOT NULL,
                                  PRIMARY KEY (session_id, member_id));
CREATE TABLE known_offers (offer_id text PRIMARY KEY, community_id text NOT NULL, applicant_id text NOT NULL,
                           expires_at timestamptz NOT NULL, open boolean NOT NULL DEFAULT true);
"""


@dataclass(frozen=True)
class Cause:
    kind: str
    members: list[str]
    facts: dict[str, Any]


async def remember(conn: asyncpg.Connection, e: Envelope) -> None:
    """Keeps what later messages need to say (names and titles), in event order."""
    d = e.data
    if e.type in ("CommunityFounded", "SisterCommunityFounded") and d.get("name"):
        await conn.execute("INSERT INTO known_communities VALUES ($1, $2) ON CONFLICT (community_id) DO UPDATE "
                           "SET name = EXCLUDED.name", e.community_id, d["name"])
    elif e.type == "JobRequestPosted":
        await conn.execute("INSERT INTO known_jobs VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                           d["job_id"], e.community_id, d["requester_id"], d["title"])
    elif e.type == "SessionScheduled":
        await conn.execute("INSERT INTO known_sessions VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                           d["session_id"], e.community_id, d["title"], _moment(d["starts_at"]),
                           _moment(d["ends_at"]), d["time_zone"], d.get("place") or d.get("link"), e.stream_version)
    elif e.type == "SessionRescheduled":
        await conn.execute("UPDATE known_sessions SET starts_at = $2, ends_at = $3, time_zone = $4, place = $5, "
                           "sequence = $6 WHERE session_id = $1", d["session_id"], _moment(d["starts_at"]),
                           _moment(d["ends_at"]), d["time_zone"], d.get("place") or d.get("link"), e.stream_version)
    elif e.type == "SessionCancelled":
        await conn.execute("UPDATE known_sessions SET sequence = $2, cancelled = true WHERE session_id = $1",
                           d["session_id"], e.stream_version)
    elif e.type in ("MemberRegistered", "WaitlistPromoted"):
        await conn.execute("INSERT INTO known_registrations VALUES ($1, $2) ON CONFLICT DO NOTHING",
                           d["session_id"], d["member_id"])
    elif e.type == "RegistrationCancelled":
        await conn.execute("DELETE FROM known_registrations WHERE session_id = $1 AND member_id = $2",
                           d["session_id"], d["member_id"])
    elif e.type == "PlaceOffered":
        await conn.execute("INSERT INTO known_offers VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING", d["offer_id"],
                           e.community_id, d["applicant_id"], _moment(d["expires_at"]))
    elif e.type in ("PlaceOfferAccepted", "PlaceOfferDeclined", "PlaceOfferExpired"):
        await conn.execute("UPDATE known_offers SET open = false WHERE offer_id = $1", d["offer_id"])


async def causes(conn: asyncpg.Connection, e: Envelope) -> list[Cause]:
    """The notifications this event causes (none for most events)."""
    d, cid = e.data, e.community_id
    community = await conn.fetchval("SELECT name FROM known_communities WHERE community_id = $1", cid) or ""
    base = {"community": community, "community_id": cid}
    if e.type == "PlaceOffered":
        return [Cause("place-offered", [d["applicant_id"]],
                      {**base, "expires_at": d["expires_at"], "path": f"/waiting/{cid}"})]
    if e.type in ("ApplicationApproved", "ApplicationDeclined"):
        approved = e.type == "ApplicationApproved"
        return [Cause("application-decided", [d["applicant_id"]],
                      {**base, "approved": approved, "reason": d.get("reason", ""),
                       "path": f"/app/c/{cid}" if approved else f"/join/{cid}"})]
    if e.type == "ApplicationSubmitted":
        stewards = await conn.fetch("SELECT member_id FROM roster WHERE community_id = $1 AND active "
                                    "AND role IN ('owner', 'facilitator') ORDER BY member_id", cid)
        return [Cause("application-received", [r["member_id"] for r in stewards],
                      {**base, "name": d["display_name"], "path": f"/app/c/{cid}/stewarding"})]
    if e.type in ("JobOffered", "JobReferred"):
        job = await conn.fetchrow("SELECT requester_id, title FROM known_jobs WHERE job_id = $1", d["job_id"])
        if job is None or job["requester_id"] == d["member_id"]:
            return []
        return [Cause("job-offer", [job["requester_id"]],
                      {**base, "title": job["title"], "name": await _name(conn, cid, d["member_id"]),
                       "referred_by": await _name(conn, cid, d["referred_by"]) if e.type == "JobReferred" else None,
                       "path": f"/app/c/{cid}/jobs/{d['job_id']}"})]
    if e.type == "JobAssigned":
        job = await conn.fetchrow("SELECT title FROM known_jobs WHERE job_id = $1", d["job_id"])
        return [Cause("job-assigned", list(d["member_ids"]),
                      {**base, "title": job["title"] if job else "", "path": f"/app/c/{cid}/jobs/{d['job_id']}"})]
    if e.type == "ReferralMade" and d.get("to_member_id"):
        return [Cause("introduced", [d["referred_id"]],
                      {**base, "referrer": await _name(conn, cid, d["referrer_id"]),
                       "to": await _name(conn, cid, d["to_member_id"]), "note": d.get("note", ""),
                       "path": f"/app/c/{cid}/introductions"})]
    if e.type == "FeedbackGiven":
        job = await conn.fetchrow("SELECT title FROM known_jobs WHERE job_id = $1", d["job_id"])
        return [Cause("feedback-received", [d["subject_id"]],
                      {**base, "title": job["title"] if job else "", "path": f"/app/c/{cid}/profile"})]
    if e.type == "WaitlistPromoted":
        session = await _session(conn, d["session_id"])
        return [Cause("session-promoted", [d["member_id"]], {**base, **session, "path": f"/app/c/{cid}/sessions"})]
    if e.type in ("SessionRescheduled", "SessionCancelled"):
        session = await _session(conn, d["session_id"])
        return [Cause("session-changed", list(d["registrants"]),
                      {**base, **session, "cancelled": e.type == "SessionCancelled", "reason": d.get("reason", ""),
                       "path": f"/app/c/{cid}/sessions"})]
    return []


async def _name(conn: asyncpg.Connection, community_id: str, member_id: str) -> str:
    name = await conn.fetchval("SELECT display_name FROM roster WHERE community_id = $1 AND member_id = $2",
                               community_id, member_id)
    return str(name) if name else ""


async def _session(conn: asyncpg.Connection, session_id: str) -> dict[str, Any]:
    row = await conn.fetchrow("SELECT * FROM known_sessions WHERE session_id = $1", session_id)
    if row is None:
        return {"session_id": session_id, "title": ""}
    return {"session_id": session_id, "title": row["title"], "starts_at": row["starts_at"].isoformat(),
            "ends_at": row["ends_at"].isoformat(), "time_zone": row["time_zone"], "place": row["place"],
            "sequence": row["sequence"]}


def _moment(value: Any) -> Any:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


__all__ = ["LOOKUPS_SQL", "REMINDER_LOOKUPS_SQL", "Cause", "causes", "remember"]

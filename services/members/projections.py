"""Read models of the members service, updated in the same transaction as each append."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import asyncpg

from kizuna.erasure import Scrub
from kizuna.errors import Invalid
from kizuna.eventstore import RecordedEvent
from kizuna.personal import ERASED_NAME
from kizuna.personal_data import Section
from kizuna.service import Migration

SQL = """
CREATE TABLE communities (
    community_id text PRIMARY KEY, name text NOT NULL, purpose text NOT NULL, "values" text[] NOT NULL,
    member_cap int NOT NULL, size int NOT NULL DEFAULT 0, version int NOT NULL DEFAULT 0,
    founded_at timestamptz NOT NULL
);
CREATE TABLE members (
    community_id text NOT NULL, member_id text NOT NULL, display_name text NOT NULL, role text NOT NULL,
    status text NOT NULL DEFAULT 'active', joined_via text NOT NULL, vouched_by text,
    vector text NOT NULL DEFAULT '', skills text[] NOT NULL DEFAULT '{}', "values" text[] NOT NULL DEFAULT '{}',
    shared_fields text[] NOT NULL DEFAULT '{display_name}', joined_at timestamptz NOT NULL,
    seq bigint NOT NULL, PRIMARY KEY (community_id, member_id)
);
CREATE INDEX members_directory ON members (community_id, status, seq);
CREATE INDEX members_skills ON members USING gin (skills);
CREATE TABLE waitlist (
    community_id text NOT NULL, applicant_id text NOT NULL, display_name text NOT NULL, position int NOT NULL,
    joined_via text NOT NULL, vouched_by text, waitlisted_at timestamptz NOT NULL,
    PRIMARY KEY (community_id, applicant_id)
);
"""
ADMISSION_SQL = """
ALTER TABLE communities ADD COLUMN admission_policy text NOT NULL DEFAULT 'open',
    ADD COLUMN questions jsonb NOT NULL DEFAULT '[]', ADD COLUMN max_open_invitations int,
    ADD COLUMN offer_ttl_seconds int NOT NULL DEFAULT 259200, ADD COLUMN sister_of text;
ALTER TABLE waitlist ADD COLUMN offer_id text;
CREATE TABLE applications (
    community_id text NOT NULL, application_id text NOT NULL, applicant_id text NOT NULL,
    display_name text NOT NULL, answers jsonb NOT NULL, referred_by text, status text NOT NULL DEFAULT 'pending',
    decided_by text, reason text, submitted_at timestamptz NOT NULL, decided_at timestamptz, seq bigint NOT NULL,
    PRIMARY KEY (community_id, application_id)
);
CREATE INDEX applications_applicant ON applications (community_id, applicant_id);
CREATE TABLE invitations (
    community_id text NOT NULL, invitation_id text NOT NULL, issued_by text NOT NULL, note text NOT NULL,
    status text NOT NULL DEFAULT 'open', member_id text, issued_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL, accepted_at timestamptz, PRIMARY KEY (community_id, invitation_id)
);
CREATE TABLE place_offers (
    community_id text NOT NULL, offer_id text NOT NULL, applicant_id text NOT NULL, display_name text NOT NULL,
    status text NOT NULL DEFAULT 'open', offered_at timestamptz NOT NULL, expires_at timestamptz NOT NULL,
    settled_at timestamptz, reason text, seq bigint NOT NULL, PRIMARY KEY (community_id, offer_id)
);
CREATE INDEX place_offers_due ON place_offers (expires_at) WHERE status = 'open';
CREATE TABLE community_links (
    community_id text NOT NULL, partner_community_id text NOT NULL, kind text NOT NULL, founded_by text NOT NULL,
    new_owner_member_id text, linked_at timestamptz NOT NULL, PRIMARY KEY (community_id, partner_community_id)
);
"""
MIGRATIONS = [Migration("members_0001", SQL), Migration("members_0002", ADMISSION_SQL)]
READ_MODEL_TABLES = ["communities", "members", "waitlist", "applications", "invitations", "place_offers",
                     "community_links"]

_MEMBER = """
INSERT INTO members (community_id, member_id, display_name, role, joined_via, vouched_by, joined_at, seq)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (community_id, member_id) DO UPDATE SET display_name = EXCLUDED.display_name, role = EXCLUDED.role,
    status = 'active', joined_via = EXCLUDED.joined_via, vouched_by = EXCLUDED.vouched_by
"""
_COMMUNITY_ROW = """
UPDATE communities SET version = coalesce($2, version),
       size = CASE WHEN $3 THEN (SELECT count(*) FROM members WHERE community_id = $1 AND status = 'active')
                   ELSE size END
 WHERE community_id = $1
"""


async def apply(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    d, kind, at = event.data, event.type, event.recorded_at
    cid = d.get("community_id")
    if kind == "CommunityFounded":
        await conn.execute(
            'INSERT INTO communities (community_id, name, purpose, "values", member_cap, founded_at, version, '
            "sister_of) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (community_id) DO NOTHING",
            cid, d["name"], d["purpose"], d["values"], d["member_cap"], at, event.stream_version, d.get("sister_of"))
        await conn.execute(_MEMBER, cid, d["owner_member_id"], d["owner_display_name"], "owner", "founder", None, at,
                           event.global_position)
    elif kind == "CommunityCapChanged":
        await conn.execute("UPDATE communities SET member_cap = $2 WHERE community_id = $1", cid, d["new_cap"])
    elif kind == "MemberJoined":  # and off the waitlist, if they were on it
        await conn.execute("WITH off_waitlist AS (DELETE FROM waitlist WHERE community_id = $1 AND applicant_id = $2) "  # noqa: S608 - _MEMBER is a constant statement; values are parameters
                           + _MEMBER, cid, d["member_id"], d["display_name"], d["role"], d["joined_via"],
                           d.get("vouched_by"), at, event.global_position)
    elif kind == "MemberWaitlisted":
        await conn.execute(
            "INSERT INTO waitlist VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            cid, d["applicant_id"], d["display_name"], d["position"], d["joined_via"], d.get("vouched_by"), at)
    elif kind in ("MemberLeft", "MemberRemoved"):
        status = "left" if kind == "MemberLeft" else "removed"
        await conn.execute("UPDATE members SET status = $3 WHERE community_id = $1 AND member_id = $2",
                           cid, d["member_id"], status)
    elif kind == "MemberRoleChanged":
        await conn.execute("UPDATE members SET role = $3 WHERE community_id = $1 AND member_id = $2",
                           cid, d["member_id"], d["new_role"])
    elif kind == "OwnershipTransferred":
        await conn.execute("UPDATE members SET role = 'facilitator' WHERE community_id = $1 AND member_id = $2",
                           cid, d["from_member_id"])
        await conn.execute("UPDATE members SET role = 'owner' WHERE community_id = $1 AND member_id = $2",
                           cid, d["to_member_id"])
    elif kind == "MemberProfileUpdated":
        await conn.execute(
            'UPDATE members SET display_name = $3, vector = $4, skills = $5, "values" = $6 '
            "WHERE community_id = $1 AND member_id = $2",
            cid, d["member_id"], d["display_name"], d["vector"], d["skills"], d["values"])
    elif kind == "SharingConsentChanged":
        await conn.execute("UPDATE members SET shared_fields = $3 WHERE community_id = $1 AND member_id = $2",
                           cid, d["member_id"], d["shared_fields"])
    else:
        await _apply_admission(conn, event)
    # One statement for the community row: the stream's version and, when membership changed, its size.
    on_stream = event.stream_id.startswith("community-")
    resized = kind in ("CommunityFounded", "MemberJoined", "MemberLeft", "MemberRemoved")
    if on_stream or resized:
        await conn.execute(_COMMUNITY_ROW, cid, event.stream_version if on_stream else None, resized)


async def _apply_admission(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    """Admission, the moving waitlist and sister communities."""
    d, kind, at = event.data, event.type, event.recorded_at
    cid = d.get("community_id")
    if kind == "AdmissionPolicyChanged":
        await conn.execute(
            "UPDATE communities SET admission_policy = $2, questions = $3::jsonb, max_open_invitations = $4, "
            "offer_ttl_seconds = $5 WHERE community_id = $1",
            cid, d["policy"], json.dumps(d["questions"]), d["max_open_invitations"], d["offer_ttl_seconds"])
    elif kind == "ApplicationSubmitted":
        await conn.execute(
            "INSERT INTO applications (community_id, application_id, applicant_id, display_name, answers, "
            "referred_by, submitted_at, seq) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8) ON CONFLICT DO NOTHING",
            cid, d["application_id"], d["applicant_id"], d["display_name"], json.dumps(d["answers"]),
            d.get("referred_by"), at, event.global_position)
    elif kind in ("ApplicationApproved", "ApplicationDeclined"):
        await conn.execute(
            "UPDATE applications SET status = $3, decided_by = $4, reason = $5, decided_at = $6 "
            "WHERE community_id = $1 AND application_id = $2",
            cid, d["application_id"], "approved" if kind == "ApplicationApproved" else "declined",
            d["decided_by"], d["reason"], at)
    elif kind == "InvitationIssued":
        await conn.execute(
            "INSERT INTO invitations (community_id, invitation_id, issued_by, note, issued_at, expires_at) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            cid, d["invitation_id"], d["issued_by"], d["note"], at, datetime.fromisoformat(d["expires_at"]))
    elif kind == "InvitationAccepted":
        await conn.execute(
            "UPDATE invitations SET status = 'used', member_id = $3, accepted_at = $4 "
            "WHERE community_id = $1 AND invitation_id = $2", cid, d["invitation_id"], d["member_id"], at)
    elif kind == "PlaceOffered":
        await conn.execute(
            "INSERT INTO place_offers (community_id, offer_id, applicant_id, display_name, offered_at, expires_at, "
            "seq) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            cid, d["offer_id"], d["applicant_id"], d["display_name"], at, datetime.fromisoformat(d["expires_at"]),
            event.global_position)
        await conn.execute("UPDATE waitlist SET offer_id = $3 WHERE community_id = $1 AND applicant_id = $2",
                           cid, d["applicant_id"], d["offer_id"])
    elif kind in ("PlaceOfferAccepted", "PlaceOfferDeclined", "PlaceOfferExpired"):
        status = {"PlaceOfferAccepted": "accepted", "PlaceOfferDeclined": "declined",
                  "PlaceOfferExpired": "expired"}[kind]
        await conn.execute(
            "UPDATE place_offers SET status = $3, settled_at = $4, reason = $5 "
            "WHERE community_id = $1 AND offer_id = $2", cid, d["offer_id"], status, at, d.get("reason"))
        if kind != "PlaceOfferAccepted":
            await conn.execute("DELETE FROM waitlist WHERE community_id = $1 AND applicant_id = $2",
                               cid, d["applicant_id"])
    elif kind == "SisterCommunityFounded":
        for one, other in ((cid, d["sister_community_id"]), (d["sister_community_id"], cid)):
            await conn.execute(
                "INSERT INTO community_links (community_id, partner_community_id, kind, founded_by, "
                "new_owner_member_id, linked_at) VALUES ($1, $2, 'sister', $3, $4, $5) ON CONFLICT DO NOTHING",
                one, other, d["founded_by"], d["new_owner_member_id"], at)


INLINE_PROJECTIONS = [apply]


def replay_partition(event: RecordedEvent) -> str:
    """Every row ``apply`` writes is keyed by the event's community (a sister founding also inserts the
    sister's link row, which nothing else writes), so a rebuild may replay communities side by side."""
    return str(event.data.get("community_id") or "")


def member_view(row: asyncpg.Record) -> dict[str, Any]:
    return {key: (list(row[key]) if isinstance(row[key], list) else row[key]) for key in (
        "community_id", "member_id", "display_name", "role", "status", "joined_via", "vouched_by", "vector",
        "skills", "values", "shared_fields", "joined_at")}


async def community(conn: asyncpg.Connection, community_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM communities WHERE community_id = $1", community_id)
    if row is None:
        return None
    roles = {r["role"]: r["n"] for r in await conn.fetch(
        "SELECT role, count(*) AS n FROM members WHERE community_id = $1 AND status = 'active' GROUP BY role",
        community_id)}
    waiting = await conn.fetchval("SELECT count(*) FROM waitlist WHERE community_id = $1 AND offer_id IS NULL",
                                  community_id)
    offered = await conn.fetchval(
        "SELECT count(*) FROM place_offers WHERE community_id = $1 AND status = 'open'", community_id)
    return {"community_id": row["community_id"], "name": row["name"], "purpose": row["purpose"],
            "values": list(row["values"]), "member_cap": row["member_cap"], "size": row["size"],
            "places_left": max(row["member_cap"] - row["size"] - offered, 0), "waitlist": waiting,
            "open_offers": offered, "admission_policy": row["admission_policy"], "sister_of": row["sister_of"],
            "roles": {r: roles.get(r, 0) for r in ("owner", "facilitator", "member")},
            "founded_at": row["founded_at"], "version": row["version"]}


async def communities(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT community_id FROM communities ORDER BY founded_at")
    return [c for c in [await community(conn, r["community_id"]) for r in rows] if c]


async def member(conn: asyncpg.Connection, community_id: str, member_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM members WHERE community_id = $1 AND member_id = $2",
                               community_id, member_id)


async def directory(conn: asyncpg.Connection, community_id: str, *, skill: str | None, q: str | None,
                    role: str | None, cursor: str | None, limit: int) -> dict[str, Any]:
    after = 0
    if cursor:
        if not cursor.isdigit():
            raise Invalid("cursor", "not a cursor from an earlier page")
        after = int(cursor)
    rows = await conn.fetch(
        """
        SELECT * FROM members
         WHERE community_id = $1 AND status = 'active' AND seq > $2
           AND ($3::text IS NULL OR $3 = ANY(skills))
           AND ($4::text IS NULL OR vector ILIKE '%' || $4 || '%' OR display_name ILIKE '%' || $4 || '%')
           AND ($5::text IS NULL OR role = $5)
         ORDER BY seq LIMIT $6
        """, community_id, after, skill, q, role, limit + 1)
    items = [member_view(r) for r in rows[:limit]]
    return {"items": items, "next_cursor": str(rows[limit - 1]["seq"]) if len(rows) > limit else None}


async def waitlist(conn: asyncpg.Connection, community_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT * FROM waitlist WHERE community_id = $1 ORDER BY position", community_id)
    return [dict(r) for r in rows]


async def admission(conn: asyncpg.Connection, community_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        'SELECT name, purpose, "values", member_cap, size, admission_policy, questions, max_open_invitations, '
        "offer_ttl_seconds, (SELECT count(*) FROM place_offers o WHERE o.community_id = c.community_id "
        "AND o.status = 'open') AS offered FROM communities c WHERE community_id = $1", community_id)
    if row is None:
        return None
    # What someone holding the join link reads before deciding: the community's own words about itself and
    # whether there is room — nothing about its members.
    return {"name": row["name"], "purpose": row["purpose"], "values": list(row["values"]),
            "places_left": max(row["member_cap"] - row["size"] - row["offered"], 0),
            "policy": row["admission_policy"], "questions": json.loads(row["questions"]),
            "max_open_invitations": row["max_open_invitations"], "offer_ttl_seconds": row["offer_ttl_seconds"]}


def _application(row: asyncpg.Record, waitlisted: bool, offer: asyncpg.Record | None,
                 joined: bool) -> dict[str, Any]:
    view = {key: row[key] for key in ("community_id", "application_id", "applicant_id", "display_name",
                                      "referred_by", "decided_by", "reason", "submitted_at", "decided_at")}
    view["answers"] = json.loads(row["answers"])
    status = row["status"]
    if status == "approved":
        status = "joined" if joined else "offered" if offer is not None else "waitlisted" if waitlisted else "lapsed"
    view["status"] = status
    view["offer_id"] = offer["offer_id"] if offer is not None else None
    view["offer_expires_at"] = offer["expires_at"] if offer is not None else None
    return view


_APPLICATION = """
SELECT a.*, (m.member_id IS NOT NULL) AS joined, (w.applicant_id IS NOT NULL) AS waiting
  FROM applications a
  LEFT JOIN members m ON m.community_id = a.community_id AND m.member_id = a.applicant_id
  LEFT JOIN waitlist w ON w.community_id = a.community_id AND w.applicant_id = a.applicant_id
"""


async def _offer_for(conn: asyncpg.Connection, community_id: str, applicant_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM place_offers WHERE community_id = $1 AND applicant_id = $2 "
                               "AND status = 'open'", community_id, applicant_id)


async def application(conn: asyncpg.Connection, community_id: str, application_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(_APPLICATION + " WHERE a.community_id = $1 AND a.application_id = $2",
                              community_id, application_id)
    if row is None:
        return None
    return _application(row, row["waiting"], await _offer_for(conn, community_id, row["applicant_id"]), row["joined"])


async def applications(conn: asyncpg.Connection, community_id: str, status: str | None) -> list[dict[str, Any]]:
    rows = await conn.fetch(_APPLICATION + " WHERE a.community_id = $1 AND ($2::text IS NULL OR a.status = $2) "
                            "ORDER BY a.seq", community_id, status)
    return [_application(r, r["waiting"], await _offer_for(conn, community_id, r["applicant_id"]), r["joined"])
            for r in rows]


async def invitations(conn: asyncpg.Connection, community_id: str, issued_by: str | None,
                      at: datetime) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT * FROM invitations WHERE community_id = $1 AND ($2::text IS NULL OR issued_by = $2) "
        "ORDER BY issued_at", community_id, issued_by)
    return [{**{k: r[k] for k in ("community_id", "invitation_id", "issued_by", "note", "member_id", "issued_at",
                                  "expires_at", "accepted_at")},
             "status": "expired" if r["status"] == "open" and r["expires_at"] <= at else r["status"]} for r in rows]


_OFFER_FIELDS = ("community_id", "offer_id", "applicant_id", "display_name", "status", "offered_at", "expires_at",
                 "settled_at", "reason")


async def offers(conn: asyncpg.Connection, community_id: str, status: str | None) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT * FROM place_offers WHERE community_id = $1 AND ($2::text IS NULL OR status = $2) ORDER BY seq",
        community_id, status)
    return [{k: r[k] for k in _OFFER_FIELDS} for r in rows]


async def offer(conn: asyncpg.Connection, community_id: str, offer_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM place_offers WHERE community_id = $1 AND offer_id = $2",
                              community_id, offer_id)
    return {k: row[k] for k in _OFFER_FIELDS} if row is not None else None


async def communities_with_due_offers(conn: asyncpg.Connection, at: datetime) -> list[str]:
    rows = await conn.fetch(
        "SELECT DISTINCT community_id FROM place_offers WHERE status = 'open' AND expires_at <= $1", at)
    return [r["community_id"] for r in rows]


async def links(conn: asyncpg.Connection, community_id: str | None = None) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT l.*, c.name AS partner_name FROM community_links l "
        "LEFT JOIN communities c ON c.community_id = l.partner_community_id "
        "WHERE $1::text IS NULL OR l.community_id = $1 ORDER BY l.linked_at, l.community_id", community_id)
    return [dict(r) for r in rows]


async def ecosystem(conn: asyncpg.Connection) -> dict[str, Any]:
    every = await communities(conn)
    return {"communities": every,
            "links": [link for link in await links(conn) if link["community_id"] < link["partner_community_id"]]}


# What the members service holds about one member (kizuna.personal_data; docs/data-rights.md). Applications,
# waitlist places and place offers are the member's own when they were the applicant; invitations, when they
# issued or accepted them (their code is shown to no one, so its hash is not here).
PERSONAL_DATA = [
    Section("membership", "SELECT to_jsonb(t) AS row FROM members t WHERE community_id = $1 AND member_id = $2"),
    Section("applications", "SELECT to_jsonb(t) AS row FROM applications t "
                            "WHERE community_id = $1 AND applicant_id = $2 ORDER BY submitted_at"),
    Section("waitlist", "SELECT to_jsonb(t) AS row FROM waitlist t WHERE community_id = $1 AND applicant_id = $2"),
    Section("place_offers", "SELECT to_jsonb(t) AS row FROM place_offers t "
                            "WHERE community_id = $1 AND applicant_id = $2 ORDER BY offered_at"),
    Section("invitations", "SELECT to_jsonb(t) AS row FROM invitations t "
                           "WHERE community_id = $1 AND (issued_by = $2 OR member_id = $2) ORDER BY issued_at"),
]


# The copies of a member's (or applicant's) personal data these read models take, set to their placeholders
# when the member is erased (kizuna.erasure): the rows stay, so sizes, waitlists and histories do not change.
ERASURE = [
    Scrub("members", "member_id", {"display_name": ERASED_NAME, "vector": "", "skills": [], "values": []}),
    Scrub("waitlist", "applicant_id", {"display_name": ERASED_NAME}),
    Scrub("applications", "applicant_id", {"display_name": ERASED_NAME, "answers": "{}"}),
    Scrub("place_offers", "applicant_id", {"display_name": ERASED_NAME, "reason": None}),
    Scrub("invitations", "issued_by", {"note": ""}),
]

"""Read models of the members service, updated in the same transaction as each append."""

from __future__ import annotations

from typing import Any

import asyncpg

from kizuna.errors import Invalid
from kizuna.eventstore import RecordedEvent
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
MIGRATIONS = [Migration("members_0001", SQL)]
READ_MODEL_TABLES = ["communities", "members", "waitlist"]

_MEMBER = """
INSERT INTO members (community_id, member_id, display_name, role, joined_via, vouched_by, joined_at, seq)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (community_id, member_id) DO UPDATE SET display_name = EXCLUDED.display_name, role = EXCLUDED.role,
    status = 'active', joined_via = EXCLUDED.joined_via, vouched_by = EXCLUDED.vouched_by
"""
_SIZE = ("UPDATE communities SET size = (SELECT count(*) FROM members WHERE community_id = $1 AND status = 'active') "
         "WHERE community_id = $1")


async def apply(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    d, kind, at = event.data, event.type, event.recorded_at
    cid = d.get("community_id")
    if event.stream_id.startswith("community-"):
        await conn.execute("UPDATE communities SET version = $2 WHERE community_id = $1", cid, event.stream_version)
    if kind == "CommunityFounded":
        await conn.execute(
            'INSERT INTO communities (community_id, name, purpose, "values", member_cap, founded_at, version) '
            "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (community_id) DO NOTHING",
            cid, d["name"], d["purpose"], d["values"], d["member_cap"], at, event.stream_version)
        await conn.execute(_MEMBER, cid, d["owner_member_id"], d["owner_display_name"], "owner", "founder", None, at,
                           event.global_position)
    elif kind == "CommunityCapChanged":
        await conn.execute("UPDATE communities SET member_cap = $2 WHERE community_id = $1", cid, d["new_cap"])
    elif kind == "MemberJoined":
        await conn.execute(_MEMBER, cid, d["member_id"], d["display_name"], d["role"], d["joined_via"],
                           d.get("vouched_by"), at, event.global_position)
        await conn.execute("DELETE FROM waitlist WHERE community_id = $1 AND applicant_id = $2", cid, d["member_id"])
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
    if kind in ("CommunityFounded", "MemberJoined", "MemberLeft", "MemberRemoved"):
        await conn.execute(_SIZE, cid)


INLINE_PROJECTIONS = [apply]


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
    waiting = await conn.fetchval("SELECT count(*) FROM waitlist WHERE community_id = $1", community_id)
    return {"community_id": row["community_id"], "name": row["name"], "purpose": row["purpose"],
            "values": list(row["values"]), "member_cap": row["member_cap"], "size": row["size"],
            "places_left": max(row["member_cap"] - row["size"], 0), "waitlist": waiting,
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

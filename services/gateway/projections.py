"""The gateway's own read models: who is who (for tokens), revocations, idempotency records and the
community health figures, all fed by events."""

from __future__ import annotations

from typing import Any

import asyncpg

from kizuna.eventstore import RecordedEvent
from kizuna.service import Migration

SQL = """
CREATE TABLE directory (
    community_id text NOT NULL, member_id text NOT NULL, display_name text NOT NULL DEFAULT '',
    role text NOT NULL, active boolean NOT NULL, joined_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (community_id, member_id)
);
CREATE TABLE community_caps (community_id text PRIMARY KEY, name text NOT NULL, member_cap int NOT NULL);
CREATE TABLE revoked_tokens (token_id text PRIMARY KEY, revoked_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE idempotency (
    principal text NOT NULL, key text NOT NULL, request_hash text NOT NULL, status int NOT NULL,
    body bytea NOT NULL, content_type text, created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (principal, key)
);
CREATE TABLE health_attendance (
    session_id text PRIMARY KEY, community_id text NOT NULL, attendees text[] NOT NULL
);
CREATE TABLE health_items (
    kind text NOT NULL, item_id text NOT NULL, community_id text NOT NULL, status text NOT NULL,
    PRIMARY KEY (kind, item_id)
);
CREATE INDEX health_items_by_community ON health_items (community_id, kind, status);
"""

MIGRATIONS = [Migration("gateway_0001", SQL)]
READ_MODEL_TABLES = ["directory", "community_caps", "revoked_tokens", "health_attendance", "health_items"]


async def apply_own_event(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    if event.type == "TokenRevoked":
        await conn.execute("INSERT INTO revoked_tokens (token_id) VALUES ($1) ON CONFLICT DO NOTHING",
                           event.data["token_id"])


INLINE_PROJECTIONS = [apply_own_event]


async def is_revoked(conn: asyncpg.Connection, token_id: str | None) -> bool:
    if not token_id:
        return False
    return bool(await conn.fetchval("SELECT true FROM revoked_tokens WHERE token_id = $1", token_id))


async def member(conn: asyncpg.Connection, community_id: str, member_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM directory WHERE community_id = $1 AND member_id = $2 AND active",
                               community_id, member_id)


async def community_exists(conn: asyncpg.Connection, community_id: str) -> bool:
    return bool(await conn.fetchval("SELECT true FROM community_caps WHERE community_id = $1", community_id))


async def health(conn: asyncpg.Connection, community_id: str, few_ties: int = 1) -> dict[str, Any]:
    cap_row = await conn.fetchrow("SELECT name, member_cap FROM community_caps WHERE community_id = $1",
                                  community_id)
    roles = {r["role"]: r["n"] for r in await conn.fetch(
        "SELECT role, count(*) AS n FROM directory WHERE community_id = $1 AND active GROUP BY role", community_id)}
    members = sum(roles.values())
    joined_30d = await conn.fetchval(
        "SELECT count(*) FROM directory WHERE community_id = $1 AND joined_at > now() - interval '30 days'",
        community_id)
    ties = await conn.fetch(
        """
        WITH pairs AS (
            SELECT DISTINCT a.m AS member_id, b.m AS other
              FROM health_attendance s, unnest(s.attendees) a(m), unnest(s.attendees) b(m)
             WHERE s.community_id = $1 AND a.m <> b.m)
        SELECT d.member_id, d.display_name, count(p.other) AS ties
          FROM directory d LEFT JOIN pairs p ON p.member_id = d.member_id
         WHERE d.community_id = $1 AND d.active
         GROUP BY d.member_id, d.display_name
        HAVING count(p.other) <= $2
         ORDER BY ties, d.display_name
        """, community_id, few_ties)
    items = {(r["kind"], r["status"]): r["n"] for r in await conn.fetch(
        "SELECT kind, status, count(*) AS n FROM health_items WHERE community_id = $1 GROUP BY kind, status",
        community_id)}
    attendance = await conn.fetchrow(
        "SELECT count(*) AS sessions, coalesce(avg(cardinality(attendees)), 0) AS average "
        "FROM health_attendance WHERE community_id = $1", community_id)
    worked, failed = items.get(("referral", "worked"), 0), items.get(("referral", "did-not-work"), 0)
    goals_active = items.get(("goal", "active"), 0)
    return {
        "community_id": community_id,
        "name": cap_row["name"] if cap_row else None,
        "members": members,
        "member_cap": cap_row["member_cap"] if cap_row else None,
        "fill_ratio": round(members / cap_row["member_cap"], 3) if cap_row and cap_row["member_cap"] else None,
        "joined_last_30_days": joined_30d,
        "roles": {"owner": roles.get("owner", 0), "facilitator": roles.get("facilitator", 0),
                  "member": roles.get("member", 0)},
        "members_per_facilitator": round(members / max(roles.get("facilitator", 0) + roles.get("owner", 0), 1), 2),
        "members_with_few_ties": [{"member_id": r["member_id"], "display_name": r["display_name"],
                                   "ties": r["ties"]} for r in ties],
        "jobs": {"open": items.get(("job", "open"), 0), "completed": items.get(("job", "completed"), 0),
                 "cancelled": items.get(("job", "cancelled"), 0)},
        "referrals": {"worked": worked, "did_not_work": failed,
                      "success_rate": round(worked / (worked + failed), 3) if worked + failed else None},
        "sessions": {"held": attendance["sessions"], "average_attendance": round(float(attendance["average"]), 2)},
        "goals": {"active": goals_active, "achieved": items.get(("goal", "achieved"), 0),
                  "abandoned": items.get(("goal", "abandoned"), 0)},
    }

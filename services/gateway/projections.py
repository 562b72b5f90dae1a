"""The gateway's own read models: who is who (for tokens), revocations, idempotency records and the
community health figures, all fed by events."""

from __future__ import annotations

from typing import Any

import asyncpg

from kizuna.eventstore import RecordedEvent
from kizuna.retention import INBOX, Retention
from kizuna.service import Migration

from .idempotency import MIGRATION as IDEMPOTENCY_RESERVATIONS
from .memory import ALL_COMMUNITIES, HEALTH_CHANNEL, REVOCATIONS_CHANNEL

HEALTH_TABLES = ("directory", "community_caps", "health_attendance", "health_items")  # what the figures read

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

# Each gateway process keeps health answers and revoked token ids in memory (services/gateway/memory.py).
# Every write to a table they come from notifies, in the writing transaction, whoever is listening — the
# projections, the consumers' grouped writes and rebuilds alike (PostgreSQL delivers on commit, and sends
# one of several identical notifications of a transaction). An update that changes nothing is silent.
MEMORY_NOTIFICATIONS = f"""
CREATE INDEX health_attendance_by_community ON health_attendance (community_id);

CREATE FUNCTION gateway_health_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('{HEALTH_CHANNEL}', OLD.community_id);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pg_notify('{HEALTH_CHANNEL}', NEW.community_id);
    END IF;
    RETURN NULL;
END $$;
CREATE FUNCTION gateway_health_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{HEALTH_CHANNEL}', '{ALL_COMMUNITIES}');
    RETURN NULL;
END $$;
CREATE FUNCTION gateway_token_revoked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{REVOCATIONS_CHANNEL}', NEW.token_id);
    RETURN NULL;
END $$;
""" + "".join(f"""
CREATE TRIGGER {table}_health_written AFTER INSERT OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION gateway_health_changed();
CREATE TRIGGER {table}_health_updated AFTER UPDATE ON {table}
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION gateway_health_changed();
CREATE TRIGGER {table}_health_truncated AFTER TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION gateway_health_truncated();
""" for table in HEALTH_TABLES) + """
CREATE TRIGGER revoked_tokens_notified AFTER INSERT ON revoked_tokens
    FOR EACH ROW EXECUTE FUNCTION gateway_token_revoked();
"""

MIGRATIONS = [Migration("gateway_0001", SQL),
              Migration("gateway_0002_memory_notifications", MEMORY_NOTIFICATIONS),
              IDEMPOTENCY_RESERVATIONS,
              Migration("gateway_0005_retention_indexes",
                        "CREATE INDEX idempotency_by_age ON idempotency (created_at); "
                        "CREATE INDEX revoked_tokens_by_age ON revoked_tokens (revoked_at);")]
READ_MODEL_TABLES = ["directory", "community_caps", "revoked_tokens", "health_attendance", "health_items"]


async def apply_own_event(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    if event.type == "TokenRevoked":
        await conn.execute("INSERT INTO revoked_tokens (token_id) VALUES ($1) ON CONFLICT DO NOTHING",
                           event.data["token_id"])
    elif event.type == "SessionTokensRevoked":
        await conn.execute("INSERT INTO revoked_tokens (token_id) VALUES ($1) ON CONFLICT DO NOTHING",
                           f"session:{event.data['session_id']}")


INLINE_PROJECTIONS = [apply_own_event]


async def is_revoked(conn: asyncpg.Connection, token_id: str | None) -> bool:
    if not token_id:
        return False
    return bool(await conn.fetchval("SELECT true FROM revoked_tokens WHERE token_id = $1", token_id))


GONE = "gone"  # the standing of a member who left or was removed


async def standing(conn: asyncpg.Connection, community_id: str, member_id: str) -> str | None:
    """The member's role now, ``GONE`` once they left or were removed, None if the directory never saw them."""
    row = await conn.fetchrow("SELECT role, active FROM directory WHERE community_id = $1 AND member_id = $2",
                              community_id, member_id)
    if row is None:
        return None
    return str(row["role"]) if row["active"] else GONE


async def member(conn: asyncpg.Connection, community_id: str, member_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM directory WHERE community_id = $1 AND member_id = $2 AND active",
                               community_id, member_id)


# All the health figures in one statement (one round trip). No row: the community is unknown.
HEALTH_SQL = """
SELECT c.name, c.member_cap, r.members, r.owners, r.facilitators, r.plain_members,
       (SELECT count(*) FROM directory
         WHERE community_id = $1 AND joined_at > now() - interval '30 days') AS joined_30d,
       i.jobs_open, i.jobs_completed, i.jobs_cancelled, i.referrals_worked, i.referrals_failed,
       i.goals_active, i.goals_achieved, i.goals_abandoned,
       a.sessions, a.average, t.ids, t.names, t.ties
  FROM community_caps c
 CROSS JOIN LATERAL (
       SELECT count(*) AS members, count(*) FILTER (WHERE role = 'owner') AS owners,
              count(*) FILTER (WHERE role = 'facilitator') AS facilitators,
              count(*) FILTER (WHERE role = 'member') AS plain_members
         FROM directory WHERE community_id = $1 AND active) r
 CROSS JOIN LATERAL (
       SELECT count(*) FILTER (WHERE kind = 'job' AND status = 'open') AS jobs_open,
              count(*) FILTER (WHERE kind = 'job' AND status = 'completed') AS jobs_completed,
              count(*) FILTER (WHERE kind = 'job' AND status = 'cancelled') AS jobs_cancelled,
              count(*) FILTER (WHERE kind = 'referral' AND status = 'worked') AS referrals_worked,
              count(*) FILTER (WHERE kind = 'referral' AND status = 'did-not-work') AS referrals_failed,
              count(*) FILTER (WHERE kind = 'goal' AND status = 'active') AS goals_active,
              count(*) FILTER (WHERE kind = 'goal' AND status = 'achieved') AS goals_achieved,
              count(*) FILTER (WHERE kind = 'goal' AND status = 'abandoned') AS goals_abandoned
         FROM health_items WHERE community_id = $1) i
 CROSS JOIN LATERAL (
       SELECT count(*) AS sessions, coalesce(avg(cardinality(attendees)), 0) AS average
         FROM health_attendance WHERE community_id = $1) a
 CROSS JOIN LATERAL (
       WITH pairs AS (
           SELECT DISTINCT x.m AS member_id, y.m AS other
             FROM health_attendance s, unnest(s.attendees) x(m), unnest(s.attendees) y(m)
            WHERE s.community_id = $1 AND x.m <> y.m),
       few AS (
           SELECT d.member_id, d.display_name, count(p.other) AS ties
             FROM directory d LEFT JOIN pairs p ON p.member_id = d.member_id
            WHERE d.community_id = $1 AND d.active
            GROUP BY d.member_id, d.display_name
           HAVING count(p.other) <= $2)
       SELECT coalesce(array_agg(member_id ORDER BY ties, display_name, member_id), '{}') AS ids,
              coalesce(array_agg(display_name ORDER BY ties, display_name, member_id), '{}') AS names,
              coalesce(array_agg(ties ORDER BY ties, display_name, member_id), '{}') AS ties
         FROM few) t
 WHERE c.community_id = $1
"""


async def health(conn: asyncpg.Connection, community_id: str, few_ties: int = 1) -> dict[str, Any] | None:
    """The community's health figures, or None when the gateway does not know the community."""
    row = await conn.fetchrow(HEALTH_SQL, community_id, few_ties)
    if row is None:
        return None
    members, cap = row["members"], row["member_cap"]
    worked, failed = row["referrals_worked"], row["referrals_failed"]
    return {
        "community_id": community_id,
        "name": row["name"],
        "members": members,
        "member_cap": cap,
        "fill_ratio": round(members / cap, 3) if cap else None,
        "joined_last_30_days": row["joined_30d"],
        "roles": {"owner": row["owners"], "facilitator": row["facilitators"], "member": row["plain_members"]},
        "members_per_facilitator": round(members / max(row["facilitators"] + row["owners"], 1), 2),
        "members_with_few_ties": [{"member_id": m, "display_name": n, "ties": t}
                                  for m, n, t in zip(row["ids"], row["names"], row["ties"], strict=True)],
        "jobs": {"open": row["jobs_open"], "completed": row["jobs_completed"], "cancelled": row["jobs_cancelled"]},
        "referrals": {"worked": worked, "did_not_work": failed,
                      "success_rate": round(worked / (worked + failed), 3) if worked + failed else None},
        "sessions": {"held": row["sessions"], "average_attendance": round(float(row["average"]), 2)},
        "goals": {"active": row["goals_active"], "achieved": row["goals_achieved"],
                  "abandoned": row["goals_abandoned"]},
    }


# What the gateway keeps only to recognise repeats (libs/kizuna/retention.py, docs/operations.md "Retention").
RETENTION = [
    INBOX,
    Retention("idempotency", "created_at", lambda s: s.retention_idempotency_hours * 3600),
    Retention("federation_received", "received_at", lambda s: s.retention_federation_received_days * 86400),
    # A token lives 30 days at most: a revocation older than that refuses nothing that could still be valid.
    Retention("revoked_tokens", "revoked_at", lambda s: s.retention_revoked_tokens_days * 86400),
    # A partner key past its window is refused anyway; a day later it is forgotten (fetched again if listed).
    Retention("partner_keys", "valid_until", lambda _: 86400),
]

"""Read models of sessions and goals, kept inside each append's transaction, and their queries.

Each projection refolds the aggregate's stream on the append's own connection and upserts a
snapshot guarded by version, so replaying any event (or all of them) converges to the same rows.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import asyncpg

from kizuna.domain import DomainEvent
from kizuna.errors import Invalid
from kizuna.eventstore import RecordedEvent, read_stream_on
from kizuna.personal_data import Section, roster_section
from kizuna.service import Migration

from . import domain
from .consumers import ROSTER
from .domain import Goal, Session

SQL = """
CREATE TABLE sessions_view (
    session_id   text PRIMARY KEY,
    community_id text NOT NULL,
    starts_at    timestamptz NOT NULL,
    status       text NOT NULL,
    version      bigint NOT NULL,
    state        jsonb NOT NULL
);
CREATE INDEX sessions_view_by_community ON sessions_view (community_id, starts_at, session_id);
CREATE TABLE session_attendance (
    session_id   text NOT NULL,
    community_id text NOT NULL,
    member_id    text NOT NULL,
    PRIMARY KEY (session_id, member_id)
);
CREATE INDEX session_attendance_by_community ON session_attendance (community_id, member_id);
CREATE TABLE goals_view (
    goal_id          text PRIMARY KEY,
    community_id     text NOT NULL,
    member_id        text NOT NULL,
    status           text NOT NULL,
    set_at           timestamptz NOT NULL,
    last_check_in_at timestamptz,
    version          bigint NOT NULL,
    state            jsonb NOT NULL
);
CREATE INDEX goals_view_by_community ON goals_view (community_id, member_id, set_at, goal_id);
""" + ROSTER.table_sql()

# A member's calendar feed, found by its secret's hash (the secret is never stored).
CALENDAR_LINKS_SQL = """
CREATE TABLE calendar_links (
    community_id text NOT NULL,
    member_id    text NOT NULL,
    key_sha256   text NOT NULL UNIQUE,
    version      bigint NOT NULL,
    PRIMARY KEY (community_id, member_id)
);
"""

MIGRATIONS = [Migration("sessions_0001", SQL), Migration("sessions_0002_calendar_links", CALENDAR_LINKS_SQL)]
READ_MODEL_TABLES = ["sessions_view", "session_attendance", "goals_view", "calendar_links", "roster"]


async def _fold(conn: asyncpg.Connection, stream_id: str, aggregate: type[Session] | type[Goal]) -> Any:
    events = await read_stream_on(conn, stream_id)  # personal fields opened, as the store reads them
    decoded = [DomainEvent.decode(e.type, e.data, domain.__name__, version=e.schema_version) for e in events]
    state = aggregate.from_events([e for e in decoded if e is not None])
    state.version = len(events)
    return state


async def project_session(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    if not event.stream_id.startswith("session-"):
        return
    session: Session = await _fold(conn, event.stream_id, Session)
    if not session.exists:
        return
    snap = session.snapshot()
    await conn.execute(
        "INSERT INTO sessions_view (session_id, community_id, starts_at, status, version, state) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (session_id) DO UPDATE SET starts_at = EXCLUDED.starts_at, "
        "status = EXCLUDED.status, version = EXCLUDED.version, state = EXCLUDED.state "
        "WHERE sessions_view.version <= EXCLUDED.version",
        snap["session_id"], snap["community_id"], session.starts_at, snap["status"], snap["version"],
        json.dumps(snap),
    )
    if event.type == "AttendanceRecorded":
        await conn.execute("DELETE FROM session_attendance WHERE session_id = $1", snap["session_id"])
        await conn.executemany(
            "INSERT INTO session_attendance (session_id, community_id, member_id) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING",
            [(snap["session_id"], snap["community_id"], m) for m in session.attendees],
        )


async def project_goal(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    if not event.stream_id.startswith("goal-"):
        return
    goal: Goal = await _fold(conn, event.stream_id, Goal)
    if goal.set is None:
        return
    snap = goal.snapshot()
    last = datetime.fromisoformat(snap["check_ins"][-1]["checked_in_at"]) if snap["check_ins"] else None
    await conn.execute(
        "INSERT INTO goals_view (goal_id, community_id, member_id, status, set_at, last_check_in_at, version, state) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (goal_id) DO UPDATE SET status = EXCLUDED.status, "
        "last_check_in_at = EXCLUDED.last_check_in_at, version = EXCLUDED.version, state = EXCLUDED.state "
        "WHERE goals_view.version <= EXCLUDED.version",
        snap["goal_id"], snap["community_id"], snap["member_id"], snap["status"], goal.set.set_at, last,
        snap["version"], json.dumps(snap),
    )


async def project_calendar_link(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    if event.type != "CalendarLinkIssued":
        return
    data = event.data
    await conn.execute(
        "INSERT INTO calendar_links (community_id, member_id, key_sha256, version) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (community_id, member_id) DO UPDATE SET key_sha256 = EXCLUDED.key_sha256, "
        "version = EXCLUDED.version WHERE calendar_links.version <= EXCLUDED.version",
        data["community_id"], data["member_id"], data["key_sha256"], event.stream_version)


INLINE_PROJECTIONS = [project_session, project_goal, project_calendar_link]


# ---- queries ----

def _page(rows: list[Any], limit: int, key: str) -> dict[str, Any]:
    items = [json.loads(r["state"]) for r in rows[:limit]]
    return {"items": items, "next_cursor": items[-1][key] if len(rows) > limit else None}


async def list_sessions(conn: asyncpg.Connection, community_id: str, cursor: str | None, limit: int,
                        member_id: str | None = None) -> dict[str, Any]:
    after = await conn.fetchrow("SELECT starts_at, session_id FROM sessions_view WHERE session_id = $1 "
                                "AND community_id = $2", cursor, community_id) if cursor else None
    if cursor and after is None:
        raise Invalid("cursor", "not a cursor from an earlier page")
    rows = await conn.fetch(
        "SELECT state FROM sessions_view WHERE community_id = $1 "
        "AND ($2::timestamptz IS NULL OR (starts_at, session_id) > ($2, $3)) "
        "AND ($4::text IS NULL OR state->'registered' ? $4 OR state->'waitlist' ? $4) "
        "ORDER BY starts_at, session_id LIMIT $5",
        community_id, after["starts_at"] if after else None, after["session_id"] if after else "", member_id,
        limit + 1,
    )
    return _page(rows, limit, "session_id")


async def sessions_for_calendar(conn: asyncpg.Connection, community_id: str,
                                member_id: str | None = None) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT state FROM sessions_view WHERE community_id = $1 "
        "AND ($2::text IS NULL OR state->'registered' ? $2 OR state->'waitlist' ? $2) ORDER BY starts_at",
        community_id, member_id,
    )
    return [json.loads(r["state"]) for r in rows]


async def list_goals(conn: asyncpg.Connection, community_id: str, cursor: str | None, limit: int,
                     member_id: str | None, status: str | None) -> dict[str, Any]:
    after = await conn.fetchrow("SELECT set_at, goal_id FROM goals_view WHERE goal_id = $1 AND community_id = $2",
                                cursor, community_id) if cursor else None
    if cursor and after is None:
        raise Invalid("cursor", "not a cursor from an earlier page")
    rows = await conn.fetch(
        "SELECT state FROM goals_view WHERE community_id = $1 AND ($2::text IS NULL OR member_id = $2) "
        "AND ($3::text IS NULL OR status = $3) "
        "AND ($4::timestamptz IS NULL OR (set_at, goal_id) > ($4, $5)) ORDER BY set_at, goal_id LIMIT $6",
        community_id, member_id, status, after["set_at"] if after else None, after["goal_id"] if after else "",
        limit + 1,
    )
    return _page(rows, limit, "goal_id")


async def active_goals(conn: asyncpg.Connection, community_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT state FROM goals_view WHERE community_id = $1 AND status = 'active' "
                            "ORDER BY member_id, set_at", community_id)
    return [json.loads(r["state"]) for r in rows]


async def ties(conn: asyncpg.Connection, community_id: str) -> list[dict[str, Any]]:
    """Pairs of members with how many attended sessions they shared."""
    rows = await conn.fetch(
        "SELECT a.member_id AS a, b.member_id AS b, count(*) AS shared FROM session_attendance a "
        "JOIN session_attendance b ON a.session_id = b.session_id AND a.member_id < b.member_id "
        "WHERE a.community_id = $1 GROUP BY a.member_id, b.member_id ORDER BY shared DESC, a, b",
        community_id,
    )
    return [{"member_a": r["a"], "member_b": r["b"], "shared_experiences": r["shared"]} for r in rows]


async def ties_per_member(conn: asyncpg.Connection, community_id: str) -> list[dict[str, Any]]:
    """Every active member of the roster with how many distinct members they shared an experience with."""
    rows = await conn.fetch(
        "SELECT r.member_id, r.display_name, r.role, "
        "  (SELECT count(DISTINCT b.member_id) FROM session_attendance a JOIN session_attendance b "
        "     ON a.session_id = b.session_id AND b.member_id <> a.member_id "
        "   WHERE a.community_id = r.community_id AND a.member_id = r.member_id) AS ties, "
        "  (SELECT count(*) FROM session_attendance a WHERE a.community_id = r.community_id "
        "     AND a.member_id = r.member_id) AS attended "
        "FROM roster r WHERE r.community_id = $1 AND r.active ORDER BY ties, r.member_id",
        community_id,
    )
    return [dict(r) for r in rows]


async def calendar_of_link(conn: asyncpg.Connection, key_sha256: str) -> tuple[str, str] | None:
    """The (community, member) whose feed answers to this hash — while they are an active member."""
    row = await conn.fetchrow(
        "SELECT l.community_id, l.member_id FROM calendar_links l JOIN roster r ON r.community_id = l.community_id "
        "AND r.member_id = l.member_id AND r.active WHERE l.key_sha256 = $1", key_sha256)
    return (str(row["community_id"]), str(row["member_id"])) if row else None


async def roster_entry(conn: asyncpg.Connection, community_id: str, member_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT role, active, display_name FROM roster WHERE community_id = $1 AND member_id = $2",
        community_id, member_id)
    return row


# What sessions holds about one member (kizuna.personal_data; docs/data-rights.md): the sessions they hold a
# place in, wait for or came to (a session's row is what every member reads), their goals, and that they made a
# calendar address (its key's hash left out).
PERSONAL_DATA = [
    Section("sessions", "SELECT to_jsonb(t) AS row FROM sessions_view t WHERE community_id = $1 "
                        "AND strpos(state::text, $2) > 0 ORDER BY starts_at"),
    Section("attendance", "SELECT to_jsonb(t) AS row FROM session_attendance t "
                          "WHERE community_id = $1 AND member_id = $2"),
    Section("goals", "SELECT to_jsonb(t) AS row FROM goals_view t WHERE community_id = $1 AND member_id = $2 "
                     "ORDER BY set_at"),
    Section("calendar_links", "SELECT to_jsonb(t) - 'key_sha256' AS row FROM calendar_links t "
                              "WHERE community_id = $1 AND member_id = $2"),
    roster_section(),
]

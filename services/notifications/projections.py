"""Read models of notifications: each member's inbox, and the queue of email still to send — both kept in
the append's own transaction, so the queue never holds a notification the inbox does not."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import asyncpg

from kizuna.eventstore import RecordedEvent
from kizuna.personal_data import Section, roster_section
from kizuna.service import Migration

from .causes import LOOKUPS_SQL, MORE_LOOKUPS_SQL, REMINDER_LOOKUPS_SQL
from .consumers import PEOPLE_SQL, ROSTER
from .webhooks import WEBHOOKS_SQL, project_endpoint

SQL = """
CREATE TABLE notifications_view (
    notification_id text PRIMARY KEY,
    stream_id       text NOT NULL,
    community_id    text NOT NULL,
    member_id       text NOT NULL,
    kind            text NOT NULL,
    facts           jsonb NOT NULL,
    raised_at       timestamptz NOT NULL,
    read_at         timestamptz,
    email           text NOT NULL DEFAULT 'pending',
    seq             bigserial
);
CREATE INDEX notifications_by_member ON notifications_view (community_id, member_id, raised_at DESC);
CREATE TABLE mail_queue (
    notification_id text PRIMARY KEY,
    stream_id       text NOT NULL,
    due_at          timestamptz NOT NULL,
    attempts        int NOT NULL DEFAULT 0
);
CREATE INDEX mail_queue_due ON mail_queue (due_at);
CREATE TABLE unsubscribe_links (
    token_sha256 text PRIMARY KEY,
    person_id    text NOT NULL,
    kind         text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
""" + ROSTER.table_sql()

# Notifications a person hears about in their daily digest wait here, per person, until it goes out.
DIGEST_SQL = """
CREATE TABLE digest_queue (
    notification_id text PRIMARY KEY,
    person_id       text NOT NULL,
    raised_at       timestamptz NOT NULL
);
CREATE INDEX digest_queue_by_person ON digest_queue (person_id);
CREATE TABLE digest_attempts (
    person_id text PRIMARY KEY,
    day       text NOT NULL,
    attempt   int NOT NULL,
    retry_at  timestamptz NOT NULL
);
"""

# Other members in a notification: named by id (their names put in when it is composed), and what it quotes of
# one of them kept apart, with whom it is from — so that erasing them reaches it (NotificationRaised).
WHOSE_WORDS_SQL = """
ALTER TABLE notifications_view ADD COLUMN names jsonb NOT NULL DEFAULT '{}';
ALTER TABLE notifications_view ADD COLUMN quoted jsonb NOT NULL DEFAULT '{}';
ALTER TABLE notifications_view ADD COLUMN quoted_from text;
CREATE INDEX notifications_quoting ON notifications_view (quoted_from) WHERE quoted_from IS NOT NULL;
"""

MIGRATIONS = [Migration("notifications_0001", SQL + LOOKUPS_SQL + PEOPLE_SQL),
              Migration("notifications_0002_webhooks", WEBHOOKS_SQL),
              Migration("notifications_0003_reminders", REMINDER_LOOKUPS_SQL),
              Migration("notifications_0004_digests", DIGEST_SQL),
              Migration("notifications_0005_more_kinds", MORE_LOOKUPS_SQL),
              Migration("notifications_0006_whose_words", WHOSE_WORDS_SQL)]
READ_MODEL_TABLES = ["notifications_view", "mail_queue", "webhook_endpoints", "digest_queue", "digest_attempts"]


async def project(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    d = event.data
    if event.type == "NotificationRaised":
        await conn.execute(
            "INSERT INTO notifications_view (notification_id, stream_id, community_id, member_id, kind, facts, "
            "raised_at, names, quoted, quoted_from) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
            "ON CONFLICT DO NOTHING", d["notification_id"], event.stream_id, d["community_id"], d["member_id"],
            d["kind"], json.dumps(d["facts"]), datetime.fromisoformat(d["raised_at"]),
            json.dumps(d.get("names") or {}), json.dumps(d.get("quoted") or {}), d.get("quoted_from"))
        await conn.execute("INSERT INTO mail_queue (notification_id, stream_id, due_at) VALUES ($1, $2, now()) "
                           "ON CONFLICT DO NOTHING", d["notification_id"], event.stream_id)
    elif event.type == "NotificationRead":
        await conn.execute("UPDATE notifications_view SET read_at = $2 WHERE notification_id = $1",
                           d["notification_id"], datetime.fromisoformat(d["read_at"]))
    elif event.type in ("NotificationEmailed", "NotificationEmailSkipped"):
        await conn.execute("UPDATE notifications_view SET email = $2 WHERE notification_id = $1", d["notification_id"],
                           "sent" if event.type == "NotificationEmailed" else f"skipped: {d['reason']}")
        await conn.execute("DELETE FROM mail_queue WHERE notification_id = $1", d["notification_id"])
    elif event.type == "NotificationEmailFailed":
        if d["retry_at"] is None:
            await conn.execute("UPDATE notifications_view SET email = 'failed' WHERE notification_id = $1",
                               d["notification_id"])
            await conn.execute("DELETE FROM mail_queue WHERE notification_id = $1", d["notification_id"])
        else:
            await conn.execute("UPDATE mail_queue SET due_at = $2, attempts = $3 WHERE notification_id = $1",
                               d["notification_id"], datetime.fromisoformat(d["retry_at"]), d["attempt"])
    elif event.type == "NotificationEmailDeferred":
        await conn.execute("UPDATE mail_queue SET due_at = $2 WHERE notification_id = $1", d["notification_id"],
                           datetime.fromisoformat(d["until"]))
        waiting = "quiet hours" if d.get("reason", "quiet-hours") == "quiet-hours" else "waiting for the address"
        await conn.execute("UPDATE notifications_view SET email = $2 WHERE notification_id = $1", d["notification_id"],
                           waiting)
    elif event.type == "NotificationHeldForDigest":
        await conn.execute("DELETE FROM mail_queue WHERE notification_id = $1", d["notification_id"])
        await conn.execute("UPDATE notifications_view SET email = 'digest' WHERE notification_id = $1",
                           d["notification_id"])
        await conn.execute("INSERT INTO digest_queue SELECT notification_id, $2, raised_at FROM notifications_view "
                           "WHERE notification_id = $1 ON CONFLICT DO NOTHING", d["notification_id"], d["person_id"])
    elif event.type == "DigestEmailed":
        await conn.execute("UPDATE notifications_view SET email = 'sent in digest' WHERE notification_id = ANY($1)",
                           d["notification_ids"])
        await conn.execute("UPDATE notifications_view SET email = 'skipped: left out of digest' "
                           "WHERE notification_id = ANY($1)", d.get("left_out", []))
        await conn.execute("DELETE FROM digest_queue WHERE notification_id = ANY($1::text[] || $2::text[])",
                           d["notification_ids"], d.get("left_out", []))
        await conn.execute("DELETE FROM digest_attempts WHERE person_id = $1", d["person_id"])
    elif event.type == "DigestEmailFailed":
        await conn.execute("INSERT INTO digest_attempts VALUES ($1, $2, $3, $4) ON CONFLICT (person_id) DO UPDATE "
                           "SET day = EXCLUDED.day, attempt = EXCLUDED.attempt, retry_at = EXCLUDED.retry_at",
                           d["person_id"], d["day"], d["attempt"], datetime.fromisoformat(d["retry_at"]))


INLINE_PROJECTIONS = [project, project_endpoint]


async def inbox(conn: asyncpg.Connection, community_id: str, member_id: str, limit: int,
                unread_only: bool) -> dict[str, Any]:
    rows = await conn.fetch(
        "SELECT notification_id, community_id, kind, facts::text AS facts, names::text AS names, quoted::text AS "
        "quoted, raised_at, read_at, email FROM notifications_view WHERE community_id = $1 AND member_id = $2 "
        "AND ($3::bool IS FALSE OR read_at IS NULL) ORDER BY raised_at DESC, seq DESC LIMIT $4",
        community_id, member_id, unread_only, limit)
    unread = await conn.fetchval("SELECT count(*) FROM notifications_view WHERE community_id = $1 AND member_id = $2 "
                                 "AND read_at IS NULL", community_id, member_id)
    items = [{"notification_id": r["notification_id"], "kind": r["kind"], "facts": await facts_of(conn, r),
              "raised_at": r["raised_at"], "read_at": r["read_at"], "email": r["email"]} for r in rows]
    return {"unread": unread, "items": items}


async def facts_of(conn: asyncpg.Connection, row: asyncpg.Record) -> dict[str, Any]:
    """What a notification's message says, whole: the recipient's facts, what it quotes of another member, and
    the names of the members it names, as the roster has them now ("erased member" once erased). ``row`` has
    ``community_id`` and the ``facts``, ``names`` and ``quoted`` columns as text."""
    named: dict[str, str] = json.loads(row["names"])
    names = {}
    for fact, member_id in named.items():
        name = await conn.fetchval("SELECT display_name FROM roster WHERE community_id = $1 AND member_id = $2",
                                   row["community_id"], member_id) if member_id else ""
        names[fact] = str(name) if name else ""
    return {**json.loads(row["facts"]), **json.loads(row["quoted"]), **names}


async def person_of(conn: asyncpg.Connection, community_id: str, member_id: str) -> asyncpg.Record | None:
    """The person behind a member, with their verified address (None: no account linked here)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT c.person_id, p.email FROM member_accounts m JOIN community_accounts c ON c.community_id = "
        "m.community_id AND c.account = m.account LEFT JOIN people p ON p.person_id = c.person_id "
        "WHERE m.community_id = $1 AND m.member_id = $2", community_id, member_id)
    return row


async def is_member(conn: asyncpg.Connection, community_id: str, member_id: str) -> bool:
    """An active member, or someone waiting or applying (not in the roster yet): only those who left are not."""
    row = await conn.fetchrow("SELECT active FROM roster WHERE community_id = $1 AND member_id = $2",
                              community_id, member_id)
    return row is None or bool(row["active"])


# What notifications holds about one member (kizuna.personal_data; docs/data-rights.md): their inbox, and the
# address it mails them at (kept per person, reached through their account in this community).
PERSONAL_DATA = [
    Section("notifications", "SELECT to_jsonb(t) AS row FROM notifications_view t "
                             "WHERE community_id = $1 AND member_id = $2 ORDER BY seq"),
    Section("email_address", "SELECT jsonb_build_object('email', p.email, 'verified_at', p.verified_at) AS row "
                             "FROM member_accounts m JOIN community_accounts a USING (community_id, account) "
                             "JOIN people p USING (person_id) WHERE m.community_id = $1 AND m.member_id = $2"),
    roster_section(),
]


# What notifications holds about a person rather than a member (docs/data-rights.md, "Export"): the address it
# mails them at, the one-click unsubscribe links it made for them (which kind and when; never the token's hash),
# digests waiting for them. Their preferences and the digests sent are read from their events (api.py).
PERSON_DATA = [
    Section("email_address", "SELECT jsonb_build_object('email', email, 'verified_at', verified_at) AS row "
                             "FROM people WHERE person_id = $1 AND email <> ''"),
    Section("unsubscribe_links", "SELECT jsonb_build_object('kind', kind, 'created_at', created_at) AS row "
                                 "FROM unsubscribe_links WHERE person_id = $1 ORDER BY created_at"),
    Section("digest_waiting", "SELECT jsonb_build_object('notification_id', notification_id, 'raised_at', "
                              "raised_at) AS row FROM digest_queue WHERE person_id = $1 ORDER BY raised_at"),
]

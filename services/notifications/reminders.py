"""Reminders: what is coming up soon enough to need someone — a session they have a place in, starting
within a day; a place offered to them that lapses within a day and is not answered yet; an offering's
commitment deadline, a delivery day or a help shift of theirs within a day; a goal of theirs that has gone
without a check-in for its cadence. One job looks every ``reminder_poll_seconds``; each reminder is a
notification whose cause names what it is about and its moment (a session and its start, an offering and
its deadline, a goal and the day it fell due), so looking again raises nothing more — and a session moved to
a new time, or a goal checked in on and quiet again, is reminded of again."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import asyncpg
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from kizuna.handling import CommandContext
from kizuna.service import Runtime

from .handlers import raise_for

log = logging.getLogger("kizuna.notifications.reminders")
LOCK = 0x6B697A756E61_02  # one replica at a time looks for reminders (an advisory lock, per transaction)


class ReminderSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KIZUNA_REMINDER_", extra="ignore")
    ahead_hours: float = Field(24.0, gt=0, description="How long before a session, an offer's end, an offering's "
                                                       "deadline, a delivery day or a help shift to remind.")
    poll_seconds: float = Field(30.0, gt=0, description="How often to look for what is due.")
    # Goals carry no cadence of their own (GoalSet has none): one setting for every goal.
    checkin_days: float = Field(7.0, gt=0, description="A goal with no check-in for this long (since the last one, "
                                                        "or since it was set) reminds its member.")


async def send_reminders(runtime: Runtime) -> None:
    settings = ReminderSettings()
    while True:
        try:
            await remind(runtime, timedelta(hours=settings.ahead_hours), timedelta(days=settings.checkin_days))
        except (OSError, asyncpg.PostgresError) as error:
            log.warning("reminders not looked for", extra={"error": repr(error)})
        await asyncio.sleep(settings.poll_seconds)


async def remind(runtime: Runtime, ahead: timedelta, checkin: timedelta = timedelta(days=7)) -> None:
    now = datetime.now(UTC)
    ctx = CommandContext(actor="notifications:reminders")
    async with runtime.pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", LOCK):
            return
        looks = [("sessions", _remind_of_sessions(runtime, conn, now, ahead, ctx)),
                 ("offers", _remind_of_offers(runtime, conn, now, ahead, ctx)),
                 ("goals", _remind_of_goals(runtime, conn, now, checkin, ctx)),
                 ("offerings", _remind_of_offerings(runtime, conn, now, ahead, ctx))]
        for what, look in looks:
            try:  # each kind in a savepoint of its own: one failing does not keep the others from going out
                async with conn.transaction():
                    await look
            except asyncpg.PostgresError as error:
                log.error("reminders of one kind not looked for", extra={"kind": what, "error": repr(error)})


async def _remind_of_sessions(runtime: Runtime, conn: asyncpg.Connection, now: datetime, ahead: timedelta,
                              ctx: CommandContext) -> None:
    """A session starting within ``ahead``: each member with a place is reminded once per start time."""
    sessions = await conn.fetch(
        "SELECT s.session_id, s.community_id, s.title, s.starts_at, s.ends_at, s.time_zone, s.place, "
        "r.member_id, c.name FROM known_sessions s JOIN known_registrations r USING (session_id) "
        "LEFT JOIN known_communities c USING (community_id) WHERE NOT s.cancelled AND s.starts_at > $1 "
        "AND s.starts_at <= $2", now, now + ahead)
    for row in sessions:
        cid = row["community_id"]
        await raise_for(runtime.store, conn, cid, row["member_id"], "session-reminder",
                        f"reminder:{row['session_id']}:{row['starts_at'].isoformat()}", now, {
                            "community": row["name"] or "", "community_id": cid, "session_id": row["session_id"],
                            "title": row["title"], "starts_at": row["starts_at"].isoformat(),
                            "ends_at": row["ends_at"].isoformat(), "time_zone": row["time_zone"],
                            "place": row["place"], "path": f"/app/c/{cid}/sessions"}, ctx)


async def _remind_of_offers(runtime: Runtime, conn: asyncpg.Connection, now: datetime, ahead: timedelta,
                            ctx: CommandContext) -> None:
    """A place offered and not answered, lapsing within ``ahead``: its applicant is reminded once."""
    offers = await conn.fetch(
        "SELECT o.offer_id, o.community_id, o.applicant_id, o.expires_at, c.name FROM known_offers o "
        "LEFT JOIN known_communities c USING (community_id) WHERE o.open AND o.expires_at > $1 "
        "AND o.expires_at <= $2", now, now + ahead)
    for row in offers:
        cid = row["community_id"]
        await raise_for(runtime.store, conn, cid, row["applicant_id"], "offer-reminder",
                        f"reminder:{row['offer_id']}", now, {
                            "community": row["name"] or "", "community_id": cid,
                            "expires_at": row["expires_at"].isoformat(), "path": f"/waiting/{cid}"}, ctx)


async def _remind_of_goals(runtime: Runtime, conn: asyncpg.Connection, now: datetime, checkin: timedelta,
                           ctx: CommandContext) -> None:
    """An active goal quiet for the check-in cadence: its member is asked how it goes, once per quiet spell
    (the cause names the goal and the moment it fell due; the next check-in starts a new spell)."""
    goals = await conn.fetch(
        "SELECT g.goal_id, g.community_id, g.member_id, g.statement, g.quiet_since, g.checked_in, c.name "
        "FROM known_goals g LEFT JOIN known_communities c USING (community_id) WHERE g.active "
        "AND g.quiet_since <= $1", now - checkin)
    for row in goals:
        cid, due = row["community_id"], row["quiet_since"] + checkin
        await raise_for(runtime.store, conn, cid, row["member_id"], "goal-checkin-due",
                        f"checkin:{row['goal_id']}:{due.isoformat()}", now, {
                            "community": row["name"] or "", "community_id": cid, "goal_id": row["goal_id"],
                            "statement": row["statement"], "quiet_since": row["quiet_since"].isoformat(),
                            "checked_in": row["checked_in"], "days": round(checkin / timedelta(days=1), 1),
                            "path": f"/app/c/{cid}/goals/{row['goal_id']}"}, ctx)


async def _remind_of_offerings(runtime: Runtime, conn: asyncpg.Connection, now: datetime, ahead: timedelta,
                               ctx: CommandContext) -> None:
    """An open offering's deadline within ``ahead``: its producer and the members who committed (their
    commitment becomes binding then, and the producer sees whether the minimum will be reached). A delivery
    day of a confirmed offering, or a help shift, from ``ahead`` before the day begins until it ends: the
    members who committed, or signed up for the shift."""
    deadlines = await conn.fetch(
        "SELECT o.offering_id, o.community_id, o.producer_id, o.title, o.commitment_deadline, o.minimum_shares, "
        "c.name, (SELECT coalesce(sum(shares), 0) FROM known_commitments k WHERE k.offering_id = o.offering_id) "
        "AS committed, array(SELECT member_id FROM known_commitments k WHERE k.offering_id = o.offering_id AND "
        "member_id NOT LIKE 'partner:%') AS members FROM known_offerings o LEFT JOIN known_communities c "
        "USING (community_id) WHERE o.status = 'open' AND o.commitment_deadline > $1 "
        "AND o.commitment_deadline <= $2", now, now + ahead)
    for row in deadlines:
        cid = row["community_id"]
        for member_id in dict.fromkeys([row["producer_id"], *row["members"]]):
            await raise_for(runtime.store, conn, cid, member_id, "offering-deadline",
                            f"reminder:{row['offering_id']}:{row['commitment_deadline'].isoformat()}", now, {
                                "community": row["name"] or "", "community_id": cid,
                                "offering_id": row["offering_id"], "title": row["title"],
                                "deadline": row["commitment_deadline"].isoformat(), "committed": row["committed"],
                                "minimum_shares": row["minimum_shares"],
                                "producer": member_id == row["producer_id"],
                                "path": f"/app/c/{cid}/offerings/{row['offering_id']}"}, ctx)
    # A day begins at midnight at the offset of the offering's commitment deadline (causes.py), in UTC here.
    deliveries = await conn.fetch(
        "SELECT o.offering_id, o.community_id, o.title, o.day, k.member_id, c.name FROM (SELECT o.*, d.day, "
        "(d.day::timestamp AT TIME ZONE 'UTC') - o.utc_offset AS starts FROM known_offerings o CROSS JOIN LATERAL "
        "unnest(o.delivery_dates) AS d(day) WHERE o.status = 'confirmed') o JOIN known_commitments k "
        "USING (offering_id) LEFT JOIN known_communities c ON c.community_id = o.community_id "
        "WHERE k.member_id NOT LIKE 'partner:%' AND NOT EXISTS (SELECT 1 FROM known_deliveries r WHERE "
        "r.offering_id = o.offering_id AND r.member_id = k.member_id AND r.day = o.day) "
        "AND o.starts <= $1::timestamptz + $2::interval AND $1::timestamptz < o.starts + interval '1 day'", now, ahead)
    shifts = await conn.fetch(
        "SELECT o.offering_id, o.community_id, o.title, s.day, s.shift_id, s.place, s.what, u.member_id, c.name "
        "FROM known_offerings o JOIN known_help_shifts s USING (offering_id) JOIN known_shift_signups u "
        "ON u.offering_id = s.offering_id AND u.shift_id = s.shift_id LEFT JOIN known_communities c "
        "ON c.community_id = o.community_id CROSS JOIN LATERAL (SELECT (s.day::timestamp AT TIME ZONE 'UTC') "
        "- o.utc_offset AS starts) t WHERE o.status <> 'lapsed' AND t.starts <= $1::timestamptz + $2::interval "
        "AND $1::timestamptz < t.starts + interval '1 day'", now, ahead)
    for row in [*deliveries, *shifts]:
        cid, shift = row["community_id"], dict(row).get("shift_id")
        what = f"shift:{shift}" if shift else "delivery"
        await raise_for(runtime.store, conn, cid, row["member_id"], "offering-coming",
                        f"reminder:{row['offering_id']}:{what}:{row['day'].isoformat()}", now, {
                            "community": row["name"] or "", "community_id": cid, "offering_id": row["offering_id"],
                            "title": row["title"], "day": row["day"].isoformat(), "shift": shift is not None,
                            "place": dict(row).get("place") or "", "what": dict(row).get("what") or "",
                            "path": f"/app/c/{cid}/offerings/{row['offering_id']}"}, ctx)

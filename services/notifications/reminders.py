"""Reminders: what is coming up soon enough to need someone — a session they have a place in, starting
within a day; a place offered to them that lapses within a day and is not answered yet. One job looks every
``reminder_poll_seconds``; each reminder is a notification whose cause names the session and its start (or
the offer), so looking again raises nothing more — and a session moved to a new time is reminded of again."""

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
    ahead_hours: float = Field(24.0, gt=0, description="How long before a session, or an offer's end, to remind.")
    poll_seconds: float = Field(30.0, gt=0, description="How often to look for what is due.")


async def send_reminders(runtime: Runtime) -> None:
    settings = ReminderSettings()
    while True:
        try:
            await remind(runtime, timedelta(hours=settings.ahead_hours))
        except (OSError, asyncpg.PostgresError) as error:
            log.warning("reminders not looked for", extra={"error": repr(error)})
        await asyncio.sleep(settings.poll_seconds)


async def remind(runtime: Runtime, ahead: timedelta) -> None:
    now = datetime.now(UTC)
    ctx = CommandContext(actor="notifications:reminders")
    async with runtime.pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", LOCK):
            return
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

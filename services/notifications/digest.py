"""The daily digest: one email a day per person, at the hour they chose in their time zone, listing what they
asked to hear about that way (in every community they belong to) since the last one.

Once per person per day: the digest's stream is named by the person and their local day, so a second look on
the same day — by this replica or another — finds it sent. Replicas take a person at a time (an advisory lock
per person); a refused send is tried again with the mail queue's backoff. What a person no longer wants by
the time it goes (the kind turned off, or they left the community) is left out of it, and recorded so.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from kizuna.handling import CommandContext, execute, load
from kizuna.mail import MailNotSent, MailSettings, send
from kizuna.service import Runtime

from . import handlers, projections
from .domain import Digest, DigestEmailed, DigestEmailFailed, Preferences, digest_stream
from .mailer import DeliverySettings, addressed, unsubscribe_link
from .messages import Message, compose

log = logging.getLogger("kizuna.notifications.digest")


class DigestSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KIZUNA_DIGEST_", extra="ignore")
    poll_seconds: float = Field(60.0, gt=0, description="How often to look for people whose digest hour has come.")


async def send_due_digests(runtime: Runtime) -> None:
    """Background job: sends the digests whose hour has come, then looks again."""
    settings, delivery, mail = DigestSettings(), DeliverySettings(), MailSettings()
    while True:
        try:
            await send_digests(runtime, delivery, mail, datetime.now(UTC))
        except (OSError, asyncpg.PostgresError) as error:
            log.warning("digests not looked for", extra={"error": repr(error)})
        await asyncio.sleep(settings.poll_seconds)


async def send_digests(runtime: Runtime, delivery: DeliverySettings, mail: MailSettings, now: datetime) -> int:
    """Sends every digest due at ``now``; returns how many went out."""
    async with runtime.pool.acquire() as conn:
        people = [r["person_id"] for r in await conn.fetch(
            "SELECT DISTINCT q.person_id FROM digest_queue q LEFT JOIN digest_attempts a USING (person_id) "
            "WHERE a.retry_at IS NULL OR a.retry_at <= $1", now)]
    sent = 0
    for person_id in people:
        wishes = await handlers.preferences(runtime.store, person_id)
        day = _due_day(wishes, now)
        if day is None:
            continue
        async with runtime.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock(hashtext('kizuna-digest:' || $1))",
                                       person_id):
                continue  # another replica is sending this person's digest
            if (await load(runtime.store, digest_stream(person_id, day), Digest)).sent:
                continue  # today's went out: what came since waits for tomorrow's
            sent += await _send_one(runtime, conn, person_id, day, wishes, delivery, mail, now)
        await asyncio.sleep(1 / delivery.per_second)
    return sent


def _due_day(wishes: Preferences, now: datetime) -> str | None:
    """The person's local day whose digest is due at ``now`` (None: their digest hour has not come today)."""
    local = now.astimezone(ZoneInfo(wishes.time_zone))
    due = datetime.combine(local.date(), wishes.digest_at, tzinfo=local.tzinfo)
    return local.date().isoformat() if local >= due else None


async def _send_one(runtime: Runtime, conn: asyncpg.Connection, person_id: str, day: str, wishes: Preferences,
                    delivery: DeliverySettings, mail: MailSettings, now: datetime) -> int:
    rows = await conn.fetch(
        "SELECT v.notification_id, v.community_id, v.member_id, v.kind, v.raised_at, v.facts::text AS facts, "
        "v.names::text AS names, v.quoted::text AS quoted "
        "FROM digest_queue q JOIN notifications_view v USING (notification_id) WHERE q.person_id = $1 "
        "AND q.raised_at <= $2 ORDER BY v.raised_at, v.seq", person_id, now)
    listed: list[asyncpg.Record] = []
    left_out: list[asyncpg.Record] = []
    for row in rows:
        wanted = wishes.wants(row["kind"]) and await projections.is_member(conn, row["community_id"],
                                                                          row["member_id"])
        (listed if wanted else left_out).append(row)
    address = await conn.fetchval("SELECT email FROM people WHERE person_id = $1", person_id)
    if not address:
        listed, left_out = [], [*listed, *left_out]  # the address went away: nowhere to send, nothing kept
    stream = digest_stream(person_id, day)
    ctx = CommandContext(actor="notifications:digest")
    if not listed:
        await _record(runtime, conn, stream, DigestEmailed(person_id=person_id, day=day, notification_ids=[],
                                                           left_out=[r["notification_id"] for r in left_out],
                                                           message_id=""), ctx)
        return 0
    public = runtime.settings.public_url.rstrip("/")
    facts = [await projections.facts_of(conn, row) for row in listed]
    message = _message(person_id, day, list(zip(listed, facts, strict=True)), wishes, str(address), public,
                       await unsubscribe_link(conn, public, person_id, "digest"))
    attempt = int(await conn.fetchval("SELECT attempt FROM digest_attempts WHERE person_id = $1 AND day = $2",
                                      person_id, day) or 0) + 1
    try:
        await send(mail, message)
    except MailNotSent as error:
        wait = min(delivery.retry_cap_seconds, delivery.retry_base_seconds * 2 ** (attempt - 1))
        log.warning("digest not sent", extra={"person_id": person_id, "attempt": attempt, "error": str(error)})
        await _record(runtime, conn, stream, DigestEmailFailed(
            person_id=person_id, day=day, attempt=attempt, error=str(error)[:500],
            retry_at=now + timedelta(seconds=wait)), ctx)
        return 0
    await _record(runtime, conn, stream, DigestEmailed(
        person_id=person_id, day=day, notification_ids=[r["notification_id"] for r in listed],
        left_out=[r["notification_id"] for r in left_out], message_id=message["Message-ID"]), ctx)
    return 1


async def _record(runtime: Runtime, conn: asyncpg.Connection, stream: str, event: DigestEmailed | DigestEmailFailed,
                  ctx: CommandContext) -> None:
    await execute(runtime.store, stream, Digest, lambda d: [] if d.sent else [event], ctx, connection=conn)


def _message(person_id: str, day: str, rows: list[tuple[asyncpg.Record, dict[str, Any]]], wishes: Preferences,
             to: str, public: str, unsubscribe: str) -> EmailMessage:
    items: list[dict[str, Any]] = []
    for row, facts in rows:
        words = compose(row["kind"], facts, wishes.language, wishes.time_zone)
        items.append({"subject": words.subject, "lines": words.lines, "link": f"{public}{words.path}"})
    text = _digest_words(wishes.language, day, items, f"{public}/app/notifications", unsubscribe)
    message = addressed(to, text.subject, f"<digest-{person_id}-{day}@kizuna>", wishes.language, unsubscribe)
    message.set_content("\n".join(text.lines) + "\n")
    return message


def _digest_words(language: str, day: str, items: list[dict[str, Any]], settings: str, unsubscribe: str) -> Message:
    ja = language == "ja"
    subject = (f"[Kizuna] {day} のお知らせ（{len(items)}件）" if ja
               else f"[Kizuna] Your digest for {day}: {len(items)} update{'s' if len(items) != 1 else ''}")
    lines = ["今日までのお知らせをまとめてお届けします。" if ja else "What happened since your last digest:", ""]
    for n, item in enumerate(items, 1):
        lines += [f"{n}. {item['subject']}", *(f"   {line}" for line in item["lines"]), f"   {item['link']}", ""]
    lines += ["—", ("通知の設定：" if ja else "What you hear about: ") + settings,
              ("まとめ便を止める：" if ja else "Stop the daily digest: ") + unsubscribe]
    return Message(subject=subject, lines=lines, path="/app/notifications")

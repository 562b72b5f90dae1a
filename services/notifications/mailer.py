"""Sending what is due by email: one worker per replica takes due rows of the mail queue with ``FOR UPDATE
SKIP LOCKED`` (so two replicas never take the same one), decides on the person as they are now — still in
the community, an address, the kind not turned off — and records what became of each in the same
transaction as it leaves the queue. A refused send is tried again with exponential backoff.

At most once per person per cause in Kizuna's records; on the wire, a crash after the SMTP server accepted a
message and before its record commits sends it again on restart — with the same ``Message-ID``
(``<notification id@kizuna>``), which mail clients use to show it once (docs/notifications.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from icalendar import Calendar, Event, vCalAddress
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from kizuna.mail import MailNotSent, MailSettings, send
from kizuna.service import Runtime

from . import handlers, projections
from .domain import (
    NotificationEmailDeferred,
    NotificationEmailed,
    NotificationEmailFailed,
    NotificationEmailSkipped,
    NotificationHeldForDigest,
)
from .messages import compose

log = logging.getLogger("kizuna.notifications.mail")


class DeliverySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KIZUNA_NOTIFY_", extra="ignore")
    retry_base_seconds: float = Field(30.0, gt=0, description="First wait after the SMTP server refused a message.")
    retry_cap_seconds: float = Field(3600.0, gt=0, description="Longest wait between two tries of one message.")
    give_up_after: int = Field(30, ge=1, description="Tries before a message is given up on (in its inbox still).")
    per_second: float = Field(20.0, gt=0, description="At most this many messages a second to the SMTP server.")
    poll_seconds: float = Field(1.0, gt=0, description="How often the queue is looked at when it was empty.")
    wait_for_address_seconds: float = Field(600.0, ge=0, description="How long a new notification waits for its "
                                            "member's account link and address to arrive over the bus before it "
                                            "stays in the inbox only.")
    fresh_hours: float = Field(24.0, gt=0, description="A cause older than this reaches the inbox but no email "
                                                       "(old news, e.g. when the service joins a running deployment).")


async def send_due_mail(runtime: Runtime) -> None:
    """Background job: sends what is due, then looks again."""
    delivery, mail = DeliverySettings(), MailSettings()
    while True:
        try:
            taken = await send_batch(runtime, delivery, mail)
        except (OSError, asyncpg.PostgresError) as error:  # the database away: try again shortly
            log.warning("mail queue not read", extra={"error": repr(error)})
            taken = 0
        await asyncio.sleep(1 / delivery.per_second if taken else delivery.poll_seconds)


async def send_batch(runtime: Runtime, delivery: DeliverySettings, mail: MailSettings, size: int = 10) -> int:
    async with runtime.pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            "SELECT q.notification_id, q.stream_id, q.attempts, v.community_id, v.member_id, v.kind, "
            "v.raised_at, v.facts::text AS facts, v.names::text AS names, v.quoted::text AS quoted "
            "FROM mail_queue q JOIN notifications_view v USING (notification_id) "
            "WHERE q.due_at <= now() ORDER BY q.due_at LIMIT $1 FOR UPDATE OF q SKIP LOCKED", size)
        for row in rows:
            outcome = await _deliver(runtime, conn, row, delivery, mail)
            await handlers.record_delivery(runtime.store, conn, row["stream_id"], outcome)
            if isinstance(outcome, NotificationEmailFailed):
                break  # the server refuses: the rest wait for their turn rather than for its timeout each
            if isinstance(outcome, NotificationEmailed):  # the sending rate is the SMTP server's: only sends count
                await asyncio.sleep(1 / delivery.per_second)
        return len(rows)


Outcome = (NotificationEmailed | NotificationEmailFailed | NotificationEmailSkipped | NotificationEmailDeferred
           | NotificationHeldForDigest)


async def _deliver(runtime: Runtime, conn: asyncpg.Connection, row: asyncpg.Record, delivery: DeliverySettings,
                   mail: MailSettings) -> Outcome:
    ids = {"notification_id": row["notification_id"], "community_id": row["community_id"],
           "member_id": row["member_id"]}
    if row["raised_at"] < datetime.now(UTC) - timedelta(hours=delivery.fresh_hours):
        return NotificationEmailSkipped(**ids, reason="stale")
    if not await projections.is_member(conn, row["community_id"], row["member_id"]):
        return NotificationEmailSkipped(**ids, reason="not-a-member")
    person = await projections.person_of(conn, row["community_id"], row["member_id"])
    if person is None or not person["email"]:
        # The account link and the verified address come over the bus from other services, on consumers of
        # their own: a cause can arrive first. A fresh one waits a moment for them; an old one is let go.
        now = datetime.now(UTC)
        age = (now - row["raised_at"]).total_seconds()
        if age < delivery.wait_for_address_seconds:  # looked at again after as long as it has waited (≤ 1 min)
            return NotificationEmailDeferred(**ids, until=now + timedelta(seconds=min(60.0, max(1.0, age))),
                                             reason="not-known-yet")
        return NotificationEmailSkipped(**ids, reason="no-account" if person is None else "no-address")
    wishes = await handlers.preferences(runtime.store, person["person_id"])
    how = wishes.delivery(row["kind"])
    if how == "off":
        return NotificationEmailSkipped(**ids, reason="turned-off")
    if how == "digest":
        return NotificationHeldForDigest(**ids, person_id=person["person_id"])
    quiet_until = wishes.quiet_until(datetime.now(UTC))
    if quiet_until is not None:
        return NotificationEmailDeferred(**ids, until=quiet_until)
    facts = await projections.facts_of(conn, row)
    public = runtime.settings.public_url.rstrip("/")
    unsubscribe = await unsubscribe_link(conn, public, person["person_id"], row["kind"])
    message = _message(row["notification_id"], row["kind"], facts, wishes.language, wishes.time_zone,
                       person["email"], public, unsubscribe, mail.sender)
    attempt = row["attempts"] + 1
    try:
        await send(mail, message)
    except MailNotSent as error:
        wait = min(delivery.retry_cap_seconds, delivery.retry_base_seconds * 2 ** (attempt - 1))
        retry = None if attempt >= delivery.give_up_after else datetime.now(UTC) + timedelta(seconds=wait)
        log.warning("notification not sent", extra={"notification_id": row["notification_id"], "attempt": attempt,
                                                     "error": str(error)})
        return NotificationEmailFailed(**ids, attempt=attempt, error=str(error)[:500], retry_at=retry)
    return NotificationEmailed(**ids, person_id=person["person_id"], attempt=attempt, message_id=message["Message-ID"])


async def unsubscribe_link(conn: asyncpg.Connection, public: str, person_id: str, kind: str) -> str:
    """A one-click address that turns this kind off for this person (RFC 8058); only its hash is kept."""
    token = secrets.token_urlsafe(32)
    await conn.execute("INSERT INTO unsubscribe_links (token_sha256, person_id, kind) VALUES ($1, $2, $3)",
                       hashlib.sha256(token.encode()).hexdigest(), person_id, kind)
    return f"{public}/v1/notifications/unsubscribe/{token}"


def addressed(to: str, subject: str, message_id: str, language: str, unsubscribe: str) -> EmailMessage:
    """A message's headers as every notification email has them: automatic (RFC 3834), its language, a stable
    Message-ID (a repeat after a crash shows once) and one-click unsubscribe (RFC 8058)."""
    message = EmailMessage()
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"
    message["Content-Language"] = language
    message["List-Unsubscribe"] = f"<{unsubscribe}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return message


def _message(notification_id: str, kind: str, facts: dict[str, Any], language: str, zone: str, to: str,
             public: str, unsubscribe: str, sender: str) -> EmailMessage:
    words = compose(kind, facts, language, zone)
    ja = language == "ja"
    message = addressed(to, words.subject, f"<{notification_id}@kizuna>", language, unsubscribe)
    settings_line = ("通知の設定：" if ja else "What you hear about: ") + f"{public}/app/notifications"
    stop_line = ("この種類のお知らせを止める：" if ja else "Stop this kind of message: ") + unsubscribe
    message.set_content("\n\n".join([*words.lines, f"{public}{words.path}", "—", settings_line, stop_line]) + "\n")
    if kind == "session-changed" and facts.get("starts_at"):
        message.add_attachment(_ics(facts, to, sender).encode(), maintype="text", subtype="calendar",
                               filename="session.ics", params={"method": "CANCEL" if facts.get("cancelled")
                                                               else "REQUEST"})
    return message


def _ics(facts: dict[str, Any], to: str, sender: str) -> str:
    """An iTIP message (RFC 5546) a calendar applies by itself: the same UID and a higher SEQUENCE than the
    sessions feed's event, so the entry already there moves or is removed."""
    cancelled = bool(facts.get("cancelled"))
    cal = Calendar()
    cal.add("prodid", "-//Kizuna//notifications//EN")
    cal.add("version", "2.0")
    cal.add("method", "CANCEL" if cancelled else "REQUEST")
    event = Event()
    event.add("uid", f"{facts['session_id']}@kizuna")
    event.add("summary", facts.get("title") or "Session")
    zone = facts.get("time_zone") or "UTC"
    event.add("dtstart", datetime.fromisoformat(facts["starts_at"]).astimezone(ZoneInfo(zone)))
    event.add("dtend", datetime.fromisoformat(facts["ends_at"]).astimezone(ZoneInfo(zone)))
    event.add("dtstamp", datetime.now(UTC))
    event.add("sequence", int(facts.get("sequence") or 0))
    event.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    if facts.get("place"):
        event.add("location", facts["place"])
    event.add("organizer", vCalAddress(f"mailto:{parseaddr(sender)[1] or 'kizuna@localhost'}"))
    event.add("attendee", vCalAddress(f"mailto:{to}"))
    cal.add_component(event)
    return str(cal.to_ical().decode())

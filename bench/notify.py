"""Notifications under load (issue 22): a session reminder for a 150-member cohort, and the daily digest of
a 1,000-community deployment — mails per second and the delay from the moment each became due to the SMTP
server's acceptance, beside that SMTP server's own acceptance rate for one sequential client, in the same run.

The notifications service runs alone on the run's PostgreSQL and NATS, with the development SMTP server
(``kizuna.devstack.MailServer``, aiosmtpd writing a Maildir). What it learns from the bus — communities,
members, their accounts and verified addresses, sessions, registrations, feedback — is published as the
other services' relays would publish it (the events' own shapes), so the service's consumers build the
same read models they build in a deployment. The sending rate is unthrottled here
(``KIZUNA_NOTIFY_PER_SECOND=1000``; the default, 20/s, is an operator's courtesy to their SMTP relay), and
the reminders and digests are looked for every 2 s (30 s and 60 s by default), so the figures show the
pipeline rather than the settings.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.core import Result, Servers, percentile
from kizuna import bus
from kizuna.envelope import subject_for, to_cloudevent
from kizuna.eventstore import RecordedEvent
from kizuna.mail import MailSettings, send
from kizuna.progress import Progress
from tests.identity.smtp import SmtpInbox
from tests.support import Ecosystem, eventually

QUICK_ENV = {"KIZUNA_NOTIFY_PER_SECOND": "1000", "KIZUNA_NOTIFY_POLL_SECONDS": "0.2",
             "KIZUNA_REMINDER_POLL_SECONDS": "2", "KIZUNA_DIGEST_POLL_SECONDS": "2", "KIZUNA_LOG_LEVEL": "WARNING"}
SMTP_BASELINE = 300  # messages sent straight to the SMTP server, one after another


class Publisher:
    """Publishes events as the named service's relay would (its subject scheme and CloudEvents envelope)."""

    def __init__(self, prefix: str, js: Any) -> None:
        self.prefix, self.js, self.versions = prefix, js, dict[str, int]()

    async def __call__(self, service: str, stream_id: str, community_id: str | None, event_type: str,
                       data: dict[str, Any], actor: str = "operator") -> None:
        version = self.versions[stream_id] = self.versions.get(stream_id, 0) + 1
        event = RecordedEvent(
            global_position=version, transaction_id=1, stream_id=stream_id, stream_version=version,
            event_id=uuid.uuid4(), type=event_type, data={**({"community_id": community_id} if community_id else {}),
                                                          **data},
            metadata={"community_id": community_id, "actor": actor}, recorded_at=datetime.now(UTC))
        await self.js.publish(subject_for(self.prefix, service, event),
                              json.dumps(to_cloudevent(service, event), default=str).encode(),
                              headers={"Nats-Msg-Id": str(event.event_id)})


async def bench_notify(s: Servers, cohort: int) -> list[Result]:
    inbox = SmtpInbox(s.workdir / "notify-mail").start()
    try:
        accepted = await _smtp_acceptance(inbox)
        reminder = await _cohort_reminder(s, inbox, cohort)
        digest = await _digests(s, inbox, communities=cohort * 20 // 3)
    finally:
        inbox.stop()
    baseline = f"{accepted:,.0f} mails/s"
    return [_row(f"notifications: a session reminder for a {cohort}-member cohort", reminder, accepted, baseline),
            _row(f"notifications: the daily digest of {digest['people']:,} communities (one person each)", digest,
                 accepted, baseline)]


def _row(name: str, m: dict[str, Any], accepted: float, baseline: str) -> Result:
    delay = " / ".join(f"{m[k]:,.1f}" for k in ("p50_s", "p95_s", "max_s"))
    return Result(name, m["rate"], accepted, "the SMTP server alone, one sequential client", "mails/s", None,
                  ours_text=f"{m['rate']:,.0f} mails/s; due → accepted p50 / p95 / max {delay} s",
                  baseline_text=baseline, notes=[f"{name}: {m['mails']:,} mails in {m['span_s']:,.1f} s "
                                                 f"from the first to the last; {m['note']}"])


async def _smtp_acceptance(inbox: SmtpInbox) -> float:
    settings = MailSettings.model_validate({key.removeprefix("KIZUNA_SMTP_").lower(): value
                                            for key, value in inbox.env().items()})
    progress = Progress("notifications: the SMTP server's own acceptance rate", SMTP_BASELINE)
    started = time.monotonic()
    for n in range(SMTP_BASELINE):
        message = EmailMessage()
        message["To"], message["Subject"] = f"baseline-{n}@bench.test", f"Baseline {n}"
        message.set_content("A message of about the size of a notification.\n" * 8)
        await send(settings, message)
        progress.advance()
    progress.finish()
    return SMTP_BASELINE / (time.monotonic() - started)


async def _deployment(s: Servers, inbox: SmtpInbox, name: str) -> tuple[Ecosystem, Any, Publisher]:
    prefix = f"n{uuid.uuid4().hex[:8]}"
    eco = Ecosystem(postgres=s.pg, nats=s.nats, prefix=prefix, workdir=s.workdir / f"{name}-{prefix}")
    nc = await bus.connect(s.nats.url, f"bench-{name}")
    js = nc.jetstream()
    await bus.ensure_streams(js, prefix.upper(), prefix)
    return eco, nc, Publisher(prefix, js)


async def _people(publish: Publisher, cid: str, members: list[str], tag: str) -> None:
    """Members of a community, each an account of a person with a verified address (as identity and members
    publish them when people sign in and join)."""
    for member_id in members:
        person, account = f"person-{member_id}", f"account-{member_id}"
        await publish("members", f"community-{cid}", cid, "MemberJoined", {
            "member_id": member_id, "display_name": member_id, "role": "member", "joined_via": "application"})
        await publish("identity", f"person-{person}", None, "EmailAddressVerified",
                      {"person_id": person, "email": f"{member_id}@{tag}.bench.test"})
        await publish("identity", f"person-{person}", None, "CommunityAccountOpened",
                      {"community_id": cid, "account": account, "person_id": person})
        await publish("members", f"member-{member_id}", cid, "MemberAccountLinked",
                      {"member_id": member_id, "account": account})


async def _count(eco: Ecosystem, sql: str, *args: Any) -> int:
    conn = await asyncpg.connect(eco.database_url("notifications"))
    try:
        return int(await conn.fetchval(sql, *args))
    finally:
        await conn.close()


def _arrivals(inbox: SmtpInbox, tag: str) -> list[float]:
    """When the SMTP server wrote each message for this run's addresses (its Maildir file's time)."""
    found = []
    for folder in ("new", "cur"):
        for path in (Path(inbox.directory) / folder).glob("*"):
            head = path.read_bytes()[:4000]
            if f"@{tag}.bench.test".encode() in head:
                found.append(path.stat().st_mtime)
    return sorted(found)


def _measure(arrivals: list[float], due: float, expected: int, note: str) -> dict[str, Any]:
    delays = [t - due for t in arrivals]
    span = (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else 0.0
    return {"mails": len(arrivals), "rate": (len(arrivals) - 1) / span if span else float(len(arrivals)),
            "span_s": span, "p50_s": percentile(delays, 50), "p95_s": percentile(delays, 95),
            "max_s": max(delays), "note": f"{len(arrivals)} of {expected} expected; {note}"}


async def _cohort_reminder(s: Servers, inbox: SmtpInbox, cohort: int) -> dict[str, Any]:
    """Everyone with a place in a session is reminded a day before it: the session starts a day and a minute
    from now, so the reminders all fall due together a minute from now, once the service knows the cohort."""
    eco, nc, publish = await _deployment(s, inbox, "reminder")
    try:
        tag, cid, sid = f"r{uuid.uuid4().hex[:6]}", str(uuid.uuid4()), str(uuid.uuid4())
        members = [f"m{n}-{tag}" for n in range(cohort)]
        starts = datetime.now(UTC) + timedelta(days=1, seconds=75)
        due = starts - timedelta(days=1)
        await publish("members", f"community-{cid}", cid, "CommunityFounded", {
            "name": "Cohort", "purpose": "bench", "values": [], "member_cap": cohort + 50,
            "owner_member_id": f"owner-{tag}", "owner_display_name": "Owner"})
        await _people(publish, cid, members, tag)
        await publish("sessions", f"session-{sid}", cid, "SessionScheduled", {
            "session_id": sid, "kind": "group-coaching", "title": "Cohort circle", "starts_at": starts.isoformat(),
            "ends_at": (starts + timedelta(hours=2)).isoformat(), "time_zone": "Asia/Tokyo", "place": "Hall",
            "capacity": cohort + 10})
        for member_id in members:  # each took their place themselves: no "you have a place" message
            await publish("sessions", f"session-{sid}", cid, "MemberRegistered",
                          {"session_id": sid, "member_id": member_id}, actor=f"member:{member_id}")
        await asyncio.to_thread(eco.start, "notifications", **inbox.env(), **QUICK_ENV)
        await eventually(lambda: _knows(eco, "SELECT count(*) FROM known_registrations WHERE session_id = $1",
                                        cohort, sid), timeout=120)
        if datetime.now(UTC) >= due:
            raise RuntimeError("the cohort was learned after its reminders fell due: start the session later")
        await eventually(lambda: _arrived(inbox, tag, cohort), timeout=180 + (due - datetime.now(UTC)).seconds,
                         interval=0.5)
        return _measure(_arrivals(inbox, tag), due.timestamp(), cohort,
                        "reminders looked for every 2 s, so up to 2 s of each delay is the wait for the next look")
    finally:
        eco.stop_all()
        await nc.close()


async def _knows(eco: Ecosystem, sql: str, expected: int, *args: Any) -> bool:
    return await _count(eco, sql, *args) >= expected


async def _arrived(inbox: SmtpInbox, tag: str, expected: int) -> bool:
    return len(_arrivals(inbox, tag)) >= expected


async def _digests(s: Servers, inbox: SmtpInbox, communities: int) -> dict[str, Any]:
    """A thousand small communities, one person each who hears about feedback in a daily digest; three pieces
    of feedback each wait for it. Everyone's digest hour is set to the same minute; each digest lists three."""
    eco, nc, publish = await _deployment(s, inbox, "digest")
    try:
        tag = f"d{uuid.uuid4().hex[:6]}"
        people = [(str(uuid.uuid4()), f"m{n}-{tag}") for n in range(communities)]
        progress = Progress(f"notifications: {communities:,} communities with a person each, as the bus tells",
                            communities)
        for cid, member_id in people:
            await publish("members", f"community-{cid}", cid, "CommunityFounded", {
                "name": f"Circle {member_id}", "purpose": "bench", "values": [], "member_cap": 150,
                "owner_member_id": f"owner-{member_id}", "owner_display_name": "Owner"})
            await _people(publish, cid, [member_id], tag)
            progress.advance()
        progress.finish()
        await asyncio.to_thread(eco.start, "notifications", **inbox.env(), **QUICK_ENV)
        await eventually(lambda: _knows(eco, "SELECT count(*) FROM member_accounts", communities), timeout=600,
                         interval=1)
        zone = _near_noon()
        await _choose(eco, people, {"kinds": {"feedback-received": "digest"}, "time_zone": zone,
                                    "digest_at": "23:59:59"}, "each person chooses the digest for feedback")
        progress = Progress("notifications: three pieces of feedback for each person", communities)
        for cid, member_id in people:
            for n in range(3):
                await publish("referrals", f"feedback-{cid}-{n}", cid, "FeedbackGiven", {
                    "feedback_id": str(uuid.uuid4()), "job_id": f"job-{n}", "subject_id": member_id,
                    "giver_id": f"owner-{member_id}"})
            progress.advance()
        progress.finish()
        await eventually(lambda: _knows(eco, "SELECT count(*) FROM digest_queue", 3 * communities), timeout=900,
                         interval=1)
        due_local = datetime.now(UTC) + timedelta(seconds=45)
        await _choose(eco, people, {"digest_at": _local_time(due_local, zone)}, "everyone's digest hour: a "
                      "moment from now")
        if datetime.now(UTC) >= due_local:
            raise RuntimeError("the digest hour passed while it was being set: give it more time")
        await eventually(lambda: _arrived(inbox, tag, communities), timeout=900, interval=1)
        measured = _measure(_arrivals(inbox, tag), due_local.replace(microsecond=0).timestamp(), communities,
                            "digests looked for every 2 s; each lists three notifications")
        return {**measured, "people": communities}
    finally:
        eco.stop_all()
        await nc.close()


def _near_noon() -> str:
    east = 12 - datetime.now(UTC).hour
    return f"Etc/GMT{-east:+d}" if east else "Etc/GMT"


def _local_time(moment: datetime, zone: str) -> str:
    from zoneinfo import ZoneInfo

    return moment.astimezone(ZoneInfo(zone)).time().replace(microsecond=0).isoformat()


async def _choose(eco: Ecosystem, people: list[tuple[str, str]], wishes: dict[str, Any], what: str) -> None:
    progress = Progress(f"notifications: {what}", len(people))
    async with httpx.AsyncClient(base_url=eco.url("notifications"), timeout=30) as http:
        for cid, member_id in people:
            answer = await http.put(f"/communities/{cid}/notification-preferences", json=wishes,
                                    headers=eco.headers(cid, member_id))
            answer.raise_for_status()
            progress.advance()
    progress.finish()

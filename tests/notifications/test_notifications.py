"""Notifications reach people (issue 22, first slice): real members, referrals, sessions, identity,
notifications and gateway processes, a real SMTP server whose mails are parsed as a mail client would, and
the bus itself for the redelivery test. Hana and Ken are signed in by email and members of Hikari Makers."""

from __future__ import annotations

import asyncio
import email
import json
import mailbox
import re
import uuid
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from typing import Any

import asyncpg
import httpx
from icalendar import Calendar

from kizuna import bus
from tests.identity.journey import community_token
from tests.identity.smtp import SmtpInbox
from tests.support import Ecosystem, eventually
from tests.webapp.phones import hikari_makers, member_id_of


def _mails_to(inbox: SmtpInbox, address: str) -> list[EmailMessage]:
    box = mailbox.Maildir(inbox.directory, create=False)
    found = [email.message_from_bytes(box.get_bytes(key), policy=policy.default) for key in box.keys()]
    return [m for m in found if address in str(m["To"])]


async def _mail(inbox: SmtpInbox, address: str, subject_has: str, timeout: float = 45) -> EmailMessage:
    async def arrived() -> EmailMessage | None:
        return next((m for m in _mails_to(inbox, address) if subject_has in str(m["Subject"])), None)

    found: EmailMessage = await eventually(arrived, timeout=timeout)
    return found


def _text(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


async def _as(person: httpx.AsyncClient, cid: str) -> dict[str, str]:
    answer = await community_token(person, cid)
    assert answer.status_code == 201, answer.text
    return {"authorization": f"Bearer {answer.json()['token']}", "accept": "application/json"}


async def test_an_offer_reaches_the_requesters_inbox_and_email_in_her_language_and_stops_when_she_unsubscribes(
        notify_stack: Ecosystem, inbox: SmtpInbox) -> None:
    async with hikari_makers(notify_stack, inbox) as (cid, hana, ken):
        as_hana, as_ken = await _as(hana, cid), await _as(ken, cid)
        posted = await hana.post(f"/v1/communities/{cid}/jobs", headers=as_hana,
                                 json={"title": "Book cover", "deadline": "2031-01-01"})
        assert posted.status_code == 201, posted.text
        job = posted.json()["job_id"]
        offered = await ken.post(f"/v1/communities/{cid}/jobs/{job}/offers", headers=as_ken,
                                 json={"why_next_step": "covers!"})
        assert offered.status_code == 200, offered.text
        hana_address = f"hana-{cid[:8]}@app.test"
        mail = await _mail(inbox, hana_address, "Book cover")
        assert str(mail["Subject"]) == "[Hikari Makers] 「Book cover」に申し出がありました"  # Japanese by default
        text = _text(mail)
        assert "Kenさんが手伝いを申し出ています。" in text and f"/app/c/{cid}/jobs/{job}" in text
        assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        unsubscribe = re.fullmatch(r"<(.+)>", str(mail["List-Unsubscribe"]))
        assert unsubscribe is not None and unsubscribe.group(1) in text
        assert re.fullmatch(r"<[0-9a-f-]{36}@kizuna>", str(mail["Message-ID"]))

        # The same notification in her inbox in the app's API, unread until she reads it.
        async def recorded() -> dict[str, Any] | None:  # the mail's record commits just after the server took it
            box: dict[str, Any] = (await hana.get(f"/v1/communities/{cid}/notifications", headers=as_hana)).json()
            return box if box["items"] and box["items"][0]["email"] == "sent" else None

        box = await eventually(recorded)
        assert box["unread"] == 1 and box["items"][0]["kind"] == "job-offer"
        assert box["items"][0]["facts"]["title"] == "Book cover"
        read = await hana.post(f"/v1/communities/{cid}/notifications/{box['items'][0]['notification_id']}/read",
                               headers=as_hana)
        assert read.status_code == 204, read.text
        assert (await hana.get(f"/v1/communities/{cid}/notifications", headers=as_hana)).json()["unread"] == 0
        # Ken cannot read Hana's notifications, nor mark them.
        assert (await ken.get(f"/v1/communities/{cid}/notifications", headers=as_ken)).json()["unread"] == 0
        stolen = await ken.post(f"/v1/communities/{cid}/notifications/{box['items'][0]['notification_id']}/read",
                                headers=as_ken)
        assert stolen.status_code == 404, stolen.text

        # English from now on; then one click in her mail client turns offers off (RFC 8058).
        changed = await hana.put(f"/v1/communities/{cid}/notification-preferences", headers=as_hana,
                                 json={"language": "en", "kinds": {"feedback-received": "off"}})
        assert changed.status_code == 200 and changed.json()["kinds"]["job-offer"] == "immediately", changed.text
        bad = await hana.put(f"/v1/communities/{cid}/notification-preferences", headers=as_hana,
                             json={"kinds": {"everything": "off"}, "colour": "red"})
        assert bad.status_code == 422 and {e["field"] for e in bad.json()["errors"]} >= {"kinds", "colour"}, bad.text
        referred = await ken.post(f"/v1/communities/{cid}/jobs/{job}/referrals", headers=as_ken, json={
            "member_id": (await _yui(notify_stack, cid)), "note": "She binds books"})
        assert referred.status_code == 200, referred.text
        english = await _mail(inbox, hana_address, "was referred")
        assert str(english["Subject"]) == "[Hikari Makers] Yui was referred to “Book cover”"
        async with httpx.AsyncClient(timeout=30) as mail_client:
            page = await mail_client.get(unsubscribe.group(1))  # a GET (a link scanner) changes nothing
            assert page.status_code == 200 and "<form" in page.text
            clicked = await mail_client.post(unsubscribe.group(1), content=b"List-Unsubscribe=One-Click",
                                             headers={"content-type": "application/x-www-form-urlencoded"})
            assert clicked.status_code == 200, clicked.text
        prefs = (await hana.get(f"/v1/communities/{cid}/notification-preferences", headers=as_hana)).json()
        assert prefs["kinds"]["job-offer"] == "off" and prefs["language"] == "en"

        second = await hana.post(f"/v1/communities/{cid}/jobs", headers=as_hana,
                                 json={"title": "Logo", "deadline": "2031-01-01"})
        await ken.post(f"/v1/communities/{cid}/jobs/{second.json()['job_id']}/offers", headers=as_ken,
                       json={"why_next_step": "logos too"})

        async def skipped() -> bool:
            items = (await hana.get(f"/v1/communities/{cid}/notifications", headers=as_hana)).json()["items"]
            return any(i["facts"].get("title") == "Logo" and i["email"] == "skipped: turned-off" for i in items)

        await eventually(skipped)
        assert not [m for m in _mails_to(inbox, hana_address) if "Logo" in str(m["Subject"])]


async def _yui(eco: Ecosystem, cid: str) -> str:
    async with httpx.AsyncClient(base_url=eco.url("gateway"), headers=eco.operator_headers()) as operator:
        [owner] = (await operator.get(f"/v1/communities/{cid}/members?role=owner")).json()["items"]
    return str(owner["member_id"])


async def test_a_moved_session_updates_the_calendar_by_mail_and_a_called_off_one_removes_it(
        notify_stack: Ecosystem, inbox: SmtpInbox) -> None:
    async with hikari_makers(notify_stack, inbox) as (cid, _hana, ken):
        ken_id, ken_address = await member_id_of(ken, cid), f"ken-{cid[:8]}@app.test"
        async with httpx.AsyncClient(base_url=notify_stack.url("gateway"),
                                     headers=notify_stack.operator_headers(), timeout=30) as operator:
            made = await operator.post(f"/v1/communities/{cid}/sessions", json={
                "kind": "group-coaching", "title": "Cohort A", "starts_at": "2031-05-01T19:00:00",
                "ends_at": "2031-05-01T21:00:00", "time_zone": "Asia/Tokyo", "place": "Kominka", "capacity": 5})
            sid = made.json()["session_id"]
            await operator.post(f"/v1/communities/{cid}/sessions/{sid}/registrations", json={"member_id": ken_id})
            moved = await operator.post(f"/v1/communities/{cid}/sessions/{sid}/reschedule", json={
                "starts_at": "2031-05-02T19:00:00", "ends_at": "2031-05-02T21:00:00", "time_zone": "Asia/Tokyo",
                "place": "Kominka", "reason": "a holiday"})
            assert moved.status_code == 200, moved.text
            request = await _mail(inbox, ken_address, "日時が変わりました")
            invite = _calendar_of(request)
            assert invite["METHOD"] == "REQUEST"
            [event] = invite.walk("VEVENT")
            assert str(event["uid"]) == f"{sid}@kizuna" and event.decoded("dtstart").day == 2
            assert "理由：a holiday" in _text(request)
            await operator.post(f"/v1/communities/{cid}/sessions/{sid}/cancellation", json={"reason": "typhoon"})
            cancel = _calendar_of(await _mail(inbox, ken_address, "中止"))
            [gone] = cancel.walk("VEVENT")
            assert cancel["METHOD"] == "CANCEL" and str(gone["status"]) == "CANCELLED"
            assert int(str(gone["sequence"])) > int(str(event["sequence"]))


def _calendar_of(message: EmailMessage) -> Any:
    [part] = [p for p in message.iter_attachments() if p.get_content_type() == "text/calendar"]
    return Calendar.from_ical(part.get_content() if isinstance(part.get_content(), str)
                              else part.get_content().decode())


async def test_a_redelivered_cause_notifies_no_one_twice_and_a_refusing_smtp_server_loses_nothing(
        notify_stack: Ecosystem, inbox: SmtpInbox) -> None:
    async with hikari_makers(notify_stack, inbox) as (cid, hana, ken):
        as_hana, as_ken = await _as(hana, cid), await _as(ken, cid)
        hana_address = f"hana-{cid[:8]}@app.test"
        inbox.stop()  # the SMTP server refuses for a while
        try:
            posted = await hana.post(f"/v1/communities/{cid}/jobs", headers=as_hana,
                                     json={"title": "Kiln firing", "deadline": "2031-01-01"})
            job = posted.json()["job_id"]
            await ken.post(f"/v1/communities/{cid}/jobs/{job}/offers", headers=as_ken,
                           json={"why_next_step": "I fire kilns"})

            async def tried() -> bool:
                conn = await asyncpg.connect(notify_stack.database_url("notifications"))
                try:
                    return bool(await conn.fetchval("SELECT count(*) FROM events WHERE event_type = "
                                                    "'NotificationEmailFailed'"))
                finally:
                    await conn.close()

            await eventually(tried, timeout=30)
        finally:
            inbox.start()
        mail = await _mail(inbox, hana_address, "Kiln firing", timeout=30)
        # The offer's event delivered once more on the bus (a redelivery after a lost acknowledgement).
        cause = await _stored_event(notify_stack, "referrals", "JobOffered", job)
        nc = await bus.connect(notify_stack.nats.url, "redelivery-test")
        try:
            js = nc.jetstream()
            await js.publish(cause["subject"], json.dumps(cause["body"]).encode(),
                             headers={"Nats-Msg-Id": str(uuid.uuid4())})  # past the stream's duplicate check
        finally:
            await nc.drain()
        await asyncio.sleep(3)  # room for a second notification or mail to appear, if one would
        assert [m["Message-ID"] for m in _mails_to(inbox, hana_address) if "Kiln" in str(m["Subject"])] == [
            mail["Message-ID"]]
        items = (await hana.get(f"/v1/communities/{cid}/notifications", headers=as_hana)).json()["items"]
        assert [i["facts"]["title"] for i in items].count("Kiln firing") == 1

        # Old news — an offer recorded three days ago, as a service joining a running deployment reads the
        # bus from its start — reaches the inbox but sends no email.
        old = {**cause["body"], "id": str(uuid.uuid4()), "streamversion": cause["body"]["streamversion"] + 1,
               "time": (datetime.now(UTC) - timedelta(days=3)).isoformat()}
        nc = await bus.connect(notify_stack.nats.url, "old-news-test")
        try:
            await nc.jetstream().publish(cause["subject"], json.dumps(old).encode(),
                                         headers={"Nats-Msg-Id": old["id"]})
        finally:
            await nc.drain()

        async def kept_quiet() -> bool:
            box = (await hana.get(f"/v1/communities/{cid}/notifications", headers=as_hana)).json()["items"]
            return [i["email"] for i in box if i["facts"]["title"] == "Kiln firing"] == ["sent", "skipped: stale"]

        await eventually(kept_quiet)
        assert len([m for m in _mails_to(inbox, hana_address) if "Kiln" in str(m["Subject"])]) == 1


async def _stored_event(eco: Ecosystem, service: str, event_type: str, job_id: str) -> dict[str, Any]:
    """The event as the service published it: its subject and CloudEvent body."""
    from kizuna.envelope import subject_for, to_cloudevent
    from kizuna.eventstore import EventStore

    pool = await asyncpg.create_pool(eco.database_url(service), min_size=1, max_size=2)
    try:
        [recorded] = [e for e in await EventStore(pool).read_stream(f"job-{job_id}", from_version=1)
                      if e.type == event_type]
    finally:
        await pool.close()
    return {"subject": subject_for(eco.prefix, service, recorded), "body": to_cloudevent(service, recorded)}


async def test_a_place_offered_and_a_session_coming_up_are_told_and_reminded_once(
        notify_stack: Ecosystem, inbox: SmtpInbox) -> None:
    """The community is full; Mio, signed in, waits for a place. Ken leaves: the place is offered to Mio
    (an hour to answer), who hears of it and is reminded that it lapses. Hana has a place in a session
    starting in two hours: she is reminded once, however often the reminders are looked for."""
    from tests.identity.journey import browser, csrf, sign_in_by_email

    async with hikari_makers(notify_stack, inbox) as (cid, hana, ken):
        async with httpx.AsyncClient(base_url=notify_stack.url("gateway"), headers=notify_stack.operator_headers(),
                                     timeout=30) as operator:
            assert (await operator.put(f"/v1/communities/{cid}/cap", json={"member_cap": 3})).status_code == 200
            admission = await operator.put(f"/v1/communities/{cid}/admission", json={
                "policy": "open", "offer_ttl_seconds": 3600, "reason": "a small room"})
            assert admission.status_code == 200, admission.text
            async with browser(notify_stack) as mio:
                mio_address = f"mio-{cid[:8]}@app.test"
                await sign_in_by_email(mio, inbox, mio_address)

                async def waiting() -> bool:
                    answer = await mio.post(f"/v1/join/{cid}", json={"display_name": "Mio", "waitlist_if_full": True},
                                            headers={"x-csrf-token": await csrf(mio), "accept": "application/json"})
                    return answer.status_code in (201, 202) and "waitlist" in answer.text

                await eventually(waiting)
                as_ken = await _as(ken, cid)
                left = await ken.post(f"/v1/communities/{cid}/members/{await member_id_of(ken, cid)}/leave",
                                      headers=as_ken)
                assert left.status_code == 204, left.text
                offered = await _mail(inbox, mio_address, "空きが出ました", timeout=30)
                assert f"/waiting/{cid}" in _text(offered)
                reminded = await _mail(inbox, mio_address, "期限が近づいています", timeout=30)
                assert "次の人に回ります" in _text(reminded)

            starts = datetime.now(UTC) + timedelta(hours=2)
            made = await operator.post(f"/v1/communities/{cid}/sessions", json={
                "kind": "meal", "title": "Soup night", "starts_at": starts.isoformat(),
                "ends_at": (starts + timedelta(hours=2)).isoformat(), "time_zone": "Asia/Tokyo", "place": "Kitchen",
                "capacity": 8})
            sid = made.json()["session_id"]
            registered = await operator.post(f"/v1/communities/{cid}/sessions/{sid}/registrations",
                                             json={"member_id": await member_id_of(hana, cid)})
            assert registered.status_code in (200, 201), registered.text
            hana_address = f"hana-{cid[:8]}@app.test"
            await _mail(inbox, hana_address, "もうすぐ「Soup night」です", timeout=30)
            await asyncio.sleep(2)  # the reminders are looked for again and again meanwhile
            assert len([m for m in _mails_to(inbox, hana_address) if "Soup night" in str(m["Subject"])]) == 1

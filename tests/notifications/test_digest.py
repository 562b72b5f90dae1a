"""How a person hears (issue 22): a daily digest instead of one email each, and quiet hours that hold email
until they end — real services, a real SMTP server, mails parsed as a mail client would. The person's time
zone is chosen so that their local time is near noon, whatever the hour the test runs at."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from tests.identity.smtp import SmtpInbox
from tests.notifications.test_notifications import _as, _mail, _mails_to, _text
from tests.support import Ecosystem, eventually
from tests.webapp.phones import hikari_makers


def _near_noon() -> ZoneInfo:
    """An Etc/GMT zone whose local hour is 11 to 13 now, so a few seconds' offsets never cross midnight."""
    east = 12 - datetime.now(UTC).hour  # Etc/GMT-N is N hours east of UTC
    return ZoneInfo(f"Etc/GMT{-east:+d}" if east else "Etc/GMT")


def _local_in(zone: ZoneInfo, seconds: float) -> str:
    return (datetime.now(zone) + timedelta(seconds=seconds)).time().replace(microsecond=0).isoformat()


async def _choosing(person: httpx.AsyncClient, cid: str, headers: dict[str, str],
                    wishes: dict[str, Any]) -> httpx.Response:
    """Her wishes, once the notifications service knows who the member is (the account link comes over the
    bus: until then 409 no-account)."""
    async def chosen() -> httpx.Response | None:
        answer = await person.put(f"/v1/communities/{cid}/notification-preferences", headers=headers, json=wishes)
        assert answer.status_code in (200, 409), answer.text
        return answer if answer.status_code == 200 else None

    answer: httpx.Response = await eventually(chosen, timeout=30)
    return answer


async def _offered_on(hana: httpx.AsyncClient, ken: httpx.AsyncClient, cid: str, title: str) -> None:
    as_hana, as_ken = await _as(hana, cid), await _as(ken, cid)
    posted = await hana.post(f"/v1/communities/{cid}/jobs", headers=as_hana,
                             json={"title": title, "deadline": "2031-01-01"})
    assert posted.status_code == 201, posted.text
    offered = await ken.post(f"/v1/communities/{cid}/jobs/{posted.json()['job_id']}/offers", headers=as_ken,
                             json={"why_next_step": "happy to"})
    assert offered.status_code == 200, offered.text


async def _email_status(hana: httpx.AsyncClient, cid: str, title: str) -> str | None:
    items = (await hana.get(f"/v1/communities/{cid}/notifications", headers=await _as(hana, cid))).json()["items"]
    return next((i["email"] for i in items if i["facts"].get("title") == title), None)


async def test_offers_wait_for_the_daily_digest_which_lists_them_in_one_mail_once_a_day(
        notify_stack: Ecosystem, inbox: SmtpInbox) -> None:
    async with hikari_makers(notify_stack, inbox) as (cid, hana, ken):
        as_hana = await _as(hana, cid)
        zone = _near_noon()
        digest_at = _local_in(zone, 30)
        chosen = await _choosing(hana, cid, as_hana, {
            "kinds": {"job-offer": "digest"}, "time_zone": zone.key, "digest_at": digest_at, "language": "en"})
        assert chosen.json()["kinds"]["job-offer"] == "digest" and chosen.json()["digest_at"] == digest_at

        await _offered_on(hana, ken, cid, "Risograph zine")
        await _offered_on(hana, ken, cid, "Shop sign")
        for title in ("Risograph zine", "Shop sign"):  # held for the digest, no email of their own
            await eventually(lambda title=title: _held(hana, cid, title), timeout=30)
        hana_address = f"hana-{cid[:8]}@app.test"
        assert not [m for m in _mails_to(inbox, hana_address) if "zine" in str(m["Subject"])]

        digest = await _mail(inbox, hana_address, "Your digest for", timeout=60)
        assert datetime.now(zone).time() >= time.fromisoformat(digest_at)  # not before the hour she chose
        assert re.fullmatch(r"\[Kizuna\] Your digest for \d{4}-\d\d-\d\d: 2 updates", str(digest["Subject"]))
        text = _text(digest)
        assert "Risograph zine" in text and "Shop sign" in text and f"/app/c/{cid}/jobs/" in text
        assert digest["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        for title in ("Risograph zine", "Shop sign"):
            await eventually(lambda title=title: _status_is(hana, cid, title, "sent in digest"))

        # What comes after today's digest waits for tomorrow's: no second digest today.
        await _offered_on(hana, ken, cid, "Poster run")
        await eventually(lambda: _held(hana, cid, "Poster run"), timeout=30)
        await asyncio.sleep(2)  # the digests are looked for again and again meanwhile
        assert len([m for m in _mails_to(inbox, hana_address) if "digest" in str(m["Subject"])]) == 1

        # One click in the mail client stops the digest: every kind she heard about that way is off.
        link = re.fullmatch(r"<(.+)>", str(digest["List-Unsubscribe"]))
        assert link is not None
        async with httpx.AsyncClient(timeout=30) as mail_client:
            assert "daily digest" in (await mail_client.get(link.group(1))).text
            clicked = await mail_client.post(link.group(1), content=b"List-Unsubscribe=One-Click",
                                             headers={"content-type": "application/x-www-form-urlencoded"})
            assert clicked.status_code == 200, clicked.text
        prefs = (await hana.get(f"/v1/communities/{cid}/notification-preferences", headers=as_hana)).json()
        assert prefs["kinds"]["job-offer"] == "off" and prefs["kinds"]["job-assigned"] == "immediately"


async def _held(hana: httpx.AsyncClient, cid: str, title: str) -> bool:
    return await _email_status(hana, cid, title) == "digest"


async def _status_is(hana: httpx.AsyncClient, cid: str, title: str, status: str) -> bool:
    return await _email_status(hana, cid, title) == status


async def test_quiet_hours_hold_email_until_they_end_and_refuse_a_digest_inside_them(
        notify_stack: Ecosystem, inbox: SmtpInbox) -> None:
    async with hikari_makers(notify_stack, inbox) as (cid, hana, ken):
        as_hana = await _as(hana, cid)
        zone = _near_noon()
        quiet: dict[str, Any] = {"start": _local_in(zone, -3600), "end": _local_in(zone, 20)}
        await _choosing(hana, cid, as_hana, {"time_zone": zone.key, "quiet_hours": quiet})

        await _offered_on(hana, ken, cid, "Night market stall")
        await eventually(lambda: _status_is(hana, cid, "Night market stall", "quiet hours"), timeout=30)
        hana_address = f"hana-{cid[:8]}@app.test"
        assert not [m for m in _mails_to(inbox, hana_address) if "Night market stall" in str(m["Subject"])]
        mail = await _mail(inbox, hana_address, "Night market stall", timeout=60)
        assert datetime.now(zone).time() >= time.fromisoformat(quiet["end"])  # it waited for them to end
        assert str(mail["Subject"]).startswith("[Hikari Makers]")

        # Bad wishes are refused, naming the field; nothing of them is kept.
        inside = await hana.put(f"/v1/communities/{cid}/notification-preferences", headers=as_hana, json={
            "quiet_hours": {"start": "22:00", "end": "07:00"}, "digest_at": "06:30"})
        assert inside.status_code == 422 and inside.json()["errors"][0]["field"] == "digest_at", inside.text
        empty = await hana.put(f"/v1/communities/{cid}/notification-preferences", headers=as_hana,
                               json={"quiet_hours": {"start": "22:00", "end": "22:00"}})
        assert empty.status_code == 422 and "quiet_hours" in empty.text, empty.text
        kept = (await hana.get(f"/v1/communities/{cid}/notification-preferences", headers=as_hana)).json()
        assert kept["quiet_hours"] == quiet and kept["digest_at"] == "08:00:00"
        cleared = await hana.put(f"/v1/communities/{cid}/notification-preferences", headers=as_hana,
                                 json={"quiet_hours": None})
        assert cleared.status_code == 200 and cleared.json()["quiet_hours"] is None, cleared.text

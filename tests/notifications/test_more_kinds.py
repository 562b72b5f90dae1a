"""The second slice of notification kinds (issue 22), each caused through the public API as a member, an owner
or the operator would, and read where the person reads it: the mail in the SMTP inbox (its language and link)
and the member's inbox. A deployment of its own: goals here go quiet after four seconds, not seven days."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from kizuna.devstack import NatsServer, PostgresServer
from tests.federation.test_local_links import propose
from tests.identity.conftest import THROUGH_A_PROXY
from tests.identity.smtp import SmtpInbox
from tests.notifications.conftest import QUICK
from tests.notifications.test_notifications import _as, _mail, _mails_to, _text
from tests.support import Ecosystem, deployment, eventually
from tests.webapp.phones import given_role, hikari_makers, member_id_of

QUIET_SECONDS = 4  # KIZUNA_REMINDER_CHECKIN_DAYS, in seconds: a goal with no check-in for this long is due


@pytest.fixture(scope="module")
def kinds_stack(postgres: PostgresServer, nats_server: NatsServer, workdir: Path,
                inbox: SmtpInbox) -> Iterator[Ecosystem]:
    with deployment(postgres, nats_server, workdir, prefix="k", **inbox.env(), **THROUGH_A_PROXY, **QUICK,
                    KIZUNA_REMINDER_CHECKIN_DAYS=str(QUIET_SECONDS / 86400)) as eco:
        yield eco
        for name, proc in eco.processes.items():
            assert "unhandled error" not in proc.log_path.read_text(), name


def _operator(eco: Ecosystem) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=eco.url("gateway"), headers=eco.operator_headers(), timeout=30)


async def _owner_of(eco: Ecosystem, cid: str) -> str:
    async with _operator(eco) as operator:
        [owner] = (await operator.get(f"/v1/communities/{cid}/members?role=owner")).json()["items"]
    return str(owner["member_id"])


async def _inbox(http: httpx.AsyncClient, cid: str, headers: dict[str, str], kind: str) -> list[dict[str, Any]]:
    answer = await http.get(f"/v1/communities/{cid}/notifications", headers=headers)
    if answer.status_code == 403:
        return []  # "not a member" until the notifications service has learned the member from the bus
    assert answer.status_code == 200, answer.text
    return [i for i in answer.json()["items"] if i["kind"] == kind]


async def _preferring(person: httpx.AsyncClient, cid: str, headers: dict[str, str], wishes: dict[str, Any]) -> None:
    """Sets a person's wishes once the notifications service knows who the member is (its account link comes
    over the bus: until then the answer is 409 no-account)."""
    async def set_() -> bool:
        answer = await person.put(f"/v1/communities/{cid}/notification-preferences", headers=headers, json=wishes)
        assert answer.status_code in (200, 409), answer.text
        return answer.status_code == 200

    await eventually(set_, timeout=30)


async def _ok(answer: Any, *codes: int) -> httpx.Response:
    response: httpx.Response = await answer
    assert response.status_code in (codes or (200, 201, 204)), response.text
    return response


async def test_a_place_given_a_job_moving_on_and_an_introduction_answered_are_told_to_whom_they_concern(
        kinds_stack: Ecosystem, inbox: SmtpInbox) -> None:
    eco = kinds_stack
    async with hikari_makers(eco, inbox) as (cid, hana, ken), _operator(eco) as operator:
        as_hana, as_ken = await _as(hana, cid), await _as(ken, cid)
        hana_id, ken_id, yui_id = await member_id_of(hana, cid), await member_id_of(ken, cid), await _owner_of(eco, cid)
        as_yui = eco.headers(cid, yui_id, "owner")
        hana_address, ken_address = f"hana-{cid[:8]}@app.test", f"ken-{cid[:8]}@app.test"
        await _preferring(ken, cid, as_ken, {"language": "en"})

        # session-registered: a facilitator's registration is told, with the waitlist position past capacity;
        # a member's own registration is not (the app showed the answer).
        made = await _ok(operator.post(f"/v1/communities/{cid}/sessions", json={
            "kind": "group-coaching", "title": "Cohort B", "starts_at": "2031-06-01T19:00:00",
            "ends_at": "2031-06-01T21:00:00", "time_zone": "Asia/Tokyo", "place": "Kominka", "capacity": 1}))
        session = made.json()["session_id"]
        for member in (hana_id, yui_id):
            await _ok(operator.post(f"/v1/communities/{cid}/sessions/{session}/registrations",
                                    json={"member_id": member}))
        await _ok(ken.post(f"/v1/communities/{cid}/sessions/{session}/registrations", headers=as_ken, json={}))
        placed = await _mail(inbox, hana_address, "「Cohort B」の席を取りました")
        assert "2031/06/01 19:00 · Kominka" in _text(placed) and f"/app/c/{cid}/sessions" in _text(placed)
        [waiting] = await eventually(lambda: _inbox(operator, cid, as_yui, "session-registered"))
        assert waiting["facts"]["position"] == 1 and waiting["facts"]["title"] == "Cohort B"
        other = await _ok(operator.post(f"/v1/communities/{cid}/sessions", json={
            "kind": "meal", "title": "Soup night", "starts_at": "2031-06-03T19:00:00",
            "ends_at": "2031-06-03T21:00:00", "time_zone": "Asia/Tokyo", "place": "Kitchen", "capacity": 5}))
        await _ok(operator.post(f"/v1/communities/{cid}/sessions/{other.json()['session_id']}/registrations",
                                json={"member_id": ken_id}))
        await _mail(inbox, ken_address, "A place for you in “Soup night”")  # after his own registration
        assert [i["facts"]["title"] for i in await _inbox(ken, cid, as_ken, "session-registered")] == ["Soup night"]

        # job-status: the member asked hears it start, end and (another job) be called off — as does, then,
        # the member who only offered; the requester, who did each, hears nothing of it.
        async def job(title: str) -> str:
            posted = await _ok(hana.post(f"/v1/communities/{cid}/jobs", headers=as_hana,
                                         json={"title": title, "deadline": "2031-01-01"}))
            job_id = str(posted.json()["job_id"])
            await _ok(ken.post(f"/v1/communities/{cid}/jobs/{job_id}/offers", headers=as_ken, json={}))
            await _ok(operator.post(f"/v1/communities/{cid}/jobs/{job_id}/offers", headers=as_yui, json={}))
            await _ok(hana.post(f"/v1/communities/{cid}/jobs/{job_id}/assignment", headers=as_hana,
                                json={"member_ids": [ken_id]}))
            return job_id

        cover = await job("Book cover")
        await _ok(hana.post(f"/v1/communities/{cid}/jobs/{cover}/start", headers=as_hana))
        started = await _mail(inbox, ken_address, "“Book cover” has started")
        assert f"/app/c/{cid}/jobs/{cover}" in _text(started)
        await _ok(hana.post(f"/v1/communities/{cid}/jobs/{cover}/completion", headers=as_hana))
        assert "give feedback" in _text(await _mail(inbox, ken_address, "“Book cover” is done"))
        logo = await job("Logo")
        await _ok(hana.post(f"/v1/communities/{cid}/jobs/{logo}/cancellation", headers=as_hana,
                            json={"reason": "the budget went"}))
        assert "Why: the budget went" in _text(await _mail(inbox, ken_address, "“Logo” was called off"))
        told = await eventually(lambda: _inbox(operator, cid, as_yui, "job-status"))
        assert [(i["facts"]["title"], i["facts"]["state"]) for i in told] == [("Logo", "cancelled")]
        assert not await _inbox(hana, cid, as_hana, "job-status")

        # introduction-outcome: Ken introduced Hana to Yui; her answer and Yui's word on how it went reach
        # Ken; an outcome Ken records himself does not.
        async def introduce() -> str:
            made = await _ok(ken.post(f"/v1/communities/{cid}/referrals", headers=as_ken,
                                      json={"referred_id": hana_id, "to_member_id": yui_id, "note": "kilns"}))
            return str(made.json()["id"])

        first, second = await introduce(), await introduce()
        await _ok(hana.post(f"/v1/communities/{cid}/referrals/{first}/acceptance", headers=as_hana))
        accepted = await _mail(inbox, ken_address, "Hana accepted your introduction")
        assert "Hana accepted your introduction to Yui." in _text(accepted)
        assert f"/app/c/{cid}/introductions" in _text(accepted)
        await _ok(operator.post(f"/v1/communities/{cid}/referrals/{first}/outcome", headers=as_yui,
                                json={"worked": True, "note": "two pots fired"}))
        worked = await _mail(inbox, ken_address, "Your introduction of Hana worked out")
        assert "two pots fired" in _text(worked)
        await _ok(hana.post(f"/v1/communities/{cid}/referrals/{second}/decline", headers=as_hana,
                            json={"reason": "we met already"}))
        assert "we met already" in _text(await _mail(inbox, ken_address, "Hana declined your introduction"))
        outcomes = await _inbox(ken, cid, as_ken, "introduction-outcome")
        assert sorted(i["facts"]["outcome"] for i in outcomes) == ["accepted", "declined", "worked"]


async def test_a_quiet_goal_asks_its_member_how_it_goes_once_per_quiet_spell(
        kinds_stack: Ecosystem, inbox: SmtpInbox) -> None:
    eco = kinds_stack
    async with hikari_makers(eco, inbox) as (cid, hana, _ken):
        as_hana, hana_address = await _as(hana, cid), f"hana-{cid[:8]}@app.test"
        set_goal = await _ok(hana.post(f"/v1/communities/{cid}/goals", headers=as_hana, json={
            "facilitator_id": await _owner_of(eco, cid), "statement": "Throw 40 bowls",
            "motivation": "my own shop", "due_date": "2031-12-31",
            "kpis": [{"name": "bowls", "baseline": 0, "target": 40, "direction": "increase"}]}), 201)
        goal = set_goal.json()["goal_id"]
        first = await _mail(inbox, hana_address, "「Throw 40 bowls」の進み具合はいかがですか", timeout=30)
        assert "目標を立てたのは" in _text(first) and f"/app/c/{cid}/goals/{goal}" in _text(first)
        await asyncio.sleep(1.5)  # the reminders are looked for again and again: still one for this spell
        assert len([m for m in _mails_to(inbox, hana_address) if "Throw 40 bowls" in str(m["Subject"])]) == 1
        await _ok(hana.post(f"/v1/communities/{cid}/goals/{goal}/check-ins", headers=as_hana,
                            json={"values": {"bowls": 6}, "note": "a slow week"}))

        async def asked_again() -> list[Any]:
            mails = [m for m in _mails_to(inbox, hana_address) if "Throw 40 bowls" in str(m["Subject"])]
            return mails if len(mails) == 2 else []

        second = [m for m in await eventually(asked_again, timeout=30) if m["Message-ID"] != first["Message-ID"]]
        assert "最後の記録は" in _text(second[0])
        await _ok(hana.post(f"/v1/communities/{cid}/goals/{goal}/achievement", headers=as_hana, json={}))
        await asyncio.sleep(QUIET_SECONDS + 2)  # achieved: however quiet it is now, no more
        assert len([m for m in _mails_to(inbox, hana_address) if "Throw 40 bowls" in str(m["Subject"])]) == 2


async def test_an_offering_reminds_of_its_deadline_tells_how_it_was_decided_and_of_the_day_before_a_delivery(
        kinds_stack: Ecosystem, inbox: SmtpInbox) -> None:
    eco = kinds_stack
    now = datetime.now(UTC)
    if (now + timedelta(minutes=2)).date() != now.date():  # the delivery day must come after the deadline
        await asyncio.sleep(150)
    async with hikari_makers(eco, inbox) as (cid, hana, ken):
        as_hana, as_ken = await _as(hana, cid), await _as(ken, cid)
        hana_address, ken_address = f"hana-{cid[:8]}@app.test", f"ken-{cid[:8]}@app.test"
        # Far enough ahead that both offerings, the commitments and the sign-up reach the notifications
        # service (and a reminder look finds them) before it passes, on a loaded machine too.
        deadline = (datetime.now(UTC) + timedelta(seconds=40)).replace(microsecond=0)
        tomorrow = (deadline + timedelta(days=1)).date().isoformat()

        async def publish(title: str, minimum: int) -> str:
            made = await _ok(hana.post(f"/v1/communities/{cid}/offerings", headers=as_hana, json={
                "title": title, "season": "Summer 2031", "shares": 5, "minimum_shares": minimum,
                "commitment_deadline": deadline.isoformat(), "delivery_dates": [tomorrow],
                "help_shifts": [{"date": tomorrow, "place": "Sato farm", "hands": 2, "what": "weeding"}]}), 201)
            offering = str(made.json()["offering_id"])
            await _ok(ken.post(f"/v1/communities/{cid}/offerings/{offering}/commitments", headers=as_ken,
                               json={"shares": 1}), 201)
            return offering

        veg, honey = await publish("Summer veg", 1), await publish("Honey", 3)
        await _ok(ken.post(f"/v1/communities/{cid}/offerings/{veg}/shifts/1/signups", headers=as_ken), 201)

        # The deadline is within a day: the producer and the member who committed are reminded.
        closing = await _mail(inbox, ken_address, "「Summer veg」の申し込みは", timeout=30)
        assert "締め切りまでは取り消せます" in _text(closing) and f"/app/c/{cid}/offerings/{veg}" in _text(closing)
        producer = await _mail(inbox, hana_address, "「Summer veg」の申し込みは", timeout=30)
        assert "最低1口で実施" in _text(producer) and "取り消せます" not in _text(producer)
        # The help shift he signed up for is tomorrow.
        shift = await _mail(inbox, ken_address, "「Summer veg」のお手伝いの日です", timeout=30)
        assert "場所：Sato farm" in _text(shift) and "weeding" in _text(shift)

        # At the deadline the offerings are settled without anyone asking: one goes ahead, one lapses.
        ahead = await _mail(inbox, ken_address, "「Summer veg」は実施が決まりました", timeout=60)
        assert f"/app/c/{cid}/offerings/{veg}" in _text(ahead)
        await _mail(inbox, hana_address, "「Summer veg」は実施が決まりました", timeout=30)
        lapsed = await _mail(inbox, ken_address, "「Honey」は見送りになりました", timeout=30)
        assert "申し込みはすべて解除されました" in _text(lapsed) and f"/offerings/{honey}" in _text(lapsed)
        # Going ahead, its delivery day tomorrow is a day away: he is reminded (the lapsed one has none).
        await _mail(inbox, ken_address, "「Summer veg」のお届け日です", timeout=30)
        await asyncio.sleep(1.5)
        subjects = [str(m["Subject"]) for m in _mails_to(inbox, ken_address)]
        assert not [s for s in subjects if "Honey" in s and ("お届け" in s or "お手伝い" in s)], subjects
        assert len([s for s in subjects if "Summer veg" in s]) == 4, subjects  # deadline, shift, decided, delivery


async def test_owners_hear_of_a_partnership_proposed_and_the_community_near_its_cap_and_members_who_asked_of_partner_jobs_for_their_skills(  # noqa: E501
        kinds_stack: Ecosystem, inbox: SmtpInbox) -> None:
    eco = kinds_stack
    async with hikari_makers(eco, inbox) as (cid, hana, ken), _operator(eco) as operator:
        hana_id, ken_id, yui_id = await member_id_of(hana, cid), await member_id_of(ken, cid), await _owner_of(eco, cid)
        await given_role(eco, cid, hana_id, "owner")  # Yui stays on as a facilitator
        as_hana, as_ken, as_yui = await _as(hana, cid), await _as(ken, cid), eco.headers(cid, yui_id, "facilitator")
        hana_address, ken_address = f"hana-{cid[:8]}@app.test", f"ken-{cid[:8]}@app.test"

        # community-near-cap: at 9 of 10 the stewards hear, not at 10; after falling to 8, at 9 again.
        await _ok(operator.put(f"/v1/communities/{cid}/cap", json={"member_cap": 10, "reason": "a small room"}))

        async def add(name: str) -> str:
            added = await _ok(operator.post(f"/v1/communities/{cid}/members", json={"display_name": name}), 201)
            return str(added.json()["member_id"])

        added = [await add(f"Guest {n}") for n in range(6)]  # 3 + 6 = 9: 90 %
        near = await _mail(inbox, hana_address, "メンバーが上限の90%に達しました", timeout=30)
        assert "メンバー9人（上限10人）" in _text(near) and f"/app/c/{cid}/stewarding#cap" in _text(near)
        added.append(await add("Guest 6"))  # 10 of 10: still the same crossing
        for member in added[:2]:  # 8 of 10: below again
            await _ok(operator.post(f"/v1/communities/{cid}/members/{member}/removal", json={"reason": "moved"}))
        await add("Guest 7")  # 9 of 10: a new crossing

        async def twice() -> list[dict[str, Any]]:
            told = await _inbox(operator, cid, as_yui, "community-near-cap")
            return told if len(told) == 2 else []

        assert [i["facts"]["members"] for i in await eventually(twice, timeout=30)] == [9, 9]
        await asyncio.sleep(1)
        assert len([m for m in _mails_to(inbox, hana_address) if "上限の90%" in str(m["Subject"])]) == 2

        # partnership-proposed: another community proposes a link; Hikari's owner hears and answers.
        async with _operator(eco) as other:
            founded = await _ok(other.post("/v1/communities", json={
                "name": "Tsubasa Publishing", "owner_display_name": "Daiki", "purpose": "books"}), 201)
        tsubasa, daiki = founded.json()["community_id"], founded.json()["owner_member_id"]
        as_daiki = eco.headers(tsubasa, daiki, "owner")
        partnership = await propose(operator, eco, tsubasa, daiki, cid)
        asked = await _mail(inbox, hana_address, "Tsubasa Publishingからパートナー提携の申し込み", timeout=30)
        assert f"/app/c/{cid}/partners" in _text(asked)
        await _ok(hana.post(f"/v1/communities/{cid}/partnerships/{partnership}/acceptance", headers=as_hana))

        # partner-job-match (opt-in): Ken and Hana both make pots; only Ken asked to hear of partners' jobs.
        for person, member, headers in ((ken, ken_id, as_ken), (hana, hana_id, as_hana)):
            await _ok(person.put(f"/v1/communities/{cid}/members/{member}/profile", headers=headers,
                                 json={"display_name": "Ken" if member == ken_id else "Hana",
                                       "skills": ["Pottery", "glazing"]}))
        await _preferring(ken, cid, as_ken, {"kinds": {"partner-job-match": "immediately"}})
        prefs = (await hana.get(f"/v1/communities/{cid}/notification-preferences", headers=as_hana)).json()
        assert prefs["kinds"].get("partner-job-match", "off") == "off"

        async def active() -> bool:
            links = (await operator.get(f"/v1/communities/{tsubasa}/partnerships", headers=as_daiki)).json()
            return any(p["status"] == "active" for p in links)

        await eventually(active, timeout=30)
        await asyncio.sleep(2)  # the profiles and Ken's wish reach the notifications service from the bus

        async def post_job() -> httpx.Response | None:  # 403 not-a-member until referrals has learned Daiki
            answer = await operator.post(f"/v1/communities/{tsubasa}/jobs", headers=as_daiki, json={
                "title": "Tea bowls for a book launch", "deadline": "2031-10-01", "visibility": "partners",
                "skills": ["pottery"]})
            assert answer.status_code in (201, 403), answer.text
            return answer if answer.status_code == 201 else None

        posted = await eventually(post_job)
        match = await _mail(inbox, ken_address, "Tsubasa Publishingから、あなたのスキルに合う依頼", timeout=30)
        assert "「Tea bowls for a book launch」（pottery）" in _text(match)
        assert f"/app/c/{cid}/partner-jobs#job-{posted.json()['job_id']}" in _text(match)
        assert not await _inbox(hana, cid, as_hana, "partner-job-match")  # not even in her inbox

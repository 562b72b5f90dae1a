"""An invitation reaches a person by email and signing in with it makes them a member; a person waiting for a
place sees where they stand and takes the place offered to them, signed in, without a code (issue 20).
Real members, identity and gateway processes, a real SMTP server."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg
import httpx

from tests.identity.journey import browser, chromium_as, community_token, csrf, sign_in_by_email
from tests.identity.smtp import SmtpInbox
from tests.reliability.harness import roster_rows
from tests.support import Ecosystem, eventually

JSON = {"accept": "application/json"}


async def _found(operator: httpx.AsyncClient, name: str, cap: int = 150) -> str:
    founded = await operator.post("/v1/communities", json={"name": name, "owner_display_name": "Yui",
                                                           "member_cap": cap})
    assert founded.status_code == 201, founded.text
    return str(founded.json()["community_id"])


async def _join(person: httpx.AsyncClient, cid: str, name: str, **extra: Any) -> httpx.Response:
    async def page_ready() -> bool:  # the community's name reaches identity over the bus
        page = await person.get(f"/join/{cid}")
        return page.status_code == 200 and 'id="join"' in page.text

    await eventually(page_ready)
    return await person.post(f"/v1/join/{cid}", json={"display_name": name, **extra},
                             headers={"x-csrf-token": await csrf(person), **JSON})


async def _membership(person: httpx.AsyncClient, cid: str, status: str) -> dict[str, Any] | None:
    me = (await person.get("/v1/me", headers=JSON)).json()
    return next((m for m in me["memberships"] if m["community_id"] == cid and m["status"] == status), None)


async def test_an_invitation_emailed_by_a_member_makes_the_person_who_signs_in_with_it_a_member(
        people: Ecosystem, inbox: SmtpInbox, operator: httpx.AsyncClient) -> None:
    cid = await _found(operator, "Tsubasa")
    async with browser(people) as yui, browser(people) as mika, browser(people) as stranger:
        await sign_in_by_email(yui, inbox, "yui@invite.test")
        assert (await _join(yui, cid, "Yui")).status_code == 201
        await eventually(lambda: _membership(yui, cid, "active"))
        # The gateway decides a token's authority from its directory, fed by the bus: wait until it knows Yui.
        await eventually(lambda: _gateway_knows(people, cid, 2))
        account_page = await yui.get("/me")
        assert "Invite someone by email" in account_page.text and 'class="invite"' in account_page.text

        # Yui invites Ren from her account page in Chromium on a phone: the page's script takes a token from
        # her session, issues an invitation with it, and has it emailed.
        async with chromium_as(yui, people) as page:
            await page.goto(f"{people.url('gateway')}/me")
            await page.get_by_text("Invite someone by email").click()
            await page.get_by_label("Their email address").fill("ren.friend@invite.test")
            await page.get_by_role("button", name="Send the invitation").click()
            await page.get_by_text("Invitation sent.").wait_for()
            assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        subject, text = await inbox.next_message("ren.friend@invite.test")
        assert "Tsubasa" in subject and f"/invite/{cid}?code=" in text

        # The same by hand, as an app would: a token from the session, an invitation, then the email.
        token = (await community_token(yui, cid)).json()["token"]
        issued = await yui.post(f"/v1/communities/{cid}/invitations", json={"note": "by email"},
                                headers={"authorization": f"Bearer {token}"})
        assert issued.status_code == 201, issued.text
        invitation = issued.json()
        request = {"community_id": cid, "invitation_id": invitation["invitation_id"], "code": invitation["code"],
                   "email": "Mika@Invite.test", "expires_at": invitation["expires_at"]}
        without_csrf = await yui.post("/me/invitations", json=request, headers=JSON)
        assert without_csrf.status_code == 403, without_csrf.text
        sent = await yui.post("/me/invitations", json=request, headers={"x-csrf-token": await csrf(yui), **JSON})
        assert sent.status_code == 202, sent.text
        again = await yui.post("/me/invitations", json=request, headers={"x-csrf-token": await csrf(yui), **JSON})
        assert again.status_code == 409, again.text

        # Someone who is not a member of the community cannot use Kizuna to mail its invitations.
        await sign_in_by_email(stranger, inbox, "ren@invite.test")
        relayed = await stranger.post("/me/invitations",
                                      json={**request, "invitation_id": "other", "email": "x@y.test"},
                                      headers={"x-csrf-token": await csrf(stranger), **JSON})
        assert relayed.status_code == 403 and "not-a-member" in relayed.json()["type"], relayed.text

        subject, text = await inbox.next_message("mika@invite.test")
        assert "Yui" in subject and "Tsubasa" in subject
        [link] = re.findall(r"https?://\S+/invite/\S+", text)
        path = urlsplit(link).path + "?" + urlsplit(link).query
        assert invitation["code"] in link

        # Mika opens the link: sign in first, then back to the invitation, which she accepts with her name.
        opened = await mika.get(path)
        assert opened.status_code == 303 and unquote(opened.headers["location"]) == f"/sign-in?next={path}"
        landed = await sign_in_by_email(mika, inbox, "mika@invite.test", path)
        assert landed == path
        page = await mika.get(landed)
        assert page.status_code == 200 and invitation["code"] in page.text and "Tsubasa" in page.text
        accepted = await mika.post(f"/v1/join/{cid}/invitations/acceptance",
                                   json={"code": invitation["code"], "display_name": "Mika"},
                                   headers={"x-csrf-token": await csrf(mika), **JSON})
        assert accepted.status_code == 201, accepted.text
        membership = await eventually(lambda: _membership(mika, cid, "active"))
        assert membership["member_id"] == accepted.json()["member_id"]

    # Kept: which invitation was mailed and by whom; never the address or the code.
    conn = await asyncpg.connect(people.database_url("identity"))
    try:
        rows = await conn.fetch("SELECT * FROM emailed_invitations WHERE community_id = $1", cid)
        events = await conn.fetch("SELECT data FROM events WHERE event_type = 'InvitationEmailed'")
    finally:
        await conn.close()
    kept = json.dumps([dict(r) for r in rows], default=str).lower()
    assert len(rows) == 2 and "mika" not in kept and "ren.friend" not in kept
    stored = json.dumps([json.loads(e["data"]) if isinstance(e["data"], str) else e["data"] for e in events])
    assert invitation["invitation_id"] in stored and "mika" not in stored.lower() and invitation["code"] not in stored


async def test_a_waiting_person_sees_their_place_and_takes_the_place_offered_without_a_code(
        people: Ecosystem, inbox: SmtpInbox, operator: httpx.AsyncClient) -> None:
    cid = await _found(operator, "Komorebi", cap=2)
    async with browser(people) as ken, browser(people) as aoi, browser(people) as ren, browser(people) as nobody:
        await sign_in_by_email(ken, inbox, "ken@wait.test")
        joined = await _join(ken, cid, "Ken")
        assert joined.status_code == 201 and joined.json()["status"] == "joined", joined.text
        for person, address, name in ((aoi, "aoi@wait.test", "Aoi"), (ren, "ren@wait.test", "Ren")):
            await sign_in_by_email(person, inbox, address)
            waiting = await _join(person, cid, name, waitlist_if_full=True)
            assert waiting.status_code == 202 and waiting.json()["status"] == "waitlisted", waiting.text

        async def place(person: httpx.AsyncClient) -> dict[str, Any]:
            answer = await person.get(f"/v1/join/{cid}/my-place", headers={"x-csrf-token": await csrf(person), **JSON})
            assert answer.status_code == 200, answer.text
            return dict(answer.json())

        assert (await place(aoi))["status"] == "waiting" and (await place(aoi))["position"] == 1
        assert (await place(ren))["position"] == 2 and (await place(ren))["waiting"] == 2
        async with chromium_as(aoi, people) as page:
            await page.goto(f"{people.url('gateway')}/waiting/{cid}")
            await page.get_by_text("You are number 1 of 2 waiting.").wait_for()
        me_page = await aoi.get("/me")
        assert f"/waiting/{cid}" in me_page.text
        # Nobody else learns a place: not signed in, the front door has no account to look for.
        anonymous = await nobody.get(f"/v1/join/{cid}/my-place", headers=JSON)
        assert anonymous.status_code == 403, anonymous.text

        async with chromium_as(aoi, people, language="ja") as page:
            await page.goto(f"{people.url('gateway')}/waiting/{cid}")
            await page.get_by_text("待機リストの 1 番目です").wait_for()
            left = await operator.post(f"/v1/communities/{cid}/members/{joined.json()['member_id']}/leave",
                                       json={})
            assert left.status_code == 204, left.text
            # The open page learns of the offer by itself (no reload), within its 5-second poll.
            await page.get_by_text("参加枠が提供されています").wait_for(timeout=30_000)
            offered = await eventually(lambda: _offered(aoi, cid))
            assert (await place(ren))["position"] == 1
            # Ren, signed in, cannot take the place offered to Aoi: the same 404 as for no offer at all.
            taken_by_ren = await ren.post(f"/v1/join/{cid}/offers/{offered['offer_id']}/acceptance", json={},
                                          headers={"x-csrf-token": await csrf(ren), **JSON})
            assert taken_by_ren.status_code == 404, taken_by_ren.text
            await page.get_by_role("button", name="参加枠を受ける").click()
            # Taken: the page says so, then opens the community's home once the account page knows her there.
            await page.wait_for_url(f"**/app/c/{cid}", timeout=30_000)
            assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        assert (await place(aoi))["status"] == "member"
        await eventually(lambda: _membership(aoi, cid, "active"))


async def _offered(person: httpx.AsyncClient, cid: str) -> dict[str, Any] | None:
    answer = (await person.get(f"/v1/join/{cid}/my-place", headers={"x-csrf-token": await csrf(person), **JSON}))
    body = dict(answer.json())
    return body if body.get("status") == "offered" and body.get("offer_expires_at") else None


async def _gateway_knows(eco: Ecosystem, cid: str, members: int) -> bool:
    return len((await roster_rows(eco, "gateway", [cid]))[cid]) >= members

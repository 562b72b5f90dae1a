"""The front door on a phone, with JavaScript off: a person with a community's join link applies (answering its
questions), follows the application, is welcomed by a facilitator and lands in the community; another, declined,
reads why and may apply again; a person with an invitation code joins a community that admits by invitation.
Every page fits 390 px, axe-core finds nothing serious, and no step needs a script."""

from __future__ import annotations

import httpx

from tests.identity.journey import browser, community_token, csrf, sign_in_by_email
from tests.identity.smtp import SmtpInbox
from tests.support import Ecosystem, eventually
from tests.webapp.phones import checked, given_role, member_id_of, phones


async def _admit_by(operator: httpx.AsyncClient, cid: str, policy: str) -> None:
    changed = await operator.put(f"/v1/communities/{cid}/admission", json={
        "policy": policy, "reason": "we screen newcomers",
        "questions": [{"id": "why", "text": "なぜ参加したいですか", "required": True},
                      {"id": "skills", "text": "得意なこと", "required": False}] if policy == "application" else []})
    assert changed.status_code == 200, changed.text


async def test_an_applicant_applies_from_the_join_link_is_welcomed_and_lands_in_the_community_without_a_script(
        community_stack: Ecosystem, inbox: SmtpInbox,
        member_pair: tuple[str, httpx.AsyncClient, httpx.AsyncClient]) -> None:
    cid, hana, _ = member_pair
    gateway = community_stack.url("gateway")
    await given_role(community_stack, cid, await member_id_of(hana, cid), "facilitator")
    async with httpx.AsyncClient(base_url=gateway, headers=community_stack.operator_headers()) as operator:
        await _admit_by(operator, cid, "application")
    async with browser(community_stack) as mio, browser(community_stack) as sora:
        await sign_in_by_email(mio, inbox, f"mio-{cid[:8]}@door.test")
        await sign_in_by_email(sora, inbox, f"sora-{cid[:8]}@door.test")
        async with phones(community_stack, (mio, "ja"), (sora, "en"), (hana, "en"), scripts=False) as (
                mio_page, sora_page, hana_page):
            await mio_page.goto(f"{gateway}/join/{cid}")
            await mio_page.get_by_role("heading", name="Hikari Makers に参加").wait_for()
            assert "Makers helping makers" in await mio_page.content()  # the community's own words
            await mio_page.get_by_text("このコミュニティは申請制です").wait_for()
            await checked(mio_page)
            # A blank answer to a required question comes back on the page, naming the question, with her name kept.
            await mio_page.get_by_label("コミュニティでの表示名").fill("Mio")
            await mio_page.get_by_label("なぜ参加したいですか").fill("   ")
            await mio_page.get_by_role("button", name="申請を送る").click()
            await mio_page.get_by_text("入力を確認してください: なぜ参加したいですか").wait_for()
            assert await mio_page.get_by_label("コミュニティでの表示名").input_value() == "Mio"
            await checked(mio_page)
            await mio_page.get_by_label("なぜ参加したいですか").fill("本づくりを学びたい")
            await mio_page.get_by_label("得意なこと").fill("製本")
            await mio_page.get_by_role("button", name="申請を送る").click()
            await mio_page.get_by_text("申請を送りました。").wait_for()
            await checked(mio_page)
            # The join link again says where she stands rather than asking twice.
            await mio_page.goto(f"{gateway}/join/{cid}")
            await mio_page.get_by_text("申請を送りました。").wait_for()

            await sora_page.goto(f"{gateway}/join/{cid}")
            await sora_page.get_by_label("Your name in this community").fill("Sora")
            await sora_page.get_by_label("なぜ参加したいですか").fill("to sell things")
            await sora_page.get_by_role("button", name="Send my application").click()
            await sora_page.get_by_text("Your application was sent.").wait_for()

            # Hana, a facilitator, welcomes Mio and declines Sora, each with a reason the applicant sees.
            await hana_page.goto(f"{gateway}/app/c/{cid}/stewarding")
            for name, decision, reason in (("Mio", "Welcome", "a maker among makers"),
                                           ("Sora", "Decline", "we do not sell to each other here")):
                card = hana_page.locator("#applications li", has_text=name)
                await card.get_by_label("Why (the applicant sees this)").fill(reason)
                await card.get_by_role("button", name=f"{decision} {name}").click()
                await hana_page.wait_for_load_state("load")

            # Without a script the page changes when it is reloaded: Mio is in, and lands on the community's home.
            await mio_page.reload()
            await mio_page.wait_for_url(f"**/app/c/{cid}", timeout=30_000)
            await mio_page.get_by_role("heading", name="Hikari Makers").wait_for()
            await checked(mio_page)
            await sora_page.reload()
            await sora_page.get_by_text("Your application was declined.").wait_for()
            assert "we do not sell to each other here" in await sora_page.content()
            await checked(sora_page)
            await sora_page.get_by_role("link", name="Apply again").click()
            await sora_page.get_by_text("Your last application was declined. You may apply again.").wait_for()
        members = await eventually(lambda: _members_named(community_stack, cid, "Mio"))
        assert members["Mio"] == "member"


async def test_a_person_with_an_invitation_code_joins_a_community_that_admits_by_invitation(
        community_stack: Ecosystem, inbox: SmtpInbox,
        member_pair: tuple[str, httpx.AsyncClient, httpx.AsyncClient]) -> None:
    cid, _, ken = member_pair
    gateway = community_stack.url("gateway")
    async with httpx.AsyncClient(base_url=gateway, headers=community_stack.operator_headers()) as operator:
        await _admit_by(operator, cid, "invitation")
    token = (await community_token(ken, cid)).json()["token"]
    issued = await ken.post(f"/v1/communities/{cid}/invitations", json={"note": "Riko from the print shop"},
                            headers={"authorization": f"Bearer {token}"})
    assert issued.status_code == 201, issued.text
    async with browser(community_stack) as riko:
        await sign_in_by_email(riko, inbox, f"riko-{cid[:8]}@door.test")
        async with phones(community_stack, (riko, "en"), scripts=False) as (page,):
            await page.goto(f"{gateway}/join/{cid}")
            await page.get_by_text("This community admits people by invitation").wait_for()
            await checked(page)
            await page.get_by_label("I have an invitation code").fill("not-the-code")
            await page.get_by_role("button", name="Use the invitation").click()
            await page.get_by_label("Your name in this community").fill("Riko")
            await page.get_by_role("button", name="Accept and join").click()
            await page.get_by_text("That is not here any more.").wait_for()  # a wrong code: refused on the page
            await checked(page)
            await page.goto(f"{gateway}/invite/{cid}?code={issued.json()['code']}")
            await page.get_by_label("Your name in this community").fill("Riko")
            await page.get_by_role("button", name="Accept and join").click()
            await page.wait_for_url(f"**/app/c/{cid}", timeout=30_000)
            await checked(page)


async def _members_named(eco: Ecosystem, cid: str, name: str) -> dict[str, str] | None:
    async with httpx.AsyncClient(base_url=eco.url("gateway"), headers=eco.operator_headers()) as operator:
        items = (await operator.get(f"/v1/communities/{cid}/members")).json()["items"]
    found = {m["display_name"]: "member" for m in items if m["display_name"] == name}
    return found or None


async def test_the_front_door_pages_refuse_forged_and_unknown_posts_and_record_nothing(
        community_stack: Ecosystem, inbox: SmtpInbox,
        member_pair: tuple[str, httpx.AsyncClient, httpx.AsyncClient]) -> None:
    cid, hana, _ = member_pair
    async with browser(community_stack) as nao, browser(community_stack) as nobody:
        await sign_in_by_email(nao, inbox, f"nao-{cid[:8]}@door.test")
        token = await csrf(nao)
        # Not signed in: sent to sign in (and back), nothing posted.
        anonymous = await nobody.post(f"/join/{cid}", data={"display_name": "Nobody"})
        assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/sign-in?next=")
        # Without the session's CSRF token, or from another site with it: refused.
        forged = await nao.post(f"/join/{cid}", data={"display_name": "Nao"})
        assert forged.status_code == 403, forged.text
        cross_site = await nao.post(f"/join/{cid}", data={"display_name": "Nao", "csrf_token": token},
                                    headers={"sec-fetch-site": "cross-site"})
        assert cross_site.status_code == 403, cross_site.text
        # An answer that is neither taking nor declining, and an offer that is not hers: no such thing here.
        made_up = await nao.post(f"/waiting/{cid}/offers/some-offer/steal", data={"csrf_token": token})
        assert made_up.status_code == 404 and "no such answer" in made_up.text, made_up.text
        not_hers = await nao.post(f"/waiting/{cid}/offers/some-offer/acceptance", data={"csrf_token": token})
        assert not_hers.status_code == 404 and "That is not here any more." in not_hers.text, not_hers.text
        # An id with braces in a member's action is an id like any other, not a template to fill (it was a 500).
        braced = await hana.post(f"/app/c/{cid}/jobs/%7Bx%7D/offers",
                                 data={"csrf_token": await csrf(hana), "why_next_step": "curious"})
        assert braced.status_code == 404, braced.text
        # None of it made her anything in the community: the join link still offers to join.
        page = await nao.get(f"/join/{cid}")
        assert page.status_code == 200 and 'id="join"' in page.text, page.text
    async with httpx.AsyncClient(base_url=community_stack.url("gateway"),
                                 headers=community_stack.operator_headers()) as operator:
        names = {m["display_name"] for m in (await operator.get(f"/v1/communities/{cid}/members")).json()["items"]}
    assert "Nao" not in names and "Nobody" not in names

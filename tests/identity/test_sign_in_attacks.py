"""Signing in, tried as an attacker would (issue 20): replayed and expired links, open redirects, session
fixation, forged forms, cross-site requests, a flood of links, a cookie jar shared by mistake, and one person in
two communities who must stay two strangers to those communities. Real members, identity and gateway
processes and a real SMTP server."""

from __future__ import annotations

import asyncpg
import httpx

from tests.gateway.test_stream_read_policy import read_until
from tests.identity.journey import browser, community_token, csrf, sign_in_by_email
from tests.identity.smtp import SmtpInbox
from tests.support import Ecosystem, eventually

JSON = {"accept": "application/json"}


async def _link(client: httpx.AsyncClient, inbox: SmtpInbox, address: str, next_path: str = "/me") -> str:
    asked = await client.post("/sign-in/email", data={"email": address, "next": next_path})
    assert asked.status_code == 200, asked.text
    link = await inbox.next_link(address)
    return link[link.index("/sign-in/email/"):]


async def test_a_link_works_once_and_only_until_it_expires(people: Ecosystem, inbox: SmtpInbox) -> None:
    async with browser(people) as first, browser(people) as second:
        path = await _link(first, inbox, "once@example.test")
        assert (await first.post(path)).status_code == 303
        replayed = await second.post(path, headers=JSON)
        assert replayed.status_code == 410 and replayed.json()["type"].endswith("link-used-or-expired")
        assert (await second.post(path)).status_code == 410  # the page says so too (HTML)
        assert (await second.get("/v1/me", headers=JSON)).status_code == 401
        stale = await _link(second, inbox, "late@example.test")
        connection = await asyncpg.connect(people.database_url("identity"))
        try:
            await connection.execute("UPDATE email_links SET expires_at = now() - interval '1 second' "
                                     "WHERE email = 'late@example.test'")
        finally:
            await connection.close()
        expired = await second.post(stale, headers=JSON)
        assert expired.status_code == 410, expired.text
        assert (await second.get("/v1/me", headers=JSON)).status_code == 401
    # Audit: the sign-in and both refusals are recorded as events, and no link's secret is in any event.
    connection = await asyncpg.connect(people.database_url("identity"))
    try:
        rows = await connection.fetch("SELECT event_type, data::text AS data FROM events")
    finally:
        await connection.close()
    kinds = [row["event_type"] for row in rows]
    assert "PersonSignedIn" in kinds and kinds.count("SignInRefused") >= 3, kinds
    for secret in (path.rsplit("/", 1)[1], stale.rsplit("/", 1)[1]):
        assert not any(secret in row["data"] for row in rows), "a link's secret was recorded"


async def test_where_a_link_sends_someone_is_always_this_site(people: Ecosystem, inbox: SmtpInbox) -> None:
    for crafted in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)",
                    "/me\r\nSet-Cookie: x=1"):
        async with browser(people) as client:
            assert await sign_in_by_email(client, inbox, "redirect@example.test", crafted) == "/me", crafted


async def test_a_session_planted_before_sign_in_is_worthless_after_it(people: Ecosystem, inbox: SmtpInbox) -> None:
    async with browser(people) as attacker, browser(people) as victim:
        await sign_in_by_email(attacker, inbox, "attacker@example.test")
        planted = attacker.cookies.get("kizuna-session")
        assert planted
        victim.cookies.set("kizuna-session", planted, domain="127.0.0.1")  # fixation: the victim's browser holds it
        await sign_in_by_email(victim, inbox, "victim@example.test")
        assert victim.cookies.get("kizuna-session") != planted  # a new id at sign-in
        mine = (await victim.get("/v1/me", headers=JSON)).json()
        assert mine["emails"] == ["victim@example.test"]
        # The planted session ended when the victim signed in over it: the attacker sees nothing of the victim.
        assert (await attacker.get("/v1/me", headers=JSON)).status_code == 401


async def test_forms_and_exchanges_need_the_sessions_csrf_token_and_this_site(
        people: Ecosystem, inbox: SmtpInbox, operator: httpx.AsyncClient) -> None:
    cid = (await operator.post("/v1/communities", json={"name": "Mori", "owner_display_name": "Yui"})).json()[
        "community_id"]
    async with browser(people) as person:
        await sign_in_by_email(person, inbox, "csrf@example.test")
        token = await csrf(person)
        no_token = await person.post(f"/v1/join/{cid}", json={"display_name": "Ren"}, headers=JSON)
        assert no_token.status_code == 403 and no_token.json()["type"].endswith("csrf-token-invalid")
        wrong = await person.post("/v1/me/tokens", json={"community_id": cid},
                                  headers={**JSON, "x-csrf-token": "0" * 64})
        assert wrong.status_code == 403
        cross_site = await person.post(f"/v1/join/{cid}", json={"display_name": "Ren"},
                                       headers={**JSON, "x-csrf-token": token, "origin": "https://evil.example"})
        assert cross_site.status_code == 403 and cross_site.json()["type"].endswith("cross-site-request")
        fetched_cross_site = await person.post("/sign-out", data={"csrf_token": token},
                                               headers={"sec-fetch-site": "cross-site"})
        assert fetched_cross_site.status_code == 403
        assert (await person.get("/v1/me", headers=JSON)).status_code == 200  # still signed in, nothing joined
        assert (await person.get("/v1/me", headers=JSON)).json()["memberships"] == []
        # A token for a community the person is not in is refused, whoever asks.
        assert (await community_token(person, cid)).status_code == 404


async def test_links_are_rate_limited_per_address_and_the_answer_never_says_who_has_an_account(
        people: Ecosystem, inbox: SmtpInbox) -> None:
    async with browser(people) as client:
        unknown = await client.post("/sign-in/email", data={"email": "nobody-yet@example.test"})
        await sign_in_by_email(client, inbox, "known@example.test")
        known = await client.post("/sign-in/email", data={"email": "known@example.test"})
        assert unknown.status_code == known.status_code == 200
        statuses = [(await client.post("/sign-in/email", json={"email": "flood@example.test"})).status_code
                    for _ in range(6)]
        assert statuses == [202] * 5 + [429], statuses  # five links an hour for one address
        bad = await client.post("/sign-in/email", json={"email": "flood@example.test", "mail": "x"})
        assert bad.status_code == 422 and "mail" in bad.text  # unknown fields are named, not ignored
        bad_form = await client.post("/sign-in/email", data={"email": "flood@example.test", "mail": "x"})
        assert bad_form.status_code == 422 and "mail" in bad_form.text
    async with browser(people) as sprayer:  # one client asking for many addresses: twenty an hour
        sprayed = [(await sprayer.post("/sign-in/email", json={"email": f"spray{n}@example.test"})).status_code
                   for n in range(21)]
        assert sprayed == [202] * 20 + [429], sprayed


async def test_one_person_in_two_communities_is_two_strangers_to_them(
        people: Ecosystem, inbox: SmtpInbox, operator: httpx.AsyncClient) -> None:
    founded = {name: (await operator.post("/v1/communities", json={"name": name, "owner_display_name": "Yui"})).json()
               for name in ("Umi", "Yama")}
    async with browser(people) as aya, browser(people) as stranger:
        await sign_in_by_email(aya, inbox, "aya@example.test")
        member_ids = {}
        for name, community in founded.items():
            joined = await aya.post(f"/v1/join/{community['community_id']}", json={"display_name": f"Aya of {name}"},
                                    headers={**JSON, "x-csrf-token": await csrf(aya)})
            assert joined.status_code == 201, joined.text
            member_ids[name] = joined.json()["member_id"]
        assert member_ids["Umi"] != member_ids["Yama"]

        async def both() -> list[dict[str, str]] | None:
            memberships = (await aya.get("/v1/me", headers=JSON)).json()["memberships"]
            active = [m for m in memberships if m["status"] == "active"]
            return active if len(active) == 2 else None

        assert {m["member_id"] for m in await eventually(both)} == set(member_ids.values())
        umi, yama = founded["Umi"]["community_id"], founded["Yama"]["community_id"]
        umi_token = (await community_token(aya, umi)).json()["token"]
        assert (await aya.get(f"/v1/communities/{yama}/members",
                              headers={"authorization": f"Bearer {umi_token}"})).status_code == 404
        # Umi's owner reads everything Umi's stream gives them: nothing of Yama, of the person, or of accounts.
        owner_token = people.token(umi, founded["Umi"]["owner_member_id"], "owner")
        seen = await read_until(aya, umi, owner_token, "Aya of Umi")
        text = repr(seen)
        assert "Yama" not in text and member_ids["Yama"] not in text and "aya@example.test" not in text
        assert not {e["type"] for e in seen} & {"MemberAccountLinked", "PersonRegistered", "EmailAddressVerified",
                                                  "CommunityAccountOpened", "SessionTokensRevoked"}
        # A browser that never signed in is nobody, even right after Aya's requests went through the gateway.
        assert (await stranger.get("/v1/me", headers=JSON)).status_code == 401

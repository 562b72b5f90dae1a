"""A person goes from a join link to a signed-in member with a browser's requests and an email inbox, and
comes back later without anyone minting a token (issue 20). Real members, identity and gateway processes,
a real SMTP server."""

from __future__ import annotations

from urllib.parse import unquote

import httpx

from tests.identity.journey import browser, community_token, csrf, sign_in_by_email
from tests.identity.smtp import SmtpInbox
from tests.support import Ecosystem, eventually

JSON = {"accept": "application/json"}


async def _found(operator: httpx.AsyncClient, name: str) -> str:
    founded = await operator.post("/v1/communities", json={"name": name, "owner_display_name": "Yui"})
    assert founded.status_code == 201, founded.text
    return str(founded.json()["community_id"])


async def test_from_a_join_link_to_a_signed_in_member_and_back_the_next_day(
        people: Ecosystem, inbox: SmtpInbox, operator: httpx.AsyncClient) -> None:
    cid = await _found(operator, "Hikari")
    async with browser(people) as hana:
        # The join link sends someone not signed in to sign in first, and back to it afterwards.
        join_page = await hana.get(f"/join/{cid}")
        assert join_page.status_code == 303 and join_page.headers["location"].startswith("/sign-in?next=")
        sign_in_page = await hana.get(join_page.headers["location"])
        assert sign_in_page.status_code == 200 and 'name="email"' in sign_in_page.text
        landed = await sign_in_by_email(hana, inbox, "hana@example.test", f"/join/{cid}")
        assert landed == f"/join/{cid}"

        async def join_page_names_the_community() -> bool:  # its name arrives on the bus
            page = await hana.get(landed)
            return page.status_code == 200 and "Join Hikari" in page.text

        await eventually(join_page_names_the_community)
        joined = await hana.post(f"/v1/join/{cid}", json={"display_name": "Hana"},
                                 headers={"x-csrf-token": await csrf(hana), "accept": "application/json"})
        assert joined.status_code == 201, joined.text
        member_id = joined.json()["member_id"]

        async def member_of_hikari() -> list[dict[str, str]]:
            me = (await hana.get("/v1/me", headers={"accept": "application/json"})).json()
            return [m for m in me["memberships"] if m["community_id"] == cid and m["status"] == "active"]

        [membership] = await eventually(member_of_hikari)
        assert membership["member_id"] == member_id and membership["role"] == "member"
        assert membership["community_name"] == "Hikari"
        issued = await community_token(hana, cid)
        assert issued.status_code == 201, issued.text
        token = issued.json()["token"]
        as_hana = {"authorization": f"Bearer {token}"}
        directory = await hana.get(f"/v1/communities/{cid}/members", headers=as_hana)
        assert directory.status_code == 200 and member_id in directory.text
        # Joining again as the same person is refused: one person, one membership.
        again = await hana.post(f"/v1/join/{cid}", json={"display_name": "Hana 2"},
                                headers={"x-csrf-token": await csrf(hana), "accept": "application/json"})
        assert again.status_code == 409 and again.json()["type"].endswith("already-in-community"), again.text
        account_page = await hana.get("/me")
        assert account_page.status_code == 200 and "Hikari" in account_page.text
        person_id = (await hana.get("/v1/me", headers={"accept": "application/json"})).json()["person_id"]

    # The next day, on another browser: a new link, the same person, the same membership, a token again.
    async with browser(people) as later:
        assert await sign_in_by_email(later, inbox, "Hana@Example.test ") == "/me"
        me = (await later.get("/v1/me", headers={"accept": "application/json"})).json()
        assert me["person_id"] == person_id
        assert [m["member_id"] for m in me["memberships"] if m["status"] == "active"] == [member_id]
        assert len(me["sessions"]) == 2  # this browser and the first one
        renewed = await community_token(later, cid)
        assert renewed.status_code == 201 and renewed.json()["member_id"] == member_id


async def test_signing_out_ends_the_session_and_every_token_it_was_exchanged_for(
        people: Ecosystem, inbox: SmtpInbox, operator: httpx.AsyncClient) -> None:
    cid = await _found(operator, "Kaze")
    async with browser(people) as kai, browser(people) as kai_phone:
        await sign_in_by_email(kai, inbox, "kai@example.test")
        joined = await kai.post(f"/v1/join/{cid}", json={"display_name": "Kai"},
                                headers={"x-csrf-token": await csrf(kai), "accept": "application/json"})
        assert joined.status_code == 201, joined.text
        await sign_in_by_email(kai_phone, inbox, "kai@example.test")

        async def token_for(client: httpx.AsyncClient) -> str | None:
            issued = await community_token(client, cid)
            return str(issued.json()["token"]) if issued.status_code == 201 else None

        laptop_token = await eventually(lambda: token_for(kai))
        phone_token = await eventually(lambda: token_for(kai_phone))
        members = f"/v1/communities/{cid}/members"
        assert (await kai.get(members, headers={"authorization": f"Bearer {laptop_token}"})).status_code == 200

        # Sign out without the form's CSRF token: refused, still signed in.
        forged = await kai.post("/sign-out")
        assert forged.status_code == 403, forged.text
        signed_out = await kai.post("/sign-out", data={"csrf_token": await csrf(kai)})
        assert signed_out.status_code == 303
        refused = await kai.get(members, headers={"authorization": f"Bearer {laptop_token}"})
        assert refused.status_code == 401 and refused.json()["type"].endswith("revoked-token"), refused.text
        assert (await kai.get("/v1/me", headers={"accept": "application/json"})).status_code == 401
        # The phone's session and its token are untouched, until the phone ends it from its own list.
        assert (await kai_phone.get(members, headers={"authorization": f"Bearer {phone_token}"})).status_code == 200
        me = (await kai_phone.get("/v1/me", headers={"accept": "application/json"})).json()
        [own] = me["sessions"]
        ended = await kai_phone.post(f"/me/sessions/{own['session_id']}/revocation",
                                     data={"csrf_token": me["csrf_token"]})
        assert ended.status_code == 303
        assert (await kai_phone.get(members, headers={"authorization": f"Bearer {phone_token}"})).status_code == 401


async def test_a_founder_added_by_the_operator_signs_in_as_their_member_with_the_owners_code(
        people: Ecosystem, inbox: SmtpInbox, operator: httpx.AsyncClient) -> None:
    founded = (await operator.post("/v1/communities", json={"name": "Sora", "owner_display_name": "Yui"})).json()
    cid, owner_id = founded["community_id"], founded["owner_member_id"]
    issued = await operator.post(f"/v1/communities/{cid}/members/{owner_id}/account-claim", json={})
    assert issued.status_code == 201, issued.text
    claim_path = issued.json()["claim_path"]
    async with browser(people) as yui, browser(people) as someone_else:
        to_sign_in = await yui.get(claim_path)
        assert to_sign_in.status_code == 303 and to_sign_in.headers["location"].startswith("/sign-in?next=")
        back = await sign_in_by_email(yui, inbox, "yui@example.test",
                                      unquote(to_sign_in.headers["location"].split("next=", 1)[1]))
        assert back == claim_path
        assert (await yui.get(back)).status_code == 200
        code = claim_path.split("code=", 1)[1]
        claimed = await yui.post(f"/v1/join/{cid}/account-claims", json={"code": code},
                                 headers={"x-csrf-token": await csrf(yui), "accept": "application/json"})
        assert claimed.status_code == 201 and claimed.json()["member_id"] == owner_id, claimed.text

        async def owner_token() -> str | None:
            issued = await community_token(yui, cid)
            return str(issued.json()["token"]) if issued.status_code == 201 else None

        token = await eventually(owner_token)
        policy = await yui.put(f"/v1/communities/{cid}/admission", headers={"authorization": f"Bearer {token}"},
                               json={"policy": "application", "reason": "we grow slowly"})
        assert policy.status_code == 200, policy.text  # the owner's own authority, from her own sign-in
        # The code worked once: nobody else becomes the owner with it, and a made-up code finds nothing.
        await sign_in_by_email(someone_else, inbox, "someone@example.test")
        again = await someone_else.post(f"/v1/join/{cid}/account-claims", json={"code": code},
                                        headers={"x-csrf-token": await csrf(someone_else), **JSON})
        assert again.status_code == 409 and again.json()["type"].endswith("account-already-linked"), again.text
        made_up = await someone_else.post(f"/v1/join/{cid}/account-claims", json={"code": "guess"},
                                          headers={"x-csrf-token": await csrf(someone_else), **JSON})
        assert made_up.status_code == 404
        # Without signing in, a code is worth nothing at the front door.
        async with browser(people) as anonymous:
            refused = await anonymous.post(f"/v1/join/{cid}/account-claims", json={"code": code}, headers=JSON)
            assert refused.status_code == 403, refused.text


async def test_someone_who_waited_without_signing_in_takes_the_offered_place_as_themselves(
        people: Ecosystem, inbox: SmtpInbox, operator: httpx.AsyncClient) -> None:
    founded = (await operator.post("/v1/communities", json={"name": "Mizu", "owner_display_name": "Yui",
                                                            "member_cap": 2})).json()
    cid = founded["community_id"]
    async with browser(people) as stranger, browser(people) as rin:
        assert (await stranger.post(f"/v1/join/{cid}", json={"display_name": "Kaito"}, headers=JSON)).status_code == 201
        waited = await rin.post(f"/v1/join/{cid}", json={"display_name": "Rin", "waitlist_if_full": True},
                                headers=JSON)
        assert waited.status_code == 202, waited.text  # full: Rin waits, not signed in
        raised = await operator.put(f"/v1/communities/{cid}/cap", json={"member_cap": 3, "reason": "room for one"})
        assert raised.status_code == 200, raised.text
        [offer] = (await operator.get(f"/v1/communities/{cid}/offers")).json()
        code = (await operator.post(f"/v1/communities/{cid}/offers/{offer['offer_id']}/claim-code")).json()
        await sign_in_by_email(rin, inbox, "rin@example.test")
        taken = await rin.post(f"/v1/join/{cid}/offers/{offer['offer_id']}/acceptance",
                               json={"claim_code": code["claim_code"]},
                               headers={**JSON, "x-csrf-token": await csrf(rin)})
        assert taken.status_code == 201, taken.text

        async def member_of_mizu() -> list[dict[str, str]]:
            me = (await rin.get("/v1/me", headers=JSON)).json()
            return [m for m in me["memberships"] if m["community_id"] == cid and m["status"] == "active"]

        [membership] = await eventually(member_of_mizu)
        assert membership["member_id"] == offer["applicant_id"]

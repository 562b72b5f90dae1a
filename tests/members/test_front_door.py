"""The gateway's front door: people who are not members yet join, apply and accept invitations
without a token, and can do nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support import Ecosystem, eventually


@pytest.fixture
async def gateway(ecosystem: Ecosystem) -> AsyncIterator[httpx.AsyncClient]:
    ecosystem.start("members", "gateway")
    async with httpx.AsyncClient(base_url=ecosystem.url("gateway"), timeout=30) as http:
        yield http


async def test_join_apply_and_accept_an_invitation_without_a_token(gateway: httpx.AsyncClient,
                                                                   ecosystem: Ecosystem) -> None:
    founded = (await gateway.post("/v1/communities", headers=ecosystem.operator_headers(),
                                  json={"name": "Hikari", "owner_display_name": "Yui"})).json()
    cid, owner = founded["community_id"], founded["owner_member_id"]
    as_owner = ecosystem.headers(cid, owner, "owner")

    card = await gateway.get(f"/v1/join/{cid}")
    assert card.status_code == 200 and card.json()["policy"] == "open", card.text
    joined = await gateway.post(f"/v1/join/{cid}", json={"display_name": "Hana"})
    assert joined.status_code == 201 and joined.json()["status"] == "joined", joined.text
    hana = (await gateway.get(f"/v1/communities/{cid}/members/{joined.json()['member_id']}", headers=as_owner)).json()
    assert hana["joined_via"] == "open" and hana["vouched_by"] is None, hana

    policy = await gateway.put(f"/v1/communities/{cid}/admission", headers=as_owner, json={
        "policy": "application", "questions": [{"id": "why", "text": "Why join?", "required": True}],
        "reason": "we are getting known"})
    assert policy.status_code == 200, policy.text
    refused = await gateway.post(f"/v1/join/{cid}", json={"display_name": "Kai"})
    assert refused.status_code == 409 and refused.json()["type"].endswith("/admission-policy")
    missing = await gateway.post(f"/v1/join/{cid}/applications", json={"display_name": "Kai", "answers": {}})
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "answers.why"
    applied = await gateway.post(f"/v1/join/{cid}/applications", json={
        "display_name": "Kai", "answers": {"why": "I weave"}, "referred_by": owner})
    assert applied.status_code == 201, applied.text
    application = applied.json()
    assert application["referred_by"] is None, "a visitor's claimed referrer is not a vouch"
    followed = await gateway.get(f"/v1/join/{cid}/applications/{application['application_id']}")
    assert followed.status_code == 200 and followed.json()["status"] == "pending"

    invitation = await gateway.post(f"/v1/communities/{cid}/invitations", headers=as_owner, json={})
    assert invitation.status_code == 201, invitation.text
    accepted = await gateway.post(f"/v1/join/{cid}/invitations/acceptance",
                                  json={"code": invitation.json()["code"], "display_name": "Mika"})
    assert accepted.status_code == 201 and accepted.json()["status"] == "joined", accepted.text
    again = await gateway.post(f"/v1/join/{cid}/invitations/acceptance",
                               json={"code": invitation.json()["code"], "display_name": "Mika"})
    assert again.status_code == 409

    # Nothing beyond the front door: the member directory, other routes and other verbs stay closed.
    assert (await gateway.get(f"/v1/communities/{cid}/members")).status_code == 401
    # The list is for owners, under /v1/communities: the front door answers only POST here (405, Allow: POST).
    listing = await gateway.get(f"/v1/join/{cid}/applications")
    assert listing.status_code == 405 and listing.headers["allow"] == "POST"
    assert (await gateway.post(f"/v1/join/{cid}/offers/x/removal")).status_code == 404
    assert (await gateway.get("/v1/join/not a community")).status_code == 404

    async def directory_has_three() -> bool:
        page = (await gateway.get(f"/v1/communities/{cid}/members", headers=as_owner)).json()
        return len(page["items"]) == 3  # Yui, Hana and Mika; Kai waits for a decision

    await eventually(directory_has_three)

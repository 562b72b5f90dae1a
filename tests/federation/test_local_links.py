"""Partnerships between communities of one deployment — proposed, or made at once by founding a
sister community — use the same protocol and outbox, delivered without a network hop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support import SERVICES, Ecosystem, eventually


@pytest.fixture
async def gateway(ecosystem: Ecosystem) -> AsyncIterator[httpx.AsyncClient]:
    ecosystem.start(*SERVICES)
    async with httpx.AsyncClient(base_url=ecosystem.url("gateway"), timeout=30) as http:
        yield http
    for proc in ecosystem.processes.values():
        assert "unhandled error" not in proc.log_path.read_text()


async def found(http: httpx.AsyncClient, eco: Ecosystem, name: str, cap: int = 150) -> tuple[str, str]:
    response = await http.post("/v1/communities", headers=eco.operator_headers(),
                               json={"name": name, "owner_display_name": "Owner", "member_cap": cap})
    assert response.status_code == 201, response.text
    return response.json()["community_id"], response.json()["owner_member_id"]


async def links(http: httpx.AsyncClient, eco: Ecosystem, cid: str, owner: str) -> list[dict[str, Any]]:
    response = await http.get(f"/v1/communities/{cid}/partnerships", headers=eco.headers(cid, owner, "owner"))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()
    return items


async def test_two_communities_on_one_deployment_link_and_share(gateway: httpx.AsyncClient,
                                                                ecosystem: Ecosystem) -> None:
    a, a_owner = await found(gateway, ecosystem, "Ringo makers")
    b, b_owner = await found(gateway, ecosystem, "Kaki growers")
    origin = ecosystem.url("gateway")

    async def with_itself() -> httpx.Response | None:  # 404 until the gateway has learned A from the bus
        answer = await gateway.post(f"/v1/communities/{a}/partnerships",
                                    headers=ecosystem.headers(a, a_owner, "owner"),
                                    json={"partner_origin": origin, "partner_community_id": a})
        return None if answer.status_code == 404 else answer

    itself = await eventually(with_itself)
    assert itself.status_code == 422 and itself.json()["errors"][0]["field"] == "partner_community_id"
    pid = await propose(gateway, ecosystem, a, a_owner, b)
    await eventually(lambda: _status(gateway, ecosystem, b, b_owner, "requested"))
    accepted = await gateway.post(f"/v1/communities/{b}/partnerships/{pid}/acceptance",
                                  headers=ecosystem.headers(b, b_owner, "owner"))
    assert accepted.status_code == 200, accepted.text
    await eventually(lambda: _status(gateway, ecosystem, a, a_owner, "active"))
    job = await gateway.post(f"/v1/communities/{a}/jobs", headers=ecosystem.headers(a, a_owner, "owner"), json={
        "title": "Apple picking", "deadline": "2031-10-01", "visibility": "partners"})
    assert job.status_code == 201, job.text

    async def shared() -> list[dict[str, Any]]:
        response = await gateway.get(f"/v1/communities/{b}/partner-jobs", headers=ecosystem.headers(b, b_owner))
        if response.status_code == 403 and response.json()["type"].endswith("not-a-member"):
            return []  # until referrals has learned B's owner from the bus (a clean run hit this)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    assert (await eventually(shared))[0]["title"] == "Apple picking"
    everything = (await gateway.get("/v1/ecosystem", headers=ecosystem.operator_headers())).json()["communities"]
    assert {(c["name"], c["size"], c["member_cap"]) for c in everything} == {("Ringo makers", 1, 150),
                                                                           ("Kaki growers", 1, 150)}
    assert all([link["partner"]["community_id"] for link in c["links"]] == [b if c["community_id"] == a else a]
               for c in everything)
    mine = (await gateway.get("/v1/ecosystem", headers=ecosystem.headers(a, a_owner, "owner"))).json()
    assert [c["community_id"] for c in mine["communities"]] == [a], "an owner sees their own community only"
    # A member of A has no say over, and no sight of, B's side.
    peek = await gateway.get(f"/v1/communities/{b}/partnerships", headers=ecosystem.headers(a, a_owner, "owner"))
    assert peek.status_code == 404  # another community is indistinguishable from none


async def test_a_full_community_founds_a_sister_and_they_are_linked(gateway: httpx.AsyncClient,
                                                                    ecosystem: Ecosystem) -> None:
    cid, owner = await found(gateway, ecosystem, "Hikari", cap=2)
    as_owner = ecosystem.headers(cid, owner, "owner")
    aiko = (await gateway.post(f"/v1/communities/{cid}/members", headers=as_owner,
                               json={"display_name": "Aiko"})).json()["member_id"]
    promoted = await gateway.put(f"/v1/communities/{cid}/members/{aiko}/role", headers=as_owner,
                                 json={"role": "facilitator", "reason": "starts the sister"})
    assert promoted.status_code == 200, promoted.text
    sister = await gateway.post(f"/v1/communities/{cid}/sisters", headers=as_owner,
                                json={"name": "Hikari West", "new_owner_member_id": aiko, "reason": "we are full"})
    assert sister.status_code == 201, sister.text
    sister_id = sister.json()["sister_community_id"]

    async def linked() -> bool:
        here = await links(gateway, ecosystem, cid, owner)
        there = await links(gateway, ecosystem, sister_id, aiko)
        return [(p["status"], p["partner"]["community_id"]) for p in here] == [("active", sister_id)] and \
            [(p["status"], p["partner"]["name"]) for p in there] == [("active", "Hikari")]

    await eventually(linked)


async def propose(http: httpx.AsyncClient, eco: Ecosystem, cid: str, owner: str, partner: str) -> str:
    """Proposes once the gateway has learned both communities from the bus."""

    async def attempt() -> str | None:
        response = await http.post(f"/v1/communities/{cid}/partnerships", headers=eco.headers(cid, owner, "owner"),
                                   json={"partner_origin": eco.url("gateway"), "partner_community_id": partner})
        assert response.status_code in (201, 404, 422), response.text
        return str(response.json()["partnership_id"]) if response.status_code == 201 else None

    pid: str = await eventually(attempt)
    return pid


async def _status(http: httpx.AsyncClient, eco: Ecosystem, cid: str, owner: str, status: str) -> bool:
    return any(p["status"] == status for p in await links(http, eco, cid, owner))


async def test_partner_members_pledge_to_a_shared_offering(gateway: httpx.AsyncClient, ecosystem: Ecosystem) -> None:
    a, a_owner = await found(gateway, ecosystem, "Ringo makers")
    b, b_owner = await found(gateway, ecosystem, "Kaki growers")
    as_a, as_b = ecosystem.headers(a, a_owner, "owner"), ecosystem.headers(b, b_owner, "owner")
    pid = await propose(gateway, ecosystem, a, a_owner, b)
    await eventually(lambda: _status(gateway, ecosystem, b, b_owner, "requested"))
    await gateway.post(f"/v1/communities/{b}/partnerships/{pid}/acceptance", headers=as_b)
    await eventually(lambda: _status(gateway, ecosystem, a, a_owner, "active"))
    deadline = (datetime.now(UTC) + timedelta(days=20)).replace(microsecond=0)

    async def publish() -> httpx.Response | None:  # the roster learns the owner from the bus
        response = await gateway.post(f"/v1/communities/{a}/offerings", headers=as_a, json={
            "title": "Apple share", "season": "Autumn", "shares": 3, "minimum_shares": 1,
            "price": {"kind": "money", "amount": 3000, "currency": "JPY"},
            "commitment_deadline": deadline.isoformat(),
            "delivery_dates": [(deadline + timedelta(days=10)).date().isoformat()], "visibility": "partners"})
        return response if response.status_code == 201 else None

    offering_id = (await eventually(publish)).json()["offering_id"]

    async def shared() -> list[dict[str, Any]]:
        response = await gateway.get(f"/v1/communities/{b}/partner-offerings", headers=as_b)
        if response.status_code == 403 and response.json()["type"].endswith("not-a-member"):
            return []  # the gateway's directory has not heard of B's owner from the bus yet
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    seen = (await eventually(shared))[0]
    assert seen["terms"]["title"] == "Apple share" and seen["from_community_name"] == "Ringo makers"
    assert "producer_id" not in seen["terms"]
    first = await gateway.post(f"/v1/communities/{b}/partnerships/{pid}/offerings/{offering_id}/pledges",
                               headers=as_b, json={"shares": 2})
    assert first.status_code == 202, first.text

    async def pledges_settled(n: int) -> list[dict[str, Any]] | None:
        mine: list[dict[str, Any]] = (await shared())[0]["my_pledges"]
        return mine if len(mine) == n and all(p["status"] != "sent" for p in mine) else None

    assert [p["status"] for p in await eventually(lambda: pledges_settled(1))] == ["committed"]
    second = await gateway.post(f"/v1/communities/{b}/partnerships/{pid}/offerings/{offering_id}/pledges",
                                headers=as_b, json={"shares": 2})
    assert second.status_code == 202
    results = {p["pledge_id"]: p for p in await eventually(lambda: pledges_settled(2))}
    refused = results[second.json()["pledge_id"]]
    assert refused["status"] == "refused" and "only 1 of 3 shares are left" in refused["reason"], refused
    view = (await gateway.get(f"/v1/communities/{a}/offerings/{offering_id}/producer-view", headers=as_a)).json()
    assert [(c["display_name"], c["from_community"], c["shares"]) for c in view["commitments"]] == [
        ("Owner", "Kaki growers", 2)], view["commitments"]
    assert view["committed"] == 2 and view["available"] == 1


async def test_introducing_a_member_to_a_partner_community(gateway: httpx.AsyncClient, ecosystem: Ecosystem) -> None:
    a, a_owner = await found(gateway, ecosystem, "Ringo makers")
    b, b_owner = await found(gateway, ecosystem, "Kaki growers")
    as_a, as_b = ecosystem.headers(a, a_owner, "owner"), ecosystem.headers(b, b_owner, "owner")
    aiko = (await gateway.post(f"/v1/communities/{a}/members", headers=as_a,
                               json={"display_name": "Aiko"})).json()["member_id"]
    await gateway.put(f"/v1/communities/{a}/members/{aiko}/profile", headers=ecosystem.headers(a, aiko),
                      json={"display_name": "Aiko", "skills": ["dyeing"], "vector": "private plans"})
    await gateway.put(f"/v1/communities/{a}/members/{aiko}/consent", headers=ecosystem.headers(a, aiko),
                      json={"shared_fields": ["display_name", "skills"]})
    pid = await propose(gateway, ecosystem, a, a_owner, b)

    async def directory_knows_aikos_card() -> bool:  # the card an introduction carries comes from it
        conn = await asyncpg.connect(ecosystem.database_url("gateway"))
        try:
            row = await conn.fetchrow("SELECT skills, shared_fields FROM directory WHERE member_id = $1", aiko)
        finally:
            await conn.close()
        return row is not None and list(row["skills"]) == ["dyeing"] and "skills" in row["shared_fields"]

    await eventually(directory_knows_aikos_card, timeout=60)

    async def too_early() -> httpx.Response | None:  # until referrals' roster has learned both members
        response = await gateway.post(f"/v1/communities/{a}/referrals", headers=as_a, json={
            "referred_id": aiko, "to_partnership_id": pid, "note": "too early"})
        learning = response.status_code == 403 or (
            response.status_code == 422 and response.json()["errors"][0]["field"] == "referred_id")
        return None if learning else response

    bogus = await eventually(too_early)
    assert bogus.status_code == 422 and bogus.json()["errors"][0]["field"] == "to_partnership_id", bogus.text
    await eventually(lambda: _status(gateway, ecosystem, b, b_owner, "requested"))
    await gateway.post(f"/v1/communities/{b}/partnerships/{pid}/acceptance", headers=as_b)

    async def introduce() -> httpx.Response | None:  # once referrals has learned the link is active
        response = await gateway.post(f"/v1/communities/{a}/referrals", headers=as_a, json={
            "referred_id": aiko, "to_partnership_id": pid, "note": "she dyes with persimmon"})
        return response if response.status_code == 201 else None

    referral_id = (await eventually(introduce)).json()["id"]

    async def arrived() -> list[dict[str, Any]]:
        response = await gateway.get(f"/v1/communities/{b}/partner-introductions", headers=as_b)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()
        return items

    intro = (await eventually(arrived))[0]
    assert intro["card"] == {"display_name": "Aiko", "skills": ["dyeing"]} and intro["introduced_by_name"] == "Owner"
    outcome = await gateway.post(f"/v1/communities/{b}/partnerships/{pid}/introductions/{referral_id}/outcome",
                                 headers=as_b, json={"worked": True, "note": "she runs our dye workshop"})
    assert outcome.status_code == 200, outcome.text
    again = await gateway.post(f"/v1/communities/{b}/partnerships/{pid}/introductions/{referral_id}/outcome",
                               headers=as_b, json={"worked": False})
    assert again.status_code == 409

    async def counted() -> dict[str, Any] | None:
        items = (await gateway.get(f"/v1/communities/{a}/referrals", headers=as_a)).json()["items"]
        mine = next(r for r in items if r["referral_id"] == referral_id)
        return mine if mine["worked"] is True else None

    referral = await eventually(counted)
    assert referral["status"] == "accepted" and referral["to_partnership_id"] == pid

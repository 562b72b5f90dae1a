"""Partnerships between communities of one deployment — proposed, or made at once by founding a
sister community — use the same protocol and outbox, delivered without a network hop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

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
    itself = await gateway.post(f"/v1/communities/{a}/partnerships", headers=ecosystem.headers(a, a_owner, "owner"),
                                json={"partner_origin": origin, "partner_community_id": a})
    assert itself.status_code == 422 and itself.json()["errors"][0]["field"] == "partner_community_id"
    proposed = await gateway.post(f"/v1/communities/{a}/partnerships", headers=ecosystem.headers(a, a_owner, "owner"),
                                  json={"partner_origin": origin, "partner_community_id": b})
    assert proposed.status_code == 201, proposed.text
    pid = proposed.json()["partnership_id"]
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


async def _status(http: httpx.AsyncClient, eco: Ecosystem, cid: str, owner: str, status: str) -> bool:
    return any(p["status"] == status for p in await links(http, eco, cid, owner))

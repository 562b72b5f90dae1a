"""The members service as a real process over real PostgreSQL and NATS."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import nats
import pytest

from kizuna.vault import KeyVault
from tests.support import Ecosystem, eventually


@pytest.fixture
async def http(ecosystem: Ecosystem) -> AsyncIterator[httpx.AsyncClient]:
    ecosystem.start("members")
    async with httpx.AsyncClient(base_url=ecosystem.url("members"), timeout=30) as client:
        yield client
    assert "unhandled error" not in ecosystem.processes["members"].log_path.read_text()


async def found(http: httpx.AsyncClient, eco: Ecosystem, cap: int = 150, name: str = "Hikari") -> tuple[str, str]:
    response = await http.post("/communities", headers=eco.operator_headers(), json={
        "name": name, "purpose": "makers helping makers", "values": ["share first"], "member_cap": cap,
        "owner_display_name": "Yui"})
    assert response.status_code == 201, response.text
    body = response.json()
    return body["community_id"], body["owner_member_id"]


async def test_fifty_concurrent_joins_for_ten_seats(http: httpx.AsyncClient, ecosystem: Ecosystem) -> None:
    cid, owner = await found(http, ecosystem, cap=11)  # the owner holds one of the eleven places
    headers = ecosystem.headers(cid, owner, "owner")

    async def join(n: int) -> httpx.Response:
        return await http.post(f"/communities/{cid}/members", headers=headers, json={"display_name": f"P{n}"})

    responses = await asyncio.gather(*(join(n) for n in range(50)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(201) == 10 and statuses.count(409) == 40, statuses
    refused = next(r for r in responses if r.status_code == 409).json()
    assert refused["type"].endswith("/community-full") and refused["member_cap"] == 11
    community = (await http.get(f"/communities/{cid}", headers=headers)).json()
    assert community["size"] == 11 and community["places_left"] == 0
    listed = (await http.get(f"/communities/{cid}/members?limit=200", headers=headers)).json()["items"]
    assert len(listed) == 11
    waiting = await http.post(f"/communities/{cid}/members", headers=headers,
                              json={"display_name": "Late", "waitlist_if_full": True})
    assert waiting.status_code == 202 and waiting.json()["status"] == "waitlisted"
    queue = (await http.get(f"/communities/{cid}/waitlist", headers=headers)).json()
    assert [w["display_name"] for w in queue] == ["Late"] and queue[0]["vouched_by"] == owner


async def test_roles_ownership_profiles_and_the_directory(http: httpx.AsyncClient, ecosystem: Ecosystem) -> None:
    cid, owner = await found(http, ecosystem)
    as_owner = ecosystem.headers(cid, owner, "owner")
    ken = (await http.post(f"/communities/{cid}/members", headers=as_owner,
                           json={"display_name": "Ken", "joined_via": "referral"})).json()["member_id"]
    aiko = (await http.post(f"/communities/{cid}/members", headers=as_owner,
                            json={"display_name": "Aiko"})).json()["member_id"]
    as_ken = ecosystem.headers(cid, ken)
    profile = await http.put(f"/communities/{cid}/members/{ken}/profile", headers=as_ken, json={
        "display_name": "Ken Mori", "vector": "publish a picture book", "skills": ["Illustration", "Video editing"]})
    assert profile.status_code == 200 and profile.json()["skills"] == ["illustration", "video-editing"]
    someone_else = await http.put(f"/communities/{cid}/members/{aiko}/profile", headers=as_ken,
                                  json={"display_name": "hijack"})
    assert someone_else.status_code == 403
    found_by_skill = (await http.get(f"/communities/{cid}/members?skill=Illustration", headers=as_ken)).json()
    assert [m["member_id"] for m in found_by_skill["items"]] == [ken]
    found_by_vector = (await http.get(f"/communities/{cid}/members?q=picture", headers=as_ken)).json()
    assert [m["member_id"] for m in found_by_vector["items"]] == [ken]

    promote = await http.put(f"/communities/{cid}/members/{aiko}/role", headers=as_ken,
                             json={"role": "facilitator"})
    assert promote.status_code == 403
    promote = await http.put(f"/communities/{cid}/members/{aiko}/role", headers=as_owner,
                             json={"role": "facilitator", "reason": "runs cohort B"})
    assert promote.status_code == 200 and promote.json()["role"] == "facilitator"
    facilitators = (await http.get(f"/communities/{cid}/members?role=facilitator", headers=as_ken)).json()
    assert [m["member_id"] for m in facilitators["items"]] == [aiko]
    handed = await http.post(f"/communities/{cid}/ownership", headers=as_owner, json={"to_member_id": ken})
    assert handed.status_code == 200 and handed.json()["roles"] == {"owner": 1, "facilitator": 2, "member": 0}
    consent = await http.put(f"/communities/{cid}/members/{ken}/consent", headers=as_ken,
                             json={"shared_fields": ["skills"]})
    assert consent.json()["shared_fields"] == ["display_name", "skills"]

    page = (await http.get(f"/communities/{cid}/members?limit=2", headers=as_ken)).json()
    rest = (await http.get(f"/communities/{cid}/members?limit=2&cursor={page['next_cursor']}",
                           headers=as_ken)).json()
    assert len(page["items"]) == 2 and len(rest["items"]) == 1 and rest["next_cursor"] is None
    left = await http.post(f"/communities/{cid}/members/{aiko}/leave", headers=ecosystem.headers(cid, aiko))
    assert left.status_code == 204
    assert (await http.get(f"/communities/{cid}", headers=as_ken)).json()["size"] == 2


@pytest.mark.parametrize(("path", "method", "body", "field"), [
    ("/communities", "POST", {"name": "", "owner_display_name": "Yui"}, "name"),
    ("/communities/{cid}/cap", "PUT", {"member_cap": 1}, "member_cap"),
    ("/communities/{cid}/members/{owner}/profile", "PUT", {"display_name": "Yui", "vector": "v" * 10_000}, "vector"),
    ("/communities/{cid}/members/{owner}/role", "PUT", {"role": "emperor"}, "role"),
])
async def test_invalid_input_names_the_field_and_writes_nothing(
    http: httpx.AsyncClient, ecosystem: Ecosystem, path: str, method: str, body: dict[str, Any], field: str
) -> None:
    cid, owner = await found(http, ecosystem)
    headers = ecosystem.operator_headers() if path == "/communities" else ecosystem.headers(cid, owner, "owner")
    before = (await http.get(f"/communities/{cid}", headers=ecosystem.operator_headers())).json()["version"]
    response = await http.request(method, path.format(cid=cid, owner=owner), headers=headers, json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in response.json()["errors"]]
    after = (await http.get(f"/communities/{cid}", headers=ecosystem.operator_headers())).json()["version"]
    assert before == after


async def test_no_route_crosses_into_another_community(http: httpx.AsyncClient, ecosystem: Ecosystem) -> None:
    a, owner_a = await found(http, ecosystem, name="A")
    b, owner_b = await found(http, ecosystem, name="B")
    member_b = (await http.post(f"/communities/{b}/members", headers=ecosystem.headers(b, owner_b, "owner"),
                                json={"display_name": "Bee"})).json()["member_id"]
    as_a = ecosystem.headers(a, owner_a, "owner")
    routes = [("GET", "/communities/{c}"), ("PUT", "/communities/{c}/cap"), ("POST", "/communities/{c}/members"),
              ("GET", "/communities/{c}/members"), ("GET", "/communities/{c}/members/{m}"),
              ("POST", "/communities/{c}/members/{m}/leave"), ("POST", "/communities/{c}/members/{m}/removal"),
              ("PUT", "/communities/{c}/members/{m}/role"), ("POST", "/communities/{c}/ownership"),
              ("PUT", "/communities/{c}/members/{m}/profile"), ("PUT", "/communities/{c}/members/{m}/consent"),
              ("GET", "/communities/{c}/waitlist")]
    bodies = {"cap": {"member_cap": 5}, "members": {"display_name": "x"}, "removal": {"reason": "x"},
              "role": {"role": "member"}, "ownership": {"to_member_id": member_b},
              "profile": {"display_name": "x"}, "consent": {"shared_fields": []}}
    for method, template in routes:
        body = bodies.get(template.rsplit("/", 1)[-1], {})
        crossing = await http.request(method, template.format(c=b, m=member_b), headers=as_a, json=body)
        missing = await http.request(method, template.format(c="no-such-community", m=member_b), headers=as_a,
                                     json=body)
        assert crossing.status_code == missing.status_code == 404, (template, crossing.text)
        assert crossing.json()["detail"] == missing.json()["detail"]
    as_member = ecosystem.headers(b, member_b)
    assert (await http.put(f"/communities/{b}/cap", headers=as_member, json={"member_cap": 5})).status_code == 403
    assert (await http.get("/communities", headers=as_member)).status_code == 403
    assert (await http.get(f"/communities/{b}")).status_code == 401


async def test_events_reach_a_consumer_in_another_process(http: httpx.AsyncClient, ecosystem: Ecosystem) -> None:
    nc = await nats.connect(ecosystem.nats.url)
    received: list[dict[str, Any]] = []
    try:
        js = nc.jetstream()
        cid, owner = await found(http, ecosystem)
        await http.post(f"/communities/{cid}/members", headers=ecosystem.headers(cid, owner, "owner"),
                        json={"display_name": "Ken"})
        sub = await js.subscribe(f"{ecosystem.prefix}.{cid}.members.>", stream=ecosystem.prefix.upper())

        async def two() -> bool:
            try:
                msg = await sub.next_msg(timeout=1)
                received.append(json.loads(msg.data))
            except nats.errors.TimeoutError:
                pass
            return len(received) >= 2

        await eventually(two)
    finally:
        await nc.close()
    assert [e["type"] for e in received] == ["CommunityFounded", "MemberJoined"]
    joined = received[1]
    assert joined["specversion"] == "1.0" and joined["communityid"] == cid and joined["source"] == "kizuna/members"
    assert joined["data"]["vouched_by"] == owner
    # A name is personal data: on the bus it is sealed with the member's key (docs/data-rights.md), and opens
    # with the deployment's key vault — as every Kizuna consumer opens it.
    sealed = joined["data"]["display_name"]
    assert isinstance(sealed, dict) and "Ken" not in json.dumps(sealed)
    vault = await KeyVault.open(ecosystem.database_url("keys"))
    try:
        [opened] = await vault.reveal_all([joined["data"]])
    finally:
        await vault.close()
    assert opened["display_name"] == "Ken"

"""Admission, the moving waitlist and sister communities, as a real process over PostgreSQL and NATS."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import nats
import pytest

from tests.members.test_api import found
from tests.support import Ecosystem, eventually


@pytest.fixture
async def http(ecosystem: Ecosystem) -> AsyncIterator[httpx.AsyncClient]:
    ecosystem.start("members", KIZUNA_OFFER_SWEEP_SECONDS="0.2")
    async with httpx.AsyncClient(base_url=ecosystem.url("members"), timeout=60) as client:
        yield client
    assert "unhandled error" not in ecosystem.processes["members"].log_path.read_text()


async def add(http: httpx.AsyncClient, eco: Ecosystem, cid: str, name: str, **extra: Any) -> httpx.Response:
    return await http.post(f"/communities/{cid}/members", headers=eco.operator_headers(),
                           json={"display_name": name, **extra})


async def version(http: httpx.AsyncClient, eco: Ecosystem, cid: str) -> int:
    return int((await http.get(f"/communities/{cid}", headers=eco.operator_headers())).json()["version"])


def field_of(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return [e["field"] for e in response.json()["errors"]]


async def test_applications_with_questions_and_decisions(http: httpx.AsyncClient, ecosystem: Ecosystem) -> None:
    cid, owner = await found(http, ecosystem)
    as_owner, op = ecosystem.headers(cid, owner, "owner"), ecosystem.operator_headers()
    ken = (await add(http, ecosystem, cid, "Ken")).json()["member_id"]
    fac = (await add(http, ecosystem, cid, "Aiko")).json()["member_id"]
    await http.put(f"/communities/{cid}/members/{fac}/role", headers=as_owner, json={"role": "facilitator"})
    as_ken, as_fac = ecosystem.headers(cid, ken), ecosystem.headers(cid, fac, "facilitator")
    rules = {"policy": "application", "reason": "we are getting known; screen newcomers",
             "questions": [{"id": "why", "text": "Why join?"},
                           {"id": "share", "text": "What could you share?", "required": False}]}

    assert (await http.put(f"/communities/{cid}/admission", headers=as_ken, json=rules)).status_code == 403
    assert field_of(await http.put(f"/communities/{cid}/admission", headers=as_owner,
                                   json={**rules, "reason": ""})) == ["reason"]
    changed = await http.put(f"/communities/{cid}/admission", headers=as_owner, json=rules)
    assert changed.status_code == 200 and changed.json()["policy"] == "application"
    assert (await http.get(f"/communities/{cid}/admission", headers=as_ken)).json()["questions"][0]["id"] == "why"
    direct = await http.post(f"/communities/{cid}/members", headers=as_ken, json={"display_name": "Friend"})
    assert direct.status_code == 409 and direct.json()["type"].endswith("/admission-policy")

    before = await version(http, ecosystem, cid)
    unknown = await http.post(f"/communities/{cid}/applications", headers=op,
                              json={"display_name": "Mika", "answers": {"why": "books", "age": "30"}})
    assert field_of(unknown) == ["answers.age"]
    missing = await http.post(f"/communities/{cid}/applications", headers=op,
                              json={"display_name": "Mika", "answers": {"share": "video"}})
    assert field_of(missing) == ["answers.why"]
    assert await version(http, ecosystem, cid) == before, "a refused application writes nothing"

    submitted = await http.post(f"/communities/{cid}/applications", headers=op,
                                json={"display_name": "Mika", "answers": {"why": "I make picture books"}})
    assert submitted.status_code == 201 and submitted.json()["status"] == "pending"
    application = submitted.json()["application_id"]
    referred = (await http.post(f"/communities/{cid}/applications", headers=as_ken,
                                json={"display_name": "Sora", "answers": {"why": "Ken's friend"}})).json()
    assert referred["referred_by"] == ken
    # The referrer may follow the application; another member may not see it.
    assert (await http.get(f"/communities/{cid}/applications/{referred['application_id']}",
                           headers=as_ken)).status_code == 200
    assert (await http.get(f"/communities/{cid}/applications/{application}", headers=as_ken)).status_code == 404
    assert (await http.get(f"/communities/{cid}/applications", headers=as_ken)).status_code == 403

    decide = f"/communities/{cid}/applications/{application}/decision"
    assert (await http.post(decide, headers=as_ken, json={"decision": "approve", "reason": "x"})).status_code == 403
    assert field_of(await http.post(decide, headers=as_fac, json={"decision": "approve", "reason": ""})) == ["reason"]
    approved = await http.post(decide, headers=as_fac, json={"decision": "approve", "reason": "lovely books"})
    assert approved.status_code == 200 and approved.json()["status"] == "joined"
    assert (await http.post(decide, headers=as_owner, json={"decision": "decline", "reason": "x"})).status_code == 409
    # What the applicant sees through the front door.
    status = (await http.get(f"/communities/{cid}/applications/{application}", headers=op)).json()
    assert (status["status"], status["reason"], status["decided_by"]) == ("joined", "lovely books", f"member:{fac}")
    card = (await http.get(f"/communities/{cid}/members/{status['applicant_id']}", headers=as_ken)).json()
    assert (card["joined_via"], card["vouched_by"]) == ("application", fac)

    declined = await http.post(f"/communities/{cid}/applications/{referred['application_id']}/decision",
                               headers=as_owner, json={"decision": "decline", "reason": "not this season"})
    assert declined.json()["status"] == "declined"
    pending = (await http.get(f"/communities/{cid}/applications?status=pending", headers=as_fac)).json()
    assert pending == []
    listed = (await http.get(f"/communities/{cid}/applications", headers=as_fac)).json()
    assert [a["display_name"] for a in listed] == ["Mika", "Sora"]


async def test_invitations_are_single_use_limited_and_expire(http: httpx.AsyncClient, ecosystem: Ecosystem) -> None:
    cid, owner = await found(http, ecosystem)
    as_owner, op = ecosystem.headers(cid, owner, "owner"), ecosystem.operator_headers()
    ken = (await add(http, ecosystem, cid, "Ken")).json()["member_id"]
    as_ken = ecosystem.headers(cid, ken)
    await http.put(f"/communities/{cid}/admission", headers=as_owner,
                   json={"policy": "invitation", "max_open_invitations": 1, "reason": "trust first"})
    issued = await http.post(f"/communities/{cid}/invitations", headers=as_ken, json={"note": "for Mika"})
    assert issued.status_code == 201
    code = issued.json()["code"]
    over = await http.post(f"/communities/{cid}/invitations", headers=as_ken, json={})
    assert over.status_code == 409 and over.json()["type"].endswith("/invitation-limit")

    assert (await http.post(f"/communities/{cid}/invitations/acceptance", headers=as_ken,
                            json={"code": code, "display_name": "Mika"})).status_code == 403
    accepted = await http.post(f"/communities/{cid}/invitations/acceptance", headers=op,
                               json={"code": code, "display_name": "Mika"})
    assert accepted.status_code == 201 and accepted.json()["status"] == "joined"
    card = (await http.get(f"/communities/{cid}/members/{accepted.json()['member_id']}", headers=as_ken)).json()
    assert (card["joined_via"], card["vouched_by"]) == ("invitation", ken)
    again = await http.post(f"/communities/{cid}/invitations/acceptance", headers=op,
                            json={"code": code, "display_name": "Someone else"})
    assert again.status_code == 409 and again.json()["type"].endswith("/invitation-used")
    wrong = await http.post(f"/communities/{cid}/invitations/acceptance", headers=op,
                            json={"code": "guessed", "display_name": "X"})
    assert wrong.status_code == 404

    short = await http.post(f"/communities/{cid}/invitations", headers=as_ken, json={"ttl_seconds": 1})
    assert short.status_code == 201, "the used invitation no longer counts against the limit"
    expires_at = datetime.fromisoformat(short.json()["expires_at"])
    await asyncio.sleep(max((expires_at - datetime.now(UTC)).total_seconds(), 0) + 0.2)  # wait out its life
    before = await version(http, ecosystem, cid)
    expired = await http.post(f"/communities/{cid}/invitations/acceptance", headers=op,
                              json={"code": short.json()["code"], "display_name": "Late"})
    assert expired.status_code == 410 and expired.json()["type"].endswith("/invitation-expired")
    assert await version(http, ecosystem, cid) == before
    mine = (await http.get(f"/communities/{cid}/invitations", headers=as_ken)).json()
    assert [i["status"] for i in mine] == ["used", "expired"]
    assert "code" not in mine[0]
    assert (await http.get(f"/communities/{cid}/invitations", headers=as_owner)).json() == mine


async def _community_with_waitlist(http: httpx.AsyncClient, eco: Ecosystem, members: int, waiting: int,
                                   offer_ttl: int | None = None) -> tuple[str, str, list[str]]:
    """A full community of ``members`` + owner and ``waiting`` people on its waitlist, in order."""
    cid, owner = await found(http, eco, cap=members + 1)
    if offer_ttl is not None:
        changed = await http.put(f"/communities/{cid}/admission", headers=eco.headers(cid, owner, "owner"),
                                 json={"policy": "open", "offer_ttl_seconds": offer_ttl, "reason": "quick turns"})
        assert changed.status_code == 200, changed.text
    for n in range(members):
        assert (await add(http, eco, cid, f"M{n}")).status_code == 201
    queue = []
    for n in range(waiting):
        response = await add(http, eco, cid, f"W{n:03}", waitlist_if_full=True)
        assert response.status_code == 202, response.text
        queue.append(response.json()["member_id"])
    return cid, owner, queue


async def offers(http: httpx.AsyncClient, eco: Ecosystem, cid: str, status: str | None = None) -> list[dict[str, Any]]:
    query = f"?status={status}" if status else ""
    response = await http.get(f"/communities/{cid}/offers{query}", headers=eco.operator_headers())
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()
    return result


async def claim_code(http: httpx.AsyncClient, eco: Ecosystem, cid: str, offer_id: str) -> str:
    """The claim code an owner or facilitator passes on to the person offered (until notifications do)."""
    issued = await http.post(f"/communities/{cid}/offers/{offer_id}/claim-code", headers=eco.operator_headers())
    assert issued.status_code == 201, issued.text
    code: str = issued.json()["claim_code"]
    return code


async def test_twenty_places_freed_for_a_hundred_waiting(http: httpx.AsyncClient, ecosystem: Ecosystem) -> None:
    ttl = 8
    cid, owner, queue = await _community_with_waitlist(http, ecosystem, members=20, waiting=100, offer_ttl=ttl)
    as_owner, op = ecosystem.headers(cid, owner, "owner"), ecosystem.operator_headers()
    raised = await http.put(f"/communities/{cid}/cap", headers=as_owner,
                            json={"member_cap": 41, "reason": "a second cohort joins"})
    assert raised.status_code == 200 and raised.json()["open_offers"] == 20 and raised.json()["places_left"] == 0
    made = await offers(http, ecosystem, cid)
    assert [o["applicant_id"] for o in made] == queue[:20], "one offer per free place, in waitlist order"
    waitlist = (await http.get(f"/communities/{cid}/waitlist", headers=as_owner)).json()
    assert [w["applicant_id"] for w in waitlist] == queue
    assert [w["offer_id"] is not None for w in waitlist] == [True] * 20 + [False] * 80

    codes = {o["offer_id"]: await claim_code(http, ecosystem, cid, o["offer_id"]) for o in made}
    accepted = await asyncio.gather(*(http.post(f"/communities/{cid}/offers/{o['offer_id']}/acceptance", headers=op,
                                                json={"claim_code": codes[o["offer_id"]]}) for o in made[:19]))
    assert [r.status_code for r in accepted] == [201] * 19, [r.text for r in accepted]
    assert {r.json()["member_id"] for r in accepted} == set(queue[:19])
    last = made[19]
    # While the 20th offer is still open, nobody else holds an offer.
    still_open = await offers(http, ecosystem, cid, "open")
    assert datetime.now(UTC) < datetime.fromisoformat(last["expires_at"]), "precondition: the offer is still open"
    assert [o["offer_id"] for o in still_open] == [last["offer_id"]]

    async def passed_on() -> list[dict[str, Any]] | None:
        now_open = await offers(http, ecosystem, cid, "open")
        return now_open if now_open and now_open[0]["offer_id"] != last["offer_id"] else None

    [next_offer] = await eventually(passed_on, timeout=ttl + 20)
    assert next_offer["applicant_id"] == queue[20], "the 21st person, and only them"
    expired = next(o for o in await offers(http, ecosystem, cid) if o["offer_id"] == last["offer_id"])
    assert expired["status"] == "expired"
    assert datetime.fromisoformat(next_offer["offered_at"]) >= datetime.fromisoformat(last["expires_at"])
    late = await http.post(f"/communities/{cid}/offers/{last['offer_id']}/acceptance", headers=op,
                           json={"claim_code": codes[last["offer_id"]]})
    assert late.status_code == 410 and late.json()["type"].endswith("/offer-expired")
    community = (await http.get(f"/communities/{cid}", headers=as_owner)).json()
    assert community["size"] + community["open_offers"] == community["member_cap"] == 41
    assert community["waitlist"] == 79  # 100 - 19 joined - 1 expired - 1 holding an offer

    next_code = await claim_code(http, ecosystem, cid, next_offer["offer_id"])
    declined = await http.post(f"/communities/{cid}/offers/{next_offer['offer_id']}/decline", headers=op,
                               json={"claim_code": next_code, "reason": "moving abroad"})
    assert declined.status_code == 200 and declined.json()["status"] == "declined"
    [after_decline] = await offers(http, ecosystem, cid, "open")
    assert after_decline["applicant_id"] == queue[21]


async def test_concurrent_acceptances_and_joins_hold_the_cap(http: httpx.AsyncClient, ecosystem: Ecosystem) -> None:
    cid, owner, queue = await _community_with_waitlist(http, ecosystem, members=10, waiting=25)
    as_owner, op = ecosystem.headers(cid, owner, "owner"), ecosystem.operator_headers()
    await http.put(f"/communities/{cid}/cap", headers=as_owner, json={"member_cap": 31, "reason": "grow a little"})
    made = await offers(http, ecosystem, cid, "open")
    assert len(made) == 20
    codes = {o["offer_id"]: await claim_code(http, ecosystem, cid, o["offer_id"]) for o in made}

    def accept(offer: dict[str, Any]) -> Any:
        return http.post(f"/communities/{cid}/offers/{offer['offer_id']}/acceptance", headers=op,
                         json={"claim_code": codes[offer["offer_id"]]})

    attempts = [accept(o) for o in made] + [accept(o) for o in made[:20:2]]  # 30 acceptances, 10 of them twice
    attempts += [add(http, ecosystem, cid, f"New{n}") for n in range(20)]  # and 20 new joins
    responses = await asyncio.gather(*attempts)
    acceptances, joins = responses[:30], responses[30:]
    assert sorted(r.status_code for r in acceptances) == [201] * 20 + [409] * 10
    assert all(r.json()["type"].endswith("/offer-used") for r in acceptances if r.status_code == 409)
    assert {r.json()["member_id"] for r in acceptances if r.status_code == 201} == set(queue[:20])
    assert [r.status_code for r in joins] == [409] * 20
    assert all(r.json()["type"].endswith("/community-full") for r in joins)
    community = (await http.get(f"/communities/{cid}", headers=as_owner)).json()
    assert community["size"] == community["member_cap"] == 31 and community["open_offers"] == 0
    listed = (await http.get(f"/communities/{cid}/members?limit=200", headers=as_owner)).json()["items"]
    assert len(listed) == 31


async def test_founding_a_sister_links_the_two_and_moves_nobody(http: httpx.AsyncClient, ecosystem: Ecosystem) -> None:
    cid, owner, queue = await _community_with_waitlist(http, ecosystem, members=3, waiting=5)
    as_owner, op = ecosystem.headers(cid, owner, "owner"), ecosystem.operator_headers()
    roster = (await http.get(f"/communities/{cid}/members", headers=as_owner)).json()["items"]
    aiko = roster[1]["member_id"]
    await http.put(f"/communities/{cid}/members/{aiko}/role", headers=as_owner, json={"role": "facilitator"})
    await http.put(f"/communities/{cid}/admission", headers=as_owner,
                   json={"policy": "invitation", "reason": "trust first"})
    before = (await http.get(f"/communities/{cid}/members", headers=as_owner)).json()["items"]
    waitlist_before = (await http.get(f"/communities/{cid}/waitlist", headers=as_owner)).json()
    body = {"name": "Hikari West", "new_owner_member_id": aiko, "member_cap": 4, "reason": "we are full"}

    nc = await nats.connect(ecosystem.nats.url)
    try:
        js = nc.jetstream()
        as_aiko = ecosystem.headers(cid, aiko, "facilitator")
        assert (await http.post(f"/communities/{cid}/sisters", headers=as_aiko, json=body)).status_code == 403
        plain = roster[2]["member_id"]
        refused = await http.post(f"/communities/{cid}/sisters", headers=as_owner,
                                  json={**body, "new_owner_member_id": plain})
        assert field_of(refused) == ["new_owner_member_id"]
        founded = await http.post(f"/communities/{cid}/sisters", headers=as_owner, json=body)
        assert founded.status_code == 201, founded.text
        sid = founded.json()["sister_community_id"]
        sub = await js.subscribe(f"{ecosystem.prefix}.{cid}.members.SisterCommunityFounded",
                                 stream=ecosystem.prefix.upper())
        message = await eventually(lambda: _next(sub))
    finally:
        await nc.close()
    event = json.loads(message.data)["data"]
    assert (event["community_id"], event["sister_community_id"], event["sister_name"]) == (cid, sid, "Hikari West")
    assert (event["founded_by"], event["new_owner_member_id"]) == (f"member:{owner}", aiko)
    assert event["waitlist_offered"] == queue

    sister = founded.json()["sister"]
    assert (sister["sister_of"], sister["purpose"], sister["values"]) == (cid, "makers helping makers", ["share first"])
    assert sister["roles"] == {"owner": 1, "facilitator": 0, "member": 0} and sister["admission_policy"] == "invitation"
    as_new_owner = ecosystem.headers(sid, aiko, "owner")
    sister_owner = (await http.get(f"/communities/{sid}/members/{aiko}", headers=as_new_owner)).json()
    assert (sister_owner["role"], sister_owner["display_name"]) == ("owner", roster[1]["display_name"])
    # Nobody's data moved: the original community is exactly as it was, Aiko included.
    assert (await http.get(f"/communities/{cid}/members", headers=as_owner)).json()["items"] == [
        {**m, "role": "facilitator"} if m["member_id"] == aiko else m for m in before]
    assert (await http.get(f"/communities/{cid}/waitlist", headers=as_owner)).json() == waitlist_before
    # The waitlist is offered places in the sister, in order (its cap of 4 counts the new owner).
    sister_offers = await offers(http, ecosystem, sid, "open")
    assert [o["applicant_id"] for o in sister_offers] == queue[:3]
    took = await http.post(f"/communities/{sid}/offers/{sister_offers[0]['offer_id']}/acceptance", headers=op,
                           json={"claim_code": await claim_code(http, ecosystem, sid, sister_offers[0]["offer_id"])})
    card = (await http.get(f"/communities/{sid}/members/{took.json()['member_id']}", headers=as_new_owner)).json()
    assert card["joined_via"] == "sister-community" and card["display_name"] == "W000"

    for community, partner in ((cid, sid), (sid, cid)):
        headers = as_owner if community == cid else as_new_owner
        [link] = (await http.get(f"/communities/{community}/sisters", headers=headers)).json()
        assert (link["partner_community_id"], link["kind"]) == (partner, "sister")
    view = (await http.get(f"/communities/{sid}/ecosystem", headers=as_new_owner)).json()
    sizes = {c["community_id"]: (c["size"], c["member_cap"]) for c in view["communities"]}
    assert sizes == {cid: (4, 4), sid: (2, 4)}
    assert [{link["community_id"], link["partner_community_id"]} for link in view["links"]] == [{cid, sid}]
    assert (await http.get(f"/communities/{cid}/ecosystem", headers=as_aiko)).status_code == 403
    assert (await http.get(f"/communities/{cid}/ecosystem", headers=op)).json() == (
        await http.get(f"/communities/{cid}/ecosystem", headers=as_owner)).json()


async def test_a_sister_needs_a_full_community(http: httpx.AsyncClient, ecosystem: Ecosystem) -> None:
    cid, owner = await found(http, ecosystem, cap=5)
    aiko = (await add(http, ecosystem, cid, "Aiko")).json()["member_id"]
    as_owner = ecosystem.headers(cid, owner, "owner")
    await http.put(f"/communities/{cid}/members/{aiko}/role", headers=as_owner, json={"role": "facilitator"})
    before = await version(http, ecosystem, cid)
    refused = await http.post(f"/communities/{cid}/sisters", headers=as_owner,
                              json={"name": "Too early", "new_owner_member_id": aiko})
    assert refused.status_code == 409 and refused.json()["type"].endswith("/not-at-cap")
    assert await version(http, ecosystem, cid) == before
    assert (await http.get(f"/communities/{cid}/sisters", headers=as_owner)).json() == []


async def _next(sub: Any) -> Any:
    try:
        return await sub.next_msg(timeout=1)
    except nats.errors.TimeoutError:
        return None


async def test_no_admission_route_crosses_into_another_community(http: httpx.AsyncClient,
                                                                 ecosystem: Ecosystem) -> None:
    a, owner_a = await found(http, ecosystem, name="A")
    b, _ = await found(http, ecosystem, name="B")
    as_a = ecosystem.headers(a, owner_a, "owner")
    routes = [("GET", "admission", {}), ("PUT", "admission", {"policy": "open", "reason": "x"}),
              ("POST", "applications", {"display_name": "x"}), ("GET", "applications", {}),
              ("GET", "applications/x", {}),
              ("POST", "applications/x/decision", {"decision": "approve", "reason": "x"}),
              ("POST", "invitations", {}), ("GET", "invitations", {}),
              ("POST", "invitations/acceptance", {"code": "x", "display_name": "x"}), ("GET", "offers", {}),
              ("POST", "offers/x/acceptance", {}), ("POST", "offers/x/decline", {}),
              ("POST", "sisters", {"name": "x", "new_owner_member_id": "x"}), ("GET", "sisters", {}),
              ("GET", "ecosystem", {})]
    for method, tail, body in routes:
        crossing = await http.request(method, f"/communities/{b}/{tail}", headers=as_a, json=body)
        missing = await http.request(method, f"/communities/nowhere/{tail}", headers=as_a, json=body)
        assert crossing.status_code == missing.status_code == 404, (tail, crossing.text)
        assert crossing.json()["detail"] == missing.json()["detail"]
        assert (await http.request(method, f"/communities/{a}/{tail}", json=body)).status_code == 401

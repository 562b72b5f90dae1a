"""Security issue 17, items 2 and 3 (part), against the real members service and gateway.

2. A place offer is answered only by the person offered: the offer id alone (visible to those who run
   the waitlist, and once predictable) or a wrong claim code gets the same 404 as a missing offer.
3. Authority is decided inside the community aggregate from the role the actor holds *now*: a former
   owner's or a demoted facilitator's token — still valid and still naming the old role — is refused
   by the members service itself (not only by the gateway, which re-signs with the current role).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support import Ecosystem

# The offer ids of the old domain were uuid5 of this constant, the community, the applicant and a counter.
OLD_OFFER_NAMESPACE = uuid.UUID("8f5b3c1e-6d0a-4c52-9a57-0c1e7a2b9d44")


@pytest.fixture
async def clients(ecosystem: Ecosystem) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    ecosystem.start("members", "gateway")
    async with httpx.AsyncClient(base_url=ecosystem.url("gateway"), timeout=30) as gateway, \
            httpx.AsyncClient(base_url=ecosystem.url("members"), timeout=30) as members:
        yield gateway, members
    for name, proc in ecosystem.processes.items():
        assert "unhandled error" not in proc.log_path.read_text(), name


async def _found(members: httpx.AsyncClient, eco: Ecosystem, cap: int) -> tuple[str, str]:
    founded = await members.post("/communities", headers=eco.operator_headers(),
                                 json={"name": "Hikari", "owner_display_name": "Yui", "member_cap": cap})
    assert founded.status_code == 201, founded.text
    return founded.json()["community_id"], founded.json()["owner_member_id"]


async def _add(members: httpx.AsyncClient, eco: Ecosystem, cid: str, name: str, **extra: Any) -> str:
    added = await members.post(f"/communities/{cid}/members", headers=eco.operator_headers(),
                               json={"display_name": name, **extra})
    assert added.status_code in (201, 202), added.text
    member_id: str = added.json()["member_id"]
    return member_id


def _without_instance(problem: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in problem.items() if key != "instance"}


async def test_only_the_person_offered_answers_an_offer(clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
                                                        ecosystem: Ecosystem) -> None:
    gateway, members = clients
    eco = ecosystem
    cid, owner = await _found(members, eco, cap=3)
    ken, sora = await _add(members, eco, cid, "Ken"), await _add(members, eco, cid, "Sora")
    mika = await _add(members, eco, cid, "Mika", waitlist_if_full=True)
    as_owner = eco.headers(cid, owner, "owner")
    left = await members.post(f"/communities/{cid}/members/{ken}/leave", headers=eco.headers(cid, ken))
    assert left.status_code == 204, left.text
    [offer] = (await members.get(f"/communities/{cid}/offers?status=open", headers=as_owner)).json()
    assert offer["applicant_id"] == mika

    # The attack: a plain member (Sora) — or anyone, the front door needs no token — declines Mika's place.
    predicted = str(uuid.uuid5(OLD_OFFER_NAMESPACE, f"{cid}/{mika}/0"))
    assert offer["offer_id"] != predicted, "offer ids are random, not derived"
    missing = await gateway.post(f"/v1/join/{cid}/offers/{uuid.uuid4()}/decline", json={"claim_code": "x" * 32})
    assert missing.status_code == 404, missing.text
    for answer, attempt in (("decline", {}), ("decline", {"claim_code": "x" * 32, "reason": "not me"}),
                            ("acceptance", {}), ("acceptance", {"claim_code": "x" * 32})):
        for oid in (offer["offer_id"], predicted):
            refused = await gateway.post(f"/v1/join/{cid}/offers/{oid}/{answer}", json=attempt,
                                         headers=eco.headers(cid, sora))
            assert refused.status_code == 404, (answer, attempt, refused.text)
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert _without_instance(refused.json()) == _without_instance(missing.json()), "nothing leaks"
    # Nor can a member's token answer on the service itself (the front door or the operator only).
    direct = await members.post(f"/communities/{cid}/offers/{offer['offer_id']}/decline",
                                headers=eco.headers(cid, sora), json={})
    assert direct.status_code == 403, direct.text
    [still] = (await members.get(f"/communities/{cid}/offers?status=open", headers=as_owner)).json()
    assert still["offer_id"] == offer["offer_id"], "Mika still holds her place"

    # Until notifications exist, the owner or a facilitator issues Mika's claim link and passes it on.
    assert (await members.post(f"/communities/{cid}/offers/{offer['offer_id']}/claim-code",
                               headers=eco.headers(cid, sora))).status_code == 403
    issued = await members.post(f"/communities/{cid}/offers/{offer['offer_id']}/claim-code", headers=as_owner)
    assert issued.status_code == 201, issued.text
    claim = issued.json()
    assert claim["applicant_id"] == mika and claim["claim_path"] == f"/v1/join/{cid}/offers/{offer['offer_id']}"
    code = claim["claim_code"]
    assert len(code) >= 32, "at least 128 random bits (24 bytes, url-safe)"
    # A second issuance replaces the first: a code passed on by mistake can be withdrawn.
    reissued = (await members.post(f"/communities/{cid}/offers/{offer['offer_id']}/claim-code",
                                   headers=as_owner)).json()["claim_code"]
    assert reissued != code
    stale = await gateway.post(f"/v1/join/{cid}/offers/{offer['offer_id']}/acceptance", json={"claim_code": code})
    assert stale.status_code == 404 and _without_instance(stale.json()) == _without_instance(missing.json())

    taken = await gateway.post(f"/v1/join/{cid}/offers/{offer['offer_id']}/acceptance",
                               json={"claim_code": reissued})
    assert taken.status_code == 201 and taken.json()["member_id"] == mika, taken.text
    again = await gateway.post(f"/v1/join/{cid}/offers/{offer['offer_id']}/acceptance",
                               json={"claim_code": reissued})
    assert again.status_code == 409 and again.json()["type"].endswith("/offer-used")
    wrong_after = await gateway.post(f"/v1/join/{cid}/offers/{offer['offer_id']}/decline",
                                     json={"claim_code": code})
    assert wrong_after.status_code == 404, "a wrong code learns nothing, not even that the offer was taken"

    # The plaintext codes are in no event (the event table is the outbox the bus is fed from): hashes only.
    conn = await asyncpg.connect(eco.database_url("members"))
    try:
        rows = await conn.fetch("SELECT event_type AS type, data::text AS data, metadata::text AS metadata FROM events "
                                "WHERE stream_id = $1 ORDER BY stream_version", f"community-{cid}")
    finally:
        await conn.close()
    recorded = " ".join(r["data"] + r["metadata"] for r in rows)
    assert code not in recorded and reissued not in recorded
    issued_events = [json.loads(r["data"]) for r in rows if r["type"] == "PlaceOfferClaimCodeIssued"]
    assert [e["claim_code_sha256"] for e in issued_events] == [
        hashlib.sha256(c.encode()).hexdigest() for c in (code, reissued)]
    assert all(e["issued_by"] == f"member:{owner}" for e in issued_events)
    [offered] = [json.loads(r["data"]) for r in rows if r["type"] == "PlaceOffered"]
    assert len(offered["claim_code_sha256"]) == 64


OWNER_ROUTES = [
    ("POST", "ownership", lambda eco, ids: {"to_member_id": ids["aiko"], "reason": "take it back"}),
    ("PUT", "cap", lambda eco, ids: {"member_cap": 40, "reason": "grow"}),
    ("PUT", "members/{sora}/role", lambda eco, ids: {"role": "facilitator", "reason": "x"}),
    ("PUT", "admission", lambda eco, ids: {"policy": "invitation", "reason": "close the door"}),
    ("POST", "sisters", lambda eco, ids: {"name": "West", "new_owner_member_id": ids["aiko"]}),
    ("GET", "ecosystem", None),
]
FACILITATOR_ROUTES = [
    ("POST", "members/{sora}/removal", lambda eco, ids: {"reason": "x"}),
    ("POST", "applications/{application}/decision", lambda eco, ids: {"decision": "approve", "reason": "x"}),
    ("POST", "offers/{offer}/claim-code", None),
    ("GET", "waitlist", None),
    ("GET", "offers", None),
    ("GET", "applications", None),
]


async def test_stale_tokens_get_403_from_the_aggregate(clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
                                                       ecosystem: Ecosystem) -> None:
    _, members = clients
    eco = ecosystem
    cid, yui = await _found(members, eco, cap=4)
    ids = {name: await _add(members, eco, cid, name.title()) for name in ("ken", "aiko", "sora")}
    ids["mika"] = await _add(members, eco, cid, "Mika", waitlist_if_full=True)
    as_yui = eco.headers(cid, yui, "owner")
    for facilitator in ("ken", "aiko"):
        promoted = await members.put(f"/communities/{cid}/members/{ids[facilitator]}/role", headers=as_yui,
                                     json={"role": "facilitator", "reason": "runs a cohort"})
        assert promoted.status_code == 200, promoted.text
    await members.put(f"/communities/{cid}/admission", headers=as_yui,
                      json={"policy": "application", "reason": "screen newcomers"})
    applied = await members.post(f"/communities/{cid}/applications", headers=eco.operator_headers(),
                                 json={"display_name": "Hana"})
    ids["application"] = applied.json()["application_id"]
    await members.post(f"/communities/{cid}/members/{ids['sora']}/leave", headers=eco.headers(cid, ids["sora"]))
    [offer] = (await members.get(f"/communities/{cid}/offers?status=open", headers=as_yui)).json()
    ids["offer"] = offer["offer_id"]
    ids["sora"] = await _add(members, eco, cid, "Sora", waitlist_if_full=True)  # back in the queue

    # Yui hands ownership to Ken; her token still says "owner". Ken demotes Aiko; hers still says "facilitator".
    handed = await members.post(f"/communities/{cid}/ownership", headers=as_yui,
                                json={"to_member_id": ids["ken"], "reason": "stepping back"})
    assert handed.status_code == 200, handed.text
    as_ken = eco.headers(cid, ids["ken"], "owner")
    demoted = await members.put(f"/communities/{cid}/members/{ids['aiko']}/role", headers=as_ken,
                                json={"role": "member", "reason": "taking a break"})
    assert demoted.status_code == 200, demoted.text
    as_former_owner = eco.headers(cid, yui, "owner")
    as_former_facilitator = eco.headers(cid, ids["aiko"], "facilitator")

    async def status_of(headers: dict[str, str], method: str, tail: str, body: Any) -> int:
        answer = await members.request(method, f"/communities/{cid}/{tail.format(**ids)}", headers=headers,
                                       json=body(eco, ids) if body else None)
        if answer.status_code == 403:
            assert answer.headers["content-type"].startswith("application/problem+json")
        return answer.status_code

    before = (await members.get(f"/communities/{cid}", headers=as_ken)).json()["version"]
    for method, tail, body in OWNER_ROUTES:
        assert await status_of(as_former_owner, method, tail, body) == 403, (method, tail)
    for method, tail, body in FACILITATOR_ROUTES + OWNER_ROUTES:
        assert await status_of(as_former_facilitator, method, tail, body) == 403, (method, tail)
    after = (await members.get(f"/communities/{cid}", headers=as_ken)).json()
    assert after["version"] == before and after["roles"] == {"owner": 1, "facilitator": 1, "member": 1}

    # The roles they hold now still work: Yui is a facilitator, Ken the owner.
    assert await status_of(as_former_owner, "GET", "waitlist", None) == 200
    assert await status_of(as_ken, "PUT", "cap", lambda eco, ids: {"member_cap": 6, "reason": "one more"}) == 200

    # A claim code is shown once, even to a retry of the same request: the retry is told so, never a wrong code.
    keyed = {**as_ken, "Idempotency-Key": "claim-link-for-mika"}
    first = await members.post(f"/communities/{cid}/offers/{ids['offer']}/claim-code", headers=keyed)
    assert first.status_code == 201, first.text
    retried = await members.post(f"/communities/{cid}/offers/{ids['offer']}/claim-code", headers=keyed)
    assert retried.status_code == 409 and retried.json()["type"].endswith("/claim-code-shown-once"), retried.text

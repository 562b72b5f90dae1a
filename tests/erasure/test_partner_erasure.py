"""Erasure reaches partner deployments (issue 23): a member of A whose consented card crossed to B — an offer on
B's shared job, an introduction to B's community — is erased at A while B's gateway is down; when B comes back it
receives the erasure notice (the outbox retries), deletes her key and scrubs its copies. Then every database,
JetStream stream and log of BOTH deployments is searched for her name and words: 0 hits; B's job keeps its offer
(from "erased member") and its history (docs/federation.md §8, docs/data-rights.md)."""

from __future__ import annotations

from typing import Any

import asyncpg

from kizuna.personal import ERASED_NAME
from tests.erasure import search
from tests.erasure.test_erasure import figures
from tests.federation.test_two_deployments import (  # noqa: F401 - the fixtures are used by name
    FAST_RETRIES,
    JOB,
    LOOPBACK_PARTNERS,
    Deployment,
    _explained,
    deployments,
    second_servers,
)
from tests.support import eventually

NAME = "Ottoline Marchbank-Veridian"
WORDS = {
    "profile": "Weaving indigo nets for the Shimanami oyster beds",
    "offer": "I cut linocut apple labels for the Hirosaki cider guild",
    "leaving": "Off to Kagoshima to learn Oshima tsumugi mud dyeing",
}
SECRETS = [NAME, *WORDS.values()]


async def _hits(deployment: Deployment) -> dict[str, Any]:
    eco = deployment.eco
    return {"databases": await search.database_hits(eco, SECRETS), "streams": await search.stream_hits(eco, SECRETS),
            "logs": search.log_hits(eco, SECRETS)}


async def _in_gateway_directory(deployment: Deployment, member_id: str) -> bool:
    conn = await asyncpg.connect(deployment.eco.database_url("gateway"))
    try:
        row = await conn.fetchrow("SELECT vector, shared_fields FROM directory WHERE member_id = $1", member_id)
    finally:
        await conn.close()
    return row is not None and row["vector"] == WORDS["profile"] and "vector" in row["shared_fields"]


async def test_an_erased_members_card_is_erased_at_the_partner_even_if_it_was_away(
        deployments: tuple[Deployment, Deployment]) -> None:  # noqa: F811
    a, b = deployments
    await a.found("Ringo makers")
    await b.found("Nagano weavers")
    her = await a.join(NAME)
    mio = await b.join("Mio")
    me = a.as_(her)
    await eventually(lambda: _joined(a, her), timeout=30)
    profile = await a.http.put(f"/v1/communities/{a.cid}/members/{her}/profile", headers=me, json={
        "display_name": NAME, "skills": ["linocut"], "vector": WORDS["profile"]})
    assert profile.status_code == 200, profile.text
    consent = await a.http.put(f"/v1/communities/{a.cid}/members/{her}/consent", headers=me,
                               json={"shared_fields": ["display_name", "skills", "vector"]})
    assert consent.status_code == 200, consent.text
    await eventually(lambda: _in_gateway_directory(a, her), timeout=60)

    proposal = await a.http.post(f"/v1/communities/{a.cid}/partnerships", headers=a.as_owner, json={
        "partner_origin": b.origin, "partner_community_id": b.cid, "note": "apples meet wool"})
    assert proposal.status_code == 201, proposal.text
    pid = proposal.json()["partnership_id"]
    await eventually(lambda: b.partnership("requested"))
    accepted = await b.http.post(f"/v1/communities/{b.cid}/partnerships/{pid}/acceptance", headers=b.as_owner)
    assert accepted.status_code == 200, accepted.text
    await eventually(lambda: a.partnership("active"))

    # B's member posts a job for partners; at A she offers on it, and A's owner introduces her to B.
    async def post_once_mio_is_known() -> str | None:
        response = await b.http.post(f"/v1/communities/{b.cid}/jobs", headers=b.as_(mio), json=JOB)
        assert response.status_code in (201, 403), response.text
        return str(response.json()["job_id"]) if response.status_code == 201 else None

    job_id = await eventually(post_once_mio_is_known, timeout=30)

    async def shared_at_a() -> bool:
        items = (await a.http.get(f"/v1/communities/{a.cid}/partner-jobs", headers=me)).json()["items"]
        return any(item["job_id"] == job_id for item in items)

    await eventually(shared_at_a, timeout=30)
    offer = await a.http.post(f"/v1/communities/{a.cid}/partnerships/{pid}/jobs/{job_id}/offers", headers=me,
                              json={"note": WORDS["offer"]})
    assert offer.status_code == 202, offer.text
    introduced = await a.http.post(f"/v1/communities/{a.cid}/referrals", headers=a.as_owner, json={
        "referred_id": her, "to_partnership_id": pid, "note": "She carves the best labels in Ringo"})
    assert introduced.status_code == 201, introduced.text

    async def offers_at_b() -> list[dict[str, Any]]:
        job = (await b.http.get(f"/v1/communities/{b.cid}/jobs/{job_id}", headers=b.as_(mio))).json()
        offers: list[dict[str, Any]] = job["partner_offers"]
        return offers

    async def introductions_at_b() -> list[dict[str, Any]]:
        answer = await b.http.get(f"/v1/communities/{b.cid}/partner-introductions", headers=b.as_owner)
        assert answer.status_code == 200, answer.text
        items: list[dict[str, Any]] = answer.json()
        return items

    await _explained(eventually(offers_at_b, timeout=30), a, b)
    await _explained(eventually(introductions_at_b, timeout=30), a, b)
    card = (await offers_at_b())[0]
    assert card["card"]["display_name"] == NAME and card["note"] == WORDS["offer"], card
    assert (await introductions_at_b())[0]["card"]["vector"] == WORDS["profile"]
    assert (await _hits(b))["databases"], "the search finds her card at B before the erasure"
    before = await figures(b.http, b.eco, b.cid)

    # B's gateway is away when A erases her: the notice waits in A's outbox, retried.
    b.eco.processes["gateway"].stop()
    left = await a.http.post(f"/v1/communities/{a.cid}/members/{her}/leave", headers=me,
                             json={"reason": WORDS["leaving"], "erase": True})
    assert left.status_code == 204, left.text

    async def notice_retrying() -> bool:
        deliveries = (await a.http.get("/v1/federation/deliveries?status=pending",
                                       headers=a.eco.operator_headers())).json()
        return any(item["kind"] == "member.erased" and item["attempts"] >= 1 for item in deliveries["items"])

    await _explained(eventually(notice_retrying, timeout=30), a, b)
    assert (await _hits(a))["databases"] == {}, "A kept nothing of hers, the undelivered messages included"

    b.eco.start("gateway", KIZUNA_FEDERATION_PRIVATE_KEY=b.federation_key, **FAST_RETRIES, **LOOPBACK_PARTNERS)

    async def delivered() -> bool:
        deliveries = (await a.http.get("/v1/federation/deliveries", headers=a.eco.operator_headers())).json()
        return any(item["kind"] == "member.erased" and item["status"] == "delivered" for item in deliveries["items"])

    await _explained(eventually(delivered, timeout=30), a, b)

    async def nothing_left() -> bool:
        return not (await search.database_hits(a.eco, SECRETS)) and not (await search.database_hits(b.eco, SECRETS))

    try:
        await eventually(nothing_left, timeout=30, interval=0.5)
    except AssertionError:
        raise AssertionError(f"still held: A {await _hits(a)}, B {await _hits(b)}") from None
    assert await _hits(a) == {"databases": {}, "streams": {}, "logs": {}}
    assert await _hits(b) == {"databases": {}, "streams": {}, "logs": {}}

    # B keeps its job, its offer and the introduction, from "erased member", with its figures unchanged.
    offers = await offers_at_b()
    assert len(offers) == 1 and offers[0]["offer_id"] == card["offer_id"], offers
    assert offers[0]["card"] == {"display_name": ERASED_NAME} and offers[0]["note"] == "", offers
    introduction = (await introductions_at_b())[0]
    assert introduction["card"] == {"display_name": ERASED_NAME}, introduction
    assert await figures(b.http, b.eco, b.cid) == before
    # A repeat of the notice changes nothing (idempotent): B recorded one erasure.
    conn = await asyncpg.connect(b.eco.database_url("gateway"))
    try:
        erased = await conn.fetchval("SELECT count(*) FROM events WHERE event_type = 'PartnerMemberErased'")
        leaked = await conn.fetchval("SELECT count(*) FROM events WHERE data::text LIKE $1", f"%{her}%")
    finally:
        await conn.close()
    assert erased == 1 and leaked == 0, "B never held her member id"


async def _joined(deployment: Deployment, member_id: str) -> bool:
    answer = await deployment.http.get(f"/v1/communities/{deployment.cid}/members/{member_id}",
                                       headers=deployment.as_(member_id))
    return answer.status_code == 200

"""Pre-commitment offerings over real processes: the members service feeds the referrals roster over
NATS, every commitment races on the offering's one stream in PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from icalendar import Calendar

from kizuna.rebuild import rebuild
from kizuna.settings import ServiceSettings
from services.referrals.app import SPEC
from tests.support import Ecosystem, eventually


def offering_terms(*, shares: int = 10, minimum: int = 2, deadline_in: timedelta = timedelta(days=5),
                   **changes: Any) -> dict[str, Any]:
    today = datetime.now(UTC).date()
    body: dict[str, Any] = {
        "title": "Summer vegetable share", "description": "A box of what the field gives", "season": "Summer",
        "shares": shares, "minimum_shares": minimum, "price": {"kind": "money", "amount": 12000, "currency": "JPY"},
        "commitment_deadline": (datetime.now(UTC) + deadline_in).isoformat(),
        "delivery_dates": [(today + timedelta(days=10)).isoformat(), (today + timedelta(days=17)).isoformat()],
        "help_shifts": [{"date": (today + timedelta(days=12)).isoformat(), "place": "Sato farm", "hands": 2,
                         "what": "harvest"}]}
    body.update(changes)
    return body


class Community:
    def __init__(self, eco: Ecosystem, members: httpx.AsyncClient, referrals: httpx.AsyncClient) -> None:
        self.eco, self.members, self.referrals = eco, members, referrals
        self.cid = ""
        self.ids: dict[str, str] = {}

    async def found(self, people: list[str]) -> None:
        body = (await self.members.post("/communities", headers=self.eco.operator_headers(), json={
            "name": "Hikari", "owner_display_name": "Yui"})).json()
        self.cid, self.ids["yui"] = body["community_id"], body["owner_member_id"]
        for name in people:
            joined = await self.members.post(f"/communities/{self.cid}/members", headers=self.eco.operator_headers(),
                                             json={"display_name": name.title()})
            assert joined.status_code == 201, joined.text
            self.ids[name] = joined.json()["member_id"]
        last = self.ids[people[-1]]

        async def roster_complete() -> bool:
            return (await self.referrals.get(f"/communities/{self.cid}/reputation/{last}",
                                             headers=self.h("yui"))).status_code == 200

        await eventually(roster_complete, timeout=30)

    def h(self, who: str) -> dict[str, str]:
        return self.eco.headers(self.cid, self.ids[who])

    async def post(self, who: str, path: str, body: Any = None) -> httpx.Response:
        return await self.referrals.post(f"/communities/{self.cid}{path}", headers=self.h(who),
                                         json=body if body is not None else {})

    async def get(self, who: str, path: str) -> httpx.Response:
        return await self.referrals.get(f"/communities/{self.cid}{path}", headers=self.h(who))

    async def publish(self, who: str, body: dict[str, Any]) -> str:
        published = await self.post(who, "/offerings", body)
        assert published.status_code == 201, published.text
        return str(published.json()["offering_id"])


@pytest.fixture
async def community(ecosystem: Ecosystem) -> AsyncIterator[Community]:
    ecosystem.start("members", "referrals")
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=ecosystem.url("members"), timeout=60) as members, \
            httpx.AsyncClient(base_url=ecosystem.url("referrals"), timeout=60, limits=limits) as referrals:
        yield Community(ecosystem, members, referrals)
    for proc in ecosystem.processes.values():
        assert "unhandled error" not in proc.log_path.read_text()


async def test_one_hundred_concurrent_commitments_for_thirty_shares(community: Community) -> None:
    people = [f"member{i:03d}" for i in range(100)]
    await community.found(people)
    oid = await community.publish("yui", offering_terms(shares=30, minimum=10))

    results = await asyncio.gather(*(community.post(p, f"/offerings/{oid}/commitments", {"shares": 1})
                                     for p in people))
    accepted = [r for r in results if r.status_code == 201]
    refused = [r for r in results if r.status_code != 201]
    assert len(accepted) == 30 and len(refused) == 70
    for r in refused:
        problem = r.json()
        assert r.status_code == 409 and problem["type"].endswith("/not-enough-shares"), r.text
        assert problem["shares_left"] == 0 and "only 0 of 30 shares" in problem["detail"]

    status = (await community.get("member000", f"/offerings/{oid}")).json()
    assert (status["committed"], status["available"], status["committed_members"]) == (30, 0, 30)
    assert status["minimum_reached"] and status["status"] == "open" and status["days_to_deadline"] >= 4
    view = (await community.get("yui", f"/offerings/{oid}/producer-view")).json()
    assert len(view["commitments"]) == 30 and sum(c["shares"] for c in view["commitments"]) == 30
    assert {c["status"] for c in view["commitments"]} == {"committed"}

    # A withdrawal frees a share for the next member, and only one.
    winner = view["commitments"][0]["member_id"]
    loser = next(p for p in people if community.ids[p] not in {c["member_id"] for c in view["commitments"]})
    name = next(p for p, mid in community.ids.items() if mid == winner)
    withdrawn = await community.post(name, f"/offerings/{oid}/commitments/withdrawal", {"reason": "moving"})
    assert withdrawn.status_code == 200 and withdrawn.json()["available"] == 1
    assert (await community.post(loser, f"/offerings/{oid}/commitments", {"shares": 2})).json()["shares_left"] == 1
    assert (await community.post(loser, f"/offerings/{oid}/commitments", {"shares": 1})).status_code == 201


async def test_a_lapsed_offering_releases_every_commitment(community: Community) -> None:
    await community.found(["ken", "mei", "sora"])
    oid = await community.publish("yui", offering_terms(minimum=5, deadline_in=timedelta(seconds=8)))
    for who, shares in (("ken", 1), ("mei", 2), ("sora", 1)):
        committed = await community.post(who, f"/offerings/{oid}/commitments", {"shares": shares})
        assert committed.status_code == 201, committed.text
    early = await community.post("yui", f"/offerings/{oid}/settlement")
    assert early.status_code == 409 and early.json()["type"].endswith("/deadline-not-reached")

    async def lapsed() -> dict[str, Any] | None:  # settled by the service's background job, unasked
        body = (await community.get("ken", f"/offerings/{oid}")).json()
        return body if body["status"] == "lapsed" else None

    status = await eventually(lapsed, timeout=60)
    assert status["settlement"]["outcome"] == "lapsed" and status["committed"] == 0
    assert "only 4 of the minimum 5 shares" in status["settlement"]["reason"]
    assert status["available"] == 10
    view = (await community.get("yui", f"/offerings/{oid}/producer-view")).json()
    assert {(c["member_id"], c["shares"], c["status"]) for c in view["commitments"]} == {
        (community.ids["ken"], 1, "released"), (community.ids["mei"], 2, "released"),
        (community.ids["sora"], 1, "released")}
    assert all("lapsed" in c["reason"] for c in view["commitments"])
    mine = (await community.get("mei", f"/offerings/commitments/{community.ids['mei']}")).json()
    assert [(i["commitment_status"], i["offering_status"]) for i in mine["items"]] == [("released", "lapsed")]

    late = await community.post("ken", f"/offerings/{oid}/commitments", {"shares": 1})
    assert late.status_code == 409 and late.json()["shares_left"] == 10
    again = await community.post("yui", f"/offerings/{oid}/settlement")
    assert again.status_code == 200 and again.json()["version"] == status["version"]  # nothing more recorded


async def test_a_confirmed_offering_through_progress_shifts_deliveries_and_feedback(community: Community) -> None:
    await community.found(["ken", "mei", "sora", "aiko"])
    terms = offering_terms(minimum=3, deadline_in=timedelta(seconds=8))
    oid = await community.publish("yui", terms)
    for who, shares in (("ken", 2), ("mei", 1)):
        assert (await community.post(who, f"/offerings/{oid}/commitments", {"shares": shares})).status_code == 201
    for who in ("ken", "sora"):
        assert (await community.post(who, f"/offerings/{oid}/shifts/1/signups")).status_code == 201
    full = await community.post("aiko", f"/offerings/{oid}/shifts/1/signups")
    assert full.status_code == 409 and full.json()["type"].endswith("/shift-full") and full.json()["hands"] == 2
    shared = await community.post("yui", f"/offerings/{oid}/progress", {"stage": "sowing", "note": "40 rows in"})
    assert shared.status_code == 201 and shared.json()["progress"][0]["note"] == "40 rows in"
    assert (await community.post("ken", f"/offerings/{oid}/progress", {"note": "me too"})).status_code == 403

    # Introducing a trusted producer: a referral whose subject is the offering.
    referral = await community.post("ken", "/referrals", {"referred_id": community.ids["yui"],
                                                          "to_member_id": community.ids["aiko"], "offering_id": oid,
                                                          "note": "the best tomatoes in Kamakura"})
    assert referral.status_code == 201, referral.text
    rid = referral.json()["id"]
    assert (await community.post("yui", f"/referrals/{rid}/acceptance")).status_code == 204
    assert (await community.post("aiko", f"/referrals/{rid}/outcome", {"worked": True})).status_code == 204
    wrong = await community.post("ken", "/referrals", {"referred_id": community.ids["mei"],
                                                       "to_member_id": community.ids["aiko"], "offering_id": oid})
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "referred_id"

    async def confirmed() -> dict[str, Any] | None:
        settled = await community.post("yui", f"/offerings/{oid}/settlement")
        return settled.json() if settled.status_code == 200 and settled.json()["status"] == "confirmed" else None

    status = await eventually(confirmed, timeout=60)
    assert status["settlement"]["outcome"] == "confirmed" and status["committed"] == 3

    first, second = terms["delivery_dates"]
    short = await community.post("yui", f"/offerings/{oid}/deliveries", {
        "member_id": community.ids["ken"], "delivery_date": first, "portion_per_share": 0.7,
        "note": "a dry June: 70% of a usual box, the price holds"})
    assert short.status_code == 201, short.text
    assert (await community.post("yui", f"/offerings/{oid}/deliveries", {
        "member_id": community.ids["mei"], "delivery_date": first})).status_code == 201
    assert (await community.post("yui", f"/offerings/{oid}/deliveries", {
        "member_id": community.ids["mei"], "delivery_date": first})).status_code == 409
    assert (await community.post("mei", f"/offerings/{oid}/deliveries", {
        "member_id": community.ids["mei"], "delivery_date": second})).status_code == 403
    feedback = await community.post("ken", f"/offerings/{oid}/feedback", {
        "good": "tomatoes that taste of summer", "improve": "tell us a day earlier", "would_commit_again": True})
    assert feedback.status_code == 201, feedback.text
    assert (await community.post("sora", f"/offerings/{oid}/feedback", {"would_commit_again": False})
            ).status_code == 403

    view = (await community.get("yui", f"/offerings/{oid}/producer-view")).json()
    assert [(c["display_name"], c["shares"], c["status"]) for c in view["commitments"]] == sorted(
        [("Ken", 2, "committed"), ("Mei", 1, "committed")], key=lambda c: community.ids[c[0].lower()])
    [shift] = view["help_coverage"]
    assert shift["covered"] and set(shift["signed_up"]) == {community.ids["ken"], community.ids["sora"]}
    assert {(d["member_id"], d["delivery_date"]) for d in view["deliveries_outstanding"]} == {
        (community.ids["ken"], second), (community.ids["mei"], second)}
    ken_box = next(d for d in view["deliveries"] if d["member_id"] == community.ids["ken"])
    assert ken_box["portion_per_share"] == 0.7 and ken_box["shares"] == 2 and ken_box["refund_owed"] is None
    assert [(f["member_id"], f["good"], f["would_commit_again"]) for f in view["feedback"]] == [
        (community.ids["ken"], "tomatoes that taste of summer", True)]
    assert view["would_commit_again"] == {"yes": 1, "of": 1, "rate": 1.0}
    assert view["introductions"] == {"made": 1, "worked": 1, "success_rate": 1.0}
    assert (await community.get("ken", f"/offerings/{oid}/producer-view")).status_code == 403

    reputation = (await community.get("mei", f"/reputation/{community.ids['yui']}")).json()
    assert reputation["lead_user_feedback"]["feedback_count"] == 1
    assert reputation["lead_user_feedback"]["would_commit_again_rate"] == 1.0

    ken = community.ids["ken"]
    mine = (await community.get("ken", f"/offerings/commitments/{ken}")).json()
    [item] = mine["items"]
    assert item["shares"] == 2 and item["commitment_status"] == "committed" and len(item["deliveries"]) == 1
    assert [s["shift_id"] for s in item["help_shifts"]] == ["1"]
    assert (await community.get("mei", f"/offerings/commitments/{ken}")).status_code == 403
    ics = await community.get("ken", f"/offerings/commitments/{ken}.ics")
    assert ics.status_code == 200 and ics.headers["content-type"].startswith("text/calendar")
    events = Calendar.from_ical(ics.content).walk("VEVENT")
    summaries = sorted(str(e["summary"]) for e in events)
    assert summaries == ["Delivery: Summer vegetable share"] * 2 + ["Help shift: Summer vegetable share"]
    assert {e.decoded("dtstart") for e in events} == {date.fromisoformat(d) for d in
                                                      [first, second, terms["help_shifts"][0]["date"]]}
    sora = (await community.get("sora", f"/offerings/commitments/{community.ids['sora']}")).json()
    assert sora["items"][0]["commitment_status"] is None and sora["items"][0]["help_shifts"]

    # Replaying the events into fresh read models gives the same rows.
    url = community.eco.database_url("referrals")

    async def read_models() -> list[list[asyncpg.Record]]:
        conn = await asyncpg.connect(url)
        try:
            return [await conn.fetch(f"SELECT * FROM {table} ORDER BY 1, 2") for table in (
                "offerings_view", "offering_commitments", "offering_feedback")] + [
                await conn.fetch("SELECT referral_id, offering_id FROM referrals ORDER BY 1")]
        finally:
            await conn.close()

    live = await read_models()
    community.eco.processes["referrals"].stop()  # a rebuild refuses while the service runs
    # With the deployment's key vault, as the service itself reads (without it, personal fields read erased).
    await rebuild(SPEC, ServiceSettings(service_name="referrals", database_url=url,
                                        keys_database_url=community.eco.database_url("keys")), include_bus=False)
    assert await read_models() == live and live[2] and live[3][0]["offering_id"] == oid


async def test_terms_consent_and_refusals(community: Community, ecosystem: Ecosystem) -> None:
    await community.found(["ken", "mei", "sora"])
    for body, field in ((offering_terms(shares=0), "shares"), (offering_terms(shares=-2), "shares"),
                        (offering_terms(deadline_in=timedelta(days=11)), "commitment_deadline"),
                        (offering_terms(price={"kind": "money", "amount": 12000}), "price.currency"),
                        (offering_terms(minimum=20), "minimum_shares")):
        bad = await community.post("yui", "/offerings", body)
        assert bad.status_code == 422 and [e["field"] for e in bad.json()["errors"]] == [field], bad.text
    listed = (await community.get("ken", "/offerings")).json()
    assert listed["items"] == []  # nothing was written

    oid = await community.publish("yui", offering_terms())
    zero = await community.post("ken", f"/offerings/{oid}/commitments", {"shares": 0})
    assert zero.status_code == 422 and zero.json()["errors"][0]["field"] == "shares"
    assert (await community.referrals.post(f"/communities/{community.cid}/offerings/{oid}/commitments",
                                           headers=ecosystem.operator_headers(), json={"shares": 1})
            ).status_code == 403
    stranger = ecosystem.headers(community.cid, "not-a-member")
    assert (await community.referrals.post(f"/communities/{community.cid}/offerings/{oid}/commitments",
                                           headers=stranger, json={"shares": 1})).status_code == 403
    foreign = ecosystem.headers("another-community", "someone", "owner")
    assert (await community.referrals.get(f"/communities/{community.cid}/offerings/{oid}", headers=foreign)
            ).status_code == 404

    # Before anyone commits the producer may change the terms; afterwards only with consent.
    changed = await community.referrals.put(f"/communities/{community.cid}/offerings/{oid}/terms",
                                            headers=community.h("yui"), json={"terms": offering_terms(shares=12)})
    assert changed.status_code == 200 and changed.json()["shares"] == 12
    for who in ("ken", "mei"):
        assert (await community.post(who, f"/offerings/{oid}/commitments", {"shares": 2})).status_code == 201
    fixed = await community.referrals.put(f"/communities/{community.cid}/offerings/{oid}/terms",
                                          headers=community.h("yui"), json={"terms": offering_terms(shares=14)})
    assert fixed.status_code == 409 and fixed.json()["type"].endswith("/consent-required")

    dearer = offering_terms(shares=12, price={"kind": "money", "amount": 14000, "currency": "JPY"})
    proposed = await community.post("yui", f"/offerings/{oid}/terms-changes", {"terms": dearer, "reason": "seed"})
    pending = proposed.json()["pending_terms_change"]
    assert proposed.status_code == 200 and sorted(pending["awaiting"]) == sorted([community.ids["ken"],
                                                                                  community.ids["mei"]])
    pid = pending["proposal_id"]
    assert (await community.post("ken", f"/offerings/{oid}/terms-changes/{pid}/answer", {"consent": True})
            ).status_code == 200
    missing = await community.post("yui", f"/offerings/{oid}/terms-changes/{pid}/application", {})
    assert missing.status_code == 409 and missing.json()["not_consented"] == [community.ids["mei"]]
    applied = await community.post("yui", f"/offerings/{oid}/terms-changes/{pid}/application",
                                   {"release_non_consenting": True})
    assert applied.status_code == 200, applied.text
    assert applied.json()["terms"]["price"]["amount"] == 14000 and applied.json()["committed"] == 2
    view = (await community.get("yui", f"/offerings/{oid}/producer-view")).json()
    released = next(c for c in view["commitments"] if c["member_id"] == community.ids["mei"])
    assert released["status"] == "released" and "consent" in released["reason"]

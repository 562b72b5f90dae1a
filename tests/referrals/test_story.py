"""A full community-sourcing story over real processes: the members service feeds the roster over NATS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.support import Ecosystem, eventually

JOB = {"title": "Illustrations for a picture book", "description": "Six watercolour spreads for a picture book",
       "skills": ["Illustration"], "compensation": {"kind": "money", "amount": 30000, "currency": "JPY"},
       "deadline": "2031-03-01"}


class Story:
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
            self.ids[name] = joined.json()["member_id"]
        await eventually(self._roster_complete)

    async def _roster_complete(self) -> bool:
        last = self.ids[list(self.ids)[-1]]
        return (await self.referrals.get(f"/communities/{self.cid}/reputation/{last}",
                                         headers=self.h("yui"))).status_code == 200

    def h(self, who: str) -> dict[str, str]:
        return self.eco.headers(self.cid, self.ids[who])

    async def post(self, who: str, path: str, body: Any = None) -> httpx.Response:
        return await self.referrals.post(f"/communities/{self.cid}{path}", headers=self.h(who),
                                         json=body if body is not None else {})


@pytest.fixture
async def story(ecosystem: Ecosystem) -> AsyncIterator[Story]:
    ecosystem.start("members", "referrals")
    async with httpx.AsyncClient(base_url=ecosystem.url("members"), timeout=30) as members, \
            httpx.AsyncClient(base_url=ecosystem.url("referrals"), timeout=30) as referrals:
        yield Story(ecosystem, members, referrals)
    for proc in ecosystem.processes.values():
        assert "unhandled error" not in proc.log_path.read_text()


async def test_post_offer_refer_assign_complete_feedback_reputation(story: Story) -> None:
    await story.found(["ken", "aiko", "mei", "sora"])
    await story.members.put(f"/communities/{story.cid}/members/{story.ids['ken']}/profile", headers=story.h("ken"),
                            json={"display_name": "Ken", "vector": "publish my own picture book",
                                  "skills": ["illustration"]})
    posted = await story.post("yui", "/jobs", JOB)
    assert posted.status_code == 201, posted.text
    job = posted.json()["job_id"]
    assert posted.json()["skills"] == ["illustration"] and posted.json()["state"] == "posted"

    async def ken_ranked_first() -> bool:
        ranked = (await story.referrals.get(f"/communities/{story.cid}/jobs/{job}/matches",
                                            headers=story.h("yui"))).json()
        return bool(ranked) and ranked[0]["member_id"] == story.ids["ken"] and ranked[0]["reasons"]

    await eventually(ken_ranked_first)
    assert (await story.post("ken", f"/jobs/{job}/offers", {"why_next_step": "my first paid book"})).status_code == 200
    referral = await story.post("ken", "/referrals", {"referred_id": story.ids["aiko"], "job_id": job,
                                                      "note": "Aiko colours beautifully"})
    assert referral.status_code == 201
    rid = referral.json()["id"]
    assert (await story.post("aiko", f"/referrals/{rid}/acceptance")).status_code == 204
    assert (await story.post("mei", f"/jobs/{job}/offers", {"why_next_step": "learning"})).status_code == 200

    too_early = await story.post("yui", f"/jobs/{job}/completion")
    assert too_early.status_code == 409 and too_early.json()["current_state"] == "posted"
    assigned = await story.post("yui", f"/jobs/{job}/assignment", {"member_ids": [story.ids["ken"],
                                                                               story.ids["aiko"]]})
    assert assigned.status_code == 200 and assigned.json()["state"] == "assigned"
    assert (await story.post("ken", f"/jobs/{job}/start")).json()["state"] == "in-progress"
    assert (await story.post("yui", f"/jobs/{job}/completion")).json()["state"] == "completed"

    ken = story.ids["ken"]
    for giver, scores in (("yui", 5), ("aiko", 4), ("mei", 5)):
        given = await story.post(giver, f"/jobs/{job}/feedback", {
            "subject_id": ken, "quality": scores, "reliability": scores, "beyond": scores, "collaboration": 4,
            "comment": "thank you"})
        assert given.status_code == 201, given.text
    assert (await story.post("ken", f"/jobs/{job}/feedback", {
        "subject_id": story.ids["yui"], "quality": 5, "reliability": 5, "beyond": 4, "collaboration": 5})
            ).status_code == 201
    again = await story.post("yui", f"/jobs/{job}/feedback", {
        "subject_id": ken, "quality": 1, "reliability": 1, "beyond": 1, "collaboration": 1})
    assert again.status_code == 409
    self_feedback = await story.post("ken", f"/jobs/{job}/feedback", {
        "subject_id": ken, "quality": 5, "reliability": 5, "beyond": 5, "collaboration": 5})
    assert self_feedback.status_code == 422
    outsider = await story.post("sora", f"/jobs/{job}/feedback", {
        "subject_id": ken, "quality": 1, "reliability": 1, "beyond": 1, "collaboration": 1})
    assert outsider.status_code == 403

    rep = (await story.referrals.get(f"/communities/{story.cid}/reputation/{ken}", headers=story.h("sora"))).json()
    assert rep["feedback_count"] == 3 and rep["distinct_givers"] == 3
    assert rep["averages"]["quality"] == pytest.approx(4.67, abs=0.01) and rep["averages"]["collaboration"] == 4

    assert (await story.post("ken", f"/referrals/{rid}/outcome", {"worked": True})).status_code == 204
    graph = (await story.referrals.get(f"/communities/{story.cid}/trust-graph", headers=story.h("yui"))).json()
    assert graph["referrers"] == [{"member_id": ken, "referrals": 1, "worked": 1, "success_rate": 1.0}]

    # A member who left can no longer act.
    await story.members.post(f"/communities/{story.cid}/members/{story.ids['sora']}/leave", headers=story.h("sora"))

    async def sora_refused() -> bool:
        return (await story.post("sora", "/jobs", JOB)).status_code == 403

    await eventually(sora_refused)


async def test_conflicting_assignments_boundaries_and_bad_input(story: Story, ecosystem: Ecosystem) -> None:
    await story.found(["ken", "aiko"])
    job = (await story.post("yui", "/jobs", JOB)).json()["job_id"]
    await story.post("ken", f"/jobs/{job}/offers")
    await story.post("aiko", f"/jobs/{job}/offers")
    results = await asyncio.gather(
        story.post("yui", f"/jobs/{job}/assignment", {"member_ids": [story.ids["ken"]]}),
        story.post("yui", f"/jobs/{job}/assignment", {"member_ids": [story.ids["aiko"]]}))
    assert sorted(r.status_code for r in results) == [200, 409]
    final = (await story.referrals.get(f"/communities/{story.cid}/jobs/{job}", headers=story.h("yui"))).json()
    assert len(final["workers"]) == 1

    for body, field in (({**JOB, "compensation": {"kind": "money", "amount": -5, "currency": "JPY"}}, "compensation"),
                        ({**JOB, "deadline": "2001-01-01"}, "deadline"), ({**JOB, "title": ""}, "title")):
        bad = await story.post("yui", "/jobs", body)
        assert bad.status_code == 422 and any(field in e["field"] for e in bad.json()["errors"]), bad.text
    assert (await story.post("ken", f"/jobs/{job}/assignment", {"member_ids": [story.ids["ken"]]})).status_code == 403

    foreign = ecosystem.headers("another-community", "someone", "owner")
    for method, path in (("GET", f"/jobs/{job}"), ("POST", f"/jobs/{job}/offers"), ("GET", "/jobs"),
                         ("GET", "/trust-graph"), ("POST", "/jobs")):
        crossing = await story.referrals.request(method, f"/communities/{story.cid}{path}", headers=foreign,
                                                 json=JOB if path == "/jobs" else {})
        assert crossing.status_code == 404, (path, crossing.text)
    assert (await story.referrals.post(f"/communities/{story.cid}/jobs", headers=ecosystem.operator_headers(),
                                       json=JOB)).status_code == 403

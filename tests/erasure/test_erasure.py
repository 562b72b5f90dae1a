"""Erasure reaches every copy (issue 23): a member with a distinctive name and words acts in a community, leaves
and asks to be erased from it; then every database of the deployment, every message of every JetStream stream
and every service's log are searched for them — 0 hits — while the community's figures are unchanged, the
member reads as "erased member", and a rebuild of the read models still works (docs/data-rights.md)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import asyncpg
import httpx

from kizuna.personal import ERASED_NAME
from tests.erasure.search import database_hits, log_hits, stream_hits
from tests.support import ROOT, SERVICES, Ecosystem, eventually
from tests.webapp.phones import everyone_knows

NAME = "Zephyrine Quillfeather"
WORDS = {
    "profile": "Restoring antique harmoniums for the Yuigahama chapel",
    "job": "Tune the seventeen reed organs of the Okuyama collection",
    "offer": "My grandmother taught me bellows repair in Onomichi",
    "goal": "Play the restored Quillfeather harmonium at the autumn fair",
    "motivation": "Because silence in old chapels weighs on me",
    "leaving": "Moving to Sapporo to apprentice with Maestro Ikarugawa",
    "introduction": "Ren should meet Yui about the Kamakura bellows workshop",
}
SECRETS = [NAME, *WORDS.values()]



async def figures(http: httpx.AsyncClient, eco: Ecosystem, cid: str) -> dict[str, Any]:
    op = eco.operator_headers()
    health = (await http.get(f"/v1/communities/{cid}/health", headers=op)).json()
    members = (await http.get(f"/v1/communities/{cid}/members", headers=op, params={"limit": 200})).json()
    jobs = (await http.get(f"/v1/communities/{cid}/jobs", headers=op)).json()
    goals = (await http.get(f"/v1/communities/{cid}/goals", headers=op)).json()
    community = (await http.get(f"/v1/communities/{cid}", headers=op)).json()
    return {"health": {k: v for k, v in health.items() if isinstance(v, int | float) and k != "generated_at"},
            "size": community.get("size"), "members": len(members.get("items", members)),
            "jobs": sorted(job["job_id"] for job in (jobs.get("items", jobs))),
            "goals": len(goals.get("items", goals) if isinstance(goals, dict) else goals)}


async def test_an_erased_member_is_found_nowhere_and_the_community_keeps_its_figures(ecosystem: Ecosystem) -> None:
    eco = ecosystem
    eco.start(*SERVICES)
    async with httpx.AsyncClient(base_url=eco.url("gateway"), timeout=30) as http:
        op = eco.operator_headers()
        founded = await http.post("/v1/communities", headers=op, json={"name": "Hikari", "owner_display_name": "Yui"})
        assert founded.status_code == 201, founded.text
        cid, owner = founded.json()["community_id"], founded.json()["owner_member_id"]
        joined = await http.post(f"/v1/communities/{cid}/members", headers=op, json={"display_name": NAME})
        assert joined.status_code == 201, joined.text
        mid = joined.json()["member_id"]
        other = (await http.post(f"/v1/communities/{cid}/members", headers=op, json={"display_name": "Ren"})).json()
        me = eco.headers(cid, mid)

        async def known_to_gateway() -> bool:
            answer = await http.get(f"/v1/communities/{cid}/members/{mid}", headers=me)
            return answer.status_code == 200
        await eventually(known_to_gateway)
        # Every service decides on its own roster (a 403 not-a-member until it has her): wait for all of them.
        await eventually(lambda: everyone_knows(eco, cid, 3), timeout=30)
        profile = await http.put(f"/v1/communities/{cid}/members/{mid}/profile", headers=me,
                                 json={"display_name": NAME, "vector": WORDS["profile"], "skills": ["bellows"]})
        assert profile.status_code == 200, profile.text
        job = await http.post(f"/v1/communities/{cid}/jobs", headers=me, json={
            "title": "Organ tuning", "description": WORDS["job"], "deadline": "2031-03-01"})
        assert job.status_code == 201, job.text
        job_id = job.json()["job_id"]
        others_job = await http.post(f"/v1/communities/{cid}/jobs", headers=eco.headers(cid, other["member_id"]),
                                     json={"title": "Flyers", "description": "Print flyers", "deadline": "2031-03-01"})
        assert others_job.status_code == 201, others_job.text
        offered = await http.post(f"/v1/communities/{cid}/jobs/{others_job.json()['job_id']}/offers", headers=me,
                                  json={"why_next_step": WORDS["offer"]})
        assert offered.status_code == 200, offered.text
        # Ren hears of her: her offer on his job names her, her introduction of him quotes her note.
        introduced = await http.post(f"/v1/communities/{cid}/referrals", headers=me, json={
            "referred_id": other["member_id"], "to_member_id": owner, "note": WORDS["introduction"]})
        assert introduced.status_code == 201, introduced.text

        async def ren_told() -> bool:
            conn = await asyncpg.connect(eco.database_url("notifications"))
            try:
                kinds = {r["kind"] for r in await conn.fetch(
                    "SELECT kind FROM notifications_view WHERE member_id = $1", other["member_id"])}
            finally:
                await conn.close()
            return kinds >= {"job-offer", "introduced"}
        await eventually(ren_told, timeout=30)
        told = (await http.get(f"/v1/communities/{cid}/notifications", headers=eco.headers(cid, other["member_id"]),
                               params={"language": "en"})).json()
        assert any(NAME in " ".join(n["message"]["lines"]) + n["message"]["subject"] for n in told["items"]), told
        goal = await http.post(f"/v1/communities/{cid}/goals", headers=me, json={
            "facilitator_id": owner, "statement": WORDS["goal"], "motivation": WORDS["motivation"],
            "kpis": [{"name": "pieces", "baseline": 0, "target": 3, "direction": "increase"}],
            "due_date": "2031-01-01"})
        assert goal.status_code == 201, goal.text

        left = await http.post(f"/v1/communities/{cid}/members/{mid}/leave", headers=me,
                               json={"reason": WORDS["leaving"]})
        assert left.status_code == 204, left.text
        await asyncio.sleep(1.5)  # every read model has taken the leaving in
        before = await figures(http, eco, cid)
        assert before["jobs"] and before["size"] == 2, before
        assert await database_hits(eco, SECRETS), "the search finds the member before erasure"

        # Gone from the community, the member asks the operator to erase them (leaving with "erase" does both).
        erased = await http.post(f"/v1/communities/{cid}/members/{mid}/erasure", headers=op)
        assert erased.status_code == 204, erased.text

        async def nothing_left_in_databases() -> bool:
            return not await database_hits(eco, SECRETS)
        try:
            await eventually(nothing_left_in_databases, timeout=20, interval=0.5)
        except AssertionError:
            raise AssertionError(f"still held: {await database_hits(eco, SECRETS)}") from None
        assert await stream_hits(eco, SECRETS) == {}
        assert log_hits(eco, SECRETS) == {}

        shown = (await http.get(f"/v1/communities/{cid}/members/{mid}", headers=op)).json()
        assert shown["display_name"] == ERASED_NAME and shown.get("vector", "") == ""
        # Ren's notifications about her are still there, naming an erased member and quoting nothing of hers.
        told = (await http.get(f"/v1/communities/{cid}/notifications", headers=eco.headers(cid, other["member_id"]),
                               params={"language": "en"})).json()
        words = " ".join(" ".join(n["message"]["lines"]) + n["message"]["subject"] for n in told["items"])
        assert {n["kind"] for n in told["items"]} >= {"job-offer", "introduced"} and ERASED_NAME in words, told
        job_now = (await http.get(f"/v1/communities/{cid}/jobs/{job_id}", headers=op)).json()
        assert job_now["title"] == "Organ tuning" and job_now["description"] == ""
        assert await figures(http, eco, cid) == before

        # A rebuild of the read models (own events and the bus) still works, and brings nothing back.
        for service in ("referrals", "sessions", "members"):
            eco.processes[service].stop()
            rebuilt = subprocess.run([sys.executable, "-m", "kizuna.rebuild", service], env=eco.env(service),
                                     cwd=ROOT, capture_output=True, text=True, timeout=120)
            assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
            eco.start(service)
        assert not await database_hits(eco, SECRETS)
        assert await figures(http, eco, cid) == before
        shown = (await http.get(f"/v1/communities/{cid}/members/{mid}", headers=op)).json()
        assert shown["display_name"] == ERASED_NAME
        assert log_hits(eco, SECRETS) == {}
    assert os.environ.get("KIZUNA_KEYS_DATABASE_URL") is None  # each process was given the vault by Ecosystem

"""A person's erasure (issue 23; docs/data-rights.md, "A person's erasure"): a person with a distinctive name and
address signs in twice, joins a community, chooses how they hear about things, is mailed a notification, asks
for an export, leaves, and erases themself. Every database of the deployment, every message of every JetStream
stream and every service's log are then searched for their address, name and words — 0 hits; neither of their
sessions works any more; a rebuild of identity brings nothing back; signing up again with the same address
later makes a new person."""

from __future__ import annotations

import subprocess
import sys

import asyncpg
import httpx

from tests.erasure.search import database_hits, log_hits, stream_hits
from tests.identity.conftest import THROUGH_A_PROXY
from tests.identity.journey import browser, csrf, sign_in_by_email
from tests.identity.smtp import SmtpInbox
from tests.support import ROOT, SERVICES, Ecosystem, eventually

JSON = {"accept": "application/json"}
NAME = "Ottoline Wrexhamshire"
JOB = "Rebind the Wrexhamshire family's tide almanacs"


async def _rows(eco: Ecosystem, service: str, sql: str, *args: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(eco.database_url(service))
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def test_an_erased_person_is_found_nowhere_and_signs_up_again_as_someone_new(ecosystem: Ecosystem,
                                                                                  inbox: SmtpInbox) -> None:
    eco = ecosystem
    eco.start(*SERVICES, **inbox.env(), **THROUGH_A_PROXY)
    email = f"ottoline.wrexhamshire-{eco.prefix}@app.test"
    secrets = [NAME, email, JOB]
    async with httpx.AsyncClient(base_url=eco.url("gateway"), timeout=30, headers=eco.operator_headers()) as op:
        founded = await op.post("/v1/communities", json={"name": "Hikari", "owner_display_name": "Yui"})
        assert founded.status_code == 201, founded.text
        cid = founded.json()["community_id"]
        ren = (await op.post(f"/v1/communities/{cid}/members", json={"display_name": "Ren"})).json()["member_id"]

        async with browser(eco) as person, browser(eco) as elsewhere:
            await sign_in_by_email(person, inbox, email)
            await sign_in_by_email(elsewhere, inbox, email)  # a second session: erasure ends it too

            async def joined() -> bool:
                answer = await person.post(f"/v1/join/{cid}", json={"display_name": NAME},
                                           headers={"x-csrf-token": await csrf(person), **JSON})
                return answer.status_code == 201 or "already" in answer.text
            await eventually(joined)

            async def member_id() -> str | None:
                me = (await person.get("/v1/me", headers=JSON)).json()
                return next((m["member_id"] for m in me["memberships"] if m["status"] == "active"), None)
            mid = await eventually(member_id)
            me = (await person.get("/v1/me", headers=JSON)).json()
            person_id = me["person_id"]
            as_her = eco.headers(cid, mid)

            async def posted() -> httpx.Response | None:
                answer = await op.post(f"/v1/communities/{cid}/jobs", headers=as_her,
                                       json={"title": "Almanacs", "description": JOB, "deadline": "2031-03-01"})
                return answer if answer.status_code == 201 else None
            job_id = (await eventually(posted, timeout=20)).json()["job_id"]

            async def chosen() -> bool:  # once notifications knows who she is
                answer = await op.put(f"/v1/communities/{cid}/notification-preferences", headers=as_her,
                                      json={"language": "en", "time_zone": "Europe/London",
                                            "kinds": {"feedback-received": "digest"}})
                return answer.status_code == 200
            await eventually(chosen, timeout=20)
            offered = await op.post(f"/v1/communities/{cid}/jobs/{job_id}/offers", headers=eco.headers(cid, ren),
                                    json={"why_next_step": "I can help"})
            assert offered.status_code == 200, offered.text

            async def mailed() -> bool:  # the offer reached her by email, with an unsubscribe link for her
                return bool(await _rows(eco, "notifications", "SELECT 1 FROM unsubscribe_links WHERE person_id = $1",
                                        person_id))
            await eventually(mailed, timeout=30)
            export = await person.post("/v1/me/exports", json={"language": "en"},
                                       headers={"x-csrf-token": await csrf(person), **JSON})
            assert export.status_code == 202, export.text

            async def exported() -> bool:
                return (await person.get(export.headers["location"], headers=JSON)).json()["status"] == "ready"
            await eventually(exported, timeout=60)
            assert await database_hits(eco, secrets), "the search finds the person before erasure"

            # Still a member: refused, naming the community; and only with the session's CSRF token.
            assert (await person.post("/v1/me/erasure", headers=JSON)).status_code == 403
            refused = await person.post("/v1/me/erasure", headers={"x-csrf-token": await csrf(person), **JSON})
            assert refused.status_code == 409, refused.text
            assert refused.json()["type"].endswith("leave-communities-first")
            assert [m["community_id"] for m in refused.json()["memberships"]] == [cid]
            unknown = await person.post("/v1/me/erasure", json={"everything": True},
                                        headers={"x-csrf-token": await csrf(person), **JSON})
            assert unknown.status_code == 422 and "everything" in unknown.text

            left = await op.post(f"/v1/communities/{cid}/members/{mid}/leave", headers=as_her, json={})
            assert left.status_code == 204, left.text

            async def gone_from_community() -> bool:
                me = (await person.get("/v1/me", headers=JSON)).json()
                return [m["status"] for m in me["memberships"]] == ["left"]
            await eventually(gone_from_community)

            erased = await person.post("/v1/me/erasure", headers={"x-csrf-token": await csrf(person), **JSON})
            assert erased.status_code == 204, erased.text
            assert "kizuna-session=" in erased.headers.get("set-cookie", "")
            for browser_of_hers in (person, elsewhere):  # signed out everywhere
                assert (await browser_of_hers.get("/v1/me", headers=JSON)).status_code == 401

        async def nothing_left() -> bool:
            return not await database_hits(eco, secrets)
        try:
            await eventually(nothing_left, timeout=20, interval=0.5)
        except AssertionError:
            raise AssertionError(f"still held: {await database_hits(eco, secrets)}") from None
        assert await stream_hits(eco, secrets) == {}
        assert log_hits(eco, secrets) == {}
        for table in ("unsubscribe_links", "digest_queue"):
            assert not await _rows(eco, "notifications", f"SELECT 1 FROM {table} WHERE person_id = $1",
                                   person_id)
        assert not await _rows(eco, "gateway", "SELECT 1 FROM exports WHERE person_id = $1", person_id)
        # The community keeps its history: the job is there, its words gone; she reads as an erased member.
        job = (await op.get(f"/v1/communities/{cid}/jobs/{job_id}")).json()
        assert job["title"] == "Almanacs" and job["description"] == ""

        # Who may: the operator, again (a repeat changes nothing); a member token is 403; nobody known is 404.
        assert (await op.post(f"/v1/people/{person_id}/erasure")).status_code == 204
        assert (await op.post(f"/v1/people/{person_id}/erasure", headers=eco.headers(cid, ren))).status_code == 403
        assert (await op.post("/v1/people/nobody-at-all/erasure")).status_code == 404
        odd = await op.post(f"/v1/people/{person_id}/erasure", json={"reason": "x"})
        assert odd.status_code == 422 and "reason" in odd.text

        # A rebuild of identity's read models replays her events (addresses empty now) and brings nothing back.
        eco.processes["identity"].stop()
        rebuilt = subprocess.run([sys.executable, "-m", "kizuna.rebuild", "identity"], env=eco.env("identity"),
                                 cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
        eco.start("identity", **inbox.env(), **THROUGH_A_PROXY)
        assert not await database_hits(eco, secrets)

        # Later, the same address signs up again: a new person, with nothing of the old one.
        inbox.read.update(key for key, _ in inbox.messages_to(email))  # the notification mailed earlier
        async with browser(eco) as again:
            await sign_in_by_email(again, inbox, email)
            me = (await again.get("/v1/me", headers=JSON)).json()
        assert me["person_id"] != person_id and me["emails"] == [email] and me["memberships"] == []

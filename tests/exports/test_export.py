"""A person's export (docs/data-rights.md, "Export"), against real services: Hana posts a job, gives and
receives feedback, registers for a session, sets a goal and commits to an offering; her export holds each of
them and the events that name her, in JSON and as a document in Japanese; Ken's email and the feedback he gave
Yui are not in it; Ken cannot fetch it; its progress is visible while it runs; the operator can ask for one on
her behalf. And the member app's "My data" page on a phone."""

from __future__ import annotations

import html
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

from tests.identity.journey import csrf
from tests.identity.smtp import SmtpInbox
from tests.support import Ecosystem, eventually
from tests.webapp.phones import JSON, checked, hikari_makers, member_id_of, phones

KEN_TO_YUI = "Yui's private note from Ken 7c1f"
KEN_TO_HANA = "Hana explained everything twice, gladly 3b2e"
HANA_TO_KEN = "Ken delivered early 9d4a"


async def _ok(answer: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    return dict(answer.json()) if answer.content else {}


async def _job_done_with_feedback(eco: Ecosystem, http: httpx.AsyncClient, cid: str, requester: str, worker: str,
                                  title: str, to_worker: str, to_requester: str | None) -> str:
    as_requester, as_worker = eco.headers(cid, requester), eco.headers(cid, worker)
    job = await _ok(await http.post(f"/v1/communities/{cid}/jobs", headers=as_requester,
                                    json={"title": title, "deadline": "2031-03-01"}), 201)
    base = f"/v1/communities/{cid}/jobs/{job['job_id']}"
    await _ok(await http.post(f"{base}/offers", headers=as_worker, json={"why_next_step": "I like it"}))
    await _ok(await http.post(f"{base}/assignment", headers=as_requester, json={"member_ids": [worker]}))
    await _ok(await http.post(f"{base}/start", headers=as_requester, json={}))
    await _ok(await http.post(f"{base}/completion", headers=as_requester, json={}))
    scores = {"quality": 5, "reliability": 5, "beyond": 4, "collaboration": 5}
    await _ok(await http.post(f"{base}/feedback", headers=as_requester,
                              json={"subject_id": worker, **scores, "comment": to_worker}), 201)
    if to_requester is not None:
        await _ok(await http.post(f"{base}/feedback", headers=as_worker,
                                  json={"subject_id": requester, **scores, "comment": to_requester}), 201)
    return str(job["job_id"])


async def _hanas_life(eco: Ecosystem, cid: str, hana_id: str, ken_id: str) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=eco.url("gateway"), timeout=30, headers=eco.operator_headers()) as http:
        members = (await http.get(f"/v1/communities/{cid}/members")).json()
        yui_id = next(m["member_id"] for m in members["items"] if m["display_name"] == "Yui")
        job_id = await _job_done_with_feedback(eco, http, cid, hana_id, ken_id, "Hana's shelf", HANA_TO_KEN,
                                               KEN_TO_HANA)
        await _job_done_with_feedback(eco, http, cid, ken_id, yui_id, "Ken's fence", KEN_TO_YUI, None)
        session = await _ok(await http.post(f"/v1/communities/{cid}/sessions", json={
            "kind": "group-coaching", "title": "Cohort Hikari", "starts_at": "2031-05-01T19:00:00",
            "ends_at": "2031-05-01T21:00:00", "time_zone": "Asia/Tokyo", "place": "Kominka", "capacity": 5}), 201)
        await _ok(await http.post(f"/v1/communities/{cid}/sessions/{session['session_id']}/registrations",
                                  headers=eco.headers(cid, hana_id), json={}))
        goal = await _ok(await http.post(f"/v1/communities/{cid}/goals", headers=eco.headers(cid, hana_id), json={
            "facilitator_id": yui_id, "statement": "Read thirty-two pages a week",
            "motivation": "Books are where I rest", "due_date": "2031-06-01",
            "kpis": [{"name": "pages", "unit": "pages", "baseline": 0, "target": 32, "direction": "increase"}]}), 201)
        today = datetime.now(UTC).date()
        offering = await _ok(await http.post(f"/v1/communities/{cid}/offerings", headers=eco.headers(cid, yui_id),
                                             json=_offering(today)), 201)
        await _ok(await http.post(f"/v1/communities/{cid}/offerings/{offering['offering_id']}/commitments",
                                  headers=eco.headers(cid, hana_id), json={"shares": 2}), 201)
    return {"job_id": job_id, "session_id": session["session_id"], "goal_id": goal["goal_id"],
            "offering_id": offering["offering_id"], "yui_id": yui_id}


def _offering(today: date) -> dict[str, Any]:
    return {"title": "Autumn rice share", "season": "Autumn", "shares": 10, "minimum_shares": 2,
            "price": {"kind": "money", "amount": 12000, "currency": "JPY"},
            "commitment_deadline": (datetime.now(UTC) + timedelta(days=5)).isoformat(),
            "delivery_dates": [(today + timedelta(days=10)).isoformat()]}


async def _requested(person: httpx.AsyncClient, language: str) -> tuple[str, dict[str, Any]]:
    answer = await person.post("/v1/me/exports", json={"language": language},
                               headers={"x-csrf-token": await csrf(person), **JSON})
    assert answer.status_code == 202, answer.text
    return answer.headers["location"], answer.json()


async def _ready(person: httpx.AsyncClient, location: str) -> tuple[dict[str, Any], list[tuple[int, int]]]:
    """Follows the export until it is ready; every (done, total) seen on the way."""
    seen: list[tuple[int, int]] = []

    async def ready() -> dict[str, Any] | None:
        view = (await person.get(location, headers=JSON)).json()
        seen.append((view["steps_done"], view["steps_total"]))
        return view if view["status"] == "ready" else None

    return await eventually(ready, timeout=60, interval=0.1), seen


def _everywhere(document: dict[str, Any], key: str) -> list[Any]:
    """Every part of the document's communities, by key (records of every service, or events)."""
    found: list[Any] = []
    for community in document["communities"]:
        for part in community["services"].values():
            found.append(part.get(key, {}))
    return found


async def test_a_member_gets_everything_held_about_her_and_nothing_of_anyone_elses(
        export_stack: Ecosystem, inbox: SmtpInbox) -> None:
    async with hikari_makers(export_stack, inbox) as (cid, hana, ken):
        hana_id, ken_id = await member_id_of(hana, cid), await member_id_of(ken, cid)
        life = await _hanas_life(export_stack, cid, hana_id, ken_id)
        async with httpx.AsyncClient(base_url=export_stack.url("gateway"), timeout=30) as http:
            chosen = await http.put(f"/v1/communities/{cid}/notification-preferences",
                                    headers=export_stack.headers(cid, hana_id),
                                    json={"time_zone": "Europe/Lisbon", "kinds": {"feedback-received": "digest"},
                                          "quiet_hours": {"start": "22:00", "end": "06:30"}})
            assert chosen.status_code == 200, chosen.text

        location, started = await _requested(hana, "en")
        assert started["status"] == "running" and started["steps_done"] < started["steps_total"]
        # identity, notifications' part about her as a person, then members, referrals, sessions, notifications
        # and the gateway in her one community
        assert started["steps_total"] == 7
        assert [(s["service"], s["community_id"]) for s in started["steps"][:2]] == [("identity", None),
                                                                                   ("notifications", None)]
        assert {(s["service"], s["community_id"]) for s in started["steps"][2:]} == {
            (service, cid) for service in ("members", "referrals", "sessions", "notifications", "gateway")}
        view, seen = await _ready(hana, location)
        assert any(0 < done < total for done, total in seen), seen  # progress seen while it ran
        assert view["steps_done"] == view["steps_total"] == 7
        assert view["links"]["json"].endswith("/export.json")

        # Ken cannot see it, nor download it: the same 404 as for no export at all.
        for path in (location, view["links"]["json"], view["links"]["html"]):
            assert (await ken.get(path, headers=JSON)).status_code == 404

        answer = await hana.get(view["links"]["json"])
        assert answer.status_code == 200 and "attachment" in answer.headers["content-disposition"]
        document, text = answer.json(), answer.text
        hana_email, ken_email = f"hana-{cid[:8]}@app.test", f"ken-{cid[:8]}@app.test"
        assert document["identity"]["emails"] == [hana_email]
        [community] = document["communities"]
        assert community["member_id"] == hana_id and community["community_name"] == "Hikari Makers"
        parts = community["services"]
        referrals = parts["referrals"]["records"]
        assert [job["title"] for job in referrals["jobs"]] == ["Hana's shelf"]
        assert [f["comment"] for f in referrals["feedback_given"]] == [HANA_TO_KEN]
        [received] = referrals["feedback_received"]
        assert received["comment"] == KEN_TO_HANA and "giver_id" not in received
        assert [(c["offering_id"], c["shares"]) for c in referrals["commitments"]] == [(life["offering_id"], 2)]
        sessions = parts["sessions"]["records"]
        assert [s["session_id"] for s in sessions["sessions"]] == [life["session_id"]]
        assert [g["goal_id"] for g in sessions["goals"]] == [life["goal_id"]]
        assert parts["members"]["records"]["membership"][0]["display_name"] == "Hana"
        assert parts["notifications"]["records"]["email_address"] == [
            {"email": hana_email, "verified_at": parts["notifications"]["records"]["email_address"][0]["verified_at"]}]

        # Notifications' part about her as a person: her preferences as they apply, where mail goes, the
        # unsubscribe links made for her (kind and date, never the token), digests; the events that name her.
        person = document["person"]["notifications"]
        [wishes] = person["records"]["preferences"]
        assert wishes["time_zone"] == "Europe/Lisbon" and wishes["kinds"]["feedback-received"] == "digest"
        assert wishes["quiet_hours"] == {"start": "22:00:00", "end": "06:30:00"} and wishes["chosen"] is True
        assert person["records"]["email_address"][0]["email"] == hana_email
        assert all(set(link) == {"kind", "created_at"} for link in person["records"]["unsubscribe_links"])
        assert person["records"]["digests_sent"] == []
        assert "NotificationPreferencesChanged" in {event["type"] for event in person["events"]}
        assert "token_sha256" not in text

        events = [event for found in _everywhere(document, "events") for event in found]
        kinds = {event["type"] for event in events}
        assert {"MemberJoined", "JobRequestPosted", "JobAssigned", "FeedbackGiven", "MemberRegistered", "GoalSet",
                "SharesCommitted"} <= kinds, kinds
        feedback_events = [event["data"] for event in events if event["type"] == "FeedbackGiven"]
        about_her = [data for data in feedback_events if data["subject_id"] == hana_id]
        assert about_her and all("giver_id" not in data for data in about_her)  # who gave it is not said
        assert {"PersonRegistered", "EmailAddressVerified", "PersonSignedIn"} <= {
            event["type"] for event in document["identity"]["events"]}

        # Nothing of anyone else's that is private: Ken's address, what Ken told Yui, anyone's secret hashes.
        assert ken_email not in text and KEN_TO_YUI not in text
        assert "Ken's fence" not in text  # a job she had no part in
        assert "sha256" not in text and "public_key\": \"-----" not in text

        # The readable document, in Japanese: a second export, asked for in Japanese.
        async with httpx.AsyncClient(base_url=export_stack.url("gateway"), timeout=30,
                                     headers=export_stack.operator_headers()) as operator:
            person_id = document["person_id"]
            again = await operator.post(f"/v1/people/{person_id}/exports", json={"language": "ja"})
            assert again.status_code == 202, again.text
            ja_view, _ = await _ready(operator, again.headers["location"])
            page = await operator.get(ja_view["links"]["html"])
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "'unsafe-inline'" not in page.headers["content-security-policy"]
        assert '<html lang="ja">' in page.text and "絆があなたについて保存しているデータ" in page.text
        assert "受け取ったフィードバック" in page.text and KEN_TO_HANA in page.text
        assert "お知らせの受け取り方" in page.text and "Europe/Lisbon" in page.text
        readable = html.unescape(page.text)
        assert "Hana's shelf" in readable and KEN_TO_YUI not in readable and ken_email not in readable
        # An export the operator asked for is the person's too: she sees it among hers.
        mine = (await hana.get("/v1/me/exports", headers=JSON)).json()["exports"]
        assert {e["export_id"] for e in mine} == {view["export_id"], ja_view["export_id"]}


async def test_who_may_ask_and_what_is_refused(export_stack: Ecosystem, inbox: SmtpInbox) -> None:
    async with hikari_makers(export_stack, inbox) as (cid, hana, ken):
        hana_id, ken_id = await member_id_of(hana, cid), await member_id_of(ken, cid)
        refused = await hana.post("/v1/me/exports", json={"language": "ja", "format": "pdf"},
                                  headers={"x-csrf-token": await csrf(hana), **JSON})
        assert refused.status_code == 422 and "format" in refused.text
        no_csrf = await hana.post("/v1/me/exports", json={}, headers=JSON)
        assert no_csrf.status_code == 403
        async with httpx.AsyncClient(base_url=export_stack.url("gateway"), timeout=30) as anyone:
            assert (await anyone.get("/v1/me/exports", headers=JSON)).status_code == 401
            as_member = await anyone.post("/v1/people/someone/exports", json={},
                                          headers=export_stack.headers(cid, hana_id))
            assert as_member.status_code == 403
            unknown = await anyone.post("/v1/people/nobody-at-all/exports", json={},
                                        headers=export_stack.operator_headers())
            assert unknown.status_code == 404
        # Each service's part: for the member themself and the operator; another member gets a 404.
        path = f"/internal/communities/{cid}/members/{hana_id}/personal-data"
        async with httpx.AsyncClient(base_url=export_stack.url("referrals"), timeout=30) as referrals:
            assert (await referrals.get(path, headers=export_stack.headers(cid, ken_id))).status_code == 404
            own = await referrals.get(path, headers=export_stack.headers(cid, hana_id))
            assert own.status_code == 200 and own.json()["member_id"] == hana_id
            assert (await referrals.get(path, headers=export_stack.operator_headers())).status_code == 200
        # Not reachable through the public edge.
        async with httpx.AsyncClient(base_url=export_stack.url("gateway"), timeout=30) as edge:
            assert (await edge.get(path, headers=export_stack.headers(cid, hana_id))).status_code == 404


async def test_my_data_page_on_a_phone_asks_shows_progress_and_links_the_downloads(
        export_stack: Ecosystem, inbox: SmtpInbox) -> None:
    async with hikari_makers(export_stack, inbox) as (_cid, hana, _ken), phones(export_stack, (hana, "ja")) as (page,):
        await page.goto(f"{export_stack.url('gateway')}/app/my-data")
        await checked(page)
        await page.get_by_role("button", name="データのエクスポートを依頼する").click()
        await page.wait_for_selector("progress")
        await checked(page)
        link = page.get_by_role("link", name="読みやすい文書（HTML）")
        await link.wait_for(timeout=60_000)  # the page refreshes itself while the export runs
        await checked(page)
        json_link = page.get_by_role("link", name="JSON ファイル")
        href = await json_link.get_attribute("href")
        assert href is not None and href.endswith("/export.json")
        downloaded = json.loads((await hana.get(href)).text)
        assert downloaded["language"] == "ja"

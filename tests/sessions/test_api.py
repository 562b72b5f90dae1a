"""The sessions service as a real process over real PostgreSQL and NATS.

The roster is fed the way production feeds it: member events published onto the bus as the
members service would publish them (no members process is started).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import icalendar
import pytest

from kizuna import bus
from kizuna.envelope import subject_for, to_cloudevent
from kizuna.eventstore import RecordedEvent
from tests.support import Ecosystem, eventually


class Community:
    """One community's worth of members on the bus, and clients holding their tokens."""

    def __init__(self, eco: Ecosystem, js: Any, http: httpx.AsyncClient) -> None:
        self.eco, self.js, self.http = eco, js, http
        self.id = str(uuid.uuid4())
        self.owner = "owner-" + self.id[:8]
        self.version = 0

    async def publish(self, event_type: str, data: dict[str, Any]) -> None:
        self.version += 1
        event = RecordedEvent(
            global_position=self.version, transaction_id=1, stream_id=f"community-{self.id}",
            stream_version=self.version, event_id=uuid.uuid4(), type=event_type,
            data={"community_id": self.id, **data}, metadata={"community_id": self.id, "actor": "test"},
            recorded_at=datetime.now(UTC),
        )
        await self.js.publish(subject_for(self.eco.prefix, "members", event),
                              json.dumps(to_cloudevent("members", event), default=str).encode(),
                              headers={"Nats-Msg-Id": str(event.event_id)})

    async def found(self, members: dict[str, str]) -> None:
        await self.publish("CommunityFounded", {"name": "Hikari", "purpose": "p", "values": [], "member_cap": 150,
                                                "owner_member_id": self.owner, "owner_display_name": "Owner"})
        for member_id, role in members.items():
            await self.publish("MemberJoined", {"member_id": member_id, "display_name": member_id.title(),
                                                "role": role, "joined_via": "invitation"})
        expected = {self.owner, *members}
        await eventually(lambda: self._roster_has(expected))

    async def _roster_has(self, expected: set[str]) -> bool:
        response = await self.get("/ties/members", self.owner, "owner")
        return response.status_code == 200 and {m["member_id"] for m in response.json()["items"]} == expected

    def headers(self, member_id: str, role: str = "member") -> dict[str, str]:
        return self.eco.headers(self.id, member_id, role)

    async def get(self, path: str, member_id: str, role: str = "member", **kw: Any) -> httpx.Response:
        return await self.http.get(f"/communities/{self.id}{path}", headers=self.headers(member_id, role), **kw)

    async def post(self, path: str, member_id: str, role: str = "member", body: Any = None) -> httpx.Response:
        return await self.http.post(f"/communities/{self.id}{path}", headers=self.headers(member_id, role),
                                    json=body if body is not None else {})


@pytest.fixture
async def service(ecosystem: Ecosystem) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    ecosystem.start("sessions")
    nc = await bus.connect(ecosystem.nats.url, "sessions-test")
    js = nc.jetstream()
    await bus.ensure_streams(js, ecosystem.prefix.upper(), ecosystem.prefix)
    async with httpx.AsyncClient(base_url=ecosystem.url("sessions"), timeout=30) as http:
        yield js, http
    await nc.drain()
    log = ecosystem.processes["sessions"].log_path.read_text()
    assert "unhandled error" not in log and "dead-lettered" not in log, log[-3000:]


def session_body(**change: Any) -> dict[str, Any]:
    start = (datetime.now(UTC) + timedelta(days=10)).replace(microsecond=0, tzinfo=None)
    return {"kind": "group-coaching", "title": "Cohort A - week 1", "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(hours=2)).isoformat(), "time_zone": "Asia/Tokyo",
            "place": "Community house", "capacity": 5, "cohort": "A", **change}


async def test_cohort_session_never_over_capacity_and_waitlist_promotes_in_order(
        ecosystem: Ecosystem, service: tuple[Any, httpx.AsyncClient]) -> None:
    js, http = service
    community = Community(ecosystem, js, http)
    members = [f"m{n:02d}" for n in range(20)]
    await community.found({"fac": "facilitator", **dict.fromkeys(members, "member")})

    created = await community.post("/sessions", "fac", "facilitator", session_body())
    assert created.status_code == 201, created.text
    assert created.headers["etag"] == '"1"'
    sid = created.json()["session_id"]

    responses = await asyncio.gather(*[community.post(f"/sessions/{sid}/registrations", m) for m in members])
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    outcomes = {r.json()["member_id"]: r.json() for r in responses}
    assert sum(o["status"] == "registered" for o in outcomes.values()) == 5
    waitlisted = sorted((o["waitlist_position"], m) for m, o in outcomes.items() if o["status"] == "waitlisted")
    assert [p for p, _ in waitlisted] == list(range(1, 16))

    session = (await community.get(f"/sessions/{sid}", "m00")).json()
    assert len(session["registered"]) == 5
    assert session["waitlist"] == [m for _, m in waitlisted]
    assert session["version"] == 21

    # Cancellations (concurrently) promote the head of the waitlist, in order, one for one.
    leaving = session["registered"][:3]
    cancelled = await asyncio.gather(*[community.post(f"/sessions/{sid}/registrations/{m}/cancellation", m)
                                       for m in leaving])
    assert all(r.status_code == 200 for r in cancelled), [r.text for r in cancelled]
    after = (await community.get(f"/sessions/{sid}", "m00")).json()
    assert len(after["registered"]) == 5
    assert after["registered"][2:] == session["waitlist"][:3]
    assert after["waitlist"] == session["waitlist"][3:]
    assert after["late_cancellations"] == []

    # A member cannot cancel someone else's place; a facilitator can.
    other = after["registered"][0]
    assert (await community.post(f"/sessions/{sid}/registrations/{other}/cancellation", "m19")).status_code in (403,)
    assert (await community.post(f"/sessions/{sid}/registrations/{other}/cancellation", "fac",
                                 "facilitator")).status_code == 200

    # The member's calendar lists the session; the read model follows the aggregate.
    page = await eventually(lambda: _page_with(community, f"/sessions?member_id={after['waitlist'][0]}", sid))
    assert page["items"][0]["capacity"] == 5


async def _page_with(community: Community, path: str, sid: str) -> dict[str, Any] | None:
    response = await community.get(path, "fac", "facilitator")
    body: dict[str, Any] = response.json()
    return body if [s["session_id"] for s in body["items"]] == [sid] else None


async def test_attendance_builds_ties_and_at_risk_members(
        ecosystem: Ecosystem, service: tuple[Any, httpx.AsyncClient]) -> None:
    js, http = service
    community = Community(ecosystem, js, http)
    await community.found({"fac": "facilitator", "ana": "member", "ben": "member", "cai": "member",
                           "dan": "member"})
    past = (datetime.now(UTC) - timedelta(days=3)).replace(microsecond=0, tzinfo=None)
    sids = []
    for title in ("Share meeting", "Dinner"):
        r = await community.post("/sessions", "fac", "facilitator",
                                 session_body(kind="meal", title=title, starts_at=past.isoformat(),
                                              ends_at=(past + timedelta(hours=2)).isoformat(), cohort=None))
        assert r.status_code == 201, r.text
        sids.append(r.json()["session_id"])
    assert (await community.post(f"/sessions/{sids[0]}/attendance", "ana", "member",
                                 {"attendees": ["ana", "ben"]})).status_code == 403
    r = await community.post(f"/sessions/{sids[0]}/attendance", "fac", "facilitator",
                             {"attendees": ["ana", "ben", "cai"]})
    assert r.status_code == 200, r.text
    r = await community.post(f"/sessions/{sids[1]}/attendance", "fac", "facilitator", {"attendees": ["ana", "ben"]})
    assert r.status_code == 200, r.text
    bad = await community.post(f"/sessions/{sids[1]}/attendance", "fac", "facilitator", {"attendees": ["ana", "zed"]})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "attendees.1"

    ties = (await community.get("/ties", "fac", "facilitator")).json()["items"]
    assert {(t["member_a"], t["member_b"]): t["shared_experiences"] for t in ties} == {
        ("ana", "ben"): 2, ("ana", "cai"): 1, ("ben", "cai"): 1}
    at_risk = (await community.get("/ties/at-risk?max_ties=1", community.owner, "owner")).json()["items"]
    assert {m["member_id"] for m in at_risk} == {"dan", "fac", community.owner}
    assert (await community.get("/ties/at-risk", "ana")).status_code == 403

    # Someone who leaves is no longer counted, and can no longer act.
    await community.publish("MemberLeft", {"member_id": "dan", "reason": "moved"})

    async def dan_gone() -> bool:
        items = (await community.get("/ties/at-risk?max_ties=1", "fac", "facilitator")).json()["items"]
        return "dan" not in {m["member_id"] for m in items}

    await eventually(dan_gone)
    refused = await community.post(f"/sessions/{sids[0]}/registrations", "dan")
    assert refused.status_code == 403


async def test_calendar_exports_parse_as_icalendar(ecosystem: Ecosystem,
                                                   service: tuple[Any, httpx.AsyncClient]) -> None:
    js, http = service
    community = Community(ecosystem, js, http)
    await community.found({"fac": "facilitator", "ana": "member"})
    one = (await community.post("/sessions", "fac", "facilitator",
                                session_body(title="Retreat", kind="retreat"))).json()
    two = (await community.post("/sessions", "fac", "facilitator",
                                session_body(title="Online check", kind="online", place=None,
                                             link="https://meet.example/x", time_zone="Europe/Berlin"))).json()
    await community.post(f"/sessions/{two['session_id']}/registrations", "ana")
    moved = (datetime.fromisoformat(two["starts_at"]) + timedelta(days=1)).replace(tzinfo=None)
    r = await community.post(f"/sessions/{two['session_id']}/reschedule", "fac", "facilitator",
                             {"starts_at": moved.isoformat(), "ends_at": (moved + timedelta(hours=1)).isoformat(),
                              "time_zone": "Europe/Berlin", "reason": "clash"})
    assert r.status_code == 200, r.text
    await community.post(f"/sessions/{one['session_id']}/cancellation", "fac", "facilitator", {"reason": "rain"})

    whole = await community.get("/calendar/community.ics", "ana")
    assert whole.status_code == 200 and whole.headers["content-type"].startswith("text/calendar")
    events = {str(e["uid"]): e for e in icalendar.Calendar.from_ical(whole.content).walk("VEVENT")}
    assert set(events) == {f"{one['session_id']}@kizuna", f"{two['session_id']}@kizuna"}
    assert str(events[f"{one['session_id']}@kizuna"]["status"]) == "CANCELLED"
    online = events[f"{two['session_id']}@kizuna"]
    assert str(online["summary"]) == "Online check"
    assert online.decoded("dtstart").replace(tzinfo=None) == moved
    assert str(online.decoded("dtstart").tzinfo) == "Europe/Berlin"

    first = (await community.get("/sessions?limit=1", "ana")).json()
    assert len(first["items"]) == 1 and first["next_cursor"]
    second = (await community.get(f"/sessions?limit=1&cursor={first['next_cursor']}", "ana")).json()
    assert second["next_cursor"] is None
    assert {first["items"][0]["session_id"], second["items"][0]["session_id"]} == {one["session_id"],
                                                                                    two["session_id"]}
    bad_cursor = await community.get("/sessions?cursor=nope", "ana")
    assert bad_cursor.status_code == 422 and bad_cursor.json()["errors"][0]["field"] == "cursor"

    mine = await community.get("/calendar/members/ana.ics", "ana")
    assert [str(e["uid"]) for e in icalendar.Calendar.from_ical(mine.content).walk("VEVENT")] == [
        f"{two['session_id']}@kizuna"]
    assert (await community.get("/calendar/members/fac.ics", "ana")).status_code == 403


async def test_a_calendar_link_answers_only_its_newest_secret_and_only_while_its_member_stays(
        ecosystem: Ecosystem, service: tuple[Any, httpx.AsyncClient]) -> None:
    js, http = service
    community = Community(ecosystem, js, http)
    await community.found({"fac": "facilitator", "ana": "member"})
    made = (await community.post("/sessions", "fac", "facilitator", session_body(title="Evening circle"))).json()
    await community.post(f"/sessions/{made['session_id']}/registrations", "ana")
    link = await community.post("/calendar/link", "ana")
    assert link.status_code == 201 and link.json()["path"] == f"/v1/calendar/{link.json()['key']}.ics", link.text
    feed = await http.get(f"/calendar-feeds/{link.json()['key']}.ics")  # no token, as a calendar app asks
    assert [str(e["summary"]) for e in icalendar.Calendar.from_ical(feed.content).walk("VEVENT")] == ["Evening circle"]
    newer = (await community.post("/calendar/link", "ana")).json()
    assert (await http.get(f"/calendar-feeds/{link.json()['key']}.ics")).status_code == 404
    assert (await http.get(f"/calendar-feeds/{newer['key']}.ics")).status_code == 200
    # Only its hash is stored, and nowhere the secret itself.
    stored = await _stored_events(ecosystem)
    assert newer["key"] not in stored and link.json()["key"] not in stored
    # The operator has no member to make a link for; a member who leaves takes the feed with them.
    operator = await http.post(f"/communities/{community.id}/calendar/link", headers=ecosystem.operator_headers())
    assert operator.status_code == 422 and operator.json()["errors"][0]["field"] == "member_id"
    await community.publish("MemberLeft", {"member_id": "ana", "reason": ""})

    async def gone() -> bool:
        return (await http.get(f"/calendar-feeds/{newer['key']}.ics")).status_code == 404

    await eventually(gone)


async def _stored_events(eco: Ecosystem) -> str:
    conn = await asyncpg.connect(eco.database_url("sessions"))
    try:
        rows = await conn.fetch("SELECT data::text AS data FROM events")
    finally:
        await conn.close()
    return "\n".join(r["data"] for r in rows)


async def test_goal_from_set_through_revisions_and_check_ins_to_achieved(
        ecosystem: Ecosystem, service: tuple[Any, httpx.AsyncClient]) -> None:
    js, http = service
    community = Community(ecosystem, js, http)
    await community.found({"fac": "facilitator", "ana": "member", "ben": "member"})
    due = (datetime.now(UTC).date() + timedelta(days=60)).isoformat()
    body = {"facilitator_id": "fac", "statement": "Run 10 km", "motivation": "to keep up with my kids",
            "kpis": [{"name": "weekly km", "unit": "km", "baseline": 5, "target": 25, "direction": "increase"},
                     {"name": "resting pulse", "unit": "bpm", "baseline": 80, "target": 60,
                      "direction": "decrease"}], "due_date": due}
    created = await community.post("/goals", "ana", "member", body)
    assert created.status_code == 201, created.text
    gid = created.json()["goal_id"]

    for values in ({"weekly km": 10, "resting pulse": 75}, {"weekly km": 15}):
        r = await community.post(f"/goals/{gid}/check-ins", "ana", "member", {"values": values, "note": "ok"})
        assert r.status_code == 200, r.text
    r = await community.post(f"/goals/{gid}/revisions", "fac", "facilitator",
                             {"kpis": [{"name": "weekly km", "unit": "km", "baseline": 5, "target": 20,
                                        "direction": "increase"}], "reason": "sore knee"})
    assert r.status_code == 200, r.text
    r = await community.post(f"/goals/{gid}/check-ins", "fac", "facilitator", {"values": {"weekly km": 17.5}})
    goal = r.json()
    assert goal["progress"]["kpis"][0]["percent"] == 83.3
    assert goal["progress"]["kpis"][0]["trend"] == "improving"
    assert goal["check_ins"][-1]["checked_in_by"] == "member:fac"
    assert goal["revisions"][0]["previous"]["kpis"][0]["target"] == 25
    assert r.headers["etag"] == '"5"'

    assert (await community.post(f"/goals/{gid}/check-ins", "ben", "member",
                                 {"values": {"weekly km": 1}})).status_code == 403
    assert (await community.get(f"/goals/{gid}", "ben")).status_code == 403
    unknown = await community.post(f"/goals/{gid}/check-ins", "ana", "member", {"values": {"resting pulse": 70}})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "values.resting pulse"

    summary = (await community.get("/goals/members/ana", "ana")).json()
    assert [g["goal_id"] for g in summary["active_goals"]] == [gid] and summary["last_check_in_at"]
    attention = (await community.get("/goals/attention?stale_days=1", "fac", "facilitator")).json()
    assert attention["stale_members"] == [] and attention["goals_at_risk"] == []

    r = await community.post(f"/goals/{gid}/achievement", "ana", "member", {"note": "ran it"})
    assert r.status_code == 200 and r.json()["status"] == "achieved"
    again = await community.post(f"/goals/{gid}/check-ins", "ana", "member", {"values": {"weekly km": 20}})
    assert again.status_code == 409
    listed = (await community.get("/goals?status=achieved", "fac", "facilitator")).json()
    assert [g["goal_id"] for g in listed["items"]] == [gid]
    assert (await community.get("/goals?member_id=ana", "ben")).status_code == 403


async def test_boundaries_roles_and_invalid_input(ecosystem: Ecosystem,
                                                  service: tuple[Any, httpx.AsyncClient]) -> None:
    js, http = service
    community = Community(ecosystem, js, http)
    other = Community(ecosystem, js, http)
    await community.found({"fac": "facilitator", "ana": "member"})
    await other.found({"eve": "owner"})
    sid = (await community.post("/sessions", "fac", "facilitator", session_body())).json()["session_id"]

    # Another community's token sees nothing, even with the right ids.
    outsider = other.headers("eve", "owner")
    for path in (f"/sessions/{sid}", "/sessions", "/ties", "/calendar/community.ics", "/goals"):
        r = await http.get(f"/communities/{community.id}{path}", headers=outsider)
        assert r.status_code == 404, (path, r.text)
    r = await http.post(f"/communities/{community.id}/sessions/{sid}/registrations", headers=outsider, json={})
    assert r.status_code == 404
    # A session id under the wrong community is missing, not somebody else's.
    assert (await other.get(f"/sessions/{sid}", "eve", "owner")).status_code == 404

    assert (await community.post("/sessions", "ana", "member", session_body())).status_code == 403
    assert (await community.post("/goals", "ana", "member", {
        "member_id": "fac", "facilitator_id": "fac", "statement": "s", "motivation": "m",
        "kpis": [{"name": "k", "baseline": 0, "target": 1, "direction": "increase"}],
        "due_date": "2099-01-01"})).status_code == 403

    cases = [
        (session_body(time_zone="Nowhere/Land"), "time_zone"),
        (session_body(ends_at=session_body()["starts_at"]), "ends_at"),
        (session_body(capacity=0), "capacity"),
        (session_body(kind="party"), "kind"),
    ]
    for body, field in cases:
        r = await community.post("/sessions", "fac", "facilitator", body)
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["field"] == field
    goal: dict[str, Any] = {"facilitator_id": "fac", "statement": "s", "motivation": "m", "due_date": "2099-01-01",
            "kpis": [{"name": "k", "baseline": 3, "target": 3, "direction": "increase"}]}
    goal_cases = [
        (goal, "kpis.0.target"),
        ({**goal, "kpis": [{**goal["kpis"][0], "target": 5}], "due_date": "2001-01-01"}, "due_date"),
        ({**goal, "kpis": [{**goal["kpis"][0], "target": 5}], "facilitator_id": "ana"}, "facilitator_id"),
        ({**goal, "kpis": []}, "kpis"),
    ]
    for body, field in goal_cases:
        r = await community.post("/goals", "ana", "member", body)
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["field"] == field

    # If-Match with a stale version is a 409, not a lost update.
    stale = await http.post(f"/communities/{community.id}/sessions/{sid}/registrations",
                            headers={**community.headers("ana"), "If-Match": '"0"'}, json={})
    assert stale.status_code == 409

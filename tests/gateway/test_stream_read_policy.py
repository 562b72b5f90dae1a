"""Security issue 17, item 1: the event stream showed a plain member what REST forbids them (waitlisted
people, place offers, every token issued, every piece of feedback). One read policy now decides both.

- the policy itself, table-driven over every catalogued event type and every kind of viewer;
- a real stack (all four services, tokens issued by the gateway): each token's stream carries exactly the
  events, and the fields, the policy gives it; the audiences mean what the REST checks they mirror mean
  (asked of the real routes with the same tokens); a plain member no longer receives the four leaks.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from kizuna.catalog import events_by_service
from kizuna.read_policy import HIDDEN, RULES, Audience, Viewer, rule_for, visible_data, visible_event
from tests.reliability.harness import found
from tests.support import SERVICES, Ecosystem, eventually, issue

CATALOGUED = sorted({event.__name__ for events in events_by_service().values() for event in events})
OPERATOR = Viewer(is_operator=True)
VIEWERS = {
    "member": Viewer(member_id="mei", role="member"),
    "facilitator": Viewer(member_id="fumi", role="facilitator"),
    "owner": Viewer(member_id="yui", role="owner"),
    "dashboard-of-member": Viewer(member_id="mei", role="member", scope="dashboard"),
    "dashboard-of-facilitator": Viewer(member_id="fumi", role="facilitator", scope="dashboard"),
    "visitor": Viewer(member_id="someone", role="member", scope="visitor"),
}
# What each viewer may read over REST, per audience (the REST check each audience mirrors, see read_policy.py).
REST_READS = {
    "member": {"member", "facilitator", "owner", "dashboard-of-member", "dashboard-of-facilitator"},
    "reader": {"facilitator", "owner", "dashboard-of-member", "dashboard-of-facilitator"},
    "facilitator": {"facilitator", "owner", "dashboard-of-facilitator"},
    "operator": set(),
}


# ---- the policy, table-driven ----

def test_every_catalogued_event_type_has_a_rule_and_nothing_else_does() -> None:
    missing = [name for name in CATALOGUED if name not in RULES]
    assert not missing, f"event types with no read rule (hidden from every community token until given one): {missing}"
    assert sorted(RULES) == CATALOGUED, f"rules for types the catalog does not know: {set(RULES) - set(CATALOGUED)}"
    for name, rule in RULES.items():
        assert rule.rest, f"{name}: say which REST read the rule comes from"
        fields = set(next(e for es in events_by_service().values() for e in es if e.__name__ == name).model_fields)
        unknown = (set(rule.subjects) | set(rule.fields)) - fields
        assert not unknown, f"{name} names fields it does not have: {unknown}"


@pytest.mark.parametrize("event_type", CATALOGUED)
def test_each_viewer_sees_an_event_exactly_when_rest_shows_them_its_facts(event_type: str) -> None:
    rule = rule_for(event_type)
    for label, viewer in VIEWERS.items():
        expected = label in REST_READS[rule.audience]
        assert (visible_data(event_type, {}, viewer) is not None) is expected, (event_type, label)
    assert visible_data(event_type, {}, OPERATOR) is not None


def test_an_unknown_event_type_is_hidden_from_every_community_token() -> None:
    assert rule_for("SomethingNewHappened") is HIDDEN
    for label, viewer in VIEWERS.items():
        assert visible_data("SomethingNewHappened", {"member_id": viewer.member_id}, viewer) is None, label
    assert visible_data("SomethingNewHappened", {"x": 1}, OPERATOR) == {"x": 1}


def test_the_subject_sees_their_own_and_withheld_fields_are_removed() -> None:
    feedback = {"community_id": "c", "job_id": "j", "giver_id": "yui", "subject_id": "mei",
                "giver_relation": "requester",
                "quality": 5, "reliability": 5, "beyond": 4, "collaboration": 5, "comment": "thank you"}
    mei, ken = VIEWERS["member"], Viewer(member_id="ken", role="member")
    assert visible_data("FeedbackGiven", feedback, ken) is None
    about_me = visible_data("FeedbackGiven", feedback, mei)
    assert about_me is not None and "giver_id" not in about_me and about_me["comment"] == "thank you"
    assert visible_data("FeedbackGiven", feedback, Viewer(member_id="yui", role="member")) == feedback  # the giver
    assert visible_data("FeedbackGiven", feedback, VIEWERS["facilitator"]) == feedback
    envelope = {"type": "FeedbackGiven", "actor": "member:yui", "data": feedback}
    shown = visible_event(envelope, mei)
    assert shown is not None and "actor" not in shown, "the envelope's actor would name the withheld giver"

    committed = {"community_id": "c", "offering_id": "o", "member_id": "ken", "shares": 2, "member_shares": 2,
                 "committed": 12, "shares_left": 18, "committed_at": "2031-01-01T00:00:00+00:00"}
    assert visible_data("SharesCommitted", committed, mei) == {"community_id": "c", "offering_id": "o",
                                                               "committed": 12, "shares_left": 18}
    assert visible_data("SharesCommitted", committed, Viewer(member_id="ken", role="member")) == committed
    invitation = {"community_id": "c", "invitation_id": "i", "code_sha256": "ab", "issued_by": "mei", "note": "",
                  "expires_at": "x"}
    mine = visible_data("InvitationIssued", invitation, mei)
    assert mine is not None and "code_sha256" not in mine
    assert visible_data("InvitationIssued", {**invitation, "issued_by": "ken"}, mei) is None
    assert visible_data("InvitationIssued", invitation, OPERATOR) == invitation
    token = {"token_id": "t", "community_id": "c", "member_id": "mei", "role": "member", "scope": "member",
             "expires_at": "x", "issued_by": "operator"}
    assert visible_data("TokenIssued", token, mei) == token
    assert visible_data("TokenIssued", {**token, "member_id": "ken"}, mei) is None
    assert visible_data("TokenIssued", {**token, "member_id": "mei"}, VIEWERS["visitor"]) is None


# ---- the real stack ----

JOB = {"title": "Illustrations", "description": "Six spreads", "skills": ["illustration"], "deadline": "2031-03-01"}
LEAKS = ("MemberWaitlisted", "PlaceOffered", "TokenIssued", "FeedbackGiven")


@pytest.fixture
async def gateway(ecosystem: Ecosystem) -> AsyncIterator[httpx.AsyncClient]:
    ecosystem.start(*SERVICES, KIZUNA_STREAM_HEARTBEAT_SECONDS="1")
    async with httpx.AsyncClient(base_url=ecosystem.url("gateway"), timeout=30) as http:
        yield http
    log = ecosystem.processes["gateway"].log_path.read_text()
    assert "Exception in ASGI application" not in log and "unhandled error" not in log, log[-3000:]


async def read_until(http: httpx.AsyncClient, cid: str, token: str, marker: str) -> list[dict[str, Any]]:
    """Every event the token's stream sends from the start, up to the one whose data mentions ``marker``."""
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(30), http.stream("GET", f"/v1/communities/{cid}/events?last_event_id=0",
                                                headers={"Authorization": f"Bearer {token}"}) as response:
        assert response.status_code == 200, await response.aread()
        sequence = None
        async for line in response.aiter_lines():
            if line.startswith("id: "):
                sequence = int(line[4:])
            elif line.startswith("data: "):
                body = json.loads(line[6:])
                body["_id"] = sequence
                events.append(body)
                if marker in json.dumps(body["data"]):
                    return events
    raise AssertionError(f"the stream ended before {marker}")


async def test_each_token_streams_exactly_what_the_policy_and_rest_give_it(
    gateway: httpx.AsyncClient, ecosystem: Ecosystem
) -> None:
    http, eco = gateway, ecosystem
    cid, yui = await found(http, eco, "Hikari", cap=5)
    as_yui = eco.headers(cid, yui, "owner")
    ids = {"yui": yui}
    for name in ("fumi", "aiko", "mei", "ken"):
        joined = await http.post(f"/v1/communities/{cid}/members", headers=as_yui, json={"display_name": name.title()})
        assert joined.status_code == 201, joined.text
        ids[name] = joined.json()["member_id"]
    promoted = await http.put(f"/v1/communities/{cid}/members/{ids['fumi']}/role", headers=as_yui,
                              json={"role": "facilitator", "reason": "runs the sessions"})
    assert promoted.status_code == 200, promoted.text
    waiting = await http.post(f"/v1/communities/{cid}/members", headers=as_yui,
                              json={"display_name": "Sora Waiting", "waitlist_if_full": True})
    assert waiting.status_code == 202, waiting.text  # MemberWaitlisted

    tokens = {name: await issue(http, eco, cid, ids[name]) for name in ("yui", "fumi", "aiko", "mei", "ken")}
    tokens["dashboard-of-mei"] = await issue(http, eco, cid, ids["mei"], scope="dashboard")
    tokens["dashboard-of-fumi"] = await issue(http, eco, cid, ids["fumi"], scope="dashboard")
    bearer = {name: {"Authorization": f"Bearer {token}"} for name, token in tokens.items()}

    left = await http.post(f"/v1/communities/{cid}/members/{ids['ken']}/leave", headers=bearer["ken"], json={})
    assert left.status_code == 204, left.text  # a place frees: PlaceOffered to Sora

    async def posted() -> str | None:
        made = await http.post(f"/v1/communities/{cid}/jobs", headers=bearer["yui"], json=JOB)
        return made.json()["job_id"] if made.status_code == 201 else None

    async def roster_knows_aiko() -> bool:
        known = await http.get(f"/v1/communities/{cid}/reputation/{ids['aiko']}", headers=bearer["yui"])
        return known.status_code == 200

    await eventually(roster_knows_aiko)
    job = await eventually(posted)
    for path, who, body in ((f"jobs/{job}/offers", "aiko", {"why_next_step": "my first book"}),
                            (f"jobs/{job}/assignment", "yui", {"member_ids": [ids["aiko"]]}),
                            (f"jobs/{job}/start", "aiko", None), (f"jobs/{job}/completion", "yui", None),
                            (f"jobs/{job}/feedback", "yui", {"subject_id": ids["aiko"], "quality": 5, "reliability": 5,
                                                             "beyond": 4, "collaboration": 5, "comment": "lovely"})):
        done = await http.post(f"/v1/communities/{cid}/{path}", headers=bearer[who], json=body)
        assert done.status_code in (200, 201), (path, done.text)
    await asyncio.sleep(1.0)  # every service's relay has published (they poll every 0.2 s): the marker comes last
    marker = await http.post(f"/v1/communities/{cid}/jobs", headers=bearer["yui"], json={**JOB, "title": "The end"})
    assert marker.status_code == 201

    everything = await read_until(http, cid, eco.operator_token, "The end")
    seen_types = {e["type"] for e in everything}
    assert set(LEAKS) <= seen_types, seen_types
    viewers = {"yui": Viewer(member_id=ids["yui"], role="owner"),
               "fumi": Viewer(member_id=ids["fumi"], role="facilitator"),
               "aiko": Viewer(member_id=ids["aiko"], role="member"),
               "mei": Viewer(member_id=ids["mei"], role="member"),
               "dashboard-of-mei": Viewer(member_id=ids["mei"], role="member", scope="dashboard"),
               "dashboard-of-fumi": Viewer(member_id=ids["fumi"], role="facilitator", scope="dashboard")}
    received = dict(zip(viewers, await asyncio.gather(
        *(read_until(http, cid, tokens[name], "The end") for name in viewers)), strict=True))

    for name, viewer in viewers.items():
        expected = []
        for event in everything:
            shown = visible_event({k: v for k, v in event.items() if k != "_id"}, viewer)
            if shown is not None:
                expected.append({**shown, "_id": event["_id"]})
        assert received[name] == expected, f"{name}'s stream differs from the policy"

    def types_for(name: str, about: str | None = None) -> set[str]:
        return {e["type"] for e in received[name] if about is None or about in json.dumps(e["data"])}

    assert not set(LEAKS) & types_for("mei", about=None) - {"TokenIssued"}, types_for("mei")
    assert {e["data"]["member_id"] for e in received["mei"] if e["type"] == "TokenIssued"} == {ids["mei"]}
    assert set(LEAKS) <= types_for("fumi") and set(LEAKS) <= types_for("yui")
    assert set(LEAKS) <= types_for("dashboard-of-fumi")
    about_aiko = [e for e in received["aiko"] if e["type"] == "FeedbackGiven"]
    assert len(about_aiko) == 1 and "giver_id" not in about_aiko[0]["data"] and "actor" not in about_aiko[0]
    assert about_aiko[0]["data"]["comment"] == "lovely"

    # The audiences mean what the REST checks they mirror mean, asked of the real routes with the same tokens.
    routes: dict[Audience, str] = {"member": f"/v1/communities/{cid}/jobs",
                                   "facilitator": f"/v1/communities/{cid}/waitlist",
                                   "reader": f"/v1/communities/{cid}/partnerships"}
    for audience, path in routes.items():
        for name, viewer in viewers.items():
            response = await http.get(path, headers=bearer[name])
            assert response.status_code in (200, 403), (path, name, response.text)
            assert (response.status_code == 200) is viewer.within(audience), (audience, path, name)
    assert (await http.get(f"/v1/communities/{cid}/offers", headers=bearer["mei"])).status_code == 403
    assert (await http.get(f"/v1/communities/{cid}/offers", headers=bearer["fumi"])).status_code == 200

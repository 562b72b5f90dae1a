"""The gateway over real processes: tokens, the security boundary, forwarding, idempotency, failures,
health figures and the resumable event stream."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from tests.support import BusPublisher, Ecosystem, eventually, issue

SESSION = {"kind": "group-coaching", "title": "Cohort A, week 1", "starts_at": "2031-05-01T19:00:00",
           "ends_at": "2031-05-01T21:00:00", "time_zone": "Asia/Tokyo", "place": "Kominka, Kamakura",
           "capacity": 8, "cohort": "A"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_tokens_security_boundary_and_forwarding(
    stack: tuple[BusPublisher, httpx.AsyncClient], ecosystem: Ecosystem
) -> None:
    bus, http = stack
    cid, owner = await bus.found({"aiko": "member", "ken": "facilitator"})
    other_cid, other_owner = await bus.found({}, name="Other")
    owner_token = await issue(http, ecosystem, cid, owner)
    member_token = await issue(http, ecosystem, cid, "aiko")
    dashboard_token = await issue(http, ecosystem, cid, owner, scope="dashboard")
    foreign_token = await issue(http, ecosystem, other_cid, other_owner)

    # The role comes from the directory, never from the request.
    claims = json.loads(__import__("base64").urlsafe_b64decode(member_token.split(".")[1] + "=="))
    assert claims["role"] == "member" and claims["cid"] == cid

    unknown = await http.post("/v1/tokens", headers=ecosystem.operator_headers(),
                              json={"community_id": cid, "member_id": "nobody"})
    assert unknown.status_code == 404
    by_member = await http.post("/v1/tokens", headers=bearer(member_token),
                                json={"community_id": cid, "member_id": "aiko"})
    assert by_member.status_code == 403
    by_owner = await http.post("/v1/tokens", headers=bearer(owner_token),
                               json={"community_id": cid, "member_id": "ken"})
    assert by_owner.status_code == 201 and by_owner.json()["role"] == "facilitator"

    # Forwarding to the sessions service, with the member's own token.
    scheduled = await eventually(lambda: _schedule(http, cid, owner_token))
    assert scheduled.json()["title"] == "Cohort A, week 1"

    tampered = member_token[:-4] + ("AAAA" if not member_token.endswith("AAAA") else "BBBB")
    expired = ecosystem.token(cid, "aiko", ttl=-30)
    routes = [("GET", f"/v1/communities/{cid}/health"), ("GET", f"/v1/communities/{cid}/sessions"),
              ("POST", f"/v1/communities/{cid}/sessions"), ("GET", f"/v1/communities/{cid}/events")]
    for method, path in routes:
        assert (await http.request(method, path)).status_code == 401, path
        assert (await http.request(method, path, headers=bearer(tampered))).status_code == 401, path
        expired_response = await http.request(method, path, headers=bearer(expired))
        assert expired_response.status_code == 401 and "expired" in expired_response.json()["detail"], path
        crossing = await http.request(method, path, headers=bearer(foreign_token), json=SESSION)
        missing = await http.request(method, path.replace(cid, "00000000-0000-0000-0000-000000000000"),
                                     headers=bearer(foreign_token), json=SESSION)
        assert crossing.status_code == missing.status_code == 404, path
        assert crossing.json()["detail"] == missing.json()["detail"], "must not reveal that the community exists"
    assert (await http.get(f"/v1/communities/{cid}/health", headers=bearer(member_token))).status_code == 403
    assert (await http.get(f"/v1/communities/{cid}/health", headers=bearer(dashboard_token))).status_code == 200
    write = await http.post(f"/v1/communities/{cid}/sessions", headers=bearer(dashboard_token), json=SESSION)
    assert write.status_code == 403 and write.headers["content-type"].startswith("application/problem+json")

    # Revocation.
    token_id = json.loads(__import__("base64").urlsafe_b64decode(dashboard_token.split(".")[1] + "=="))["jti"]
    revoked = await http.post(f"/v1/tokens/{token_id}/revocation", headers=bearer(owner_token), json={})
    assert revoked.status_code == 204
    after = await http.get(f"/v1/communities/{cid}/health", headers=bearer(dashboard_token))
    assert after.status_code == 401 and after.json()["type"].endswith("revoked-token")

    keys = (await http.get("/.well-known/jwks.json")).json()["keys"]
    assert keys and keys[0]["crv"] == "Ed25519"


async def _schedule(http: httpx.AsyncClient, cid: str, token: str) -> httpx.Response | None:
    response = await http.post(f"/v1/communities/{cid}/sessions", headers=bearer(token), json=SESSION)
    return response if response.status_code == 201 else None


async def test_idempotent_retry_limits_and_a_down_service(
    stack: tuple[BusPublisher, httpx.AsyncClient], ecosystem: Ecosystem
) -> None:
    bus, http = stack
    cid, owner = await bus.found({})
    token = await issue(http, ecosystem, cid, owner)
    await eventually(lambda: _roster_ready(http, cid, token))
    headers = {**bearer(token), "Idempotency-Key": "schedule-week-1"}
    first = await http.post(f"/v1/communities/{cid}/sessions", headers=headers, json=SESSION)
    again = await http.post(f"/v1/communities/{cid}/sessions", headers=headers, json=SESSION)
    assert first.status_code == again.status_code == 201, first.text
    assert again.json() == first.json() and again.headers.get("idempotent-replayed") == "true"
    listed = (await http.get(f"/v1/communities/{cid}/sessions", headers=bearer(token))).json()["items"]
    assert len(listed) == 1, "a retried write appends nothing new"
    different = await http.post(f"/v1/communities/{cid}/sessions", headers=headers, json={**SESSION, "capacity": 3})
    assert different.status_code == 422 and different.json()["errors"][0]["field"] == "Idempotency-Key"

    huge = await http.post(f"/v1/communities/{cid}/sessions", headers=bearer(token),
                           content=b'{"title": "' + b"x" * 300_000 + b'"}')
    assert huge.status_code == 413 and huge.json()["status"] == 413

    ecosystem.processes["sessions"].stop()
    down = await http.get(f"/v1/communities/{cid}/sessions", headers=bearer(token))
    assert down.status_code == 503 and down.json()["type"].endswith("service-unavailable")
    unknown = await http.get(f"/v1/communities/{cid}/nothing-here", headers=bearer(token))
    assert unknown.status_code == 404


async def _roster_ready(http: httpx.AsyncClient, cid: str, token: str) -> bool:
    response = await http.get(f"/v1/communities/{cid}/sessions", headers=bearer(token))
    return response.status_code == 200


async def test_health_figures_follow_the_events(
    stack: tuple[BusPublisher, httpx.AsyncClient], ecosystem: Ecosystem
) -> None:
    bus, http = stack
    cid, owner = await bus.found({"aiko": "member", "ken": "facilitator", "mei": "member"})
    token = await issue(http, ecosystem, cid, owner)
    await bus.publish("referrals", "job-1", cid, "JobRequestPosted", {"title": "Logo"})
    await bus.publish("referrals", "job-2", cid, "JobRequestPosted", {"title": "Site"})
    await bus.publish("referrals", "job-2", cid, "JobCompleted", {})
    await bus.publish("referrals", "referral-1", cid, "ReferralOutcomeRecorded", {"worked": True})
    await bus.publish("referrals", "referral-2", cid, "ReferralOutcomeRecorded", {"worked": False})
    await bus.publish("sessions", "session-1", cid, "AttendanceRecorded", {"attendees": ["aiko", "ken"]})

    async def figures() -> dict[str, Any] | None:
        response = await http.get(f"/v1/communities/{cid}/health", headers=bearer(token))
        body: dict[str, Any] = response.json()
        return body if response.status_code == 200 and body["sessions"]["held"] == 1 else None

    health = await eventually(figures)
    assert health["members"] == 4 and health["member_cap"] == 150
    assert health["roles"] == {"owner": 1, "facilitator": 1, "member": 2}
    assert health["jobs"] == {"open": 1, "completed": 1, "cancelled": 0}
    assert health["referrals"]["success_rate"] == 0.5
    assert {m["member_id"] for m in health["members_with_few_ties"]} >= {owner, "mei"}
    assert "aiko" in {m["member_id"] for m in health["members_with_few_ties"]}  # one tie is "few" by default
    fewer = (await http.get(f"/v1/communities/{cid}/health?few_ties=0", headers=bearer(token))).json()
    assert {m["member_id"] for m in fewer["members_with_few_ties"]} == {owner, "mei"}


async def test_event_stream_resumes_without_loss_or_repeat(
    stack: tuple[BusPublisher, httpx.AsyncClient], ecosystem: Ecosystem
) -> None:
    bus, http = stack
    cid, owner = await bus.found({f"m{i}": "member" for i in range(5)})
    other, _ = await bus.found({"x": "member"})
    token = await issue(http, ecosystem, cid, owner)
    first = await _read_events(http, f"/v1/communities/{cid}/events", token, 3)
    assert [e["type"] for e in first] == ["CommunityFounded", "MemberJoined", "MemberJoined"]
    rest = await _read_events(http, f"/v1/communities/{cid}/events", token, 3,
                              last_event_id=first[-1]["_id"])
    assert [e["data"]["member_id"] for e in rest] == ["m2", "m3", "m4"]
    assert all(e["communityid"] == cid for e in first + rest), "another community's events must not leak"
    ids = [e["_id"] for e in first + rest]
    assert ids == sorted(set(ids))
    filtered = await _read_events(http, f"/v1/communities/{cid}/events?type=CommunityFounded", token, 1)
    assert filtered[0]["type"] == "CommunityFounded" and other not in json.dumps(filtered)


async def _read_events(http: httpx.AsyncClient, path: str, token: str, count: int,
                       last_event_id: int | None = None) -> list[dict[str, Any]]:
    headers = bearer(token)
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(20), http.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200
        current: dict[str, str] = {}
        async for line in response.aiter_lines():
            if line.startswith("id: "):
                current["id"] = line[4:]
            elif line.startswith("data: "):
                body = json.loads(line[6:])
                body["_id"] = int(current["id"])
                events.append(body)
                if len(events) == count:
                    break
    return events


async def test_openapi_document_covers_forwarded_routes(
    stack: tuple[BusPublisher, httpx.AsyncClient], ecosystem: Ecosystem
) -> None:
    _, http = stack
    document = (await http.get("/openapi.json")).json()
    paths = document["paths"]
    assert "/v1/tokens" in paths and "/v1/communities/{community_id}/health" in paths
    assert "/v1/communities/{community_id}/sessions" in paths, "forwarded service routes are documented"
    operation = paths["/v1/communities/{community_id}/sessions"]["post"]
    assert operation["security"] == [{"bearer": []}] and "requestBody" in operation
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert set(document["info"]["x-unavailable-services"]) == {"members", "referrals", "notifications"}  # not started

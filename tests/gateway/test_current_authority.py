"""Authority is taken from the member's standing now, not from the role a token was issued with
(issue 17, hole 3), over every service behind a real gateway.

The tokens here are issued by the gateway itself (``POST /v1/tokens``), as a person would hold them.
"""

from __future__ import annotations

import httpx

from tests.reliability.harness import found
from tests.support import Ecosystem, eventually

JOB = {"title": "Picture book", "deadline": "2031-03-01"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}



async def token_for(http: httpx.AsyncClient, eco: Ecosystem, cid: str, member_id: str, role: str) -> str:
    async def issued() -> str | None:
        answer = await http.post("/v1/tokens", headers=eco.operator_headers(),
                                 json={"community_id": cid, "member_id": member_id})
        return answer.json()["token"] if answer.status_code == 201 and answer.json()["role"] == role else None

    token: str = await eventually(issued)
    return token


async def test_a_former_owner_loses_owner_rights_and_a_departed_member_loses_everything(
    every_service: httpx.AsyncClient, ecosystem: Ecosystem
) -> None:
    http, eco = every_service, ecosystem
    cid, owner = await found(http, eco, "Hikari")
    owner_token = await token_for(http, eco, cid, owner, "owner")
    joined = {}
    for name in ("ken", "aiko", "sora"):
        answer = await http.post(f"/v1/communities/{cid}/members", headers=bearer(owner_token),
                                 json={"display_name": name})
        assert answer.status_code == 201, answer.text
        joined[name] = answer.json()["member_id"]
    ken, aiko, sora = joined["ken"], joined["aiko"], joined["sora"]
    aiko_token = await token_for(http, eco, cid, aiko, "member")
    sora_token = await token_for(http, eco, cid, sora, "member")

    handed = await http.post(f"/v1/communities/{cid}/ownership", headers=bearer(owner_token),
                             json={"to_member_id": ken, "reason": "stepping back"})
    assert handed.status_code == 200, handed.text

    owner_routes = [
        ("PUT", f"/v1/communities/{cid}/cap", {"member_cap": 120, "reason": "smaller"}),
        ("POST", f"/v1/communities/{cid}/ownership", {"to_member_id": aiko, "reason": "again"}),
        ("PUT", f"/v1/communities/{cid}/members/{aiko}/role", {"role": "facilitator", "reason": "x"}),
        ("POST", "/v1/tokens", {"community_id": cid, "member_id": aiko}),
    ]

    async def no_longer_owner() -> bool:  # a probe with no effect if it were allowed: issuing a token
        answer = await http.post("/v1/tokens", headers=bearer(owner_token), json={"community_id": cid,
                                                                                  "member_id": aiko})
        return answer.status_code == 403

    # The transfer reaches the gateway's directory through the bus: within a second or so.
    assert await eventually(no_longer_owner, timeout=10)
    for method, path, body in owner_routes:
        answer = await http.request(method, path, headers=bearer(owner_token), json=body)
        assert answer.status_code == 403, (path, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
    ken_view = (await http.get(f"/v1/communities/{cid}/members/{ken}", headers=eco.operator_headers())).json()
    assert ken_view["role"] == "owner", "the former owner could not hand ownership away again"
    # The former owner is a facilitator now, and the same token still does what a facilitator may.
    health = await http.get(f"/v1/communities/{cid}/health", headers=bearer(owner_token))
    assert health.status_code == 200, health.text

    # Leaving and removal: every token of that member is refused everywhere.
    left = await http.post(f"/v1/communities/{cid}/members/{aiko}/leave", headers=bearer(aiko_token), json={})
    assert left.status_code == 204, left.text
    ken_token = await token_for(http, eco, cid, ken, "owner")
    removed = await http.post(f"/v1/communities/{cid}/members/{sora}/removal", headers=bearer(ken_token),
                              json={"reason": "asked to"})
    assert removed.status_code == 204, removed.text
    everywhere = [("GET", f"/v1/communities/{cid}"), ("GET", f"/v1/communities/{cid}/members"),
                  ("GET", f"/v1/communities/{cid}/jobs"), ("GET", f"/v1/communities/{cid}/sessions"),
                  ("POST", f"/v1/communities/{cid}/jobs"), ("GET", f"/v1/communities/{cid}/events")]

    async def gone(token: str) -> bool:
        answer = await http.get(f"/v1/communities/{cid}", headers=bearer(token))
        return answer.status_code == 401

    for token in (aiko_token, sora_token):
        assert await eventually(lambda token=token: gone(token), timeout=10)
        for method, path in everywhere:
            answer = await http.request(method, path, headers=bearer(token), json=JOB)
            assert answer.status_code in (401, 404), (path, answer.status_code)
            assert answer.json()["type"].endswith("member-gone"), answer.text


async def test_inventing_authorization_headers_does_not_escape_the_rate_limit(ecosystem: Ecosystem) -> None:
    eco = ecosystem
    eco.start("members", "gateway", KIZUNA_RATE_LIMIT_PER_SECOND="0.5", KIZUNA_RATE_LIMIT_BURST="3",
              KIZUNA_TRUSTED_PROXIES="127.0.0.1/32")
    async with httpx.AsyncClient(base_url=eco.url("gateway"), timeout=15) as http:
        cid, _ = await found(http, eco, "Hikari")
        # A visitor sending a new made-up Authorization header each time is still one visitor.
        statuses = [(await http.get(f"/v1/join/{cid}", headers={"Authorization": f"Bearer junk{n}",
                                                                  "X-Forwarded-For": "203.0.113.7"})).status_code
                    for n in range(6)]
        assert statuses.count(429) >= 2, statuses
        # Behind the trusted proxy, another client address has a bucket of its own…
        other = await http.get(f"/v1/join/{cid}", headers={"X-Forwarded-For": "203.0.113.8"})
        assert other.status_code == 200, other.text
        # …but an address the client wrote left of the proxy's own entry is not believed.
        spoofed = [(await http.get(f"/v1/join/{cid}", headers={"X-Forwarded-For": f"10.9.9.{n}, 203.0.113.7"}))
                   .status_code for n in range(3)]
        assert set(spoofed) == {429}, spoofed
        # Authenticated callers: by the verified token, so junk tokens are refused before they count.
        junk = [(await http.get(f"/v1/communities/{cid}", headers={"Authorization": f"Bearer junk{n}"}))
                .status_code for n in range(6)]
        assert set(junk) == {401}, junk

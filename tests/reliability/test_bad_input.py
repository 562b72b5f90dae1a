"""Bad input through the gateway to the members and referrals services: malformed, deeply nested,
wrongly typed and unicode-edge JSON, invalid ids, negative amounts, past dates and a 1 MB text. Each
gets a 4xx problem response and leaves no trace in any event store."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from tests.reliability.harness import figures, found
from tests.support import SERVICES, Ecosystem, eventually

JOB = {"title": "Picture book", "deadline": "2031-03-01",
       "compensation": {"kind": "money", "amount": 30000, "currency": "JPY"}}
OFFERING = {"title": "Summer share", "season": "Summer 2031", "shares": 30, "minimum_shares": 20,
            "price": {"kind": "money", "amount": 12000, "currency": "JPY"},
            "commitment_deadline": "2031-05-01T00:00:00+09:00", "delivery_dates": ["2031-07-05"]}


@pytest.fixture
async def gateway(ecosystem: Ecosystem) -> AsyncIterator[httpx.AsyncClient]:
    ecosystem.start(*SERVICES)
    async with httpx.AsyncClient(base_url=ecosystem.url("gateway"), timeout=30) as http:
        yield http
    for name, proc in ecosystem.processes.items():
        assert "unhandled error" not in proc.log_path.read_text(), name


async def event_counts(eco: Ecosystem) -> dict[str, int]:
    counts = {}
    for service in SERVICES:
        conn = await asyncpg.connect(eco.database_url(service))
        try:
            counts[service] = await conn.fetchval("SELECT count(*) FROM events")
        finally:
            await conn.close()
    return counts


def nested(depth: int) -> str:
    return '{"display_name": ' + "[" * depth + "]" * depth + "}"


def cases(cid: str, member: str, job: str, offering: str) -> list[tuple[str, str, str, Any]]:
    """(what, method, path, body): a body that is ``str`` is sent raw, anything else as JSON."""
    c = f"/v1/communities/{cid}"
    join, profile, jobs = f"{c}/members", f"{c}/members/{member}/profile", f"{c}/jobs"
    return [
        ("malformed JSON", "POST", join, '{"display_name": "Ken"'),
        ("not JSON at all", "POST", join, "display_name=Ken"),
        ("JSON that is a list", "POST", join, "[]"),
        ("JSON null", "POST", join, "null"),
        ("deeply nested (10k)", "POST", join, nested(10_000)),
        ("deeply nested (100k)", "POST", join, nested(100_000)),
        ("wrong type: number", "POST", join, {"display_name": 123}),
        ("wrong type: object", "POST", join, {"display_name": {"first": "Ken"}}),
        ("wrong type: bool cap", "PUT", f"{c}/cap", {"member_cap": "lots", "reason": "r"}),
        ("empty name", "POST", join, {"display_name": ""}),
        ("NUL in text", "POST", join, {"display_name": "Ken\u0000Mori"}),
        ("lone surrogate", "POST", join, '{"display_name": "Ken \\ud800"}'),
        ("lone low surrogate in vector", "PUT", profile, '{"display_name": "K", "vector": "\\udfff"}'),
        ("invalid member id", "PUT", f"{c}/members/not-a-member/profile", {"display_name": "K"}),
        ("1 MB vector text", "PUT", profile, {"display_name": "K", "vector": "x" * 1_000_000}),
        ("vector over its limit", "PUT", profile, {"display_name": "K", "vector": "x" * 2_001}),
        ("3,000 skills", "PUT", profile, {"display_name": "K", "skills": ["a"] * 3_000}),
        ("negative amount", "POST", jobs, {**JOB, "compensation": {"kind": "money", "amount": -5, "currency": "JPY"}}),
        ("zero amount", "POST", jobs, {**JOB, "compensation": {"kind": "money", "amount": 0, "currency": "JPY"}}),
        ("infinite amount", "POST", jobs, '{"title": "t", "deadline": "2031-03-01", '
                                          '"compensation": {"kind": "money", "amount": 1e999, "currency": "JPY"}}'),
        ("NaN amount", "POST", jobs, '{"title": "t", "deadline": "2031-03-01", '
                                     '"compensation": {"kind": "money", "amount": NaN, "currency": "JPY"}}'),
        ("lower-case currency", "POST", jobs,
         {**JOB, "compensation": {"kind": "money", "amount": 5, "currency": "jpy"}}),
        ("deadline in the past", "POST", jobs, {**JOB, "deadline": "2001-01-01"}),
        ("impossible date", "POST", jobs, {**JOB, "deadline": "2031-02-30"}),
        ("year 10000", "POST", jobs, {**JOB, "deadline": "10000-01-01"}),
        ("invalid job id", "POST", f"{jobs}/not-a-uuid/offers", {}),
        ("unknown job id", "POST", f"{jobs}/00000000-0000-0000-0000-000000000000/offers", {}),
        ("job id of another kind", "POST", f"{jobs}/{offering}/offers", {}),
        ("referral to an invalid job", "POST", f"{c}/referrals", {"referred_id": member, "job_id": "not-a-uuid"}),
        ("referral to no one", "POST", f"{c}/referrals", {"referred_id": member}),
        ("negative shares", "POST", f"{c}/offerings", {**OFFERING, "shares": -1}),
        ("minimum above shares", "POST", f"{c}/offerings", {**OFFERING, "minimum_shares": 31}),
        ("commitment deadline in the past", "POST", f"{c}/offerings",
         {**OFFERING, "commitment_deadline": "2001-05-01T00:00:00+09:00"}),
        ("negative commitment", "POST", f"{c}/offerings/{offering}/commitments", {"shares": -3}),
        ("zero commitment", "POST", f"{c}/offerings/{offering}/commitments", {"shares": 0}),
        ("huge commitment", "POST", f"{c}/offerings/{offering}/commitments", {"shares": 10**30}),
        ("feedback score out of range", "POST", f"{jobs}/{job}/feedback",
         {"subject_id": member, "quality": 6, "reliability": -1, "beyond": 0, "collaboration": 99}),
    ]


async def test_bad_input_gets_a_4xx_problem_and_leaves_no_trace(gateway: httpx.AsyncClient,
                                                                ecosystem: Ecosystem) -> None:
    http = gateway
    cid, owner = await found(http, ecosystem, "Bad input")
    as_owner = ecosystem.headers(cid, owner, "owner")
    member = (await http.post(f"/v1/communities/{cid}/members", headers=as_owner,
                              json={"display_name": "Ken"})).json()["member_id"]

    async def roster_knows() -> bool:
        return (await http.get(f"/v1/communities/{cid}/reputation/{member}", headers=as_owner)).status_code == 200

    await eventually(roster_knows)
    job = await http.post(f"/v1/communities/{cid}/jobs", headers=as_owner, json=JOB)
    assert job.status_code == 201, job.text
    offering = await http.post(f"/v1/communities/{cid}/offerings", headers=as_owner, json=OFFERING)
    assert offering.status_code == 201, offering.text
    before = await event_counts(ecosystem)

    seen: dict[int, int] = {}
    for what, method, path, body in cases(cid, member, job.json()["job_id"], offering.json()["offering_id"]):
        raw = body if isinstance(body, str) else json.dumps(body)
        response = await http.request(method, path, content=raw.encode("utf-8", "surrogatepass"),
                                      headers={**as_owner, "Content-Type": "application/json"})
        assert 400 <= response.status_code < 500, (what, response.status_code, response.text[:500])
        assert response.headers["content-type"].startswith("application/problem+json"), what
        problem = response.json()
        assert problem["status"] == response.status_code and problem["type"].startswith("https://"), what
        seen[response.status_code] = seen.get(response.status_code, 0) + 1

    after = await event_counts(ecosystem)
    assert after == before, f"bad input left events behind: {before} → {after}"
    figures("bad_input", cases=sum(seen.values()), statuses=seen, events_appended=0)

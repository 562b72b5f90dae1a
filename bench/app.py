"""The member app under load: 50 signed-in people (each with their own session) read their community's home
page at once, against the same data read over the JSON API — the four reads the page itself makes, in turn,
as a client rendering the page itself would."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from bench.core import Result, Servers
from bench.http import HttpClient
from bench.stack import found, run_load
from kizuna.progress import Progress
from tests.identity.journey import browser, community_token, csrf, sign_in_by_email
from tests.identity.smtp import SmtpInbox
from tests.support import Ecosystem, eventually

PEOPLE = 50
SEEDED_JOBS = 20
SEEDED_SESSIONS = 5


async def bench_app(s: Servers, seconds: int) -> list[Result]:
    inbox = SmtpInbox(s.workdir / "app-mail").start()
    try:
        stack = await s.new_stack(env={**inbox.env(), "KIZUNA_TRUSTED_PROXIES": "127.0.0.1/32"})
        client = HttpClient("127.0.0.1", stack.gateway_port)
        cid, owner = await found(client, stack, "Member app under load")
        await client.close()
        cookies, tokens = await _people(stack.eco, inbox, cid)
        operator = stack.eco.operator_headers()
        async with httpx.AsyncClient(base_url=stack.eco.url("gateway"), headers=operator, timeout=30) as http:
            for i in range(SEEDED_JOBS):
                answer = await http.post(f"/v1/communities/{cid}/jobs", headers=stack.eco.headers(cid, owner, "owner"),
                                         json={"title": f"Job {i}", "deadline": "2031-01-01"})
                answer.raise_for_status()
            for i in range(SEEDED_SESSIONS):
                answer = await http.post(f"/v1/communities/{cid}/sessions", json={
                    "kind": "group-coaching", "title": f"Circle {i}", "starts_at": f"2031-05-0{i + 1}T19:00:00",
                    "ends_at": f"2031-05-0{i + 1}T21:00:00", "time_zone": "Asia/Tokyo", "place": "Hall",
                    "capacity": 20})
                answer.raise_for_status()
        page = await _load(stack.gateway_port, [f"/app/c/{cid}"], cookies, seconds, s.workdir,
                           f"member app: {PEOPLE} signed-in people reading their community's home page")
        reads = [f"/v1/communities/{cid}", f"/v1/communities/{cid}/members?limit=100",
                 f"/v1/communities/{cid}/jobs?state=posted&limit=20", f"/v1/communities/{cid}/sessions?limit=5"]
        api = await _load(stack.gateway_port, reads, tokens, seconds, s.workdir,
                          f"member app baseline: the same {len(reads)} reads over the JSON API, in turn")
    finally:
        inbox.stop()
    notes = [f"the home page: {page['requests']:,.0f} pages in {seconds} s ({page['rate']:,.1f}/s), "
             f"{page['errors']:,.0f} errors {page['statuses']}; the JSON reads: {api['requests']:,.0f} rounds of "
             f"{len(reads)} ({api['rate']:,.1f}/s), {api['errors']:,.0f} errors {api['statuses']}",
             "the page also asks identity who the person is (GET /v1/me/brief) on every request; its community token "
             "is kept for 14 minutes (services/webapp/client.py)"]
    text = " / ".join(f"{page[k]:,.1f}" for k in ("p50_ms", "p95_ms", "p99_ms")) + " ms"
    base = " / ".join(f"{api[k]:,.1f}" for k in ("p50_ms", "p95_ms", "p99_ms")) + " ms"
    return [Result(f"member app: home page, {PEOPLE} concurrent signed-in people (p50 / p95 / p99)",
                   page["p95_ms"], api["p95_ms"], f"the same data as {len(reads)} JSON reads in turn", "ms", None,
                   ours_text=text, baseline_text=base,
                   notes=notes)]


async def _people(eco: Ecosystem, inbox: SmtpInbox, cid: str) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Each person signs in by email (from an address of their own), joins, and is known by a session cookie
    (the page) and a community token (the JSON reads)."""
    cookies, tokens = [], []
    progress = Progress(f"member app: {PEOPLE} people sign in by email and join", PEOPLE)
    for n in range(PEOPLE):
        async with browser(eco) as person:
            await sign_in_by_email(person, inbox, f"person{n}-{cid[:8]}@bench.test")
            joined = await person.post(f"/v1/join/{cid}", json={"display_name": f"Person {n}"},
                                       headers={"x-csrf-token": await csrf(person), "accept": "application/json"})
            joined.raise_for_status()

            async def token(person: httpx.AsyncClient = person) -> str | None:  # once identity knows the member
                answer = await community_token(person, cid)
                return str(answer.json()["token"]) if answer.status_code == 201 else None

            tokens.append({"authorization": f"Bearer {await eventually(token, timeout=30)}"})
            cookies.append({"cookie": "; ".join(f"{k}={v}" for k, v in person.cookies.items()),
                            "x-forwarded-for": person.headers["x-forwarded-for"]})
        progress.advance()
    progress.finish()
    return cookies, tokens


async def _load(port: int, paths: list[str], identities: list[dict[str, str]], seconds: int, workdir: Path,
                label: str) -> dict[str, float]:
    where = workdir / f"identities-{len(paths)}.json"
    where.write_text(json.dumps(identities))
    return await run_load(port, paths, {}, seconds, label, concurrency=len(identities), identities=where)

"""``make screenshots``: the member app's key pages on a 390-px phone, in Japanese and English, into
docs/screens/ (shown in the README). It starts its own PostgreSQL, NATS, SMTP server and services in a
throw-away folder, signs two people in by email and gives their community something to show; the suite runs
the same ``take`` into a temporary folder (tests/webapp/test_screenshots.py), so the command keeps working."""

from __future__ import annotations

import asyncio
import sys
import tempfile
import uuid
from pathlib import Path

import httpx

from kizuna.devstack import NatsServer, PostgresServer
from tests.identity.conftest import THROUGH_A_PROXY
from tests.identity.journey import community_token, csrf
from tests.identity.smtp import SmtpInbox
from tests.support import ROOT, Ecosystem
from tests.webapp.phones import given_role, hikari_makers, member_id_of, phones

# (file name, who, language, page) — who: "hana" (a facilitator) or "ken" (a member).
PAGES = [
    ("home", "ken", "ja", "/app/c/{cid}"),
    ("home", "ken", "en", "/app/c/{cid}"),
    ("job", "hana", "ja", "/app/c/{cid}/jobs/{job}"),
    ("sessions", "ken", "en", "/app/c/{cid}/sessions"),
    ("goal", "ken", "ja", "/app/c/{cid}/goals/{goal}"),
    ("health", "hana", "en", "/app/c/{cid}/health"),
]


async def take(eco: Ecosystem, inbox: SmtpInbox, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    async with hikari_makers(eco, inbox) as (cid, hana, ken):
        await given_role(eco, cid, await member_id_of(hana, cid), "facilitator")
        job = await _posted(hana, f"/app/c/{cid}/jobs", {"title": "絵本の挿絵 (6 spreads, watercolour)",
                                                         "description": "水彩で6見開き。締め切りは柔らかめです。",
                                                         "skills": "illustration, watercolour",
                                                         "deadline": "2031-03-31"})
        await _posted(ken, f"/app/c/{cid}/jobs/{job}/offers", {"why_next_step": "I paint every day"})
        await _posted(hana, f"/app/c/{cid}/sessions", {"title": "Cohort A — week 1", "kind": "group-coaching",
                                                       "day": "2031-05-01", "start": "19:00", "end": "21:00",
                                                       "place": "Kominka, Kamakura", "capacity": "12"})
        owner = (await ken.get(f"/app/c/{cid}/goals/new", headers={"accept-language": "en"})).text
        facilitator = owner.split('name="facilitator_id">')[1].split('value="')[1].split('"')[0]
        goal = await _posted(ken, f"/app/c/{cid}/goals", {
            "motivation": "子どもたちに絵本を届けたい", "statement": "絵本を一冊描き上げる",
            "facilitator_id": facilitator, "due_date": "2031-06-30", "kpi_name_0": "描いたページ",
            "kpi_unit_0": "ページ", "kpi_baseline_0": "0", "kpi_target_0": "32"})
        for pages in ("6", "11", "14"):
            await _posted(ken, f"/app/c/{cid}/goals/{goal}/check-ins", {"value:描いたページ": pages})
        token = (await community_token(hana, cid)).json()["token"]
        await hana.post(f"/v1/communities/{cid}/offerings", headers={"authorization": f"Bearer {token}"}, json={
            "title": "Summer vegetable share", "season": "Summer 2031", "shares": 20, "minimum_shares": 8,
            "price": {"kind": "money", "amount": 12000, "currency": "JPY"},
            "commitment_deadline": "2031-05-01T00:00:00+09:00", "delivery_dates": ["2031-07-05"]})
        people = {"hana": hana, "ken": ken}
        taken = []
        async with phones(eco, *[(people[who], language) for _, who, language, _ in PAGES]) as screens:
            for (name, _, language, path), page in zip(PAGES, screens, strict=True):
                await page.goto(eco.url("gateway") + path.format(cid=cid, job=job, goal=goal))
                await page.wait_for_load_state("networkidle")
                target = out / f"{name}-{language}.png"
                await page.screenshot(path=str(target), full_page=True)
                taken.append(target)
    return taken


async def _posted(person: httpx.AsyncClient, path: str, form: dict[str, str]) -> str:
    """Posts a member-app form as the person; returns the last part of where it led (a new job's or goal's id)."""
    answer = await person.post(path, data={"csrf_token": await csrf(person), **form})
    assert answer.status_code == 303, answer.text
    return answer.headers["location"].split("#")[0].rstrip("/").rsplit("/", 1)[-1]


async def _main(out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="kizuna-screens-") as tmp:
        work = Path(tmp)
        postgres = PostgresServer(work / "pg", durable=False).start()
        nats = NatsServer(work / "nats").start()
        inbox = SmtpInbox(work / "mail").start()
        eco = Ecosystem(postgres=postgres, nats=nats, prefix=f"s{uuid.uuid4().hex[:8]}", workdir=work / "eco")
        try:
            eco.start("members", "referrals", "sessions", "identity", "gateway", **inbox.env(), **THROUGH_A_PROXY)
            for path in await take(eco, inbox, out):
                print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
        finally:
            eco.stop_all()
            inbox.stop()
            nats.stop()
            postgres.stop()


if __name__ == "__main__":
    asyncio.run(_main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screens"))

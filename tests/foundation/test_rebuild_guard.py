"""`make rebuild` cannot race a running service (issue 18, item 4): while any process of the service
is up, `python -m kizuna.rebuild` refuses and changes nothing; once the service is stopped it rebuilds,
and the rebuilt read model equals the live one."""

from __future__ import annotations

import subprocess
import sys

import asyncpg
import httpx

from tests.reliability.harness import found
from tests.support import ROOT, Ecosystem


async def read_model(url: str) -> list[tuple[object, ...]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT community_id, member_id, role, status, display_name FROM members ORDER BY 1, 2")
    finally:
        await conn.close()
    return [tuple(row) for row in rows]


def run_rebuild(eco: Ecosystem) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kizuna.rebuild", "members", "--own-only"], cwd=ROOT,
                          env=eco.env("members"), capture_output=True, text=True, timeout=120)


async def test_rebuild_refuses_while_the_service_runs_then_rebuilds_the_same(ecosystem: Ecosystem) -> None:
    eco = ecosystem
    eco.start("members", "gateway")
    async with httpx.AsyncClient(base_url=eco.url("gateway"), timeout=15) as http:
        cid, _ = await found(http, eco, "Rebuild")
        for name in ("Aiko", "Ken"):
            joined = await http.post(f"/v1/communities/{cid}/members", headers=eco.operator_headers(),
                                     json={"display_name": name})
            assert joined.status_code == 201
    url = eco.database_url("members")
    live = await read_model(url)
    assert len(live) == 3

    refused = run_rebuild(eco)
    assert refused.returncode == 2 and "is running" in refused.stderr, refused.stderr[-2000:]
    assert await read_model(url) == live, "a refused rebuild must change nothing"

    eco.processes["members"].stop()
    rebuilt = run_rebuild(eco)
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    assert await read_model(url) == live

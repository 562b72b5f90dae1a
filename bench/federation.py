"""Federation between two complete deployments: how soon, and how fast, shared job requests reach a partner."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from bench.core import Result, Servers, ms, percentile
from kizuna.auth import generate_private_key_pem
from kizuna.devstack import NatsServer, PostgresServer
from kizuna.progress import Progress
from tests.federation.test_two_deployments import FAST_RETRIES, JOB, Deployment
from tests.support import eventually


class PartnerFeed:
    """B's view of partner jobs, read through its gateway with a cursor so each poll returns only new items."""

    def __init__(self, b: Deployment, member: str) -> None:
        self.b, self.headers = b, b.as_(member)
        self.cursor = 0
        self.seen: dict[str, float] = {}

    async def poll(self) -> None:
        while True:
            response = await self.b.http.get(f"/v1/communities/{self.b.cid}/partner-jobs",
                                             params={"cursor": str(self.cursor), "limit": 200}, headers=self.headers)
            response.raise_for_status()
            items = response.json()["items"]
            now = time.perf_counter()
            for item in items:
                self.seen.setdefault(item["job_id"], now)
                self.cursor = max(self.cursor, int(item["seq"]))
            if len(items) < 200:
                return

    async def until(self, job_ids: set[str], timeout: float, progress: Progress | None = None) -> bool:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            before = len(job_ids & self.seen.keys())
            await self.poll()
            arrived = len(job_ids & self.seen.keys())
            if progress:
                progress.advance(arrived - before)
            if arrived == len(job_ids):
                return True
            await asyncio.sleep(0.005)
        return False


async def bench_federation(s: Servers, probes: int) -> list[Result]:
    s.release_stack()  # the shared deployment idles; free its CPU for the two federating ones
    root = s.workdir / "partner"
    pg2 = PostgresServer(root / "pg", durable=True).start()
    nats2 = NatsServer(root / "nats", sync_always=True).start()
    keys = generate_private_key_pem(), generate_private_key_pem()
    progress = Progress("federation: starting two deployments", 2)
    stack_b = None
    try:
        stack_a = await s.new_stack(env={"KIZUNA_FEDERATION_PRIVATE_KEY": keys[0], **FAST_RETRIES})
        progress.advance()
        stack_b = await s.new_stack(pg2, nats2, {"KIZUNA_FEDERATION_PRIVATE_KEY": keys[1], **FAST_RETRIES})
        progress.advance()
        progress.finish()
        async with httpx.AsyncClient(base_url=stack_a.eco.url("gateway"), timeout=30) as http_a, \
                httpx.AsyncClient(base_url=stack_b.eco.url("gateway"), timeout=30) as http_b:
            a, b = Deployment(stack_a.eco, http_a, keys[0]), Deployment(stack_b.eco, http_b, keys[1])
            return await _measure(a, b, probes)
    finally:
        if stack_b is not None:
            stack_b.stop()
        nats2.stop()
        pg2.stop()


async def _measure(a: Deployment, b: Deployment, probes: int) -> list[Result]:
    await a.found("Ringo makers")
    await b.found("Nagano weavers")
    ken = await a.join("Ken")
    mio = await b.join("Mio")
    proposal = await a.http.post(f"/v1/communities/{a.cid}/partnerships", headers=a.as_owner, json={
        "partner_origin": b.origin, "partner_community_id": b.cid, "note": "benchmark"})
    proposal.raise_for_status()
    pid = proposal.json()["partnership_id"]
    await eventually(lambda: b.partnership("requested"), timeout=30)
    accepted = await b.http.post(f"/v1/communities/{b.cid}/partnerships/{pid}/acceptance", headers=b.as_owner)
    accepted.raise_for_status()
    await eventually(lambda: a.partnership("active"), timeout=30)
    feed = PartnerFeed(b, mio)

    async def post(title: str) -> tuple[httpx.Response, float]:
        start = time.perf_counter()
        response = await a.http.post(f"/v1/communities/{a.cid}/jobs", headers=a.as_(ken), json={**JOB, "title": title})
        return response, start

    async def warm_up() -> str | None:  # also waits until A's referrals roster knows Ken
        response, _ = await post("Warm-up")
        return str(response.json()["job_id"]) if response.status_code == 201 else None

    first = await eventually(warm_up, timeout=30)
    if not await feed.until({first}, 60):
        raise RuntimeError("the warm-up job never reached the partner")

    local: list[float] = []
    remote: list[float] = []
    progress = Progress("federation: one shared job at a time, POST at A until listed at B", probes)
    for i in range(probes):
        response, start = await post(f"Probe {i}")
        response.raise_for_status()
        job_id = response.json()["job_id"]
        while (await a.http.get(f"/v1/communities/{a.cid}/jobs/{job_id}", headers=a.as_(ken))).status_code != 200:
            await asyncio.sleep(0.001)
        local.append(time.perf_counter() - start)
        if not await feed.until({job_id}, 60):
            raise RuntimeError(f"probe {i} never reached the partner")
        remote.append(feed.seen[job_id] - start)
        progress.advance()
        await asyncio.sleep(0.05)
    progress.finish()

    count = probes * 4
    progress = Progress(f"federation: {count} shared jobs posted by 8 clients, until all listed at B", count)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)
    job_ids: set[str] = set()

    async def poster() -> None:
        while not queue.empty():
            n = queue.get_nowait()
            response, _ = await post(f"Batch {n}")
            response.raise_for_status()
            job_ids.add(response.json()["job_id"])

    started = time.perf_counter()
    await asyncio.gather(*(poster() for _ in range(8)))
    posted = time.perf_counter() - started
    delivered_all = await feed.until(job_ids, 300, progress)
    progress.finish()
    took = max(feed.seen[j] for j in job_ids) - started if delivered_all else float("inf")
    counts: dict[str, Any] = (await a.http.get("/v1/federation/deliveries",
                                               headers=a.eco.operator_headers())).json()["counts"]
    return [
        Result("federation: shared job visible at the partner (p50 / p95 / p99)", percentile(remote, 99),
               percentile(local, 99), "visible in the sender's own read model", "ms", None,
               ours_text=ms(remote), baseline_text=ms(local), notes=[
                   f"federation latency: {probes} jobs, one at a time; partner p50 "
                   f"{percentile(remote, 50) * 1000:,.0f} ms, min {min(remote) * 1000:,.0f} ms, max "
                   f"{max(remote) * 1000:,.0f} ms"]),
        Result("federation: delivery throughput", count / took, count / posted, "jobs/s acknowledged at the sender",
               "jobs/s", None, ours_text=f"{count / took:,.1f} jobs/s", baseline_text=f"{count / posted:,.1f} jobs/s",
               notes=[f"federation throughput: {count} jobs posted in {posted:.1f} s, all listed at the partner "
                      f"after {took:.1f} s; sender's delivery counts afterwards: {counts}"]),
    ]

"""Federation between two complete deployments: how soon, and how fast, shared job requests reach a partner."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import asyncpg
import httpx

from bench.core import Result, Servers, ms, percentile
from kizuna.auth import generate_private_key_pem
from kizuna.devstack import NatsServer, PostgresServer
from kizuna.progress import Progress
from tests.federation.test_two_deployments import FAST_RETRIES, JOB, LOOPBACK_PARTNERS, Deployment
from tests.support import eventually


class PartnerFeed:
    """B's view of partner jobs, read through its gateway; the cursor moves past full pages, so a poll reads at
    most one partial page again."""

    def __init__(self, b: Deployment, member: str) -> None:
        self.b, self.headers = b, b.as_(member)
        self.cursor: str | None = None
        self.seen: dict[str, float] = {}

    async def poll(self) -> None:
        while True:
            params: dict[str, Any] = {"limit": 200, **({"cursor": self.cursor} if self.cursor else {})}
            response = await self.b.http.get(f"/v1/communities/{self.b.cid}/partner-jobs", params=params,
                                             headers=self.headers)
            if response.status_code == 403:  # B's referrals roster has not learned the reader yet: nothing yet
                return
            response.raise_for_status()
            page = response.json()
            now = time.perf_counter()
            for item in page["items"]:
                self.seen.setdefault(item["job_id"], now)
            if page["next_cursor"] is None:
                return
            self.cursor = page["next_cursor"]

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
        stack_a = await s.new_stack(env={"KIZUNA_FEDERATION_PRIVATE_KEY": keys[0], **FAST_RETRIES,
                                         **LOOPBACK_PARTNERS})
        progress.advance()
        stack_b = await s.new_stack(pg2, nats2, {"KIZUNA_FEDERATION_PRIVATE_KEY": keys[1], **FAST_RETRIES,
                                                    **LOOPBACK_PARTNERS})
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
    stamps: dict[str, tuple[float, float]] = {}  # job id → (wall clock at POST, wall clock when listed at B)
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
        offset = time.time() - time.perf_counter()  # perf_counter readings as wall-clock seconds
        stamps[job_id] = (start + offset, feed.seen[job_id] + offset)
        progress.advance()
        await asyncio.sleep(random.uniform(0.05, 0.6))  # so probes meet the deliverer's 0.5 s cycle at any phase
    progress.finish()

    stages = await _stages(a, stamps)
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
                   f"{max(remote) * 1000:,.0f} ms. Where it goes (medians, from the databases' timestamps on "
                   f"this one machine): {stages}"]),
        Result("federation: delivery throughput", count / took, count / posted, "jobs/s acknowledged at the sender",
               "jobs/s", None, ours_text=f"{count / took:,.1f} jobs/s", baseline_text=f"{count / posted:,.1f} jobs/s",
               notes=[f"federation throughput: {count} jobs posted in {posted:.1f} s, all listed at the partner "
                      f"after {took:.1f} s; sender's delivery counts afterwards: {counts}"]),
    ]


async def _stages(a: Deployment, stamps: dict[str, tuple[float, float]]) -> str:
    """Splits each probe's trip by the sender's federation outbox: queued (created_at) and delivered."""
    conn = await asyncpg.connect(a.eco.database_url("gateway"))
    try:
        rows = await conn.fetch(
            "SELECT body->'payload'->>'job_id' AS job_id, extract(epoch FROM created_at)::float8 AS created, "
            "extract(epoch FROM delivered_at)::float8 AS delivered FROM federation_outbox "
            "WHERE type = 'job.shared' AND body->'payload'->>'job_id' = ANY($1::text[])", list(stamps))
    finally:
        await conn.close()
    queued, sending, after = [], [], []
    for row in rows:
        if row["delivered"] is None:
            continue
        posted, listed = stamps[row["job_id"]]
        queued.append(row["created"] - posted)
        sending.append(row["delivered"] - row["created"])
        after.append(listed - row["delivered"])
    if not queued:
        return "no outbox rows found"

    def median_ms(values: list[float]) -> str:
        return f"{percentile(values, 50) * 1000:,.0f} ms"

    return (f"POST at A → the message is in A's federation outbox (A's relay, JetStream, A's gateway consumer): "
            f"{median_ms(queued)}; outbox → delivered (waiting for the deliverer's next round, which sleeps "
            f"0.5 s when idle, then the signed POST to B's inbox and B's append): {median_ms(sending)}; "
            f"delivered → listed at B (B's relay, JetStream, B's referrals consumer, and the 5 ms poll): "
            f"{median_ms(after)}")

"""Scale: the read queries of a deployment holding many complete communities, at two sizes of the data.

Communities are seeded whole (150 members, profiles, roles, then a mix of job requests with their
lifecycle and 360° feedback, introductions, sessions with attendance, goals with check-ins), built from
the services' own domain events and appended straight into each service's event store through the
store's inline projections — what the service itself records for the same commands. The running
services' relays then publish everything to JetStream and every consumer builds its read models from
it, as in production. Measured at the first checkpoint (a tenth of the events), then again once the
rest is seeded: p99 of the health, directory and job-matching reads through the gateway, and each
service's memory.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import nats
import psutil
from nats.js.api import DeliverPolicy

from bench.core import UNLIMITED, Result, Servers, Stack, ms, percentile
from bench.http import HttpClient
from kizuna.domain import DomainEvent
from kizuna.eventstore import NO_STREAM, EventStore, NewEvent
from kizuna.progress import Progress
from kizuna.rebuild import load_spec, replay_bus
from kizuna.relay import OutboxRelay
from kizuna.settings import ServiceSettings
from services.members import domain as members
from services.referrals import domain as referrals
from services.sessions import domain as sessions

MEMBERS = 150  # the product's default cap, the owner included
EVENTS_PER_COMMUNITY = 1000  # so 100,000 events are 100 communities and 1,000,000 are 1,000
FACILITATORS = 6
WORKERS = 4  # concurrent seeding transactions per service
CONCURRENCY = 8  # closed-loop clients per query
SERVICES = ("members", "referrals", "sessions")  # the gateway records only its tokens
MEMORY_GOAL_MB = 300
GROWTH_GOAL = 1.5
# Every health request runs the query: with the gateway's answer cache (30 s, 1,000 communities) the figure
# would measure the cache's hit rate, which differs between 100 and 1,000 sampled communities.
ENV = {"KIZUNA_HEALTH_CACHE_SECONDS": "0"}
SKILLS = ["illustration", "video-editing", "carpentry", "cooking", "translation", "bookkeeping", "gardening",
          "photography", "web-design", "copywriting", "tutoring", "childcare", "plumbing", "sewing", "music",
          "event-planning", "marketing", "data-analysis", "coaching", "baking", "pottery", "cycling-repair",
          "elder-care", "legal-advice", "python", "accounting", "interior-design", "yoga", "first-aid", "driving"]
WORDS = ["picture", "book", "garden", "community", "festival", "kitchen", "school", "market", "workshop", "river",
         "temple", "bakery", "studio", "harbour", "library", "orchard", "website", "family", "wedding", "season"]


@dataclass
class Item:
    """One stream's events, as the service's handler would record them."""

    service: str
    stream_id: str
    events: list[DomainEvent]
    actor: str


@dataclass
class Community:
    community_id: str
    owner_id: str
    member_ids: list[str]
    items: list[Item] = field(default_factory=list)
    open_jobs: list[str] = field(default_factory=list)

    planned_events: int = 0

    @property
    def events(self) -> int:
        return self.planned_events or sum(len(item.events) for item in self.items)


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def plan_community(rng: random.Random, n: int, budget: int) -> Community:
    """A whole community: founding, joins, facilitators, profiles, then activity until ``budget`` events."""
    cid, owner = str(uuid.uuid4()), str(uuid.uuid4())
    ids = [owner, *(str(uuid.uuid4()) for _ in range(MEMBERS - 1))]
    c = Community(cid, owner, ids)
    founding: list[DomainEvent] = [members.CommunityFounded(
        community_id=cid, name=f"Scale community {n}", purpose=_text(rng, 8), values=["share first", "equality"],
        member_cap=MEMBERS, owner_member_id=owner, owner_display_name=f"Owner {n}")]
    for i, member_id in enumerate(ids[1:], start=1):
        founding.append(members.MemberJoined(
            community_id=cid, member_id=member_id, display_name=f"Member {n}-{i}", role="member",
            joined_via=rng.choice(["invitation", "referral", "open"]), vouched_by=rng.choice(ids[:i])))
    facilitators = ids[1:1 + FACILITATORS]
    for member_id in facilitators:
        founding.append(members.MemberRoleChanged(community_id=cid, member_id=member_id, old_role="member",
                                                  new_role="facilitator", changed_by=owner, reason="runs a cohort"))
    c.items.append(Item("members", f"community-{cid}", founding, owner))
    for i, member_id in enumerate(ids):
        c.items.append(Item("members", f"profile-{member_id}", [members.MemberProfileUpdated(
            community_id=cid, member_id=member_id, display_name=f"Member {n}-{i}", vector=_text(rng, 10),
            skills=sorted(rng.sample(SKILLS, rng.randint(2, 4))), values=["kindness"])], member_id))
    makers: list[Callable[[random.Random, Community, list[str]], list[Item]]] = [
        _job, _job, _job, _referral, _referral, _session, _goal, _goal]
    while c.events < budget:
        c.items += rng.choice(makers)(rng, c, facilitators)
    c.planned_events = c.events
    return c


def _job(rng: random.Random, c: Community, facilitators: list[str]) -> list[Item]:
    """A job request and its life: open with offers, cancelled, or assigned, done and given 360° feedback."""
    cid, job_id = c.community_id, str(uuid.uuid4())
    requester, *others = rng.sample(c.member_ids, 6)
    events: list[DomainEvent] = [referrals.JobRequestPosted(
        community_id=cid, job_id=job_id, requester_id=requester, title=_text(rng, 4), description=_text(rng, 12),
        skills=sorted(rng.sample(SKILLS, rng.randint(1, 3))),
        compensation={"kind": "money", "amount": 20000, "currency": "JPY"},
        deadline=(datetime.now(UTC).date() + timedelta(days=60)).isoformat(), visibility="community")]
    offerers = others[:rng.randint(1, 3)]
    events += [referrals.JobOffered(community_id=cid, job_id=job_id, member_id=m, why_next_step=_text(rng, 6))
               for m in offerers]
    items = []
    fate = rng.random()
    if fate < 0.35:
        c.open_jobs.append(job_id)
    elif fate < 0.5:
        events.append(referrals.JobCancelled(community_id=cid, job_id=job_id, reason="plans changed"))
    else:
        referrer, referred = others[3], others[4]  # an introduction to the job: on both streams
        referral_id = str(uuid.uuid4())
        items.append(Item("referrals", f"referral-{referral_id}", [referrals.ReferralMade(
            community_id=cid, referral_id=referral_id, referrer_id=referrer, referred_id=referred, to_member_id=None,
            job_id=job_id, note="she did our shop sign")], referrer))
        events.append(referrals.JobReferred(community_id=cid, job_id=job_id, member_id=referred, referred_by=referrer,
                                            note="she did our shop sign"))
        workers = [offerers[0], referred]
        events += [referrals.JobAssigned(community_id=cid, job_id=job_id, member_ids=workers),
                   referrals.JobStarted(community_id=cid, job_id=job_id),
                   referrals.JobCompleted(community_id=cid, job_id=job_id)]
        scores = {d: rng.randint(3, 5) for d in referrals.DIMENSIONS}
        events += [referrals.FeedbackGiven(community_id=cid, job_id=job_id, giver_id=requester, subject_id=w,
                                           giver_relation="requester", comment=_text(rng, 6), **scores)
                   for w in workers]
        events += [referrals.FeedbackGiven(community_id=cid, job_id=job_id, giver_id=w, subject_id=requester,
                                           giver_relation="worker", comment=_text(rng, 6), **scores)
                   for w in workers]
    return [Item("referrals", f"job-{job_id}", events, requester), *items]


def _referral(rng: random.Random, c: Community, facilitators: list[str]) -> list[Item]:
    cid, referral_id = c.community_id, str(uuid.uuid4())
    referrer, referred, to = rng.sample(c.member_ids, 3)
    events: list[DomainEvent] = [referrals.ReferralMade(
        community_id=cid, referral_id=referral_id, referrer_id=referrer, referred_id=referred, to_member_id=to,
        job_id=None, note=_text(rng, 6))]
    if rng.random() < 0.7:
        events += [referrals.ReferralAccepted(community_id=cid, referral_id=referral_id),
                   referrals.ReferralOutcomeRecorded(community_id=cid, referral_id=referral_id, referrer_id=referrer,
                                                     worked=rng.random() < 0.75, note="", recorded_by=to)]
    else:
        events.append(referrals.ReferralDeclined(community_id=cid, referral_id=referral_id, reason="no time now"))
    return [Item("referrals", f"referral-{referral_id}", events, referrer)]


def _session(rng: random.Random, c: Community, facilitators: list[str]) -> list[Item]:
    """A session held last week: scheduled, registrations up to its capacity, attendance."""
    cid, session_id, host = c.community_id, str(uuid.uuid4()), rng.choice(facilitators)
    starts = (datetime.now(UTC) - timedelta(days=rng.randint(1, 20))).replace(microsecond=0)
    registered = rng.sample(c.member_ids, rng.randint(8, 16))
    events: list[DomainEvent] = [sessions.SessionScheduled(
        session_id=session_id, community_id=cid, kind=rng.choice(["group-coaching", "share-meeting", "meal"]),
        title=_text(rng, 3), starts_at=starts, ends_at=starts + timedelta(hours=2), time_zone="Asia/Tokyo",
        place="community hall", capacity=16, scheduled_by=host)]
    events += [sessions.MemberRegistered(session_id=session_id, community_id=cid, member_id=m, registered_by=m)
               for m in registered]
    events.append(sessions.AttendanceRecorded(session_id=session_id, community_id=cid,
                                              attendees=[m for m in registered if rng.random() < 0.85],
                                              recorded_by=host))
    return [Item("sessions", f"session-{session_id}", events, host)]


def _goal(rng: random.Random, c: Community, facilitators: list[str]) -> list[Item]:
    cid, goal_id, member = c.community_id, str(uuid.uuid4()), rng.choice(c.member_ids)
    now = datetime.now(UTC)
    kpi = sessions.Kpi(name="pages", unit="pages", baseline=0, target=32, direction="increase")
    events: list[DomainEvent] = [sessions.GoalSet(
        goal_id=goal_id, community_id=cid, member_id=member, facilitator_id=rng.choice(facilitators),
        statement="publish my first picture book", motivation=_text(rng, 8), kpis=[kpi],
        due_date=(now + timedelta(days=120)).date(), set_by=member, set_at=now)]
    events += [sessions.ProgressCheckedIn(goal_id=goal_id, community_id=cid, values={"pages": 4.0 * (i + 1)},
                                          note=_text(rng, 5), checked_in_by=member, checked_in_at=now)
               for i in range(rng.randint(1, 4))]
    if rng.random() < 0.3:
        events.append(sessions.GoalAchieved(goal_id=goal_id, community_id=cid, note="done", achieved_by=member,
                                            achieved_at=now))
    return [Item("sessions", f"goal-{goal_id}", events, member)]


@dataclass
class Seeder:
    """Appends planned communities into the services' event stores through their inline projections."""

    stack: Stack
    rng: random.Random
    stores: dict[str, EventStore] = field(default_factory=dict)
    pools: list[asyncpg.Pool] = field(default_factory=list)
    communities: list[Community] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SERVICES, 0))

    @property
    def events(self) -> int:
        return sum(self.counts.values())

    async def open(self) -> None:
        for service in SERVICES:
            pool = await asyncpg.create_pool(self.stack.eco.database_url(service), min_size=1, max_size=WORKERS)
            self.pools.append(pool)
            self.stores[service] = EventStore(pool, load_spec(service).inline_projections)

    async def close(self) -> None:
        for pool in self.pools:
            await pool.close()

    async def seed(self, target: int, label: str) -> float:
        """Plans and appends communities until ``target`` events: one transaction per community and
        service (each stream appended whole, as new), several at once. Returns the seconds it took."""
        progress = Progress(label, target - self.events)
        planned = self.events

        async def worker() -> None:
            nonlocal planned
            while planned < target:
                c = plan_community(self.rng, len(self.communities), min(EVENTS_PER_COMMUNITY, target - planned))
                self.communities.append(c)
                planned += c.events
                for service in SERVICES:
                    store, n = self.stores[service], 0
                    async with store.unit_of_work() as conn:
                        for item in c.items:
                            if item.service != service:
                                continue
                            meta = {"actor": item.actor, "community_id": c.community_id,
                                    "correlation_id": str(uuid.uuid4())}
                            await store.append(item.stream_id, [NewEvent(e.event_type(), e.payload(), dict(meta))
                                                                for e in item.events], NO_STREAM, connection=conn)
                            n += len(item.events)
                    self.counts[service] += n
                    progress.advance(n)
                c.items = []  # only the ids are needed from here on

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(WORKERS)))
        progress.finish()
        return time.perf_counter() - start


async def outstanding(stack: Stack, js: Any) -> tuple[int, dict[str, int]]:
    """Events not yet published by a relay plus messages not yet applied by a consumer (by durable)."""
    behind: dict[str, int] = {}
    for service in (*SERVICES, "gateway"):
        conn = await asyncpg.connect(stack.eco.database_url(service))
        try:
            behind[f"{service} relay"] = int(await conn.fetchval(  # the relay's order: commit order
                "SELECT count(*) FROM events e LEFT JOIN checkpoints c ON c.name = 'relay' "
                "WHERE c.name IS NULL "
                "OR (e.transaction_id, e.global_position) > (c.transaction_id, c.global_position)"))
        finally:
            await conn.close()
    for info in await js.consumers_info(stack.eco.prefix.upper()):
        behind[info.name] = info.num_pending + info.num_ack_pending
    return sum(behind.values()), behind


async def caught_up(stack: Stack, label: str, timeout: float = 7200) -> float:
    """Waits (with progress) until every relay has published everything and every consumer applied it."""
    nc = await nats.connect(stack.eco.nats.url)
    js = nc.jetstream()
    start = time.perf_counter()
    try:
        left, _ = await outstanding(stack, js)
        progress = Progress(label, max(left, 1))
        settled = 0
        while time.perf_counter() - start < timeout:
            left, behind = await outstanding(stack, js)
            if left > (progress.total or 0) - progress.done:
                progress.total = progress.done + left
            progress.advance((progress.total or 0) - progress.done - left)
            settled = settled + 1 if left == 0 else 0
            if settled >= 2:  # twice in a row: nothing in flight between a relay and a consumer
                progress.finish()
                return time.perf_counter() - start
            await asyncio.sleep(1)
        raise TimeoutError(f"consumers still behind after {timeout:.0f} s: {behind}")
    finally:
        await nc.close()


@dataclass
class Query:
    name: str
    path: Callable[[Community], str]


QUERIES = [
    Query("community health", lambda c: f"/v1/communities/{c.community_id}/health"),
    Query("member directory", lambda c: f"/v1/communities/{c.community_id}/members?limit=50"),
    Query("job matching", lambda c: f"/v1/communities/{c.community_id}/jobs/{c.open_jobs[0]}/matches"),
]


async def measure(stack: Stack, communities: list[Community], query: Query, requests: int,
                  rng: random.Random, label: str) -> tuple[list[float], dict[int, int]]:
    """Closed loop, ``CONCURRENCY`` clients, each request for a community drawn at random."""
    client = HttpClient("127.0.0.1", stack.gateway_port, CONCURRENCY)
    headers = {c.community_id: stack.eco.headers(c.community_id, c.owner_id, "owner") for c in communities}
    usable = [c for c in communities if c.open_jobs] if query.name == "job matching" else communities
    latencies: list[float] = []
    failed: dict[int, int] = {}
    warmup = min(100, requests // 10)
    progress = Progress(label, requests + warmup)
    sent = 0

    async def worker() -> None:
        nonlocal sent
        while sent < requests + warmup:
            sent += 1
            counted = sent > warmup
            c = rng.choice(usable)
            began = time.perf_counter()
            try:
                status, _ = await client.request("GET", query.path(c), headers[c.community_id])
            except (OSError, asyncio.IncompleteReadError):
                status = 0
            if counted:
                if status == 200:
                    latencies.append(time.perf_counter() - began)
                else:
                    failed[status] = failed.get(status, 0) + 1
            progress.advance()

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    await client.close()
    progress.finish()
    return latencies, failed


def rss_mb(stack: Stack) -> dict[str, float]:
    sizes = {}
    for name, proc in stack.eco.processes.items():
        if proc.process is not None:
            sizes[name] = psutil.Process(proc.process.pid).memory_info().rss / 2**20
    return sizes


async def database_sizes(stack: Stack) -> dict[str, float]:
    sizes = {}
    for service in (*SERVICES, "gateway"):
        conn = await asyncpg.connect(stack.eco.database_url(service))
        try:
            sizes[service] = await conn.fetchval("SELECT pg_database_size(current_database())") / 2**20
        finally:
            await conn.close()
    return sizes


async def read_model_counts(stack: Stack) -> str:
    checks = {"members": "SELECT count(*) FROM members", "referrals": "SELECT count(*) FROM roster",
              "sessions": "SELECT count(*) FROM roster", "gateway": "SELECT count(*) FROM directory"}
    out = []
    for service, sql in checks.items():
        conn = await asyncpg.connect(stack.eco.database_url(service))
        try:
            out.append(f"{service} {await conn.fetchval(sql):,}")
        finally:
            await conn.close()
    return ", ".join(out)


@dataclass
class Checkpoint:
    events: int
    communities: int
    seed_seconds: float
    catch_up_seconds: float
    latencies: dict[str, list[float]]
    failed: dict[str, dict[int, int]]
    rss: dict[str, float]
    db_mb: dict[str, float]
    members: str

    def summary(self) -> str:
        return (f"{self.events:,} events, {self.communities:,} communities: seeded in {self.seed_seconds:,.0f} s "
                f"({self.events / max(self.seed_seconds, 1e-9):,.0f} events/s through the inline projections), "
                f"then {self.catch_up_seconds:,.0f} s until every relay and consumer had caught up; members in the "
                f"read models: {self.members}; memory (RSS) "
                + ", ".join(f"{k} {v:,.0f} MB" for k, v in self.rss.items()) + "; database sizes "
                + ", ".join(f"{k} {v:,.0f} MB" for k, v in self.db_mb.items())
                + "; p50 / p95 / p99 — "
                + "; ".join(f"{name} {ms(values)} ({len(values):,} requests"
                            + (f", failures by status {self.failed[name]}" if self.failed[name] else "") + ")"
                            for name, values in self.latencies.items()))


async def publish_and_replay(stack: Stack, seeder: Seeder) -> None:
    """With the services stopped: the services' own relay code publishes what was seeded, every service's
    bus-fed read models are replayed from JetStream in batches (``kizuna.rebuild``), and each durable
    consumer is moved to the end of the stream, past what the replay applied."""
    eco = stack.eco
    nc = await nats.connect(eco.nats.url)
    js = nc.jetstream()
    try:
        relays, tasks = [], []
        for service in SERVICES:
            relay = OutboxRelay(seeder.stores[service], js, service=service, prefix=eco.prefix,
                                database_url=eco.database_url(service), batch_size=1000, idle_seconds=0.05)
            relays.append(relay)
            tasks.append(asyncio.create_task(relay.run()))
        _, behind = await outstanding(stack, js)
        unpublished = sum(n for name, n in behind.items() if name.endswith(" relay"))
        progress = Progress("scale: the services' outbox relays publishing to JetStream", unpublished)
        while (published := sum(r.published for r in relays)) < unpublished:
            if any(t.done() for t in tasks):
                raise RuntimeError("a relay stopped")
            progress.advance(published - progress.done)
            await asyncio.sleep(0.2)
        progress.advance(published - progress.done)
        progress.finish()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for service in (*SERVICES, "gateway"):
            settings = ServiceSettings(service_name=service, database_url=eco.database_url(service),
                                       nats_url=eco.nats.url, subject_prefix=eco.prefix,
                                       stream_name=eco.prefix.upper())
            pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=4)
            try:
                await replay_bus(pool, load_spec(service), settings)
            finally:
                await pool.close()
        stream = eco.prefix.upper()
        last = (await js.stream_info(stream)).state.last_seq
        for info in await js.consumers_info(stream):
            if info.num_pending or info.num_ack_pending:
                await js.delete_consumer(stream, info.name)
                await js.add_consumer(stream, dataclasses.replace(
                    info.config, deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=last + 1))
    finally:
        await nc.close()


async def bench_scale(s: Servers, size: int) -> list[Result]:
    """``size``: events at the second checkpoint; the first is a tenth of it (at least 10,000)."""
    targets = [max(size // 10, 10_000), size]
    requests = 3000 if size >= 500_000 else 300
    stack = await s.new_stack(env=ENV)  # its own deployment: the shared one carries other benchmarks' data
    rng = random.Random(9)
    seeder = Seeder(stack, rng)
    await seeder.open()
    checkpoints: list[Checkpoint] = []
    try:
        for n, target in enumerate(targets):
            if n == 0:  # live: the running services' relays and consumers take the events as they are appended
                seeded = await seeder.seed(target, f"scale: seeding up to {target:,} events, services running")
                catch_up = await caught_up(stack, "scale: relays and consumers catching up")
            else:  # services stopped while the rest is seeded, published and replayed in batches
                for proc in stack.eco.processes.values():
                    proc.stop()
                seeded = await seeder.seed(target, f"scale: seeding up to {target:,} events, services stopped")
                began = time.perf_counter()
                await publish_and_replay(stack, seeder)
                await asyncio.to_thread(stack.eco.start, *stack.eco.processes, **UNLIMITED, **ENV)
                await caught_up(stack, "scale: relays and consumers after the restart")
                catch_up = time.perf_counter() - began
            latencies, failed = {}, {}
            for query in QUERIES:
                latencies[query.name], failed[query.name] = await measure(
                    stack, seeder.communities, query, requests, rng, f"scale: {query.name} at {seeder.events:,} events")
            checkpoints.append(Checkpoint(seeder.events, len(seeder.communities), seeded, catch_up, latencies,
                                          failed, rss_mb(stack), await database_sizes(stack),
                                          await read_model_counts(stack)))
    finally:
        await seeder.close()
        stack.stop()
    small, large = checkpoints
    notes = [f"scale, at {cp.events:,} events: {cp.summary()}" for cp in checkpoints]
    results = []
    for query in QUERIES:
        before, after = small.latencies[query.name], large.latencies[query.name]
        p99_before, p99_after = percentile(before, 99), percentile(after, 99)
        failures = sum(large.failed[query.name].values()) + sum(small.failed[query.name].values())
        results.append(Result(
            f"scale: {query.name}, {large.events:,} vs {small.events:,} events (p50 / p95 / p99)", p99_after * 1000,
            p99_before * 1000, f"at {small.events:,} events", "ms", None, ours_text=ms(after),
            baseline_text=ms(before), goal_text=f"p99 ≤ {GROWTH_GOAL}x",
            goal_met=p99_after <= GROWTH_GOAL * p99_before and failures == 0,
            notes=notes if query is QUERIES[0] else []))
    for service, mb in large.rss.items():
        results.append(Result(
            f"scale: memory of the {service} service at {large.events:,} events (RSS)", mb, small.rss[service],
            f"at {small.events:,} events", "MB", None, ours_text=f"{mb:,.0f} MB",
            baseline_text=f"{small.rss[service]:,.0f} MB", goal_text=f"≤ {MEMORY_GOAL_MB} MB",
            goal_met=mb <= MEMORY_GOAL_MB))
    return results

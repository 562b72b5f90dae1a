"""Invariants under random command sequences and under concurrency, property-based (hypothesis).

The pure properties drive each aggregate's decisions (services/*/domain.py) with random sequences of
commands; the concurrent ones race real writers through ``kizuna.handling.execute`` against the real
event store in PostgreSQL and then check every prefix of the stream that was written.

``KIZUNA_PROPERTY_EXAMPLES`` sets the examples per property (modest in ``make test``, large in ``make soak``).
"""
# ruff: noqa: B023 - each decision lambda is called at once by ``attempt``, inside its loop iteration

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kizuna.devstack import PostgresServer
from kizuna.domain import Aggregate, DomainEvent
from kizuna.errors import ConcurrencyConflict, Problem
from kizuna.eventstore import EventStore
from kizuna.handling import CommandContext, execute, load
from services.members.domain import (
    AcceptOffer,
    ChangeCap,
    ClaimCodes,
    Community,
    DeclineOffer,
    FoundCommunity,
    JoinCommunity,
    LeaveCommunity,
    RemoveMember,
)
from services.referrals.domain import AssignJob, FeedbackGiven, GiveFeedback, Job, OfferToTake, PostJobRequest
from services.referrals.offerings.domain import (
    AnswerTermsChange,
    ApplyTermsChange,
    ChangeTerms,
    CommitShares,
    Offering,
    OfferingTerms,
    WithdrawCommitment,
)
from services.sessions.domain import ScheduleSession, Session

EXAMPLES = int(os.environ.get("KIZUNA_PROPERTY_EXAMPLES", "60"))
PURE = settings(max_examples=EXAMPLES, deadline=None, derandomize=False)
CONCURRENT = settings(max_examples=max(EXAMPLES // 4, 8), deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
NOW = datetime(2031, 4, 1, 9, 0, tzinfo=UTC)
A = TypeVar("A", bound=Aggregate)

# Each step: (operation index, a number to pick a person or a size, a flag).
steps = st.lists(st.tuples(st.integers(0, 9), st.integers(0, 40), st.booleans()), min_size=1, max_size=60)


def attempt(state: A, log: list[DomainEvent], decide: Callable[[], Sequence[DomainEvent]]) -> bool:
    """Run one decision; fold what it decided into ``state`` and the log. A refusal changes nothing."""
    try:
        events = list(decide())
    except Problem:
        return False
    for event in events:
        state.apply(event)
        state.version += 1
        log.append(event)
    return True


def replayed(kind: type[A], log: list[DomainEvent]) -> A:
    state = kind.from_events(log)
    assert state.version == len(log)
    return state


# ---- members: the cap, with the moving waitlist ----

def check_community(c: Community) -> None:
    assert c.size <= c.cap, f"{c.size} members for a cap of {c.cap}"
    assert c.size + c.open_offers <= c.cap, "a place was offered that does not exist"
    assert not set(c.roles) & set(c.waitlist), "someone is both a member and waiting"
    assert list(c.roles.values()).count("owner") == 1


@PURE
@given(cap=st.integers(2, 8), plan=steps)
def test_a_community_never_passes_its_cap(cap: int, plan: list[tuple[int, int, bool]]) -> None:
    c, codes = Community(), ClaimCodes()  # codes: the claim code of every offer made, for its person
    log: list[DomainEvent] = []
    attempt(c, log, lambda: c.found("c1", "owner", FoundCommunity(name="Hikari", owner_display_name="O",
                                                                    member_cap=cap), 150))
    now = NOW
    for n, (op, k, flag) in enumerate(plan):
        now += timedelta(hours=k % 7)
        members = sorted(m for m in c.roles if m != "owner")
        offers = sorted(o for o, offer in c.offers.items() if offer.status == "open")
        if op <= 3:
            attempt(c, log, lambda: c.join(f"p{n}", JoinCommunity(display_name=f"P{n}", waitlist_if_full=flag),
                                           "owner"))
        elif op == 4 and members:
            attempt(c, log, lambda: c.leave(members[k % len(members)], LeaveCommunity(), now, codes))
        elif op == 5 and members:
            attempt(c, log, lambda: c.remove(members[k % len(members)], RemoveMember(reason="r"), "member:owner",
                                             now, codes))
        elif op == 6:
            attempt(c, log, lambda: c.change_cap(ChangeCap(member_cap=2 + k % 8, reason="grow"), "member:owner",
                                                 now, codes))
        elif op == 7 and offers:
            offer_id = offers[k % len(offers)]
            attempt(c, log, lambda: c.accept_offer(offer_id, AcceptOffer(claim_code=codes.minted[offer_id]),
                                                   "member:visitor", now))
        elif op == 8 and offers:
            offer_id = offers[k % len(offers)]
            attempt(c, log, lambda: c.decline_offer(offer_id, DeclineOffer(claim_code=codes.minted[offer_id]),
                                                    "member:visitor", now, codes))
        else:
            attempt(c, log, lambda: c.expire_offers(now + timedelta(days=k), codes))
        check_community(c)
    again = replayed(Community, log)
    assert (again.roles, again.waitlist, again.cap) == (c.roles, c.waitlist, c.cap)


# ---- sessions: capacity and the waitlist ----

def schedule(capacity: int) -> ScheduleSession:
    return ScheduleSession(kind="group-coaching", title="Cohort", starts_at=datetime(2031, 5, 10, 18),  # noqa: DTZ001 - a local wall time, as the API takes it
                           ends_at=datetime(2031, 5, 10, 20), time_zone="Asia/Tokyo", place="House",  # noqa: DTZ001 - a local wall time, as the API takes it
                           capacity=capacity)


def check_session(s: Session) -> None:
    assert len(s.registered) <= s.capacity, f"{len(s.registered)} registered for {s.capacity} places"
    assert len(set(s.registered)) == len(s.registered) and len(set(s.waitlist)) == len(s.waitlist)
    assert not set(s.registered) & set(s.waitlist)
    assert not s.waitlist or len(s.registered) == s.capacity, "a free place while people wait"


@PURE
@given(capacity=st.integers(1, 6), plan=steps)
def test_a_session_never_passes_its_capacity(capacity: int, plan: list[tuple[int, int, bool]]) -> None:
    s = Session()
    log: list[DomainEvent] = []
    attempt(s, log, lambda: s.schedule("s1", "c1", schedule(capacity), "member:f"))
    for op, k, _ in plan:
        member = f"m{k % 12}"
        if op <= 5:
            attempt(s, log, lambda: s.register(member, f"member:{member}"))
        else:
            attempt(s, log, lambda: s.cancel_registration(member, f"member:{member}", NOW))
        check_session(s)
    again = replayed(Session, log)
    assert (again.registered, again.waitlist) == (s.registered, s.waitlist)


# ---- referrals: one feedback per giver per job per subject ----

@PURE
@given(workers=st.integers(1, 4), peers=st.integers(0, 3), plan=steps)
def test_one_feedback_per_giver_per_job_per_subject(workers: int, peers: int,
                                                     plan: list[tuple[int, int, bool]]) -> None:
    job = Job()
    log: list[DomainEvent] = []
    attempt(job, log, lambda: job.post("j1", "c1", "req", PostJobRequest(title="t", deadline=date(2031, 6, 1)),
                                       date(2031, 4, 1)))
    people = [f"w{i}" for i in range(workers + peers)]
    for person in people:
        attempt(job, log, lambda: job.offer(person, OfferToTake()))
    assert attempt(job, log, lambda: job.assign("req", AssignJob(member_ids=people[:workers])))
    assert attempt(job, log, lambda: job.start("req"))
    assert attempt(job, log, lambda: job.complete("req"))
    everyone = ["req", *people, "stranger"]
    for _, k, flag in plan:
        giver, subject = everyone[k % len(everyone)], everyone[(k // 3 + flag) % len(everyone)]
        attempt(job, log, lambda: job.give_feedback(giver, GiveFeedback(subject_id=subject, quality=5, reliability=4,
                                                                        beyond=3, collaboration=4)))
    given_pairs = [(e.giver_id, e.subject_id) for e in log if isinstance(e, FeedbackGiven)]
    assert len(given_pairs) == len(set(given_pairs)), "feedback given twice on one person for one job"
    assert all(g != s for g, s in given_pairs)
    assert replayed(Job, log).feedback == job.feedback == set(given_pairs)


# ---- offerings: shares never over-committed, terms changes included ----

def offering_terms(shares: int, minimum: int = 1) -> OfferingTerms:
    return OfferingTerms(title="Share", season="Summer 2031", shares=shares, minimum_shares=min(minimum, shares),
                         commitment_deadline=datetime(2031, 5, 1, tzinfo=UTC), delivery_dates=[date(2031, 7, 5)])


def check_offering(o: Offering) -> None:
    assert o.committed <= o.current.shares, f"{o.committed} shares committed of {o.current.shares}"
    assert all(shares > 0 for shares in o.commitments.values())


@PURE
@given(shares=st.integers(1, 30), plan=steps)
def test_shares_are_never_over_committed(shares: int, plan: list[tuple[int, int, bool]]) -> None:
    o = Offering()
    log: list[DomainEvent] = []
    assert attempt(o, log, lambda: o.publish("o1", "c1", "producer", offering_terms(shares), NOW))
    proposals = 0
    for op, k, flag in plan:
        member = f"m{k % 6}"
        if op <= 4:
            attempt(o, log, lambda: o.commit(member, CommitShares(shares=1 + k % 7), NOW))
        elif op == 5:
            attempt(o, log, lambda: o.withdraw(member, WithdrawCommitment(), NOW))
        elif op == 6:
            proposals += 1
            pid = f"p{proposals}"
            attempt(o, log, lambda: o.propose_terms_change("producer", pid, ChangeTerms(
                terms=offering_terms(1 + k % 30)), NOW))
        elif op == 7 and o.proposal is not None:
            pid = o.proposal.proposal_id
            attempt(o, log, lambda: o.answer_terms_change(member, pid, AnswerTermsChange(consent=flag), NOW))
        elif op == 8 and o.proposal is not None:
            pid = o.proposal.proposal_id
            attempt(o, log, lambda: o.apply_terms_change("producer", pid, ApplyTermsChange(
                release_non_consenting=flag), NOW))
        else:
            attempt(o, log, lambda: o.settle(NOW + timedelta(days=60 * flag)))
        check_offering(o)
    again = replayed(Offering, log)
    assert again.commitments == o.commitments and again.current == o.current


# ---- the same rules against racing writers on the real event store ----

@pytest.fixture(scope="module")
def store_url(postgres: PostgresServer) -> Iterator[str]:
    from kizuna.service import migrate

    url = postgres.create_database(f"props_{uuid.uuid4().hex[:10]}")

    async def prepare() -> None:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        await migrate(pool, [])
        await pool.close()

    asyncio.run(prepare())
    yield url


async def race(url: str, stream: str, kind: type[A], first: Callable[[A], Sequence[DomainEvent]],
               deciders: Sequence[Callable[[A], Sequence[DomainEvent]]]) -> tuple[list[list[DomainEvent]], list[Any]]:
    """``first`` alone, then every decider at once, each its own writer with the retrying command path.
    Returns the stream as stored, one list per committed command (checked for gap-free versions), and
    each writer's outcome."""
    pool = await asyncpg.create_pool(url, min_size=2, max_size=30)
    try:
        store = EventStore(pool)
        ctx = CommandContext(actor="test", community_id="c1")
        await execute(store, stream, kind, first, ctx)

        async def one(decide: Callable[[A], Sequence[DomainEvent]]) -> Any:
            try:
                _, recorded = await execute(store, stream, kind, decide, ctx)
                return recorded
            except ConcurrencyConflict:
                raise
            except Problem as refusal:
                return refusal

        outcomes = await asyncio.gather(*(one(d) for d in deciders))
        async with pool.acquire() as conn:
            versions = [r["stream_version"] for r in await conn.fetch(
                "SELECT stream_version FROM events WHERE stream_id = $1 ORDER BY global_position", stream)]
        assert versions == list(range(1, len(versions) + 1)), f"versions with gaps or out of order: {versions}"
        state = await load(store, stream, kind)
        assert state.version == len(versions)
        batches: dict[int, list[DomainEvent]] = {}
        for recorded in await store.read_stream(stream):
            event = DomainEvent.decode(recorded.type, recorded.data, kind.__module__, version=recorded.schema_version)
            assert event is not None
            batches.setdefault(int(recorded.transaction_id), []).append(event)
        return list(batches.values()), list(outcomes)
    finally:
        await pool.close()


def prefixes(kind: type[A], batches: list[list[DomainEvent]], check: Callable[[A], None]) -> list[DomainEvent]:
    """Checks the state after every committed command; returns the whole stream."""
    state = kind()
    for batch in batches:
        for event in batch:
            state.apply(event)
        check(state)
    return [event for batch in batches for event in batch]


@CONCURRENT
@given(cap=st.integers(2, 6), joiners=st.integers(1, 20))
def test_racing_joins_never_pass_the_cap_and_leave_no_version_gap(store_url: str, cap: int, joiners: int) -> None:
    stream = f"community-{uuid.uuid4()}"
    deciders = [lambda c, n=n: c.join(f"p{n}", JoinCommunity(display_name="P"), "owner") for n in range(joiners)]
    events, outcomes = asyncio.run(race(store_url, stream, Community, lambda c: c.found(
        "c1", "owner", FoundCommunity(name="H", owner_display_name="O", member_cap=cap), 150), deciders))
    prefixes(Community, events, check_community)
    joined = [o for o in outcomes if isinstance(o, list)]
    full = [o for o in outcomes if isinstance(o, Problem)]
    assert len(joined) == min(joiners, cap - 1) and all(o.slug == "community-full" for o in full)
    assert len(joined) + len(full) == joiners


@CONCURRENT
@given(capacity=st.integers(1, 5), members=st.integers(1, 15), cancellers=st.integers(0, 5))
def test_racing_registrations_never_pass_capacity(store_url: str, capacity: int, members: int,
                                                  cancellers: int) -> None:
    stream = f"session-{uuid.uuid4()}"
    deciders = [lambda s, n=n: s.register(f"m{n}", "member") for n in range(members)]
    deciders += [lambda s, n=n: s.cancel_registration(f"m{n}", "member", NOW) for n in range(cancellers)]
    events, _ = asyncio.run(race(store_url, stream, Session,
                                 lambda s: s.schedule("s1", "c1", schedule(capacity), "member:f"), deciders))
    prefixes(Session, events, check_session)


@CONCURRENT
@given(shares=st.integers(1, 20), asks=st.lists(st.integers(1, 6), min_size=1, max_size=20))
def test_racing_commitments_never_over_commit(store_url: str, shares: int, asks: list[int]) -> None:
    stream = f"offering-{uuid.uuid4()}"
    deciders = [lambda o, n=n, k=k: o.commit(f"m{n}", CommitShares(shares=k), NOW) for n, k in enumerate(asks)]
    events, outcomes = asyncio.run(race(store_url, stream, Offering, lambda o: o.publish(
        "o1", "c1", "producer", offering_terms(shares), NOW), deciders))
    stream_events = prefixes(Offering, events, check_offering)
    granted = sum(k for k, o in zip(asks, outcomes, strict=True) if isinstance(o, list))
    assert granted == replayed(Offering, stream_events).committed <= shares

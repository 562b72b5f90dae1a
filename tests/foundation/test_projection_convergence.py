"""Every bus-fed read model converges under any delivery order (the contract in projection_contract.py).

One subclass per ordered Subscription of the services: the referrals and sessions rosters, the gateway's
directory and health, the referrals' partner jobs and offers. The reactions (``referrals-partner-offers``,
``gateway-federation``) are not read models: they pick event types, so they are applied exactly once through
the inbox in delivery order, and the aggregates they append to decide (docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from kizuna.consumer import Subscription, apply_in_order
from kizuna.envelope import Envelope
from kizuna.ordering import follows_whole_streams
from kizuna.service import migrate
from services.gateway import app as gateway_app
from services.gateway import consumers as gateway_consumers
from services.referrals import app as referrals_app
from services.referrals import consumers as referrals_consumers
from services.referrals.partners import consumers as partner_consumers
from services.referrals.partners.projections import apply_gateway_event
from services.sessions import app as sessions_app
from services.sessions import consumers as sessions_consumers

from .projection_contract import History, ProjectionContract


def _subscription(subscriptions: list[Subscription], name: str) -> Subscription:
    return next(s for s in subscriptions if s.name == name)


def membership_history() -> list[Envelope]:
    """Two communities: joins, a role change, a leave and a rejoin, a removal, an ownership transfer, a cap
    change, and profile events (from each member's own stream) after their joining."""
    h = History()
    for cid in ("c-1", "c-2"):
        community = f"community-{cid}"
        h.add("members", community, cid, "CommunityFounded", name=f"Hikari {cid}", owner_member_id=f"{cid}-o",
              owner_display_name="Owner", member_cap=10)
        for n in range(3):
            h.add("members", community, cid, "MemberJoined", member_id=f"{cid}-m{n}", display_name=f"M{n}",
                  role="member")
        h.add("members", f"profile-{cid}-m0", cid, "MemberProfileUpdated", member_id=f"{cid}-m0",
              display_name="Mei", skills=["carpentry"], vector="0.1,0.2")
        h.add("members", community, cid, "MemberRoleChanged", member_id=f"{cid}-m0", new_role="facilitator")
        h.add("members", community, cid, "MemberLeft", member_id=f"{cid}-m1")
        h.add("members", f"profile-{cid}-m0", cid, "SharingConsentChanged", member_id=f"{cid}-m0",
              shared_fields=["display_name", "skills"])
        h.add("members", community, cid, "MemberJoined", member_id=f"{cid}-m1", display_name="M1 again",
              role="member")
        h.add("members", community, cid, "MemberRemoved", member_id=f"{cid}-m2", reason="r")
        h.add("members", community, cid, "CommunityCapChanged", new_cap=12)
        h.add("members", community, cid, "OwnershipTransferred", from_member_id=f"{cid}-o", to_member_id=f"{cid}-m0")
        h.add("members", f"profile-{cid}-m2", cid, "MemberProfileUpdated", member_id=f"{cid}-m2",
              display_name="Gone but renamed", skills=[], vector="")
        h.add("members", community, cid, "MemberLeft", member_id=f"{cid}-m1")
    return h.events


class TestReferralsRoster(ProjectionContract):
    subscription = _subscription(referrals_consumers.SUBSCRIPTIONS, "referrals-roster")
    migrations = referrals_app.SPEC.migrations
    tables = ["roster"]

    def history(self) -> list[Envelope]:
        return membership_history()


class TestSessionsRoster(ProjectionContract):
    subscription = _subscription(sessions_consumers.SUBSCRIPTIONS, "sessions-roster")
    migrations = sessions_app.SPEC.migrations
    tables = ["roster"]

    def history(self) -> list[Envelope]:
        return membership_history()


class TestGatewayDirectory(ProjectionContract):
    subscription = _subscription(gateway_consumers.SUBSCRIPTIONS, "gateway-directory")
    migrations = gateway_app.SPEC.migrations
    tables = ["directory", "community_caps"]

    def history(self) -> list[Envelope]:
        return membership_history()


class TestGatewayHealth(ProjectionContract):
    subscription = _subscription(gateway_consumers.SUBSCRIPTIONS, "gateway-health")
    migrations = gateway_app.SPEC.migrations
    tables = ["health_items", "health_attendance"]

    def history(self) -> list[Envelope]:
        h = History()
        for cid in ("c-1", "c-2"):
            h.add("referrals", f"job-{cid}-1", cid, "JobRequestPosted", job_id=f"{cid}-1", title="Fence")
            h.add("referrals", f"job-{cid}-2", cid, "JobRequestPosted", job_id=f"{cid}-2", title="Roof")
            h.add("referrals", f"job-{cid}-1", cid, "JobAssigned", job_id=f"{cid}-1")
            h.add("referrals", f"goal-{cid}", cid, "GoalSet", goal_id=cid)
            h.add("referrals", f"job-{cid}-2", cid, "JobCancelled", job_id=f"{cid}-2")
            h.add("referrals", f"job-{cid}-1", cid, "JobCompleted", job_id=f"{cid}-1")
            h.add("referrals", f"referral-{cid}", cid, "ReferralMade", referral_id=cid)
            h.add("referrals", f"referral-{cid}", cid, "ReferralOutcomeRecorded", referral_id=cid, worked=False)
            h.add("referrals", f"referral-{cid}", cid, "ReferralOutcomeRecorded", referral_id=cid, worked=True)
            h.add("referrals", f"goal-{cid}", cid, "GoalAbandoned", goal_id=cid)
            h.add("sessions", f"session-{cid}", cid, "SessionScheduled", session_id=cid)
            h.add("sessions", f"session-{cid}", cid, "AttendanceRecorded", attendees=["a", "b"])
            h.add("sessions", f"session-{cid}", cid, "AttendanceRecorded", attendees=["a", "b", "c"])
        return h.events


def partnership_history() -> list[Envelope]:
    """Two partnerships of one community: everything that crosses one, then the second ends after a job."""
    h = History()
    cid = "c-1"
    for pid in ("p-1", "p-2"):
        stream = f"partnership-{pid}-{cid}"
        h.add("gateway", stream, cid, "PartnershipProposed", partnership_id=pid, sends=["job_requests"])
        h.add("gateway", stream, cid, "PartnershipAccepted", partnership_id=pid, sends=["job_requests"])
        for job in ("j-1", "j-2"):
            h.add("gateway", stream, cid, "PartnerJobReceived", partnership_id=pid, job_id=f"{pid}-{job}",
                  from_community_name="Tsuki", job={"title": f"Job {job}"})
        h.add("gateway", stream, cid, "PartnerOfferSent", partnership_id=pid, job_id=f"{pid}-j-1",
              offer_id=f"{pid}-o-1", member_id="m-1", kind="self")
        h.add("gateway", stream, cid, "PartnerOfferSent", partnership_id=pid, job_id=f"{pid}-j-1",
              offer_id=f"{pid}-o-2", member_id="m-2", kind="self")
        h.add("gateway", stream, cid, "PartnerJobStatusReceived", partnership_id=pid, job_id=f"{pid}-j-1",
              state="assigned", assigned_offer_ids=[f"{pid}-o-2"])
        h.add("gateway", stream, cid, "PartnerJobStatusReceived", partnership_id=pid, job_id=f"{pid}-j-1",
              state="completed", assigned_offer_ids=[])
        h.add("gateway", stream, cid, "PartnerOfferingReceived", partnership_id=pid, offering_id=f"{pid}-f",
              from_community_name="Tsuki", offering={"title": "Bulk rice"})
        h.add("gateway", stream, cid, "PartnerPledgeSent", partnership_id=pid, offering_id=f"{pid}-f",
              pledge_id=f"{pid}-pl", member_id="m-1", shares=2)
        h.add("gateway", stream, cid, "PartnerPledgeResultReceived", partnership_id=pid, pledge_id=f"{pid}-pl",
              accepted=True, reason="committed")
        h.add("gateway", stream, cid, "PartnerOfferingStatusReceived", partnership_id=pid, offering_id=f"{pid}-f",
              status="confirmed")
        h.add("gateway", stream, cid, "PartnerIntroductionReceived", partnership_id=pid, referral_id=f"{pid}-r",
              from_community_name="Tsuki", card={"display_name": "Kai"}, note="meet Kai", introduced_by_name="Aya")
        h.add("gateway", stream, cid, "IntroductionOutcomeSentToPartner", partnership_id=pid,
              referral_id=f"{pid}-r", worked=True, note="thanks")
    h.add("gateway", "partnership-p-2-c-1", cid, "PartnershipSuspended", partnership_id="p-2", sends=[])
    h.add("gateway", "partnership-p-2-c-1", cid, "PartnershipEnded", partnership_id="p-2", sends=[])
    return h.events


class TestReferralsPartnerJobs(ProjectionContract):
    subscription = partner_consumers.PROJECTION
    migrations = referrals_app.SPEC.migrations
    tables = ["partnerships", "partner_jobs", "partner_job_offers", "partner_offerings", "partner_pledges",
              "partner_introductions"]
    arrival_columns = frozenset({"seq"})  # the order rows arrived in: what a cursor pages by

    def history(self) -> list[Envelope]:
        return partnership_history()


def test_every_bus_fed_read_model_of_the_services_is_ordered_and_has_a_contract() -> None:
    """A new Subscription must either follow whole services (ordered) and get a contract subclass above, or
    be a reaction."""
    read_models = [*referrals_app.SPEC.subscriptions, *sessions_app.SPEC.subscriptions,
                   *gateway_app.SPEC.subscriptions]
    contracted = {c.subscription.name for c in ProjectionContract.__subclasses__()}
    assert {s.name for s in read_models} == contracted
    assert all(s.ordered and follows_whole_streams(s.subjects) for s in read_models)


# ---- the partner lists' cursor ----

async def test_partner_job_seqs_become_visible_in_increasing_order_so_a_cursor_never_skips(
        postgres: Any, unique: str) -> None:
    """Two replicas receiving partner jobs at once: the second waits for the first's commit to draw its seq,
    so a reader that has paged past a seq never finds a lower one appear later (max(seq)+1 could give both
    the same number, and a plain sequence lets the lower commit last)."""
    pool = await asyncpg.create_pool(postgres.create_database(f"s_{unique}"), min_size=3, max_size=3)
    try:
        await migrate(pool, referrals_app.SPEC.migrations)

        def received(job_id: str) -> Envelope:
            h = History()
            h.add("gateway", f"partnership-p-{job_id}", "c-1", "PartnerJobReceived", partnership_id="p",
                  job_id=job_id, from_community_name="Tsuki", job={"title": job_id})
            return h.events[0]

        first = await pool.acquire()
        transaction = first.transaction()
        await transaction.start()
        await apply_gateway_event(first, received("early"))

        async def second_replica() -> None:
            async with pool.acquire() as conn, conn.transaction():
                await apply_gateway_event(conn, received("late"))

        late = asyncio.create_task(second_replica())
        await asyncio.sleep(0.5)
        assert not late.done(), "the second replica drew a seq while the first had not committed its own"
        async with pool.acquire() as reader:
            assert await reader.fetchval("SELECT count(*) FROM partner_jobs") == 0
        await transaction.commit()
        await pool.release(first)
        await late
        async with pool.acquire() as reader:
            rows = await reader.fetch("SELECT job_id, seq FROM partner_jobs ORDER BY seq")
        assert [r["job_id"] for r in rows] == ["early", "late"]
        with pytest.raises(asyncpg.UniqueViolationError):
            async with pool.acquire() as conn:
                await conn.execute("UPDATE partner_jobs SET seq = $1 WHERE job_id = 'late'", rows[0]["seq"])
    finally:
        await pool.close()


# ---- a gap that never fills ----

async def test_an_event_whose_predecessor_never_comes_is_held_then_applied_once_overdue(pool: asyncpg.Pool) -> None:
    seen: list[int] = []

    async def remember(conn: asyncpg.Connection, envelope: Envelope) -> None:
        seen.append(envelope.stream_version)

    subscription = Subscription("gap-watcher", ["*.members.>"], remember)
    h = History()
    for _ in range(3):
        h.add("members", "community-c", "c", "MemberJoined", member_id=str(uuid.uuid4()), display_name="x",
              role="member")
    _, lost, third = h.events
    async with pool.acquire() as conn, conn.transaction():
        assert (await apply_in_order(conn, subscription, [h.events[0]])).applied == 1
    async with pool.acquire() as conn, conn.transaction():
        assert (await apply_in_order(conn, subscription, [third])).early == [0]
    async with pool.acquire() as conn, conn.transaction():
        assert (await apply_in_order(conn, subscription, [third], overdue=lambda _: True)).applied == 1
    async with pool.acquire() as conn, conn.transaction():  # the lost one, if it ever comes, is too late
        assert (await apply_in_order(conn, subscription, [lost, third])).applied == 0
    assert seen == [1, 3]

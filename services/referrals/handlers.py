"""Referrals commands: only active members of the community act; load, decide, append."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from kizuna.auth import Principal
from kizuna.domain import DomainEvent
from kizuna.errors import Forbidden, Invalid, NotFound
from kizuna.eventstore import EventStore
from kizuna.handling import CommandContext, execute, load_existing

from . import projections
from .domain import Job, MakeReferral, PostJobRequest, Referral, ReferToJob
from .offerings.domain import Offering
from .partners import projections as partner_projections


async def acting_member(store: EventStore, who: Principal, community_id: str) -> str:
    """The caller's member id, if they are an active member here (the operator acts for nobody)."""
    if who.is_operator or who.member_id is None:
        raise Forbidden("job requests and referrals are made by members, not the operator")
    async with store.pool.acquire() as conn:
        row = await projections.roster_member(conn, community_id, who.member_id)
    if row is None or not row["active"]:
        raise Forbidden("only active members of this community may do this", slug="not-a-member")
    return who.member_id


async def require_roster_member(store: EventStore, community_id: str, member_id: str, field: str) -> None:
    async with store.pool.acquire() as conn:
        row = await projections.roster_member(conn, community_id, member_id)
    if row is None or not row["active"]:
        raise Invalid(field, "is not an active member of this community")


async def post_job(store: EventStore, who: Principal, community_id: str, cmd: PostJobRequest,
                   ctx: CommandContext) -> str:
    requester = await acting_member(store, who, community_id)
    job_id = ctx.new_id("job")
    today = datetime.now(UTC).date()
    await execute(store, f"job-{job_id}", Job, lambda j: j.post(job_id, community_id, requester, cmd, today), ctx,
                  community_id=community_id)
    return job_id


async def on_job(store: EventStore, who: Principal, community_id: str, job_id: str, ctx: CommandContext,
                 decide: Callable[[Job, str], Sequence[DomainEvent]]) -> Job:
    actor = await acting_member(store, who, community_id)
    job = await load_existing(store, f"job-{job_id}", Job, "job request")
    if job.community_id != community_id:
        raise NotFound("job request not found")
    state, _ = await execute(store, f"job-{job_id}", Job, lambda j: decide(j, actor), ctx, community_id=community_id)
    return state


async def make_referral(store: EventStore, who: Principal, community_id: str, cmd: MakeReferral,
                        ctx: CommandContext) -> str:
    referrer = await acting_member(store, who, community_id)
    await require_roster_member(store, community_id, cmd.referred_id, "referred_id")
    if cmd.to_member_id:
        await require_roster_member(store, community_id, cmd.to_member_id, "to_member_id")
    if cmd.to_partnership_id:
        async with store.pool.acquire() as conn:
            sends = await partner_projections.partnership_sends(conn, community_id, cmd.to_partnership_id)
        if sends is None:
            raise Invalid("to_partnership_id", "is not an active partnership of this community")
        if "referrals" not in sends:
            raise Invalid("to_partnership_id", "this partnership does not share referrals")
    if cmd.job_id:
        job = await load_existing(store, f"job-{cmd.job_id}", Job, "job request")
        if job.community_id != community_id:
            raise NotFound("job request not found")
    if cmd.offering_id:  # introducing a trusted producer: the referral's subject is their offering
        offering = await load_existing(store, f"offering-{cmd.offering_id}", Offering, "offering")
        if offering.community_id != community_id:
            raise NotFound("offering not found")
        if offering.producer != cmd.referred_id:
            raise Invalid("referred_id", "introduce the offering's producer")
    referral_id = ctx.new_id("referral")
    await execute(store, f"referral-{referral_id}", Referral,
                  lambda r: r.make(referral_id, community_id, referrer, cmd), ctx, community_id=community_id)
    if cmd.job_id:  # the job learns it too, so the referred member can be assigned
        await execute(store, f"job-{cmd.job_id}", Job,
                      lambda j: j.refer(referrer, ReferToJob(member_id=cmd.referred_id, note=cmd.note)), ctx,
                      community_id=community_id)
    return referral_id


async def on_referral(store: EventStore, who: Principal, community_id: str, referral_id: str, ctx: CommandContext,
                      decide: Callable[[Referral, str], Sequence[DomainEvent]]) -> Referral:
    actor = await acting_member(store, who, community_id)
    referral = await load_existing(store, f"referral-{referral_id}", Referral, "referral")
    if referral.community_id != community_id:
        raise NotFound("referral not found")
    state, _ = await execute(store, f"referral-{referral_id}", Referral, lambda r: decide(r, actor), ctx,
                             community_id=community_id)
    return state

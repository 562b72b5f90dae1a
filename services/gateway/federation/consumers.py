"""What the gateway does when other services' events concern a partner: share a job request marked for
partners, tell partners how a shared job went, and link a newly founded sister community."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import asyncpg

from kizuna.consumer import Subscription
from kizuna.domain import DomainEvent
from kizuna.envelope import Envelope
from kizuna.eventstore import EventStore
from kizuna.handling import CommandContext, execute
from kizuna.service import Runtime

from . import projections
from .domain import Partnership, member_ref
from .handlers import consented_card, job_card, offering_card, stream_of

_STATES = {"JobAssigned": "assigned", "JobStarted": "in-progress", "JobCompleted": "completed",
           "JobCancelled": "cancelled"}
_REFERRALS_EVENTS = ("JobRequestPosted", *_STATES, "OfferingPublished", "OfferingConfirmed", "OfferingLapsed",
                     "SharesCommitted", "PartnerPledgeRefused", "ReferralMade")


def federation_reactions(runtime: Runtime) -> Subscription:
    store = runtime.store
    own_origin = runtime.settings.public_url.rstrip("/")

    async def react(conn: asyncpg.Connection, envelope: Envelope) -> None:
        ctx = CommandContext(actor="gateway", community_id=envelope.community_id,
                             causation_id=str(envelope.id), correlation_id=envelope.correlation_id or str(uuid.uuid4()))
        if envelope.type == "JobRequestPosted" and envelope.data.get("visibility") == "partners":
            await _share_job(store, conn, envelope, ctx)
        elif envelope.type in _STATES:
            await _send_status(store, conn, envelope, ctx)
        elif envelope.type == "OfferingPublished" and envelope.data.get("terms", {}).get("visibility") == "partners":
            await _share_offering(store, conn, envelope, ctx)
        elif envelope.type in ("OfferingConfirmed", "OfferingLapsed"):
            await _send_offering_status(store, conn, envelope, ctx)
        elif envelope.type == "SharesCommitted" and str(envelope.data.get("member_id", "")).startswith("partner:"):
            d = envelope.data
            await _send_pledge_result(store, conn, ctx, str(d["member_id"]).removeprefix("partner:"), True,
                                      "committed", int(d["shares_left"]))
        elif envelope.type == "PartnerPledgeRefused":
            d = envelope.data
            await _send_pledge_result(store, conn, ctx, str(d["pledge_id"]), False, str(d["reason"]),
                                      int(d["shares_left"]))
        elif envelope.type == "ReferralMade" and envelope.data.get("to_partnership_id"):
            await _introduce(store, conn, envelope, ctx)
        elif envelope.type == "SisterCommunityFounded":
            await _link_sisters(store, conn, envelope, ctx, own_origin)
        elif envelope.type == "MemberErased":
            await _notify_erasure(store, conn, envelope, ctx)

    # Only the event types acted on: the members' and referrals' busiest events (joins, profiles, offers)
    # never concern a partner, and a reaction takes a transaction per message.
    return Subscription("gateway-federation", [*(f"*.referrals.{kind}" for kind in _REFERRALS_EVENTS),
                                               "*.members.SisterCommunityFounded", "*.members.MemberErased"], react)


async def _share_job(store: EventStore, conn: asyncpg.Connection, envelope: Envelope, ctx: CommandContext) -> None:
    d = envelope.data
    cid = str(d["community_id"])
    partners = await conn.fetch("SELECT partnership_id FROM partnerships WHERE community_id = $1 AND status = 'active' "
                                "AND 'job_requests' = ANY(sends)", cid)
    if not partners:
        return
    card = job_card(d, str(await conn.fetchval("SELECT name FROM community_caps WHERE community_id = $1", cid)
                           or ""))
    for row in partners:
        await execute(store, stream_of(row["partnership_id"], cid), Partnership,
                      lambda p: p.share_job(str(d["job_id"]), card), ctx, community_id=cid, connection=conn)


async def _share_offering(store: EventStore, conn: asyncpg.Connection, envelope: Envelope,
                          ctx: CommandContext) -> None:
    d = envelope.data
    cid = str(d["community_id"])
    partners = await conn.fetch("SELECT partnership_id FROM partnerships WHERE community_id = $1 AND status = 'active' "
                                "AND 'offerings' = ANY(sends)", cid)
    if not partners:
        return
    name = await conn.fetchval("SELECT name FROM community_caps WHERE community_id = $1", cid)
    card = offering_card(d["terms"], str(name or ""))
    for row in partners:
        await execute(store, stream_of(row["partnership_id"], cid), Partnership,
                      lambda p: p.share_offering(str(d["offering_id"]), card), ctx, community_id=cid,
                      connection=conn)


async def _send_offering_status(store: EventStore, conn: asyncpg.Connection, envelope: Envelope,
                                ctx: CommandContext) -> None:
    d = envelope.data
    cid, offering_id = str(d["community_id"]), str(d["offering_id"])
    status = "confirmed" if envelope.type == "OfferingConfirmed" else "lapsed"
    for row in await conn.fetch("SELECT partnership_id FROM partner_shared_offerings WHERE offering_id = $1 "
                                "AND community_id = $2", offering_id, cid):
        await execute(store, stream_of(row["partnership_id"], cid), Partnership,
                      lambda p: p.send_offering_status(offering_id, status), ctx, community_id=cid,
                      connection=conn)


async def _send_pledge_result(store: EventStore, conn: asyncpg.Connection, ctx: CommandContext, pledge_id: str,
                              accepted: bool, reason: str, shares_left: int) -> None:
    row = await conn.fetchrow("SELECT partnership_id, community_id FROM partner_pledges_received WHERE pledge_id = $1",
                              pledge_id)
    if row is None:
        return
    await execute(store, stream_of(row["partnership_id"], row["community_id"]), Partnership,
                  lambda p: p.send_pledge_result(pledge_id, accepted, reason, shares_left), ctx,
                  community_id=row["community_id"], connection=conn)


async def _introduce(store: EventStore, conn: asyncpg.Connection, envelope: Envelope, ctx: CommandContext) -> None:
    """Only the introduced member's consented card crosses; an offering is named only if it was shared."""
    d = envelope.data
    cid, pid = str(d["community_id"]), str(d["to_partnership_id"])
    referred = await conn.fetchrow("SELECT * FROM directory WHERE community_id = $1 AND member_id = $2", cid,
                                   d["referred_id"])
    referrer = await conn.fetchval("SELECT display_name FROM directory WHERE community_id = $1 AND member_id = $2",
                                   cid, d["referrer_id"])
    if referred is None:
        return
    card = consented_card(referred)
    offering = d.get("offering_id")
    if offering and not await conn.fetchval("SELECT true FROM partner_shared_offerings WHERE offering_id = $1 "
                                            "AND partnership_id = $2", offering, pid):
        offering = None
    await execute(store, stream_of(pid, cid), Partnership,
                  lambda p: p.send_introduction(str(d["referral_id"]), card, str(d.get("note", "")),
                                                str(referrer or ""), offering, str(d["referred_id"]),
                                                str(d["referrer_id"])),
                  ctx, community_id=cid, connection=conn)


async def _notify_erasure(store: EventStore, conn: asyncpg.Connection, envelope: Envelope,
                          ctx: CommandContext) -> None:
    """A member erased here: every partnership side of the community (whatever its state, ended included) that
    carried their card or words sends the partner an erasure notice, and its outbox keeps nothing of theirs."""
    d = envelope.data
    cid, member_id = str(d["community_id"]), str(d["member_id"])
    for row in await conn.fetch("SELECT partnership_id FROM partnerships WHERE community_id = $1", cid):
        pid = str(row["partnership_id"])
        await execute(store, stream_of(pid, cid), Partnership, lambda p: p.send_erasure_notice(member_id), ctx,
                      community_id=cid, connection=conn)
        await projections.scrub_outbox(conn, pid, cid, member_ref(pid, member_id))


async def _send_status(store: EventStore, conn: asyncpg.Connection, envelope: Envelope, ctx: CommandContext) -> None:
    d = envelope.data
    cid, job_id = str(d["community_id"]), str(d["job_id"])
    shared = await conn.fetch("SELECT partnership_id FROM partner_shared_jobs WHERE job_id = $1 AND community_id = $2",
                              job_id, cid)
    assigned = [str(o) for o in d.get("partner_offer_ids", [])]
    state = _STATES[envelope.type]
    for row in shared:
        pid = row["partnership_id"]
        theirs = [str(r["offer_id"]) for r in await conn.fetch(
            "SELECT offer_id FROM partner_offers_received WHERE partnership_id = $1 AND offer_id = ANY($2::text[])",
            pid, assigned)]
        await execute(store, stream_of(pid, cid), Partnership, _status_decision(job_id, state, theirs), ctx,
                      community_id=cid, connection=conn)


async def _link_sisters(store: EventStore, conn: asyncpg.Connection, envelope: Envelope, ctx: CommandContext,
                        own_origin: str) -> None:
    d = envelope.data
    cid, sister = str(d["community_id"]), str(d["sister_community_id"])
    names = {cid: await conn.fetchval("SELECT name FROM community_caps WHERE community_id = $1", cid),
             sister: d.get("sister_name") or await conn.fetchval(
                 "SELECT name FROM community_caps WHERE community_id = $1", sister)}
    pid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"kizuna:sister:{cid}:{sister}"))
    note = "sister community founded from a full community"
    for here, there in ((cid, sister), (sister, cid)):
        await execute(store, stream_of(pid, here), Partnership,
                      _establish(pid, here, own_origin, there, str(names[there] or ""), note),
                      ctx, community_id=here, connection=conn)


def _status_decision(job_id: str, state: str, offers: list[str]) -> Callable[[Partnership], list[DomainEvent]]:
    return lambda p: p.send_job_status(job_id, state, offers)


def _establish(pid: str, here: str, origin: str, there: str, name: str,
               note: str) -> Callable[[Partnership], list[DomainEvent]]:
    return lambda p: [] if p.version else Partnership.establish(pid, here, origin, there, name, note)

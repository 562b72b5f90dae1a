"""Partner offers arriving through the gateway become part of the job they answer."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from kizuna.consumer import Subscription
from kizuna.envelope import Envelope
from kizuna.eventstore import EventStore
from kizuna.handling import CommandContext, execute, load
from kizuna.service import Runtime

from ..domain import Job, JobOfferedByPartner, Referral
from ..offerings.domain import Offering, PartnerPledgeRecorded
from ..offerings.handlers import stream as offering_stream
from .projections import apply_gateway_event

PROJECTION = Subscription("referrals-partner-jobs", ["*.gateway.>"], apply_gateway_event)


def partner_offer_reaction(runtime: Runtime) -> Subscription:
    store = runtime.store

    async def react(conn: asyncpg.Connection, envelope: Envelope) -> None:
        if envelope.type == "PartnerPledgeReceived":
            await _pledge(store, conn, envelope)
        if envelope.type == "PartnerIntroductionOutcomeReceived":
            d = envelope.data
            ctx = CommandContext(actor=envelope.actor or "gateway", community_id=d["community_id"],
                                 causation_id=str(envelope.id))
            partner = f"partner:{d['from_community_name']}"
            await execute(store, f"referral-{d['referral_id']}", Referral,
                          lambda r: r.record_partner_outcome(partner, bool(d["worked"]), str(d["note"])), ctx,
                          community_id=d["community_id"], connection=conn)
        if envelope.type != "PartnerOfferReceived":
            return
        d = envelope.data
        offer = JobOfferedByPartner(
            community_id=d["community_id"], job_id=d["job_id"], offer_id=d["offer_id"],
            partnership_id=d["partnership_id"], from_community_name=d["from_community_name"], kind=d["kind"],
            card=d["card"], note=d["note"], referred_by_name=d.get("referred_by_name"),
            partner_member=d.get("partner_member", ""), partner_author=d.get("partner_author", ""))
        ctx = CommandContext(actor=envelope.actor or "gateway", community_id=d["community_id"],
                             causation_id=str(envelope.id))
        await execute(store, f"job-{d['job_id']}", Job, lambda job: job.receive_partner_offer(offer), ctx,
                      community_id=d["community_id"], connection=conn)

    # Only the event types acted on (a reaction takes a transaction per message).
    return Subscription("referrals-partner-offers", [f"*.gateway.{kind}" for kind in (
        "PartnerOfferReceived", "PartnerPledgeReceived", "PartnerIntroductionOutcomeReceived")], react)


async def _pledge(store: EventStore, conn: asyncpg.Connection, envelope: Envelope) -> None:
    d = envelope.data
    pledge = PartnerPledgeRecorded(
        community_id=d["community_id"], offering_id=d["offering_id"], pledge_id=d["pledge_id"],
        partnership_id=d["partnership_id"], from_community_name=d["from_community_name"], card=d["card"],
        shares=d["shares"], partner_member=d.get("partner_member", ""))
    ctx = CommandContext(actor=envelope.actor or "gateway", community_id=d["community_id"],
                         causation_id=str(envelope.id))
    if (await load(store, offering_stream(d["offering_id"]), Offering)).version == 0:
        return  # only offerings this community shared can be pledged to; the gateway checked
    await execute(store, offering_stream(d["offering_id"]), Offering,
                  lambda offering: offering.pledge_from_partner(pledge, datetime.now(UTC)), ctx,
                  community_id=d["community_id"], connection=conn)

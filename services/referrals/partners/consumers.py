"""Partner offers arriving through the gateway become part of the job they answer."""

from __future__ import annotations

import asyncpg

from kizuna.consumer import Subscription
from kizuna.envelope import Envelope
from kizuna.handling import CommandContext, execute
from kizuna.service import Runtime

from ..domain import Job, JobOfferedByPartner
from .projections import apply_gateway_event

PROJECTION = Subscription("referrals-partner-jobs", ["*.gateway.>"], apply_gateway_event)


def partner_offer_reaction(runtime: Runtime) -> Subscription:
    store = runtime.store

    async def react(conn: asyncpg.Connection, envelope: Envelope) -> None:
        if envelope.type != "PartnerOfferReceived":
            return
        d = envelope.data
        offer = JobOfferedByPartner(
            community_id=d["community_id"], job_id=d["job_id"], offer_id=d["offer_id"],
            partnership_id=d["partnership_id"], from_community_name=d["from_community_name"], kind=d["kind"],
            card=d["card"], note=d["note"], referred_by_name=d.get("referred_by_name"))
        ctx = CommandContext(actor=envelope.actor or "gateway", community_id=d["community_id"],
                             causation_id=str(envelope.id))
        await execute(store, f"job-{d['job_id']}", Job, lambda job: job.receive_partner_offer(offer), ctx,
                      community_id=d["community_id"], connection=conn)

    return Subscription("referrals-partner-offers", ["*.gateway.>"], react)

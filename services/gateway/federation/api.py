"""Federation over HTTP: the well-known identity, the signed inbox, partnerships, offers to partner
jobs, and the operator's view of deliveries."""

from __future__ import annotations

import random
import time
from datetime import timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from kizuna.addresses import AddressGuard
from kizuna.auth import Principal
from kizuna.errors import Forbidden, NotFound, Problem, Unauthorized
from kizuna.handling import CommandContext
from kizuna.problems import PROBLEM_RESPONSES
from kizuna.service import runtime_of

from ..api import gateway_principal, require_reader
from ..proxy import MAX_BODY_BYTES
from . import delivery, handlers, projections
from .domain import (
    Decision,
    IntroductionOutcome,
    OfferToPartnerJob,
    PledgeToPartnerOffering,
    ProposePartnership,
    ReferToPartnerJob,
    SetFederationListing,
)
from .identity import INBOX, WELL_KNOWN, Identity, PartnerKeys
from .signing import WINDOW_SECONDS, SignatureRejected, public_key_from_text, read, verify

router = APIRouter(responses=PROBLEM_RESPONSES)


def identity_of(request: Request) -> Identity:
    identity: Identity = request.app.state.federation_identity
    return identity


def address_guard_of(request: Request) -> AddressGuard:
    guard: AddressGuard = getattr(request.app.state, "federation_address_guard", AddressGuard())
    return guard


def partner_keys_of(request: Request) -> PartnerKeys:
    """One per process: it keeps the per-origin fetch locks and cooldowns."""
    keys: PartnerKeys | None = getattr(request.app.state, "federation_partner_keys", None)
    if keys is None:
        keys = PartnerKeys(runtime_of(request).pool, request.app.state.http, address_guard_of(request),
                           identity_of(request))
        request.app.state.federation_partner_keys = keys
    return keys


class Partner(BaseModel):
    origin: str
    community_id: str
    name: str


class PartnershipView(BaseModel):
    partnership_id: str
    community_id: str
    partner: Partner
    status: Literal["proposed", "requested", "active", "suspended", "declined", "ended"]
    sends: list[str]
    receives: list[str]
    note: str
    created_at: str
    updated_at: str


class InboxReceipt(BaseModel):
    status: Literal["accepted", "duplicate"]
    message_id: str


class Created(BaseModel):
    offer_id: str


# ---- identity and inbox (deployment to deployment) ----

@router.get(WELL_KNOWN, tags=["federation"],
            summary="This deployment's federation identity: its keys (with status and validity window) and the "
                    "communities whose owners chose to be listed")
async def well_known(request: Request) -> dict[str, Any]:
    async with runtime_of(request).pool.acquire() as conn:
        listed = await projections.listed_communities(conn)
    return identity_of(request).document(listed)


@router.post(INBOX, status_code=202, response_model=InboxReceipt, tags=["federation"],
             summary="Receive a signed message from a partner deployment (RFC 9421 signature required)")
async def inbox(request: Request) -> InboxReceipt:
    runtime, identity = runtime_of(request), identity_of(request)
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise Problem(f"the body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}", status=413,
                      slug="body-too-large", title="Request body too large")
    proposer_key = ("", "")
    try:
        signed = read(request.headers, method=request.method, path=request.url.path, body=body,
                      now=int(time.time()))
        key = await partner_keys_of(request).key_for(signed.origin, signed.key_id)
        if key is None:
            # An origin no partnership here chose: nothing is fetched. Only a proposal carrying its own key,
            # or a message on a proposal still waiting for the owner, can be checked (and is quarantined).
            try:
                message = handlers.parse_message(body)
            except Problem as invalid:  # unauthenticated: say no more than that the key is unknown
                raise SignatureRejected(f"the key {signed.key_id} is not known here", "unknown-key") from invalid
            carried = handlers.proposal_key(message, signed.key_id)
            pending = None if carried else await handlers.pending_proposal_key(runtime.store, message, signed.origin,
                                                                              signed.key_id)
            if carried is None and pending is None:
                raise SignatureRejected(f"{signed.origin} is not a partner of this deployment and the key "
                                        f"{signed.key_id} is not known here", "unknown-key")
            key = public_key_from_text(carried[1] if carried else str(pending))
            proposer_key = carried or proposer_key
        verify(signed, key)
    except SignatureRejected as rejected:
        if rejected.status == 401:
            raise Unauthorized(rejected.reason, slug=rejected.slug) from rejected
        raise Problem(rejected.reason, status=rejected.status, slug=rejected.slug,
                      title="Try again later") from rejected
    async with runtime.pool.acquire() as conn:
        fresh = await conn.fetchval("INSERT INTO federation_nonces (origin, nonce) VALUES ($1, $2) "
                                    "ON CONFLICT DO NOTHING RETURNING true", signed.origin, signed.nonce)
        if random.random() < 0.02:  # noqa: S311 - sampling when to sweep, not a secret
            await conn.execute("DELETE FROM federation_nonces WHERE seen_at < now() - $1::interval",
                               timedelta(seconds=2 * WINDOW_SECONDS))
    if not fresh:
        raise Unauthorized("this signature was seen before: a replayed request", slug="replayed")
    message = handlers.parse_message(body)
    if message.message_id != signed.message_id:
        raise Unauthorized("the signed message id is not the body's message id", slug="bad-signature")
    status = await handlers.receive(runtime.store, message, signed.origin, identity.origin, proposer_key)
    return InboxReceipt(status="duplicate" if status == "duplicate" else "accepted", message_id=message.message_id)


# ---- partnerships (a community's owner) ----

@router.get("/v1/communities/{community_id}/partnerships", response_model=list[PartnershipView],
            tags=["federation"], summary="The community's partnerships, local and federated")
async def list_partnerships(community_id: str, request: Request,
                            who: Principal = Depends(gateway_principal)) -> list[dict[str, Any]]:
    require_reader(who, community_id)
    async with runtime_of(request).pool.acquire() as conn:
        return await projections.partnerships_of(conn, community_id)


@router.post("/v1/communities/{community_id}/partnerships", status_code=201, response_model=PartnershipView,
             tags=["federation"], summary="Propose a partnership to a community on another deployment (owner)")
async def propose_partnership(community_id: str, body: ProposePartnership, request: Request,
                              who: Principal = Depends(gateway_principal)) -> dict[str, Any]:
    runtime = runtime_of(request)
    ctx = CommandContext.from_request(request, who, community_id)
    pid = await handlers.propose(runtime.store, request.app.state.http, address_guard_of(request), who,
                                 community_id, body, ctx, identity_of(request).origin)
    return await _view(request, pid, community_id)


@router.get("/v1/communities/{community_id}/partnerships/{partnership_id}", response_model=PartnershipView,
            tags=["federation"], summary="One partnership")
async def get_partnership(community_id: str, partnership_id: str, request: Request,
                          who: Principal = Depends(gateway_principal)) -> dict[str, Any]:
    require_reader(who, community_id)
    return await _view(request, partnership_id, community_id)


async def _view(request: Request, partnership_id: str, community_id: str) -> dict[str, Any]:
    async with runtime_of(request).pool.acquire() as conn:
        row = await projections.partnership(conn, partnership_id, community_id)
    if row is None:
        raise NotFound("partnership not found")
    return projections.partnership_view(row)


def _decision_route(action: str, summary: str, decide: Any) -> None:
    @router.post(f"/v1/communities/{{community_id}}/partnerships/{{partnership_id}}/{action}",
                 response_model=PartnershipView, tags=["federation"], summary=summary,
                 operation_id=f"partnership_{action}")
    async def route(community_id: str, partnership_id: str, request: Request, body: Decision | None = None,
                    who: Principal = Depends(gateway_principal)) -> dict[str, Any]:
        ctx = CommandContext.from_request(request, who, community_id)
        reason = body.reason if body else ""
        await handlers.decide(runtime_of(request).store, who, community_id, partnership_id, ctx,
                              lambda p, actor: decide(p, actor, reason))
        return await _view(request, partnership_id, community_id)


@router.post("/v1/communities/{community_id}/partnerships/{partnership_id}/acceptance",
             response_model=PartnershipView, tags=["federation"], operation_id="partnership_acceptance",
             summary="Accept a proposed partnership (owner); the proposer's deployment is asked now to confirm "
                     "the key its proposal was signed with (409 proposal-unverified if it does not publish it)")
async def accept_partnership(community_id: str, partnership_id: str, request: Request, body: Decision | None = None,
                             who: Principal = Depends(gateway_principal)) -> dict[str, Any]:
    ctx = CommandContext.from_request(request, who, community_id)
    await handlers.accept(runtime_of(request).store, partner_keys_of(request), who, community_id, partnership_id,
                          ctx)
    return await _view(request, partnership_id, community_id)


_decision_route("decline", "Decline a proposed partnership (owner)", lambda p, a, r: p.decline(a, r))
_decision_route("suspension", "Suspend a partnership: nothing new crosses until it resumes (owner)",
                lambda p, a, r: p.suspend(a, r))
_decision_route("resumption", "Resume a suspended partnership (owner)", lambda p, a, r: p.resume(a))
_decision_route("end", "End a partnership: shared copies are removed on both sides (owner)",
                lambda p, a, r: p.end(a, r))


# ---- whether a community is named in the public federation document (owner) ----

class FederationListingView(BaseModel):
    community_id: str
    listed: bool


@router.get("/v1/communities/{community_id}/federation-listing", response_model=FederationListingView,
            tags=["federation"], summary="Whether the community is named in this deployment's public federation "
                                         "document (owner, facilitators)")
async def get_federation_listing(community_id: str, request: Request,
                                 who: Principal = Depends(gateway_principal)) -> FederationListingView:
    require_reader(who, community_id)
    async with runtime_of(request).pool.acquire() as conn:
        await handlers.community_name(conn, community_id)
        listed = await projections.is_listed(conn, community_id)
    return FederationListingView(community_id=community_id, listed=listed)


@router.put("/v1/communities/{community_id}/federation-listing", response_model=FederationListingView,
            tags=["federation"], summary="Choose whether the community is named (id, name, cap) in this "
                                         "deployment's public federation document; not listed by default (owner)")
async def put_federation_listing(community_id: str, body: SetFederationListing, request: Request,
                                 who: Principal = Depends(gateway_principal)) -> FederationListingView:
    ctx = CommandContext.from_request(request, who, community_id)
    listed = await handlers.set_listing(runtime_of(request).store, who, community_id, body.listed, ctx)
    return FederationListingView(community_id=community_id, listed=listed)


# ---- members answer partner job requests ----

@router.post("/v1/communities/{community_id}/partnerships/{partnership_id}/jobs/{job_id}/offers",
             status_code=202, response_model=Created, tags=["federation"],
             summary="Offer to take a partner community's job request (member; sends your consented card)")
async def offer_to_partner_job(community_id: str, partnership_id: str, job_id: str, body: OfferToPartnerJob,
                               request: Request, who: Principal = Depends(gateway_principal)) -> Created:
    ctx = CommandContext.from_request(request, who, community_id)
    offer_id = await handlers.offer_to_partner_job(runtime_of(request).store, who, community_id, partnership_id,
                                                   job_id, body, ctx)
    return Created(offer_id=offer_id)


@router.post("/v1/communities/{community_id}/partnerships/{partnership_id}/jobs/{job_id}/referrals",
             status_code=202, response_model=Created, tags=["federation"],
             summary="Refer a fellow member to a partner community's job request (sends their consented card)")
async def refer_to_partner_job(community_id: str, partnership_id: str, job_id: str, body: ReferToPartnerJob,
                               request: Request, who: Principal = Depends(gateway_principal)) -> Created:
    ctx = CommandContext.from_request(request, who, community_id)
    offer_id = await handlers.offer_to_partner_job(runtime_of(request).store, who, community_id, partnership_id,
                                                   job_id, body, ctx)
    return Created(offer_id=offer_id)


class Pledged(BaseModel):
    pledge_id: str


@router.post("/v1/communities/{community_id}/partnerships/{partnership_id}/offerings/{offering_id}/pledges",
             status_code=202, response_model=Pledged, tags=["federation"],
             summary="Pledge shares of a partner community's offering (member; sends your consented card; the "
                     "answer arrives in GET …/partner-offerings)")
async def pledge_to_partner_offering(community_id: str, partnership_id: str, offering_id: str,
                                     body: PledgeToPartnerOffering, request: Request,
                                     who: Principal = Depends(gateway_principal)) -> Pledged:
    ctx = CommandContext.from_request(request, who, community_id)
    pledge_id = await handlers.pledge_to_partner_offering(runtime_of(request).store, who, community_id,
                                                          partnership_id, offering_id, body.shares, ctx)
    return Pledged(pledge_id=pledge_id)


@router.post("/v1/communities/{community_id}/partnerships/{partnership_id}/introductions/{referral_id}/outcome",
             response_model=PartnershipView, tags=["federation"],
             summary="Say how an introduction from the partner community went (owner or facilitator); it counts "
                     "for the member who made it, in their community's trust graph")
async def introduction_outcome(community_id: str, partnership_id: str, referral_id: str, body: IntroductionOutcome,
                               request: Request, who: Principal = Depends(gateway_principal)) -> dict[str, Any]:
    ctx = CommandContext.from_request(request, who, community_id)
    await handlers.decide(runtime_of(request).store, who, community_id, partnership_id, ctx,
                          lambda p, actor: p.record_introduction_outcome(referral_id, body, actor),
                          minimum="facilitator")
    return await _view(request, partnership_id, community_id)


# ---- the ecosystem ----

@router.get("/v1/ecosystem", tags=["federation"],
            summary="Communities on this deployment, their size against their cap, and their links, local and "
                    "federated (the operator sees all; an owner or facilitator sees their community)")
async def ecosystem(request: Request, who: Principal = Depends(gateway_principal)) -> dict[str, Any]:
    if not who.is_operator:
        if who.community_id is None:  # an invariant, kept under python -O too
            raise RuntimeError("who.community_id is missing: an invariant of this code was broken")
        require_reader(who, who.community_id)
    async with runtime_of(request).pool.acquire() as conn:
        return await projections.ecosystem(conn, None if who.is_operator else [str(who.community_id)])


# ---- the operator's view of delivery ----

def require_operator(who: Principal) -> None:
    if not who.is_operator:
        raise Forbidden("only the deployment's operator sees federation deliveries")


DeliveryStatus = Literal["pending", "delivered", "rejected", "dead"]


class DeliveryCounts(BaseModel):
    pending: int
    delivered: int
    rejected: int
    dead: int


class Delivery(BaseModel):
    """One outgoing message: which partnership and partner it goes to, what kind it is and what it carries."""

    message_id: str
    kind: str = Field(description="The message type, e.g. job.shared, job.offer, partnership.accepted")
    type: str = Field(description="The same as kind (kept for earlier clients)")
    partnership_id: str
    community_id: str = Field(description="The community here that sends it")
    partner_community_id: str | None = Field(description="The community it is addressed to")
    destination: str = Field(description="The partner deployment's origin")
    job_id: str | None = Field(description="The job request it is about (job.shared, job.status, job.offer)")
    offer_id: str | None = Field(description="The offer it carries (job.offer)")
    offering_id: str | None = Field(description="The offering it is about (offering.*, referral.introduced)")
    pledge_id: str | None = Field(description="The pledge it carries (offering.pledge, offering.pledge_result)")
    referral_id: str | None = Field(description="The introduction it carries (referral.*)")
    member_ref: str | None = Field(None, description="The member it is about, by the partnership's reference "
                                   "(member.erased; job.offer, offering.pledge, referral.introduced)")
    status: DeliveryStatus
    attempts: int
    next_attempt_at: str
    last_error: str | None
    created_at: str
    delivered_at: str | None


class Deliveries(BaseModel):
    counts: DeliveryCounts
    items: list[Delivery]


@router.get("/v1/federation/deliveries", response_model=Deliveries, tags=["federation"],
            summary="Outgoing federation messages: pending, delivered, rejected, dead, each naming what it "
                    "carries (operator)")
async def list_deliveries(request: Request, status: DeliveryStatus | None = None,
                          limit: int = Query(100, ge=1, le=1000),
                          who: Principal = Depends(gateway_principal)) -> Deliveries:
    require_operator(who)
    async with runtime_of(request).pool.acquire() as conn:
        counts = await projections.delivery_counts(conn)
        items = await projections.deliveries(conn, status, limit)
    return Deliveries(counts=DeliveryCounts(**counts), items=[Delivery(**item) for item in items])


@router.post("/v1/federation/deliveries/{message_id}/retry", status_code=204, tags=["federation"],
             summary="Send a rejected or dead message again, or now (operator)")
async def retry_delivery(message_id: str, request: Request, who: Principal = Depends(gateway_principal)) -> Response:
    require_operator(who)
    if not await delivery.retry_now(runtime_of(request).pool, message_id):
        raise NotFound("no such undelivered message")
    return Response(status_code=204)

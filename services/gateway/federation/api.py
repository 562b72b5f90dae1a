"""Federation over HTTP: the well-known identity, the signed inbox, partnerships, offers to partner
jobs, and the operator's view of deliveries."""

from __future__ import annotations

import random
import time
from datetime import timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel

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
)
from .identity import INBOX, WELL_KNOWN, Identity, partner_key
from .signing import WINDOW_SECONDS, SignatureRejected, read, verify

router = APIRouter(responses=PROBLEM_RESPONSES)


def identity_of(request: Request) -> Identity:
    identity: Identity = request.app.state.federation_identity
    return identity


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

@router.get(WELL_KNOWN, tags=["federation"], summary="This deployment's federation identity: keys and communities")
async def well_known(request: Request) -> dict[str, Any]:
    async with runtime_of(request).pool.acquire() as conn:
        rows = await conn.fetch("SELECT community_id, name, member_cap FROM community_caps ORDER BY name")
    return identity_of(request).document([dict(row) for row in rows])


@router.post(INBOX, status_code=202, response_model=InboxReceipt, tags=["federation"],
             summary="Receive a signed message from a partner deployment (RFC 9421 signature required)")
async def inbox(request: Request) -> InboxReceipt:
    runtime, identity = runtime_of(request), identity_of(request)
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise Problem(f"the body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}", status=413,
                      slug="body-too-large", title="Request body too large")
    try:
        signed = read(request.headers, method=request.method, path=request.url.path, body=body,
                      now=int(time.time()))
        verify(signed, await partner_key(runtime.pool, request.app.state.http, signed.origin, signed.key_id))
    except SignatureRejected as rejected:
        raise Unauthorized(rejected.reason, slug=rejected.slug) from rejected
    async with runtime.pool.acquire() as conn:
        fresh = await conn.fetchval("INSERT INTO federation_nonces (origin, nonce) VALUES ($1, $2) "
                                    "ON CONFLICT DO NOTHING RETURNING true", signed.origin, signed.nonce)
        if random.random() < 0.02:
            await conn.execute("DELETE FROM federation_nonces WHERE seen_at < now() - $1::interval",
                               timedelta(seconds=2 * WINDOW_SECONDS))
    if not fresh:
        raise Unauthorized("this signature was seen before: a replayed request", slug="replayed")
    message = handlers.parse_message(body)
    if message.message_id != signed.message_id:
        raise Unauthorized("the signed message id is not the body's message id", slug="bad-signature")
    status = await handlers.receive(runtime.store, message, signed.origin, identity.origin)
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
    pid = await handlers.propose(runtime.store, request.app.state.http, who, community_id, body, ctx,
                                 identity_of(request).origin)
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


_decision_route("acceptance", "Accept a proposed partnership (owner)", lambda p, a, r: p.accept(a))
_decision_route("decline", "Decline a proposed partnership (owner)", lambda p, a, r: p.decline(a, r))
_decision_route("suspension", "Suspend a partnership: nothing new crosses until it resumes (owner)",
                lambda p, a, r: p.suspend(a, r))
_decision_route("resumption", "Resume a suspended partnership (owner)", lambda p, a, r: p.resume(a))
_decision_route("end", "End a partnership: shared copies are removed on both sides (owner)",
                lambda p, a, r: p.end(a, r))


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
        assert who.community_id is not None
        require_reader(who, who.community_id)
    async with runtime_of(request).pool.acquire() as conn:
        return await projections.ecosystem(conn, None if who.is_operator else [str(who.community_id)])


# ---- the operator's view of delivery ----

def require_operator(who: Principal) -> None:
    if not who.is_operator:
        raise Forbidden("only the deployment's operator sees federation deliveries")


@router.get("/v1/federation/deliveries", tags=["federation"],
            summary="Outgoing federation messages: pending, delivered, rejected, dead (operator)")
async def list_deliveries(request: Request, status: Literal["pending", "delivered", "rejected", "dead"] | None = None,
                          limit: int = Query(100, ge=1, le=1000),
                          who: Principal = Depends(gateway_principal)) -> dict[str, Any]:
    require_operator(who)
    async with runtime_of(request).pool.acquire() as conn:
        return {"counts": await projections.delivery_counts(conn),
                "items": await projections.deliveries(conn, status, limit)}


@router.post("/v1/federation/deliveries/{message_id}/retry", status_code=204, tags=["federation"],
             summary="Send a rejected or dead message again, or now (operator)")
async def retry_delivery(message_id: str, request: Request, who: Principal = Depends(gateway_principal)) -> Response:
    require_operator(who)
    if not await delivery.retry_now(runtime_of(request).pool, message_id):
        raise NotFound("no such undelivered message")
    return Response(status_code=204)

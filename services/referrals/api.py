"""HTTP routes of the referrals service: job requests, 360° feedback, reputation, introductions."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel

from kizuna.auth import Principal, principal
from kizuna.domain import StrictModel
from kizuna.errors import NotFound
from kizuna.handling import CommandContext
from kizuna.problems import PROBLEM_RESPONSES
from kizuna.service import runtime_of

from . import handlers, projections
from .domain import (
    AssignJob,
    CancelJob,
    GiveFeedback,
    MakeReferral,
    OfferToTake,
    PostJobRequest,
    RecordOutcome,
    ReferToJob,
    match_score,
)
from .offerings.api import LeadUserReputation

router = APIRouter(responses=PROBLEM_RESPONSES)


class Offer(BaseModel):
    member_id: str
    why_next_step: str


class PartnerOffer(BaseModel):
    offer_id: str
    partnership_id: str
    from_community_name: str
    kind: Literal["offer", "referral"]
    card: dict[str, Any]
    note: str
    referred_by_name: str | None = None
    assigned: bool


class JobView(BaseModel):
    job_id: str
    community_id: str
    requester_id: str
    title: str
    description: str
    skills: list[str]
    compensation: dict[str, Any]
    deadline: date
    visibility: Literal["community", "partners"]
    state: Literal["posted", "assigned", "in-progress", "completed", "cancelled"]
    offers: list[Offer]
    referred: list[str]
    workers: list[str]
    partner_offers: list[PartnerOffer] = []
    version: int


class JobPage(BaseModel):
    items: list[JobView]
    next_cursor: str | None


class Match(BaseModel):
    member_id: str
    display_name: str
    score: float
    reasons: list[str]


class ReferralView(BaseModel):
    referral_id: str
    referrer_id: str
    referred_id: str
    to_member_id: str | None
    job_id: str | None
    offering_id: str | None = None
    to_partnership_id: str | None = None
    note: str
    status: Literal["made", "accepted", "declined"]
    worked: bool | None
    version: int


class ReferralPage(BaseModel):
    items: list[ReferralView]
    next_cursor: str | None


class Created(BaseModel):
    id: str


class Reputation(BaseModel):
    member_id: str
    community_id: str
    feedback_count: int
    distinct_givers: int
    jobs: int
    averages: dict[str, float | None]
    recency_weighted: dict[str, float | None]
    lead_user_feedback: LeadUserReputation | None = None


class DeclineReferral(StrictModel):
    reason: str = ""


def _ctx(request: Request, who: Principal, cid: str) -> CommandContext:
    return CommandContext.from_request(request, who, cid)


async def _job_view(request: Request, cid: str, job_id: str, response: Response | None = None) -> dict[str, Any]:
    async with runtime_of(request).pool.acquire() as conn:
        view = await projections.job(conn, cid, job_id)
    if view is None:
        raise NotFound("job request not found")
    if response is not None:
        response.headers["ETag"] = f'"{view["version"]}"'
    return view


@router.post("/communities/{community_id}/jobs", status_code=201, response_model=JobView, tags=["jobs"],
             summary="Post a job request to the community (community sourcing)")
async def post_job(community_id: str, body: PostJobRequest, request: Request, response: Response,
                   who: Principal = Depends(principal)) -> Any:
    who.require_writer(community_id)
    job_id = await handlers.post_job(runtime_of(request).store, who, community_id, body,
                                     _ctx(request, who, community_id))
    return await _job_view(request, community_id, job_id, response)


@router.get("/communities/{community_id}/jobs", response_model=JobPage, tags=["jobs"],
            summary="Job requests of the community")
async def list_jobs(community_id: str, request: Request,
                    state: Literal["posted", "assigned", "in-progress", "completed", "cancelled"] | None = None,
                    cursor: str | None = Query(None, max_length=40), limit: int = Query(50, ge=1, le=200),
                    who: Principal = Depends(principal)) -> Any:
    who.require_community(community_id)
    async with runtime_of(request).pool.acquire() as conn:
        return await projections.jobs(conn, community_id, state, cursor, limit)


@router.get("/communities/{community_id}/jobs/{job_id}", response_model=JobView, tags=["jobs"],
            summary="One job request")
async def get_job(community_id: str, job_id: str, request: Request, response: Response,
                  who: Principal = Depends(principal)) -> Any:
    who.require_community(community_id)
    return await _job_view(request, community_id, job_id, response)


async def _act(request: Request, response: Response, who: Principal, cid: str, job_id: str, decide: Any) -> Any:
    who.require_writer(cid)
    await handlers.on_job(runtime_of(request).store, who, cid, job_id, _ctx(request, who, cid), decide)
    return await _job_view(request, cid, job_id, response)


@router.post("/communities/{community_id}/jobs/{job_id}/offers", response_model=JobView, tags=["jobs"],
             summary="Offer to take the job, saying why it is your next step")
async def offer(community_id: str, job_id: str, body: OfferToTake, request: Request, response: Response,
                who: Principal = Depends(principal)) -> Any:
    return await _act(request, response, who, community_id, job_id, lambda j, me: j.offer(me, body))


@router.post("/communities/{community_id}/jobs/{job_id}/referrals", response_model=JobView, tags=["jobs"],
             summary="Refer a trusted member to the job")
async def refer_to_job(community_id: str, job_id: str, body: ReferToJob, request: Request, response: Response,
                       who: Principal = Depends(principal)) -> Any:
    await handlers.require_roster_member(runtime_of(request).store, community_id, body.member_id, "member_id")
    return await _act(request, response, who, community_id, job_id, lambda j, me: j.refer(me, body))


@router.post("/communities/{community_id}/jobs/{job_id}/assignment", response_model=JobView, tags=["jobs"],
             summary="Assign the job to one or more members who offered or were referred (requester)")
async def assign(community_id: str, job_id: str, body: AssignJob, request: Request, response: Response,
                 who: Principal = Depends(principal)) -> Any:
    return await _act(request, response, who, community_id, job_id, lambda j, me: j.assign(me, body))


@router.post("/communities/{community_id}/jobs/{job_id}/start", response_model=JobView, tags=["jobs"],
             summary="Start the work (requester or an assigned member)")
async def start(community_id: str, job_id: str, request: Request, response: Response,
                who: Principal = Depends(principal)) -> Any:
    return await _act(request, response, who, community_id, job_id, lambda j, me: j.start(me))


@router.post("/communities/{community_id}/jobs/{job_id}/completion", response_model=JobView, tags=["jobs"],
             summary="Mark the job completed (requester)")
async def complete(community_id: str, job_id: str, request: Request, response: Response,
                   who: Principal = Depends(principal)) -> Any:
    return await _act(request, response, who, community_id, job_id, lambda j, me: j.complete(me))


@router.post("/communities/{community_id}/jobs/{job_id}/cancellation", response_model=JobView, tags=["jobs"],
             summary="Cancel the job request (requester)")
async def cancel(community_id: str, job_id: str, body: CancelJob, request: Request, response: Response,
                 who: Principal = Depends(principal)) -> Any:
    return await _act(request, response, who, community_id, job_id, lambda j, me: j.cancel(me, body))


@router.post("/communities/{community_id}/jobs/{job_id}/feedback", status_code=201, response_model=Reputation,
             tags=["feedback"], summary="Give 360° feedback on someone who took part (after completion)")
async def give_feedback(community_id: str, job_id: str, body: GiveFeedback, request: Request, response: Response,
                        who: Principal = Depends(principal)) -> Any:
    await _act(request, response, who, community_id, job_id, lambda j, me: j.give_feedback(me, body))
    async with runtime_of(request).pool.acquire() as conn:
        return await projections.reputation(conn, community_id, body.subject_id)


@router.get("/communities/{community_id}/jobs/{job_id}/matches", response_model=list[Match], tags=["jobs"],
            summary="Members whose skills and vector fit the job, ranked, with reasons")
async def matches(community_id: str, job_id: str, request: Request, limit: int = Query(10, ge=1, le=50),
                  who: Principal = Depends(principal)) -> Any:
    who.require_community(community_id)
    job = await _job_view(request, community_id, job_id)
    async with runtime_of(request).pool.acquire() as conn:
        members = await conn.fetch("SELECT * FROM roster WHERE community_id = $1 AND active", community_id)
        busy = await projections.active_jobs_by_member(conn, community_id)
    ranked = []
    for m in members:
        if m["member_id"] == job["requester_id"]:
            continue
        score, reasons = match_score(job["skills"], f"{job['title']} {job['description']}", list(m["skills"]),
                                     m["vector"], busy.get(m["member_id"], 0))
        if score > 0:
            ranked.append({"member_id": m["member_id"], "display_name": m["display_name"], "score": score,
                           "reasons": reasons})
    return sorted(ranked, key=lambda r: (-r["score"], r["display_name"]))[:limit]


@router.get("/communities/{community_id}/reputation/{member_id}", response_model=Reputation, tags=["feedback"],
            summary="A member's reputation inside this community")
async def reputation(community_id: str, member_id: str, request: Request,
                     who: Principal = Depends(principal)) -> Any:
    who.require_community(community_id)
    async with runtime_of(request).pool.acquire() as conn:
        if await projections.roster_member(conn, community_id, member_id) is None:
            raise NotFound("member not found")
        return await projections.reputation(conn, community_id, member_id)


@router.post("/communities/{community_id}/referrals", status_code=201, response_model=Created, tags=["referrals"],
             summary="Introduce a trusted member to another member, a job request or a partner community "
                     "(to_partnership_id), or a trusted producer's offering to a member or a partner community")
async def make_referral(community_id: str, body: MakeReferral, request: Request,
                        who: Principal = Depends(principal)) -> Any:
    who.require_writer(community_id)
    return {"id": await handlers.make_referral(runtime_of(request).store, who, community_id, body,
                                               _ctx(request, who, community_id))}


@router.get("/communities/{community_id}/referrals", response_model=ReferralPage, tags=["referrals"],
            summary="Introductions made in the community")
async def list_referrals(community_id: str, request: Request, cursor: str | None = Query(None, max_length=40),
                         limit: int = Query(50, ge=1, le=200), who: Principal = Depends(principal)) -> Any:
    who.require_community(community_id)
    async with runtime_of(request).pool.acquire() as conn:
        return await projections.referrals(conn, community_id, cursor, limit)


async def _on_referral(request: Request, who: Principal, cid: str, rid: str, decide: Any) -> Response:
    who.require_writer(cid)
    await handlers.on_referral(runtime_of(request).store, who, cid, rid, _ctx(request, who, cid), decide)
    return Response(status_code=204)


@router.post("/communities/{community_id}/referrals/{referral_id}/acceptance", status_code=204,
             tags=["referrals"], summary="Accept the introduction (the person referred)")
async def accept(community_id: str, referral_id: str, request: Request,
                 who: Principal = Depends(principal)) -> Response:
    return await _on_referral(request, who, community_id, referral_id, lambda r, me: r.answer(me, True))


@router.post("/communities/{community_id}/referrals/{referral_id}/decline", status_code=204, tags=["referrals"],
             summary="Decline the introduction (the person referred)")
async def decline(community_id: str, referral_id: str, request: Request, body: DeclineReferral | None = None,
                  who: Principal = Depends(principal)) -> Response:
    reason = body.reason if body else ""
    return await _on_referral(request, who, community_id, referral_id, lambda r, me: r.answer(me, False, reason))


@router.post("/communities/{community_id}/referrals/{referral_id}/outcome", status_code=204, tags=["referrals"],
             summary="Record whether the introduction worked")
async def outcome(community_id: str, referral_id: str, body: RecordOutcome, request: Request,
                  who: Principal = Depends(principal)) -> Response:
    return await _on_referral(request, who, community_id, referral_id, lambda r, me: r.record_outcome(me, body))


@router.get("/communities/{community_id}/trust-graph", tags=["referrals"],
            summary="Who introduced whom, and whose introductions work")
async def trust_graph(community_id: str, request: Request, who: Principal = Depends(principal)) -> dict[str, Any]:
    who.require_community(community_id)
    async with runtime_of(request).pool.acquire() as conn:
        return await projections.trust_graph(conn, community_id)

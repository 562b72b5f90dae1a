"""For owners and facilitators: applications to decide (with a reason the applicant sees), the waitlist, and
the members with no ties yet — who may drift away."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from kizuna.errors import Forbidden, Problem

from .pages import Visit, command, framed, show

router = APIRouter()
STEWARDS = ("owner", "facilitator")


@router.get("/c/{community_id}/stewarding")
async def stewarding_page(community_id: str, request: Request) -> Response:
    return await show(request, _stewarding, community_id)


async def _stewarding(v: Visit, community_id: str, problem: Problem | None = None) -> Response:
    membership = v.person.membership(community_id)
    if membership is None or membership["role"] not in STEWARDS:
        return v.refused(Forbidden("owners and facilitators only"))
    return v.page("stewarding.html", status=problem.status if problem else 200,
                  community=await v.community(community_id),
                  applications=await v.call(community_id, "GET", "/applications?status=pending"),
                  waitlist=await v.call(community_id, "GET", "/waitlist"),
                  drifting=(await v.call(community_id, "GET", "/ties/at-risk?max_ties=0"))["items"],
                  problem=framed(v.words, problem) if problem else None)


@router.post("/c/{community_id}/applications/{application_id}/decision")
async def decide_application(community_id: str, application_id: str, request: Request) -> Response:
    return await command(
        request, community_id, "POST", f"/applications/{application_id}/decision",
        lambda form: {"decision": form.get("decision", ""), "reason": form.get("reason", "").strip()},
        redisplay=lambda v, refused, _form: _stewarding(v, community_id, refused),
        then=f"/app/c/{community_id}/stewarding")

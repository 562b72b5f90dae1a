"""For owners and facilitators: applications to decide (with a reason the applicant sees), the waitlist, and
the members with no ties yet — who may drift away; for the owner also roles and the member cap."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response

from kizuna.errors import Forbidden, Problem

from .pages import Form, Visit, command, framed, show

router = APIRouter()
STEWARDS = ("owner", "facilitator")


@router.get("/c/{community_id}/stewarding")
async def stewarding_page(community_id: str, request: Request) -> Response:
    return await show(request, _stewarding, community_id)


async def _stewarding(v: Visit, community_id: str, problem: Problem | None = None) -> Response:
    membership = v.person.membership(community_id)
    if membership is None or membership["role"] not in STEWARDS:
        return v.refused(Forbidden("owners and facilitators only"))
    members = await v.call(community_id, "GET", "/members?limit=200")
    return v.page("stewarding.html", status=problem.status if problem else 200,
                  community=await v.community(community_id), owner=membership["role"] == "owner",
                  members=[m for m in members["items"] if m["role"] != "owner"],
                  applications=await v.call(community_id, "GET", "/applications?status=pending"),
                  waitlist=await v.call(community_id, "GET", "/waitlist"),
                  drifting=(await v.call(community_id, "GET", "/ties/at-risk?max_ties=0"))["items"],
                  problem=framed(v.words, problem) if problem else None)


@router.post("/c/{community_id}/applications/{application_id}/decision")
async def decide_application(community_id: str, application_id: str, request: Request) -> Response:
    return await _on_community(request, community_id, "POST", f"/applications/{application_id}/decision",
                               lambda form: {"decision": form.get("decision", ""),
                                             "reason": form.get("reason", "").strip()})


@router.post("/c/{community_id}/members/{member_id}/role")
async def change_role(community_id: str, member_id: str, request: Request) -> Response:
    return await _on_community(request, community_id, "PUT", f"/members/{member_id}/role",
                               lambda form: {"role": form.get("role", ""), "reason": form.get("reason", "").strip()},
                               then="#roles")


@router.post("/c/{community_id}/cap")
async def change_cap(community_id: str, request: Request) -> Response:
    return await _on_community(request, community_id, "PUT", "/cap",
                               lambda form: {"member_cap": int(form["member_cap"])
                                             if form.get("member_cap", "").isdigit() else form.get("member_cap"),
                                             "reason": form.get("reason", "").strip()},
                               then="#cap")


async def _on_community(request: Request, community_id: str, method: str, path: str,
                        body: Callable[[Form], Any], then: str = "") -> Response:
    """A steward's action; refused, the stewarding page again with the refusal."""
    return await command(request, community_id, method, path, body,
                         redisplay=lambda v, refused, _form: _stewarding(v, community_id, refused),
                         then=f"/app/c/{community_id}/stewarding{then}")

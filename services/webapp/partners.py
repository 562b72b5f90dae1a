"""Partnerships, for the owner (facilitators see them): propose one to a community on this or another Kizuna
deployment, choosing what is shared each way; accept or decline a proposal; suspend, resume or end one. What
crosses a partnership is only what both sides chose, and each member's consented card."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from kizuna.errors import Forbidden, NotFound, Problem

from .names import N_
from .pages import Form, Visit, command, framed, show

router = APIRouter()
SHARED = [N_("shared:job_requests"), N_("shared:referrals"), N_("shared:offerings")]
STATUSES = [N_("partnership:proposed"), N_("partnership:requested"), N_("partnership:active"),
            N_("partnership:suspended"), N_("partnership:declined"), N_("partnership:ended")]
# What the owner may do next, by the partnership's status (the gateway decides; this only offers the buttons).
NEXT = {"requested": ("acceptance", "decline"), "active": ("suspension", "end"), "suspended": ("resumption", "end")}
ACTIONS = {"acceptance", "decline", "suspension", "resumption", "end"}
BUTTONS = [N_("step:acceptance {name}"), N_("step:decline {name}"), N_("step:suspension {name}"),
           N_("step:resumption {name}"), N_("step:end {name}")]


@router.get("/c/{community_id}/partners")
async def partners_page(community_id: str, request: Request) -> Response:
    return await show(request, _partners, community_id)


async def _partners(v: Visit, community_id: str, problem: Problem | None = None, form: Form | None = None) -> Response:
    membership = v.person.membership(community_id)
    if membership is None or membership["role"] not in ("owner", "facilitator"):
        return v.refused(Forbidden("owners and facilitators only"))
    partnerships = await v.call(community_id, "GET", "/partnerships")
    order = ["requested", "active", "suspended", "proposed", "declined", "ended"]
    return v.page("partners.html", status=problem.status if problem else 200,
                  community=await v.community(community_id), owner=membership["role"] == "owner",
                  partnerships=sorted(partnerships, key=lambda p: order.index(p["status"])), next_steps=NEXT,
                  shared=[s.removeprefix("shared:") for s in SHARED], here=v.request.app.state.settings.public_url,
                  form=form or {}, problem=framed(v.words, problem) if problem else None)


def _on_partners(request: Request, community_id: str, path: str, body: Any) -> Any:
    return command(request, community_id, "POST", path, body,
                   redisplay=lambda v, refused, form: _partners(v, community_id, refused, form),
                   then=f"/app/c/{community_id}/partners")


@router.post("/c/{community_id}/partners")
async def propose(community_id: str, request: Request) -> Response:
    return await _on_partners(request, community_id, "/partnerships", lambda form: {
        "partner_origin": form.get("partner_origin", "").strip(),
        "partner_community_id": form.get("partner_community_id", "").strip(),
        "sends": form.all("sends"), "receives": form.all("receives"), "note": form.get("note", "").strip()})


@router.post("/c/{community_id}/partners/{partnership_id}/{action}")
async def decide(community_id: str, partnership_id: str, action: str, request: Request) -> Response:
    if action not in ACTIONS:  # only a hand-made address gets here
        return await show(request, _partners, community_id, NotFound(f"no step {action!r}"))
    return await _on_partners(request, community_id, f"/partnerships/{partnership_id}/{action}",
                              lambda form: {"reason": form.get("reason", "").strip()})

"""For owners and facilitators: applications to decide (with a reason the applicant sees), the waitlist, and
the members with no ties yet — who may drift away; for the owner also roles and the member cap."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response

from kizuna.errors import Forbidden, Problem

from .names import N_
from .pages import Form, Visit, command, framed, show, visit, whole_number

router = APIRouter()
STEWARDS = ("owner", "facilitator")
POLICIES = [N_("policy:open"), N_("policy:application"), N_("policy:invitation")]


@router.get("/c/{community_id}/stewarding")
async def stewarding_page(community_id: str, request: Request) -> Response:
    return await show(request, _stewarding, community_id)


async def _stewarding(v: Visit, community_id: str, problem: Problem | None = None,
                      form: Form | None = None) -> Response:
    membership = v.person.membership(community_id)
    if membership is None or membership["role"] not in STEWARDS:
        return v.refused(Forbidden("owners and facilitators only"))
    members = await v.call(community_id, "GET", "/members?limit=200")
    admission = await v.call(community_id, "GET", "/admission")
    return v.page("stewarding.html", status=problem.status if problem else 200,
                  community=await v.community(community_id), owner=membership["role"] == "owner",
                  admission={**admission, "questions_text": "\n".join(q["text"] for q in admission["questions"]),
                             "offer_hours": admission["offer_ttl_seconds"] // 3600}, form=form or {},
                  policies=[p.removeprefix("policy:") for p in POLICIES],
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
                               lambda form: {"member_cap": whole_number(form.get("member_cap", "")),
                                             "reason": form.get("reason", "").strip()},
                               then="#cap")


@router.post("/c/{community_id}/ownership")
async def hand_over(community_id: str, request: Request) -> Response:
    """The owner hands the community to another member and stays on as a facilitator."""
    return await command(request, community_id, "POST", "/ownership", lambda form: {
        "to_member_id": form.get("to_member_id", ""), "reason": form.get("reason", "").strip()},
        redisplay=lambda v, refused, form: _stewarding(v, community_id, refused, form),
        then=f"/app/c/{community_id}/stewarding")


@router.post("/c/{community_id}/admission")
async def change_admission(community_id: str, request: Request) -> Response:
    found = await visit(request)
    if isinstance(found, Response):
        return found
    current = await found.call(community_id, "GET", "/admission")  # questions kept keep their ids (answers use them)
    return await _on_community(request, community_id, "PUT", "/admission",
                               lambda form: _admission(form, current), then="#admission")


def _admission(form: Form, current: dict[str, Any]) -> dict[str, Any]:
    """The policy form as the API's command: one question per line; limits as typed (full-width digits too)."""
    ids = {q["text"]: q["id"] for q in current["questions"]}
    taken = set(ids.values())
    questions = []
    for text in (line.strip() for line in form.get("questions", "").splitlines()):
        if not text:
            continue
        qid = ids.get(text) or next(f"q{n}" for n in range(1, 1000) if f"q{n}" not in taken)
        taken.add(qid)
        questions.append({"id": qid, "text": text, "required": True})
    hours = whole_number(form.get("offer_hours", ""))
    limit = form.get("max_open_invitations", "").strip()
    return {"policy": form.get("policy", ""), "questions": questions,
            "max_open_invitations": whole_number(limit) if limit else None,
            "offer_ttl_seconds": hours * 3600 if isinstance(hours, int) else hours,
            "reason": form.get("reason", "").strip()}


async def _on_community(request: Request, community_id: str, method: str, path: str,
                        body: Callable[[Form], Any], then: str = "") -> Response:
    """A steward's action; refused, the stewarding page again with the refusal."""
    return await command(request, community_id, method, path, body,
                         redisplay=lambda v, refused, form: _stewarding(v, community_id, refused, form),
                         then=f"/app/c/{community_id}/stewarding{then}")

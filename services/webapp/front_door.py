"""The front door, for someone signed in but not yet a member: a community's join link (join an open
community, apply to one that admits by application, or be told it admits by invitation), an invitation's
link, an owner's claim code, and where I stand — my application, my number on the waitlist, the place offered
to me, taken or declined here.

These keep the addresses people were given (``/join/{community}``, ``/invite/{community}?code=…``,
``/claim/{community}?code=…``, ``/waiting/{community}``), so links already mailed or printed still work. Every
step is a plain form post the page answers with a redirect, so no script is needed; the one on the waiting
page only reloads it when my standing changes. The gateway's front door (``/v1/join/…``) decides everything,
as for any other client: the session cookie names the person, so what they do is linked to their account.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from kizuna.errors import NotFound, Problem

from .pages import Form, Visit, command, framed, show

router = APIRouter()


def _home(community_id: str) -> RedirectResponse:
    return RedirectResponse(f"/app/c/{community_id}", status_code=303)


def _waiting(community_id: str) -> RedirectResponse:
    return RedirectResponse(f"/waiting/{community_id}", status_code=303)


async def _standing(v: Visit, community_id: str) -> dict[str, Any] | None:
    """Where the person stands here (the members service's own answer, not a read model that may lag), or
    None if they have not come in any way yet."""
    try:
        return dict(await v.api.front_door(v.person, community_id, "GET", "/my-place"))
    except Problem as refused:
        if refused.status == 404:
            return None
        raise


# ---- a community's join link ----

@router.get("/join/{community_id}")
async def join_page(community_id: str, request: Request) -> Response:
    return await show(request, _join, community_id)


async def _join(v: Visit, community_id: str, problem: Problem | None = None, form: Form | None = None) -> Response:
    if v.person.membership(community_id) is not None:
        return _home(community_id)
    try:
        standing = await _standing(v, community_id)
        admission = await v.api.front_door(v.person, community_id, "GET")
    except Problem as refused:
        return v.refused(refused)
    if standing is not None and standing["status"] != "declined":
        return _waiting(community_id)
    questions = {q["id"]: q["text"] for q in admission["questions"]}
    return v.page("join.html", status=problem.status if problem else 200, community_id=community_id,
                  admission=admission, declined=standing, form=form or {},
                  problem=framed(v.words, problem, questions) if problem else None)


@router.post("/join/{community_id}")
async def join(community_id: str, request: Request) -> Response:
    """Join an open community (onto its waitlist when it is full)."""
    return await command(request, community_id, "POST", "", lambda form: {
        "display_name": form.get("display_name", ""), "waitlist_if_full": True},
        redisplay=lambda v, refused, form: _join(v, community_id, refused, form), then=f"/waiting/{community_id}",
        front_door=True)


@router.post("/join/{community_id}/application")
async def apply(community_id: str, request: Request) -> Response:
    """Apply to a community that admits by application, answering its questions (the blank ones left out)."""
    return await command(request, community_id, "POST", "/applications", lambda form: {
        "display_name": form.get("display_name", ""),
        "answers": {key.removeprefix("answer-"): value.strip() for key, value in form.items()
                    if key.startswith("answer-") and value.strip()}},
        redisplay=lambda v, refused, form: _join(v, community_id, refused, form), then=f"/waiting/{community_id}",
        front_door=True)


# ---- an invitation, and an owner's claim code ----

@router.get("/invite/{community_id}")
async def invitation_page(community_id: str, request: Request, code: str = "") -> Response:
    return await show(request, _coded, community_id, "invite.html", code)


@router.get("/claim/{community_id}")
async def claim_page(community_id: str, request: Request, code: str = "") -> Response:
    return await show(request, _coded, community_id, "claim.html", code)


async def _coded(v: Visit, community_id: str, template: str, code: str, problem: Problem | None = None,
                 form: Form | None = None) -> Response:
    if v.person.membership(community_id) is not None:
        return _home(community_id)
    try:
        admission = await v.api.front_door(v.person, community_id, "GET")
    except Problem as refused:
        return v.refused(refused)
    return v.page(template, status=problem.status if problem else 200, community_id=community_id,
                  admission=admission, code=code, form=form or {},
                  problem=framed(v.words, problem) if problem else None)


@router.post("/invite/{community_id}")
async def accept_invitation(community_id: str, request: Request) -> Response:
    return await _with_code(request, community_id, "invite.html", "/invitations/acceptance",
                            lambda form: {"code": form.get("code", ""), "display_name": form.get("display_name", "")})


@router.post("/claim/{community_id}")
async def claim(community_id: str, request: Request) -> Response:
    return await _with_code(request, community_id, "claim.html", "/account-claims",
                            lambda form: {"code": form.get("code", "")})


async def _with_code(request: Request, community_id: str, template: str, path: str,
                     body: Callable[[Form], Any]) -> Response:
    return await command(request, community_id, "POST", path, body, redisplay=lambda v, refused, form: _coded(
        v, community_id, template, form.get("code", ""), refused, form), then=f"/waiting/{community_id}",
        front_door=True)


# ---- where I stand ----

@router.get("/waiting/{community_id}")
async def waiting_page(community_id: str, request: Request) -> Response:
    return await show(request, _where_i_stand, community_id)


async def _where_i_stand(v: Visit, community_id: str, problem: Problem | None = None,
                         form: Form | None = None) -> Response:
    member = v.person.membership(community_id) is not None
    try:
        standing = await _standing(v, community_id)
        admission = await v.api.front_door(v.person, community_id, "GET")
        application = None
        if standing is not None and standing.get("application_id") and standing["status"] == "declined":
            application = await v.api.front_door(v.person, community_id, "GET",
                                                 f"/applications/{standing['application_id']}")
    except Problem as refused:
        return v.refused(refused)
    if standing is None and problem is not None:  # refused, and nowhere to stand: say why, in place
        return v.refused(problem)
    if member and (standing is None or standing["status"] == "member"):
        return _home(community_id)
    if standing is None:
        return RedirectResponse(f"/join/{community_id}", status_code=303)
    return v.page("waiting.html", status=problem.status if problem else 200, community_id=community_id,
                  admission=admission, standing=standing, application=application, form=form or {},
                  problem=framed(v.words, problem) if problem else None)


@router.post("/waiting/{community_id}/offers/{offer_id}/{answer}")
async def answer_offer(community_id: str, offer_id: str, answer: str, request: Request) -> Response:
    """Take or decline the place offered to me; signed in, no claim code is needed (my account names me)."""
    if answer not in ("acceptance", "decline"):
        raise NotFound("no such answer to a place offered")

    def body(form: Form) -> dict[str, str]:
        reason = form.get("reason", "").strip()
        return {"reason": reason} if answer == "decline" and reason else {}

    return await command(request, community_id, "POST", f"/offers/{offer_id}/{answer}", body,
                         redisplay=lambda v, refused, form: _where_i_stand(v, community_id, refused, form),
                         then=f"/waiting/{community_id}", front_door=True)

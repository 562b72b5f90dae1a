"""My profile — name, vector, skills, values — what partner communities see of it, with a preview, and my
reputation from the 360° feedback I received."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from kizuna.errors import Problem

from .jobs import FEEDBACK_SCALES
from .pages import Form, Visit, command, framed, listed, show

router = APIRouter()
SHAREABLE = ("display_name", "vector", "skills", "values", "reputation")


@router.get("/c/{community_id}/profile")
async def profile_page(community_id: str, request: Request) -> Response:
    return await show(request, _profile, community_id)


async def _profile(v: Visit, community_id: str, problem: Problem | None = None, form: Form | None = None) -> Response:
    me = v.member_id(community_id)
    if me is None:
        return v.not_a_member()
    return v.page("profile.html", status=problem.status if problem else 200,
                  member=await v.call(community_id, "GET", f"/members/{me}"),
                  reputation=await v.call(community_id, "GET", f"/reputation/{me}"), scales=FEEDBACK_SCALES,
                  community=await v.community(community_id), shareable=SHAREABLE, form=form or {},
                  saved=v.request.query_params.get("saved"), problem=framed(v.words, problem) if problem else None)


async def _saving(request: Request, community_id: str, what: str, body: Any) -> Response:
    return await command(request, community_id, "PUT", f"/members/{{me}}/{what}", body,
                         redisplay=lambda v, refused, form: _profile(v, community_id, refused, form),
                         then=f"/app/c/{community_id}/profile?saved={what}")


@router.post("/c/{community_id}/profile")
async def save_profile(community_id: str, request: Request) -> Response:
    return await _saving(request, community_id, "profile", lambda form: {
        "display_name": form.get("display_name", "").strip(), "vector": form.get("vector", ""),
        "skills": listed(form.get("skills", "")), "values": listed(form.get("values", ""))})


@router.post("/c/{community_id}/sharing")
async def save_sharing(community_id: str, request: Request) -> Response:
    # The name always travels with a card (partners must call the person something).
    return await _saving(request, community_id, "consent", lambda form: {
        "shared_fields": ["display_name", *[f for f in form.all("shared_fields") if f != "display_name"]]})


@router.post("/c/{community_id}/leave")
async def leave(community_id: str, request: Request) -> Response:
    """Leaves the community — and, if asked, erases the member from it alone (docs/data-rights.md): the
    members service deletes their key before anything else, so nothing of theirs can be read again."""
    return await command(request, community_id, "POST", "/members/{me}/leave", lambda form: {
        "reason": form.get("reason", "").strip(), "erase": form.get("erase") == "yes"},
        redisplay=lambda v, refused, form: _profile(v, community_id, refused, form),
        then="/app?left=" + community_id)

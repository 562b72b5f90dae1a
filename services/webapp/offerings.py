"""Offerings: producers' pre-commitment shares (a season's vegetables, a print run). Browse them with how far
each is from its minimum, commit to shares before the deadline, withdraw while it is still open."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response

from kizuna.errors import Problem

from .pages import Form, Visit, command, framed, show, whole_number

router = APIRouter()


@router.get("/c/{community_id}/offerings")
async def offerings_page(community_id: str, request: Request) -> Response:
    return await show(request, _offerings, community_id)


async def _offerings(v: Visit, community_id: str, problem: Problem | None = None) -> Response:
    me = v.member_id(community_id)
    if me is None:
        return v.not_a_member()
    listed = await v.call(community_id, "GET", "/offerings?limit=50")
    mine = await v.call(community_id, "GET", f"/offerings/commitments/{me}")
    held = {c["offering_id"]: c["shares"] for c in mine["items"] if c["commitment_status"] == "committed"}
    members = await v.call(community_id, "GET", "/members?limit=200")
    names = {m["member_id"]: m["display_name"] for m in members["items"]}
    return v.page("offerings.html", status=problem.status if problem else 200,
                  community=await v.community(community_id), offerings=listed["items"], held=held, names=names,
                  problem=framed(v.words, problem) if problem else None)


async def _on_offering(request: Request, community_id: str, offering_id: str, action: str,
                       body: Callable[[Form], Any]) -> Response:
    return await command(request, community_id, "POST", f"/offerings/{offering_id}{action}", body,
                         redisplay=lambda v, refused, _form: _offerings(v, community_id, refused),
                         then=f"/app/c/{community_id}/offerings#offering-{offering_id}")


@router.post("/c/{community_id}/offerings/{offering_id}/commitments")
async def commit(community_id: str, offering_id: str, request: Request) -> Response:
    return await _on_offering(request, community_id, offering_id, "/commitments", lambda form: {
        "shares": whole_number(form.get("shares", ""))})


@router.post("/c/{community_id}/offerings/{offering_id}/withdrawal")
async def withdraw(community_id: str, offering_id: str, request: Request) -> Response:
    return await _on_offering(request, community_id, offering_id, "/commitments/withdrawal",
                              lambda form: {"reason": form.get("reason", "")})

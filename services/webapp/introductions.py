"""Introductions: a member introduces someone they trust to another member; the person introduced accepts or
declines; the people in it say whether it worked. And the trust graph those outcomes make — who introduces
whom, and whose introductions work (the introducers a facilitator can lean on)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response

from kizuna.errors import Problem

from .pages import Form, Visit, command, framed, show

router = APIRouter()
SHOWN = 200  # the newest introductions the page lists (the API's page size)


@router.get("/c/{community_id}/introductions")
async def introductions_page(community_id: str, request: Request) -> Response:
    return await show(request, _introductions, community_id)


async def _introductions(v: Visit, community_id: str, problem: Problem | None = None,
                         form: Form | None = None) -> Response:
    me = v.member_id(community_id)
    if me is None:
        return v.not_a_member()
    members = (await v.call(community_id, "GET", "/members?limit=200"))["items"]
    names = {m["member_id"]: m["display_name"] for m in members}
    made = (await v.call(community_id, "GET", f"/referrals?limit={SHOWN}"))["items"]
    graph = await v.call(community_id, "GET", "/trust-graph")
    people = [r for r in made if r["to_member_id"] and me in (r["referrer_id"], r["referred_id"], r["to_member_id"])]
    to_answer = [r for r in people if r["referred_id"] == me and r["status"] == "made"]
    return v.page(
        "introductions.html", status=problem.status if problem else 200, me=me, names=names,
        community=await v.community(community_id), others=[m for m in members if m["member_id"] != me],
        to_answer=to_answer, mine=[_with_names(r, names) for r in reversed(people) if r not in to_answer],
        introducers=sorted(({**s, "name": names.get(s["member_id"], "—")} for s in graph["referrers"]),
                           key=lambda s: (-(s["worked"] or 0), -s["referrals"])),
        form=form or {}, now=datetime.now(UTC).isoformat(), problem=framed(v.words, problem) if problem else None)


def _with_names(referral: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    return {**referral, "referrer": names.get(referral["referrer_id"], "—"),
            "referred": names.get(referral["referred_id"], "—"), "to": names.get(referral["to_member_id"], "—")}


async def _on_introductions(request: Request, community_id: str, path: str, body: Any,
                            anchor: str = "") -> Response:
    return await command(request, community_id, "POST", path, body,
                         redisplay=lambda v, refused, form: _introductions(v, community_id, refused, form),
                         then=f"/app/c/{community_id}/introductions{anchor}")


@router.post("/c/{community_id}/introductions")
async def introduce(community_id: str, request: Request) -> Response:
    return await _on_introductions(request, community_id, "/referrals", lambda form: {
        "referred_id": form.get("referred_id", ""), "to_member_id": form.get("to_member_id", ""),
        "note": form.get("note", "").strip()}, "#mine")


@router.post("/c/{community_id}/introductions/{referral_id}/acceptance")
async def accept(community_id: str, referral_id: str, request: Request) -> Response:
    return await _on_introductions(request, community_id, f"/referrals/{referral_id}/acceptance",
                                   lambda form: None, "#mine")


@router.post("/c/{community_id}/introductions/{referral_id}/decline")
async def decline(community_id: str, referral_id: str, request: Request) -> Response:
    return await _on_introductions(request, community_id, f"/referrals/{referral_id}/decline",
                                   lambda form: {"reason": form.get("reason", "").strip()}, "#mine")


@router.post("/c/{community_id}/introductions/{referral_id}/outcome")
async def outcome(community_id: str, referral_id: str, request: Request) -> Response:
    return await _on_introductions(request, community_id, f"/referrals/{referral_id}/outcome", lambda form: {
        "worked": form.get("worked") == "yes", "note": form.get("note", "").strip()}, "#mine")

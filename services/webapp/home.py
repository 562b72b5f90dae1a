"""My communities, and a community's home: purpose and values, open job requests, upcoming sessions, who is new."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response

from kizuna.errors import Problem

from .pages import Visit, show

router = APIRouter()


@router.get("")
async def my_communities(request: Request) -> Response:
    return await show(request, _communities)


async def _communities(v: Visit) -> Response:
    return v.page("communities.html", memberships=[m for m in v.person.me["memberships"] if m["status"] == "active"],
                  left=bool(v.request.query_params.get("left")))


@router.get("/c/{community_id}")
async def community_home(community_id: str, request: Request) -> Response:
    return await show(request, _home, community_id)


async def _home(v: Visit, community_id: str) -> Response:
    membership = v.person.membership(community_id)
    if membership is None:
        return v.not_a_member()
    members = await v.call(community_id, "GET", "/members?limit=100")
    jobs = await v.call(community_id, "GET", "/jobs?state=posted&limit=20")
    sessions = await v.call(community_id, "GET", "/sessions?limit=5")
    unread = await _unread(v, community_id)
    newest = sorted(members["items"], key=lambda m: str(m.get("joined_at") or ""), reverse=True)[:5]
    return v.page("home.html", community=await v.community(community_id), me=membership, newest=newest,
                  jobs=jobs["items"], sessions=sessions["items"], now=datetime.now(UTC).isoformat(),
                  unread=unread)


async def _unread(v: Visit, community_id: str) -> int:
    """How many of my notifications here are unread (none shown when the notifications service is away)."""
    try:
        box = await v.call(community_id, "GET", "/notifications?limit=1&unread_only=true")
    except Problem:
        return 0
    return int(box["unread"])

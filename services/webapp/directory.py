"""The directory: the community's members, searched by skill and by words in their vector."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response

from kizuna.errors import Problem

from .pages import Visit, show

router = APIRouter()


@router.get("/c/{community_id}/members")
async def directory(community_id: str, request: Request, skill: str = "", q: str = "", cursor: str = "") -> Response:
    return await show(request, _directory, community_id, skill, q, cursor)


async def _directory(v: Visit, community_id: str, skill: str, q: str, cursor: str) -> Response:
    search = {key: value for key, value in (("skill", skill), ("q", q)) if value}
    try:
        found = await v.call(community_id, "GET", "/members?" + urlencode({"limit": 30, **search,
                                                                           **({"cursor": cursor} if cursor else {})}))
    except Problem as refused:
        return v.refused(refused)
    more = urlencode({**search, "cursor": found["next_cursor"]}) if found.get("next_cursor") else None
    return v.page("directory.html", community=await v.community(community_id), members=found["items"], skill=skill,
                  q=q, more=more)

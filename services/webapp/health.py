"""The community's health for its owner and facilitators, on a phone: how full it is and who came lately, how
many members each facilitator accompanies, who has few ties, and how jobs, introductions, sessions and goals
are going — each figure next to the action that answers it (introduce, schedule a session, change the cap)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from kizuna.errors import Forbidden

from .pages import Visit, show

router = APIRouter()
FEW_TIES = 1  # a member with at most one tie may drift away (docs/member-app.md)
MEMBERS_PER_FACILITATOR = 12  # above this, one facilitator cannot accompany each member well (a group's size)


@router.get("/c/{community_id}/health")
async def health_page(community_id: str, request: Request) -> Response:
    return await show(request, _health, community_id)


async def _health(v: Visit, community_id: str) -> Response:
    membership = v.person.membership(community_id)
    if membership is None or membership["role"] not in ("owner", "facilitator"):
        return v.refused(Forbidden("owners and facilitators only"))
    figures = await v.call(community_id, "GET", f"/health?few_ties={FEW_TIES}")
    return v.page("health.html", community=await v.community(community_id), h=figures, few_ties=FEW_TIES,
                  owner=membership["role"] == "owner", stretched=figures["members_per_facilitator"]
                  > MEMBERS_PER_FACILITATOR, per_facilitator=MEMBERS_PER_FACILITATOR)

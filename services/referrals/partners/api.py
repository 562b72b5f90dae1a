"""Job requests that partner communities shared with this community."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from kizuna.auth import Principal, principal
from kizuna.errors import Invalid
from kizuna.problems import PROBLEM_RESPONSES
from kizuna.service import runtime_of

from .. import handlers
from . import projections

router = APIRouter(responses=PROBLEM_RESPONSES)


async def _page(request: Request, who: Principal, community_id: str, cursor: str | None, limit: int,
                query: Callable[..., Awaitable[list[dict[str, Any]]]]) -> dict[str, Any]:
    """What partners shared with this community, with the caller's own answers to it, a page at a time."""
    store = runtime_of(request).store
    who.require_community(community_id)
    member = None if who.is_operator or who.scope == "dashboard" else \
        await handlers.acting_member(store, who, community_id)
    if cursor is not None and not cursor.isdigit():
        raise Invalid("cursor", "use the next_cursor of the previous page")
    async with store.pool.acquire() as conn:
        items = await query(conn, community_id, member, int(cursor or 0), limit)
    return {"items": items, "next_cursor": str(items[-1]["seq"]) if len(items) == limit else None}


class MyOffer(BaseModel):
    offer_id: str
    kind: Literal["offer", "referral"]
    status: Literal["sent", "assigned", "not-chosen"]


class PartnerJob(BaseModel):
    partnership_id: str
    job_id: str
    from_community_name: str
    title: str
    description: str
    skills: list[str]
    compensation: dict[str, Any]
    deadline: str
    state: str
    received_at: str
    my_offers: list[MyOffer]


class PartnerJobPage(BaseModel):
    items: list[PartnerJob]
    next_cursor: str | None


@router.get("/communities/{community_id}/partner-jobs", response_model=PartnerJobPage, tags=["jobs"],
            summary="Job requests partner communities shared with this community, with your offers to them")
async def list_partner_jobs(community_id: str, request: Request, cursor: str | None = None,
                            limit: int = Query(50, ge=1, le=200),
                            who: Principal = Depends(principal)) -> dict[str, Any]:
    return await _page(request, who, community_id, cursor, limit, projections.partner_jobs)


class MyPledge(BaseModel):
    pledge_id: str
    shares: int
    status: Literal["sent", "committed", "refused"]
    reason: str


class PartnerOffering(BaseModel):
    partnership_id: str
    offering_id: str
    from_community_name: str
    status: str
    received_at: str
    terms: dict[str, Any]
    my_pledges: list[MyPledge]


class PartnerOfferingPage(BaseModel):
    items: list[PartnerOffering]
    next_cursor: str | None


@router.get("/communities/{community_id}/partner-offerings", response_model=PartnerOfferingPage, tags=["offerings"],
            summary="Offerings partner communities shared with this community, with your pledges to them")
async def list_partner_offerings(community_id: str, request: Request, cursor: str | None = None,
                                 limit: int = Query(50, ge=1, le=200),
                                 who: Principal = Depends(principal)) -> dict[str, Any]:
    return await _page(request, who, community_id, cursor, limit, projections.partner_offerings)


class PartnerIntroduction(BaseModel):
    partnership_id: str
    referral_id: str
    from_community_name: str
    card: dict[str, Any]
    note: str
    introduced_by_name: str
    offering_id: str | None
    worked: bool | None
    outcome_note: str | None
    received_at: str


@router.get("/communities/{community_id}/partner-introductions", response_model=list[PartnerIntroduction],
            tags=["referrals"], summary="People partner communities introduced to this one (owner or facilitator); "
                                        "record how it went through the gateway's partnership routes")
async def list_partner_introductions(community_id: str, request: Request,
                                     who: Principal = Depends(principal)) -> list[dict[str, Any]]:
    who.require_reader(community_id, "facilitator")
    async with runtime_of(request).store.pool.acquire() as conn:
        return await projections.partner_introductions(conn, community_id)

"""HTTP routes of the members service: communities, membership, roles, profiles and consent."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel

from kizuna.auth import Principal, principal
from kizuna.errors import Forbidden, NotFound
from kizuna.handling import CommandContext
from kizuna.problems import PROBLEM_RESPONSES
from kizuna.service import runtime_of

from . import handlers, projections
from .domain import (
    ChangeCap,
    ChangeConsent,
    ChangeRole,
    FoundCommunity,
    JoinCommunity,
    LeaveCommunity,
    RemoveMember,
    TransferOwnership,
    UpdateProfile,
    normalise_skill,
)

router = APIRouter(responses=PROBLEM_RESPONSES)


class CommunityView(BaseModel):
    community_id: str
    name: str
    purpose: str
    values: list[str]
    member_cap: int
    size: int
    places_left: int
    waitlist: int
    roles: dict[str, int]
    founded_at: datetime
    version: int


class FoundedCommunity(BaseModel):
    community_id: str
    owner_member_id: str
    community: CommunityView


class MemberView(BaseModel):
    community_id: str
    member_id: str
    display_name: str
    role: Literal["owner", "facilitator", "member"]
    status: Literal["active", "left", "removed"]
    joined_via: str
    vouched_by: str | None
    vector: str
    skills: list[str]
    values: list[str]
    shared_fields: list[str]
    joined_at: datetime


class MemberPage(BaseModel):
    items: list[MemberView]
    next_cursor: str | None


class JoinOutcome(BaseModel):
    member_id: str
    status: Literal["joined", "waitlisted"]


class WaitlistEntry(BaseModel):
    applicant_id: str
    display_name: str
    position: int
    joined_via: str
    vouched_by: str | None
    waitlisted_at: datetime


def _ctx(request: Request, who: Principal, community_id: str | None = None) -> CommandContext:
    return CommandContext.from_request(request, who, community_id)


async def _community_view(request: Request, community_id: str, response: Response | None = None) -> dict[str, Any]:
    async with runtime_of(request).pool.acquire() as conn:
        view = await projections.community(conn, community_id)
    if view is None:
        raise NotFound("community not found")
    if response is not None:
        response.headers["ETag"] = f'"{view["version"]}"'
    return view


def _require_operator(who: Principal) -> None:
    if not who.is_operator:
        raise Forbidden("only the deployment's operator may do this")


@router.post("/communities", status_code=201, response_model=FoundedCommunity, tags=["communities"],
             summary="Found a community (operator)")
async def found_community(body: FoundCommunity, request: Request, who: Principal = Depends(principal)) -> Any:
    _require_operator(who)
    settings = runtime_of(request).settings
    community_id, owner_id = await handlers.found(runtime_of(request).store, body, _ctx(request, who),
                                                  settings.default_member_cap)
    return {"community_id": community_id, "owner_member_id": owner_id,
            "community": await _community_view(request, community_id)}


@router.get("/communities", response_model=list[CommunityView], tags=["communities"],
            summary="Every community on this deployment, sizes against caps (operator)")
async def list_communities(request: Request, who: Principal = Depends(principal)) -> Any:
    _require_operator(who)
    async with runtime_of(request).pool.acquire() as conn:
        return await projections.communities(conn)


@router.get("/communities/{community_id}", response_model=CommunityView, tags=["communities"],
            summary="A community: purpose, values, size, cap and roles")
async def get_community(community_id: str, request: Request, response: Response,
                        who: Principal = Depends(principal)) -> Any:
    who.require_community(community_id)
    return await _community_view(request, community_id, response)


@router.put("/communities/{community_id}/cap", response_model=CommunityView, tags=["communities"],
            summary="Change the member cap (owner); raising it needs a recorded reason")
async def change_cap(community_id: str, body: ChangeCap, request: Request, response: Response,
                     who: Principal = Depends(principal)) -> Any:
    who.require_role(community_id, "owner")
    await handlers.change_cap(runtime_of(request).store, community_id, body, _ctx(request, who, community_id))
    return await _community_view(request, community_id, response)


@router.post("/communities/{community_id}/members", status_code=201, response_model=JoinOutcome,
             tags=["members"], summary="Add a member (operator, or a member inviting someone they vouch for)",
             responses={202: {"model": JoinOutcome, "description": "The community is full; waitlisted"}})
async def join(community_id: str, body: JoinCommunity, request: Request, response: Response,
               who: Principal = Depends(principal)) -> Any:
    who.require_writer(community_id)
    member_id, status = await handlers.join(runtime_of(request).store, community_id, body, who,
                                            _ctx(request, who, community_id))
    if status == "waitlisted":
        response.status_code = 202
    return {"member_id": member_id, "status": status}


@router.get("/communities/{community_id}/members", response_model=MemberPage, tags=["members"],
            summary="Directory: search members by skill, words in their vector, or role")
async def directory(community_id: str, request: Request, skill: str | None = Query(None, max_length=80),
                    q: str | None = Query(None, max_length=200),
                    role: Literal["owner", "facilitator", "member"] | None = None,
                    cursor: str | None = Query(None, max_length=40), limit: int = Query(50, ge=1, le=200),
                    who: Principal = Depends(principal)) -> Any:
    who.require_community(community_id)
    await _community_view(request, community_id)
    async with runtime_of(request).pool.acquire() as conn:
        return await projections.directory(conn, community_id, skill=normalise_skill(skill) if skill else None,
                                           q=q, role=role, cursor=cursor, limit=limit)


@router.get("/communities/{community_id}/members/{member_id}", response_model=MemberView, tags=["members"],
            summary="One member's card")
async def get_member(community_id: str, member_id: str, request: Request,
                     who: Principal = Depends(principal)) -> Any:
    who.require_community(community_id)
    async with runtime_of(request).pool.acquire() as conn:
        row = await projections.member(conn, community_id, member_id)
    if row is None:
        raise NotFound("member not found")
    return projections.member_view(row)


@router.post("/communities/{community_id}/members/{member_id}/leave", status_code=204, tags=["members"],
             summary="Leave the community (the member themselves)")
async def leave(community_id: str, member_id: str, request: Request, body: LeaveCommunity | None = None,
                who: Principal = Depends(principal)) -> Response:
    who.require_community(community_id)
    handlers.require_self_or_operator(who, member_id)
    await handlers.leave(runtime_of(request).store, community_id, member_id, body or LeaveCommunity(),
                         _ctx(request, who, community_id))
    return Response(status_code=204)


@router.post("/communities/{community_id}/members/{member_id}/removal", status_code=204, tags=["members"],
             summary="Remove a member, with a reason (owner or facilitator)")
async def remove(community_id: str, member_id: str, body: RemoveMember, request: Request,
                 who: Principal = Depends(principal)) -> Response:
    who.require_role(community_id, "facilitator")
    await handlers.remove(runtime_of(request).store, community_id, member_id, body, _ctx(request, who, community_id))
    return Response(status_code=204)


@router.put("/communities/{community_id}/members/{member_id}/role", response_model=MemberView, tags=["roles"],
            summary="Promote to facilitator or return to member (owner)")
async def change_role(community_id: str, member_id: str, body: ChangeRole, request: Request,
                      who: Principal = Depends(principal)) -> Any:
    who.require_role(community_id, "owner")
    await handlers.change_role(runtime_of(request).store, community_id, member_id, body,
                               _ctx(request, who, community_id))
    return await get_member(community_id, member_id, request, who)


@router.post("/communities/{community_id}/ownership", response_model=CommunityView, tags=["roles"],
             summary="Hand ownership to another member (owner); the old owner becomes a facilitator")
async def transfer_ownership(community_id: str, body: TransferOwnership, request: Request, response: Response,
                             who: Principal = Depends(principal)) -> Any:
    who.require_role(community_id, "owner")
    await handlers.transfer_ownership(runtime_of(request).store, community_id, body,
                                      _ctx(request, who, community_id))
    return await _community_view(request, community_id, response)


@router.put("/communities/{community_id}/members/{member_id}/profile", response_model=MemberView,
            tags=["profiles"], summary="Update one's own profile: name, vector, skills, values")
async def update_profile(community_id: str, member_id: str, body: UpdateProfile, request: Request,
                         who: Principal = Depends(principal)) -> Any:
    who.require_community(community_id)
    handlers.require_self_or_operator(who, member_id)
    await handlers.update_profile(runtime_of(request).store, community_id, member_id, body,
                                  _ctx(request, who, community_id))
    return await get_member(community_id, member_id, request, who)


@router.put("/communities/{community_id}/members/{member_id}/consent", response_model=MemberView,
            tags=["profiles"], summary="Choose what partner communities may see (display name always)")
async def change_consent(community_id: str, member_id: str, body: ChangeConsent, request: Request,
                         who: Principal = Depends(principal)) -> Any:
    who.require_community(community_id)
    handlers.require_self_or_operator(who, member_id)
    await handlers.change_consent(runtime_of(request).store, community_id, member_id, body,
                                  _ctx(request, who, community_id))
    return await get_member(community_id, member_id, request, who)


@router.get("/communities/{community_id}/waitlist", response_model=list[WaitlistEntry], tags=["members"],
            summary="People waiting for a place, in order (owner or facilitator)")
async def waitlist(community_id: str, request: Request, who: Principal = Depends(principal)) -> Any:
    who.require_role(community_id, "facilitator")
    await _community_view(request, community_id)
    async with runtime_of(request).pool.acquire() as conn:
        return await projections.waitlist(conn, community_id)

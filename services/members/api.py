"""HTTP routes of the members service: communities, membership, roles, profiles and consent,
admission (policy, applications, invitations), the moving waitlist and sister communities."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from kizuna.auth import Principal, principal
from kizuna.errors import Forbidden, NotFound
from kizuna.handling import CommandContext
from kizuna.problems import PROBLEM_RESPONSES
from kizuna.service import runtime_of

from . import handlers, projections
from .domain import (
    AcceptInvitation,
    AcceptOffer,
    AdmissionQuestion,
    ChangeAdmission,
    ChangeCap,
    ChangeConsent,
    ChangeRole,
    ClaimAccount,
    DecideApplication,
    DeclineOffer,
    FoundCommunity,
    FoundSisterCommunity,
    IssueAccountClaim,
    IssueInvitation,
    JoinCommunity,
    LeaveCommunity,
    RemoveMember,
    SubmitApplication,
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
    open_offers: int
    admission_policy: Literal["open", "application", "invitation"]
    sister_of: str | None
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
    offer_id: str | None = None


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
    _require_writer_or_visitor(who, community_id)
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
    body, ctx = body or LeaveCommunity(), _ctx(request, who, community_id)
    await handlers.leave(runtime_of(request).store, community_id, member_id, body, ctx)
    if body.erase:  # erased from this community alone, as the member chose on leaving (one context: its ids)
        await handlers.erase(runtime_of(request).store, community_id, member_id, ctx)
    return Response(status_code=204)


@router.post("/communities/{community_id}/members/{member_id}/erasure", status_code=204, tags=["members"],
             summary="Erase a former member's personal data from this community (the member themselves, or the "
                     "operator on their behalf)",
             description="Their key is deleted: their name, profile and what they wrote read as \"erased member\" "
                         "or empty in every service, the bus and every rebuild; the community's figures and history "
                         "stay. An active member is erased on leaving (`erase` on leave). docs/data-rights.md.")
async def erase(community_id: str, member_id: str, request: Request, who: Principal = Depends(principal)) -> Response:
    who.require_community(community_id)
    handlers.require_self_or_operator(who, member_id)
    await handlers.erase(runtime_of(request).store, community_id, member_id, _ctx(request, who, community_id))
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
    who.require_reader(community_id, "facilitator")
    await handlers.require_authority(runtime_of(request).store, community_id, who, "facilitator")
    async with runtime_of(request).pool.acquire() as conn:
        return await projections.waitlist(conn, community_id)


# ---- admission ----

class AdmissionView(BaseModel):
    name: str
    purpose: str
    values: list[str]
    places_left: int = Field(description="Places free now (the cap less members and open offers)")
    policy: Literal["open", "application", "invitation"]
    questions: list[AdmissionQuestion]
    max_open_invitations: int | None
    offer_ttl_seconds: int


class ApplicationView(BaseModel):
    community_id: str
    application_id: str
    applicant_id: str = Field(description="Becomes the member id when the applicant joins")
    display_name: str
    answers: dict[str, str]
    referred_by: str | None
    status: Literal["pending", "declined", "joined", "waitlisted", "offered", "lapsed"]
    decided_by: str | None
    reason: str | None
    submitted_at: datetime
    decided_at: datetime | None
    offer_id: str | None
    offer_expires_at: datetime | None


class IssuedInvitation(BaseModel):
    invitation_id: str
    code: str = Field(description="Shown once: the invitee's link carries it; only its hash is kept")
    expires_at: datetime


class InvitationView(BaseModel):
    community_id: str
    invitation_id: str
    issued_by: str
    note: str
    status: Literal["open", "used", "expired"]
    member_id: str | None
    issued_at: datetime
    expires_at: datetime
    accepted_at: datetime | None


class OfferView(BaseModel):
    community_id: str
    offer_id: str
    applicant_id: str
    display_name: str
    status: Literal["open", "accepted", "declined", "expired"]
    offered_at: datetime
    expires_at: datetime
    settled_at: datetime | None
    reason: str | None


class IssuedClaimCode(BaseModel):
    offer_id: str
    applicant_id: str
    claim_code: str = Field(description="Shown once: pass it to the person offered; only its hash is kept, "
                                        "and issuing another replaces it")
    claim_path: str = Field(description="The front door's path where the person answers the offer, "
                                        "sending the code in the body: `/acceptance` or `/decline`")
    expires_at: datetime


class LinkView(BaseModel):
    community_id: str
    partner_community_id: str
    partner_name: str | None
    kind: Literal["sister"]
    founded_by: str
    new_owner_member_id: str | None
    linked_at: datetime


class FoundedSister(BaseModel):
    sister_community_id: str
    new_owner_member_id: str
    sister: CommunityView
    community: CommunityView


class EcosystemView(BaseModel):
    communities: list[CommunityView]
    links: list[LinkView]


def _require_front_door(who: Principal) -> None:
    """People who are not members yet have no token: the gateway's front door (``/v1/join/…``, a
    short-lived ``visitor`` token) or the operator acts for them, with the code or offer they were given."""
    if not (who.is_operator or who.scope == "visitor"):
        raise Forbidden("only the front door (/v1/join/…) or the operator acts for people who are not members yet")


def _require_writer_or_visitor(who: Principal, community_id: str) -> None:
    if who.scope == "visitor":
        who.require_community(community_id)
    else:
        who.require_writer(community_id)


@router.get("/communities/{community_id}/admission", response_model=AdmissionView, tags=["admission"],
            summary="How people come in: open, by application (with questions) or by invitation")
async def get_admission(community_id: str, request: Request, who: Principal = Depends(principal)) -> Any:
    who.require_community(community_id)
    async with runtime_of(request).pool.acquire() as conn:
        view = await projections.admission(conn, community_id)
    if view is None:
        raise NotFound("community not found")
    return view


@router.put("/communities/{community_id}/admission", response_model=AdmissionView, tags=["admission"],
            summary="Change the admission policy, questions, invitation limit and offer time (owner), with a reason")
async def change_admission(community_id: str, body: ChangeAdmission, request: Request,
                           who: Principal = Depends(principal)) -> Any:
    who.require_role(community_id, "owner")
    await handlers.change_admission(runtime_of(request).store, community_id, body, _ctx(request, who, community_id))
    return await get_admission(community_id, request, who)


async def _application_view(request: Request, community_id: str, application_id: str) -> dict[str, Any]:
    async with runtime_of(request).pool.acquire() as conn:
        view = await projections.application(conn, community_id, application_id)
    if view is None:
        raise NotFound("application not found")
    return view


@router.post("/communities/{community_id}/applications", status_code=201, response_model=ApplicationView,
             tags=["admission"],
             summary="Apply with answers to the community's questions (front door, or a member referring someone)")
async def submit_application(community_id: str, body: SubmitApplication, request: Request,
                             who: Principal = Depends(principal)) -> Any:
    _require_writer_or_visitor(who, community_id)
    application_id, _ = await handlers.submit_application(runtime_of(request).store, community_id, body, who,
                                                          _ctx(request, who, community_id))
    return await _application_view(request, community_id, application_id)


@router.get("/communities/{community_id}/applications", response_model=list[ApplicationView], tags=["admission"],
            summary="Applications, oldest first (owner or facilitator)")
async def list_applications(community_id: str, request: Request,
                            status: Literal["pending", "approved", "declined"] | None = None,
                            who: Principal = Depends(principal)) -> Any:
    who.require_reader(community_id, "facilitator")
    await handlers.require_authority(runtime_of(request).store, community_id, who, "facilitator")
    async with runtime_of(request).pool.acquire() as conn:
        return await projections.applications(conn, community_id, status)


@router.get("/communities/{community_id}/applications/{application_id}", response_model=ApplicationView,
            tags=["admission"],
            summary="Where an application stands (the applicant through the front door, the referrer, "
                    "owner or facilitator)")
async def get_application(community_id: str, application_id: str, request: Request,
                          who: Principal = Depends(principal)) -> Any:
    who.require_community(community_id)
    view = await _application_view(request, community_id, application_id)
    # The application id itself is the applicant's link: the front door may read it.
    if not (who.is_operator or who.scope == "visitor"
            or (who.role in ("owner", "facilitator") and who.scope == "member")
            or who.is_self(view["referred_by"] or "")):
        raise NotFound("application not found")
    return view


@router.post("/communities/{community_id}/applications/{application_id}/decision", response_model=ApplicationView,
             tags=["admission"], summary="Approve or decline an application, with a reason (owner or facilitator)")
async def decide_application(community_id: str, application_id: str, body: DecideApplication, request: Request,
                             who: Principal = Depends(principal)) -> Any:
    who.require_role(community_id, "facilitator")
    await handlers.decide_application(runtime_of(request).store, community_id, application_id, body, who,
                                      _ctx(request, who, community_id))
    return await _application_view(request, community_id, application_id)


@router.post("/communities/{community_id}/invitations", status_code=201, response_model=IssuedInvitation,
             tags=["admission"], summary="Issue a single-use invitation that expires (any member)")
async def issue_invitation(community_id: str, body: IssueInvitation, request: Request,
                           who: Principal = Depends(principal)) -> Any:
    who.require_writer(community_id)
    invitation_id, code, issued_at = await handlers.issue_invitation(
        runtime_of(request).store, community_id, body, who, _ctx(request, who, community_id))
    return {"invitation_id": invitation_id, "code": code,
            "expires_at": issued_at + timedelta(seconds=body.ttl_seconds)}


@router.get("/communities/{community_id}/invitations", response_model=list[InvitationView], tags=["admission"],
            summary="Invitations: one's own (members) or all (owner, facilitator)")
async def list_invitations(community_id: str, request: Request, who: Principal = Depends(principal)) -> Any:
    who.require_community(community_id)
    await _community_view(request, community_id)
    everyone = who.is_operator or (who.scope != "partner" and who.role in ("owner", "facilitator"))
    async with runtime_of(request).pool.acquire() as conn:
        return await projections.invitations(conn, community_id, None if everyone else who.member_id or "",
                                             handlers.now())


class IssuedAccountClaim(BaseModel):
    member_id: str
    code: str
    claim_path: str
    expires_at: datetime


@router.post("/communities/{community_id}/members/{member_id}/account-claim", status_code=201,
             response_model=IssuedAccountClaim, tags=["members"],
             summary="A single-use code for an existing member to sign in as themselves (owner or operator)")
async def issue_account_claim(community_id: str, member_id: str, body: IssueAccountClaim, request: Request,
                              who: Principal = Depends(principal)) -> Any:
    who.require_role(community_id, "owner")
    code, expires_at = await handlers.issue_account_claim(runtime_of(request).store, community_id, member_id, body,
                                                          _ctx(request, who, community_id))
    return {"member_id": member_id, "code": code, "expires_at": expires_at,
            "claim_path": f"/claim/{community_id}?code={code}"}


@router.post("/communities/{community_id}/account-claims", status_code=201, response_model=JoinOutcome,
             tags=["members"], summary="Sign in as an existing member with the code the owner gave (front door)")
async def claim_account(community_id: str, body: ClaimAccount, request: Request,
                        who: Principal = Depends(principal)) -> Any:
    who.require_community(community_id)
    _require_front_door(who)
    member_id = await handlers.claim_account(runtime_of(request).store, community_id, body, who,
                                             _ctx(request, who, community_id))
    return {"member_id": member_id, "status": "joined"}


@router.post("/communities/{community_id}/invitations/acceptance", status_code=201, response_model=JoinOutcome,
             tags=["admission"], summary="Accept an invitation with its code (front door, for the invitee)",
             responses={202: {"model": JoinOutcome, "description": "The community is full; waitlisted"}})
async def accept_invitation(community_id: str, body: AcceptInvitation, request: Request, response: Response,
                            who: Principal = Depends(principal)) -> Any:
    who.require_community(community_id)
    _require_front_door(who)
    member_id, status = await handlers.accept_invitation(runtime_of(request).store, community_id, body, who,
                                                         _ctx(request, who, community_id))
    if status == "waitlisted":
        response.status_code = 202
    return {"member_id": member_id, "status": status}


# ---- the moving waitlist ----

@router.get("/communities/{community_id}/offers", response_model=list[OfferView], tags=["waitlist"],
            summary="Place offers made to people on the waitlist (owner or facilitator)")
async def list_offers(community_id: str, request: Request,
                      status: Literal["open", "accepted", "declined", "expired"] | None = None,
                      who: Principal = Depends(principal)) -> Any:
    who.require_role(community_id, "facilitator")
    await handlers.require_authority(runtime_of(request).store, community_id, who, "facilitator")
    async with runtime_of(request).pool.acquire() as conn:
        return await projections.offers(conn, community_id, status)


def _require_offer_answerer(who: Principal, community_id: str) -> None:
    """The person offered answers through the front door with their claim code (or the operator acts
    for them with it); the owner may also call, for offers recorded before claim codes existed. Whether
    the answer counts is the community aggregate's decision (the code, or that legacy rule)."""
    who.require_community(community_id)
    if not (who.is_operator or who.scope == "visitor"):
        who.require_role(community_id, "owner")


@router.post("/communities/{community_id}/offers/{offer_id}/acceptance", status_code=201, response_model=JoinOutcome,
             tags=["waitlist"], summary="Take an offered place with its claim code before it expires "
                                        "(front door, for the person); a wrong or missing code is a 404")
async def accept_offer(community_id: str, offer_id: str, request: Request, body: AcceptOffer | None = None,
                       who: Principal = Depends(principal)) -> Any:
    _require_offer_answerer(who, community_id)
    member_id = await handlers.accept_offer(runtime_of(request).store, community_id, offer_id, body or AcceptOffer(),
                                            _ctx(request, who, community_id), who)
    return {"member_id": member_id, "status": "joined"}


@router.post("/communities/{community_id}/offers/{offer_id}/decline", response_model=OfferView, tags=["waitlist"],
             summary="Decline an offered place with its claim code; it passes to the next person "
                     "(front door, for the person); a wrong or missing code is a 404")
async def decline_offer(community_id: str, offer_id: str, request: Request, body: DeclineOffer | None = None,
                        who: Principal = Depends(principal)) -> Any:
    _require_offer_answerer(who, community_id)
    await handlers.decline_offer(runtime_of(request).store, community_id, offer_id, body or DeclineOffer(),
                                 _ctx(request, who, community_id), who)
    async with runtime_of(request).pool.acquire() as conn:
        return await projections.offer(conn, community_id, offer_id)


class PlaceView(BaseModel):
    community_id: str
    applicant_id: str = Field(description="Becomes the member id on joining")
    status: Literal["applied", "declined", "waiting", "offered", "member"] = Field(
        description="applied: an application waits for a decision; declined: it was declined (see its reason "
                    "at …/applications/{application_id})")
    application_id: str | None = Field(None, description="My latest application here, if I applied")
    display_name: str | None
    position: int | None = Field(description="1 = next to be offered a place; none once a place is offered")
    waiting: int = Field(description="How many are waiting without an offer")
    offer_id: str | None
    offer_expires_at: datetime | None


@router.get("/communities/{community_id}/waitlist/mine", response_model=PlaceView, tags=["waitlist"],
            summary="My place in the queue, or the place offered to me and until when (front door, for the "
                    "signed-in person waiting; answer the offer without a code)")
async def my_place(community_id: str, request: Request, who: Principal = Depends(principal)) -> Any:
    who.require_community(community_id)
    return await handlers.place_of(runtime_of(request).store, community_id, who)


@router.post("/communities/{community_id}/offers/{offer_id}/claim-code", status_code=201,
             response_model=IssuedClaimCode, tags=["waitlist"],
             summary="Issue the person offered a claim code to pass on to them, shown once; it replaces any "
                     "earlier code (owner or facilitator)")
async def issue_claim_code(community_id: str, offer_id: str, request: Request,
                           who: Principal = Depends(principal)) -> Any:
    who.require_role(community_id, "facilitator")
    code, applicant_id, expires_at = await handlers.issue_claim_code(runtime_of(request).store, community_id,
                                                                     offer_id, _ctx(request, who, community_id))
    return {"offer_id": offer_id, "applicant_id": applicant_id, "claim_code": code,
            "claim_path": f"/v1/join/{community_id}/offers/{offer_id}", "expires_at": expires_at}


# ---- growth by linking ----

@router.post("/communities/{community_id}/sisters", status_code=201, response_model=FoundedSister, tags=["linking"],
             summary="Found a sister community when this one is full (owner); a facilitator becomes its owner")
async def found_sister(community_id: str, body: FoundSisterCommunity, request: Request,
                       who: Principal = Depends(principal)) -> Any:
    who.require_role(community_id, "owner")
    async with runtime_of(request).pool.acquire() as conn:
        new_owner = await projections.member(conn, community_id, body.new_owner_member_id)
    display_name = new_owner["display_name"] if new_owner is not None else body.new_owner_member_id
    sister_id = await handlers.found_sister(runtime_of(request).store, community_id, body, display_name,
                                            _ctx(request, who, community_id))
    return {"sister_community_id": sister_id, "new_owner_member_id": body.new_owner_member_id,
            "sister": await _community_view(request, sister_id),
            "community": await _community_view(request, community_id)}


@router.get("/communities/{community_id}/sisters", response_model=list[LinkView], tags=["linking"],
            summary="This community's sister communities (members)")
async def list_sisters(community_id: str, request: Request, who: Principal = Depends(principal)) -> Any:
    who.require_community(community_id)
    await _community_view(request, community_id)
    async with runtime_of(request).pool.acquire() as conn:
        return await projections.links(conn, community_id)


@router.get("/communities/{community_id}/ecosystem", response_model=EcosystemView, tags=["linking"],
            summary="Every community on this deployment, sizes against caps, and their sister links "
                    "(owners and the operator)")
async def ecosystem(community_id: str, request: Request, who: Principal = Depends(principal)) -> Any:
    who.require_role(community_id, "owner")
    await handlers.require_authority(runtime_of(request).store, community_id, who, "owner")
    async with runtime_of(request).pool.acquire() as conn:
        return await projections.ecosystem(conn)

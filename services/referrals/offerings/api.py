"""HTTP routes of pre-commitment offerings: publish, commit, terms changes with consent, settlement,
progress, help shifts, deliveries, lead-user feedback, and the producer's and members' views."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from icalendar import Calendar, Event
from pydantic import BaseModel, Field

from kizuna.auth import ROLE_RANK, Principal, principal
from kizuna.errors import Forbidden, NotFound
from kizuna.handling import CommandContext
from kizuna.problems import PROBLEM_RESPONSES
from kizuna.service import runtime_of

from . import handlers, projections
from .domain import (
    AnswerTermsChange,
    ApplyTermsChange,
    ChangeTerms,
    CommitShares,
    GiveLeadUserFeedback,
    OfferingStatus,
    OfferingTerms,
    PublishOffering,
    RecordDelivery,
    ShareProgress,
    WithdrawCommitment,
)

router = APIRouter(responses=PROBLEM_RESPONSES)
TAG = "offerings"
ICS_MEDIA_TYPE = "text/calendar"
ICS_RESPONSE: dict[int | str, dict[str, Any]] = {200: {"content": {ICS_MEDIA_TYPE: {}},
                                                        "description": "An iCalendar (RFC 5545) file"}}


# ---- response models ----

class ShiftStatus(BaseModel):
    shift_id: str
    date: date
    place: str
    hands: int
    what: str
    signed_up: int
    hands_missing: int


class ProgressUpdate(BaseModel):
    update_id: str
    stage: str
    note: str
    shared_at: datetime


class Settlement(BaseModel):
    outcome: Literal["confirmed", "lapsed"]
    reason: str
    settled_at: datetime


class PendingTermsChange(BaseModel):
    proposal_id: str
    reason: str
    terms: OfferingTerms
    consented: list[str]
    declined: list[str]
    awaiting: list[str]


class OfferingView(BaseModel):
    """An offering's status: committed against the minimum and what is still available."""

    offering_id: str
    community_id: str
    producer_id: str
    status: OfferingStatus
    terms: OfferingTerms
    published_at: datetime
    shares: int
    committed: int
    minimum_shares: int
    minimum_reached: bool
    available: int
    committed_members: int
    days_to_deadline: int
    pending_terms_change: PendingTermsChange | None
    settlement: Settlement | None
    progress: list[ProgressUpdate]
    help_shifts: list[ShiftStatus]
    version: int


class OfferingPage(BaseModel):
    items: list[OfferingView]
    next_cursor: str | None


class CommitmentEntry(BaseModel):
    member_id: str = Field(description="A member id, or partner:<pledge id> for a partner community's member")
    display_name: str
    shares: int
    status: Literal["committed", "withdrawn", "released"]
    reason: str
    from_community: str | None = Field(None, description="The partner community of a pledge made across a link")


class ShiftCoverage(BaseModel):
    shift_id: str
    date: date
    place: str
    what: str
    hands: int
    signed_up: list[str]
    hands_missing: int
    covered: bool


class Delivery(BaseModel):
    member_id: str
    delivery_date: date
    shares: int
    portion_per_share: float
    note: str
    refund_owed: float | None
    currency: str | None


class OutstandingDelivery(BaseModel):
    member_id: str
    delivery_date: date
    shares: int


class LeadUserFeedback(BaseModel):
    member_id: str
    good: str
    improve: str
    would_commit_again: bool
    given_at: datetime


class WouldCommitAgain(BaseModel):
    yes: int
    of: int
    rate: float | None


class Introductions(BaseModel):
    made: int
    worked: int
    success_rate: float | None


class ProducerView(OfferingView):
    """What the producer sees: who committed, help coverage per shift, deliveries and lead-user feedback."""

    commitments: list[CommitmentEntry]
    help_coverage: list[ShiftCoverage]
    deliveries: list[Delivery]
    deliveries_outstanding: list[OutstandingDelivery]
    feedback: list[LeadUserFeedback]
    would_commit_again: WouldCommitAgain
    introductions: Introductions


class MemberShift(BaseModel):
    shift_id: str
    date: date
    place: str
    what: str


class MemberCommitment(BaseModel):
    offering_id: str
    title: str
    season: str
    producer_id: str
    offering_status: OfferingStatus
    shares: int
    commitment_status: Literal["committed", "withdrawn", "released"] | None
    reason: str
    price: dict[str, Any]
    commitment_deadline: datetime
    delivery_dates: list[date]
    deliveries: list[Delivery]
    help_shifts: list[MemberShift]


class MemberCommitments(BaseModel):
    member_id: str
    community_id: str
    items: list[MemberCommitment]


class LeadUserReputation(BaseModel):
    """Lead-user feedback on the member's offerings, as a producer."""

    feedback_count: int
    offerings: int
    would_commit_again: int
    would_commit_again_rate: float | None


# ---- helpers ----

def _ctx(request: Request, who: Principal, cid: str) -> CommandContext:
    return CommandContext.from_request(request, who, cid)


def _visible(who: Principal, state: dict[str, Any]) -> bool:
    """Partner tokens see only offerings shared with partner communities."""
    return who.scope != "partner" or state["terms"]["visibility"] == "partners"


async def _state(request: Request, who: Principal, cid: str, oid: str) -> dict[str, Any]:
    async with runtime_of(request).pool.acquire() as conn:
        state = await projections.offering(conn, cid, oid)
    if state is None or not _visible(who, state):
        raise NotFound("offering not found")
    return state


async def _view(request: Request, who: Principal, cid: str, oid: str, response: Response | None = None) -> Any:
    state = await _state(request, who, cid, oid)
    if response is not None:
        response.headers["ETag"] = f'"{state["version"]}"'
    return projections.status_view(state)


async def _act(request: Request, response: Response, who: Principal, cid: str, oid: str,
               decide: handlers.Decision) -> Any:
    who.require_writer(cid)
    await handlers.on_offering(runtime_of(request).store, who, cid, oid, _ctx(request, who, cid), decide)
    return await _view(request, who, cid, oid, response)


def _may_see_member(who: Principal, cid: str, member_id: str) -> None:
    who.require_community(cid)
    if who.is_operator or who.is_self(member_id):
        return
    if who.scope != "member" or ROLE_RANK.get(who.role or "", 0) < ROLE_RANK["facilitator"]:
        raise Forbidden("a member's commitments are theirs (and their facilitators') to see")


# ---- offerings ----

@router.post("/communities/{community_id}/offerings", status_code=201, response_model=OfferingView, tags=[TAG],
             summary="Publish a pre-commitment offering (a farm share, a batch, a programme)")
async def publish(community_id: str, body: PublishOffering, request: Request, response: Response,
                  who: Principal = Depends(principal)) -> Any:
    who.require_writer(community_id)
    oid = await handlers.publish(runtime_of(request).store, who, community_id, body,
                                 _ctx(request, who, community_id))
    return await _view(request, who, community_id, oid, response)


@router.get("/communities/{community_id}/offerings", response_model=OfferingPage, tags=[TAG],
            summary="Offerings of the community, oldest first")
async def list_offerings(community_id: str, request: Request, status: OfferingStatus | None = None,
                         cursor: str | None = Query(None, max_length=40), limit: int = Query(50, ge=1, le=200),
                         who: Principal = Depends(principal)) -> Any:
    who.require_community(community_id)
    async with runtime_of(request).pool.acquire() as conn:
        return await projections.offerings(conn, community_id, status, who.scope == "partner", cursor, limit)


def _ics(name: str, member_id: str, items: list[dict[str, Any]]) -> Response:
    """Deliveries and help shifts as all-day events (the offering's terms carry dates, not times)."""
    cal = Calendar()
    cal.add("prodid", "-//Kizuna//offerings//EN")
    cal.add("version", "2.0")
    cal.add("x-wr-calname", name)
    stamp = datetime.now(UTC)
    for item in items:
        cancelled = item["offering_status"] == "lapsed" or item["commitment_status"] in ("withdrawn", "released")
        entries = [(f"delivery-{day}", f"Delivery: {item['title']}", date.fromisoformat(str(day)),
                    f"{item['shares']} share(s) of {item['title']} ({item['season']})", None, cancelled)
                   for day in item["delivery_dates"] if item["commitment_status"] is not None]
        entries += [(f"shift-{s['shift_id']}", f"Help shift: {item['title']}", date.fromisoformat(str(s["date"])),
                     s["what"] or "Help at a busy time", s["place"], item["offering_status"] == "lapsed")
                    for s in item["help_shifts"]]
        for key, summary, day, description, place, is_cancelled in entries:
            event = Event()
            event.add("uid", f"{item['offering_id']}-{key}-{member_id}@kizuna")
            event.add("summary", summary)
            event.add("dtstart", day)
            if day < date.max:
                event.add("dtend", day + timedelta(days=1))
            event.add("dtstamp", stamp)
            event.add("status", "CANCELLED" if is_cancelled else "CONFIRMED")
            event.add("categories", ["offering"])
            event.add("description", description)
            if place:
                event.add("location", place)
            cal.add_component(event)
    return Response(cal.to_ical(), media_type=ICS_MEDIA_TYPE)


@router.get("/communities/{community_id}/offerings/commitments/{member_id}.ics", tags=[TAG],
            response_class=Response, responses=ICS_RESPONSE,
            summary="A member's delivery dates and help shifts as iCalendar")
async def member_calendar(community_id: str, member_id: str, request: Request,
                          who: Principal = Depends(principal)) -> Response:
    _may_see_member(who, community_id, member_id)
    async with runtime_of(request).pool.acquire() as conn:
        states = await projections.member_offerings(conn, community_id, member_id)
    return _ics(f"Offerings of {member_id}", member_id,
                [projections.member_commitment(s, member_id) for s in states])


@router.get("/communities/{community_id}/offerings/commitments/{member_id}", response_model=MemberCommitments,
            tags=[TAG], summary="A member's commitments, deliveries and help shifts")
async def member_commitments(community_id: str, member_id: str, request: Request,
                             who: Principal = Depends(principal)) -> Any:
    _may_see_member(who, community_id, member_id)
    async with runtime_of(request).pool.acquire() as conn:
        states = await projections.member_offerings(conn, community_id, member_id)
    return {"member_id": member_id, "community_id": community_id,
            "items": [projections.member_commitment(s, member_id) for s in states]}


@router.get("/communities/{community_id}/offerings/{offering_id}", response_model=OfferingView, tags=[TAG],
            summary="An offering's status: committed vs minimum vs available, days to the deadline")
async def get_offering(community_id: str, offering_id: str, request: Request, response: Response,
                       who: Principal = Depends(principal)) -> Any:
    who.require_community(community_id)
    return await _view(request, who, community_id, offering_id, response)


@router.get("/communities/{community_id}/offerings/{offering_id}/producer-view", response_model=ProducerView,
            tags=[TAG], summary="The producer's view: commitments, help coverage, deliveries outstanding, feedback")
async def producer_view(community_id: str, offering_id: str, request: Request,
                        who: Principal = Depends(principal)) -> Any:
    who.require_community(community_id)
    state = await _state(request, who, community_id, offering_id)
    if not (who.is_operator or who.is_self(state["producer_id"])
            or (who.scope == "member" and ROLE_RANK.get(who.role or "", 0) >= ROLE_RANK["facilitator"])):
        raise Forbidden("the producer's view is for the producer (and the community's facilitators)")
    async with runtime_of(request).pool.acquire() as conn:
        return await projections.producer_view(conn, state)


@router.put("/communities/{community_id}/offerings/{offering_id}/terms", response_model=OfferingView, tags=[TAG],
            summary="Change the terms before anyone has committed (producer); afterwards it needs consent (409)")
async def change_terms(community_id: str, offering_id: str, body: ChangeTerms, request: Request,
                       response: Response, who: Principal = Depends(principal)) -> Any:
    return await _act(request, response, who, community_id, offering_id,
                      lambda o, me, now: o.change_terms(me, body, now))


@router.post("/communities/{community_id}/offerings/{offering_id}/terms-changes", response_model=OfferingView,
             tags=[TAG], summary="Propose new terms to the members who committed (producer)")
async def propose_terms_change(community_id: str, offering_id: str, body: ChangeTerms, request: Request,
                               response: Response, who: Principal = Depends(principal)) -> Any:
    proposal_id = _ctx(request, who, community_id).new_id("terms-change")
    return await _act(request, response, who, community_id, offering_id,
                      lambda o, me, now: o.propose_terms_change(me, proposal_id, body, now))


@router.post("/communities/{community_id}/offerings/{offering_id}/terms-changes/{proposal_id}/answer",
             response_model=OfferingView, tags=[TAG],
             summary="Consent to (or decline) proposed new terms (a member who committed)")
async def answer_terms_change(community_id: str, offering_id: str, proposal_id: str, body: AnswerTermsChange,
                              request: Request, response: Response, who: Principal = Depends(principal)) -> Any:
    return await _act(request, response, who, community_id, offering_id,
                      lambda o, me, now: o.answer_terms_change(me, proposal_id, body, now))


@router.post("/communities/{community_id}/offerings/{offering_id}/terms-changes/{proposal_id}/application",
             response_model=OfferingView, tags=[TAG],
             summary="Apply consented terms (producer); members who did not consent are released only if asked")
async def apply_terms_change(community_id: str, offering_id: str, proposal_id: str, body: ApplyTermsChange,
                             request: Request, response: Response, who: Principal = Depends(principal)) -> Any:
    return await _act(request, response, who, community_id, offering_id,
                      lambda o, me, now: o.apply_terms_change(me, proposal_id, body, now))


@router.post("/communities/{community_id}/offerings/{offering_id}/commitments", status_code=201,
             response_model=OfferingView, tags=[TAG],
             summary="Commit to shares before the deadline (409 names the shares left)")
async def commit(community_id: str, offering_id: str, body: CommitShares, request: Request, response: Response,
                 who: Principal = Depends(principal)) -> Any:
    return await _act(request, response, who, community_id, offering_id, lambda o, me, now: o.commit(me, body, now))


@router.post("/communities/{community_id}/offerings/{offering_id}/commitments/withdrawal",
             response_model=OfferingView, tags=[TAG], summary="Withdraw your commitment before the deadline")
async def withdraw(community_id: str, offering_id: str, request: Request, response: Response,
                   body: WithdrawCommitment | None = None, who: Principal = Depends(principal)) -> Any:
    cmd = body or WithdrawCommitment()
    return await _act(request, response, who, community_id, offering_id, lambda o, me, now: o.withdraw(me, cmd, now))


@router.post("/communities/{community_id}/offerings/{offering_id}/settlement", response_model=OfferingView,
             tags=[TAG], summary="Settle after the deadline: confirmed if the minimum is reached, else lapsed")
async def settle(community_id: str, offering_id: str, request: Request, response: Response,
                 who: Principal = Depends(principal)) -> Any:
    who.require_community(community_id)
    await handlers.settle(runtime_of(request).store, who, community_id, offering_id,
                          _ctx(request, who, community_id))
    return await _view(request, who, community_id, offering_id, response)


@router.post("/communities/{community_id}/offerings/{offering_id}/progress", status_code=201,
             response_model=OfferingView, tags=[TAG], summary="Share progress with the people waiting (producer)")
async def share_progress(community_id: str, offering_id: str, body: ShareProgress, request: Request,
                         response: Response, who: Principal = Depends(principal)) -> Any:
    update_id = _ctx(request, who, community_id).new_id("progress-update")
    return await _act(request, response, who, community_id, offering_id,
                      lambda o, me, now: o.share_progress(me, update_id, body, now))


@router.post("/communities/{community_id}/offerings/{offering_id}/shifts/{shift_id}/signups", status_code=201,
             response_model=OfferingView, tags=[TAG], summary="Sign up to help at a busy time (never over the hands)")
async def sign_up(community_id: str, offering_id: str, shift_id: str, request: Request, response: Response,
                  who: Principal = Depends(principal)) -> Any:
    return await _act(request, response, who, community_id, offering_id,
                      lambda o, me, now: o.sign_up(me, shift_id, now))


@router.delete("/communities/{community_id}/offerings/{offering_id}/shifts/{shift_id}/signups",
               response_model=OfferingView, tags=[TAG], summary="Cancel your sign-up for a help shift")
async def cancel_sign_up(community_id: str, offering_id: str, shift_id: str, request: Request, response: Response,
                         who: Principal = Depends(principal)) -> Any:
    return await _act(request, response, who, community_id, offering_id,
                      lambda o, me, now: o.cancel_sign_up(me, shift_id))


@router.post("/communities/{community_id}/offerings/{offering_id}/deliveries", status_code=201,
             response_model=OfferingView, tags=[TAG],
             summary="Record a delivery to a member (producer); a short harvest is a smaller portion per share")
async def record_delivery(community_id: str, offering_id: str, body: RecordDelivery, request: Request,
                          response: Response, who: Principal = Depends(principal)) -> Any:
    return await _act(request, response, who, community_id, offering_id,
                      lambda o, me, now: o.record_delivery(me, body))


@router.post("/communities/{community_id}/offerings/{offering_id}/feedback", status_code=201,
             response_model=OfferingView, tags=[TAG],
             summary="Lead-user feedback: what was good, what to improve, would you commit again")
async def give_feedback(community_id: str, offering_id: str, body: GiveLeadUserFeedback, request: Request,
                        response: Response, who: Principal = Depends(principal)) -> Any:
    return await _act(request, response, who, community_id, offering_id,
                      lambda o, me, now: o.give_feedback(me, body, now))

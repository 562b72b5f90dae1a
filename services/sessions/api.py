"""HTTP routes of the sessions service: sessions, calendar export, ties, goals and check-ins."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import asyncpg
from fastapi import APIRouter, Body, Depends, Query, Request, Response
from icalendar import Calendar, Event
from pydantic import BaseModel, Field

from kizuna.auth import ROLE_RANK, Principal, Role, principal
from kizuna.errors import Forbidden, Invalid, NotFound
from kizuna.handling import CommandContext
from kizuna.problems import PROBLEM_RESPONSES
from kizuna.service import runtime_of

from . import handlers, projections
from .domain import (
    AbandonGoal,
    AchieveGoal,
    CancelSession,
    CheckIn,
    Goal,
    Kpi,
    RecordAttendance,
    RegisterForSession,
    RescheduleSession,
    ReviseGoal,
    ScheduleSession,
    Session,
    SessionKind,
    SetGoal,
    goal_progress,
)

router = APIRouter(responses=PROBLEM_RESPONSES)
ICS_MEDIA_TYPE = "text/calendar"


# ---- response models ----

class SessionView(BaseModel):
    session_id: str
    community_id: str
    kind: SessionKind
    title: str
    starts_at: datetime
    ends_at: datetime
    time_zone: str
    place: str | None
    link: str | None
    capacity: int
    cohort: str | None
    status: Literal["scheduled", "cancelled"]
    registered: list[str] = Field(description="Member ids holding a place, in registration order")
    waitlist: list[str] = Field(description="Member ids waiting, first promoted first")
    attendees: list[str]
    late_cancellations: list[str] = Field(description="Members who cancelled within 24 h of the start")
    scheduled_by: str
    version: int


class SessionPage(BaseModel):
    items: list[SessionView]
    next_cursor: str | None


class RegistrationOutcome(BaseModel):
    member_id: str
    status: Literal["registered", "waitlisted"]
    waitlist_position: int | None
    session: SessionView


class KpiProgress(BaseModel):
    name: str
    unit: str
    baseline: float
    target: float
    latest: float
    percent: float = Field(description="Share of the way from baseline to target, 0-100")
    trend: Literal["improving", "worsening", "flat", "unknown"]
    recent: list[float]


class GoalProgress(BaseModel):
    goal_id: str
    status: str
    kpis: list[KpiProgress]
    percent: float = Field(description="Mean of the KPIs' percents")
    expected_percent: float = Field(description="Where a linear pace from set date to due date would be now")
    at_risk: bool


class CheckInView(BaseModel):
    values: dict[str, float]
    note: str
    checked_in_by: str
    checked_in_at: datetime


class RevisionView(BaseModel):
    revision: int
    previous: dict[str, Any] = Field(description="The terms before this revision")
    reason: str
    revised_by: str
    revised_at: datetime


class GoalView(BaseModel):
    goal_id: str
    community_id: str
    member_id: str
    facilitator_id: str
    statement: str
    motivation: str
    kpis: list[Kpi]
    due_date: str
    status: Literal["active", "achieved", "abandoned"]
    closed_note: str
    set_at: datetime
    revisions: list[RevisionView]
    check_ins: list[CheckInView]
    progress: GoalProgress
    version: int


class GoalPage(BaseModel):
    items: list[GoalView]
    next_cursor: str | None


class MemberGoals(BaseModel):
    member_id: str
    active_goals: list[GoalView]
    last_check_in_at: datetime | None


class StaleMember(BaseModel):
    member_id: str
    goal_ids: list[str]
    last_check_in_at: datetime | None


class GoalAtRisk(BaseModel):
    goal_id: str
    member_id: str
    percent: float
    expected_percent: float
    due_date: str


class GoalAttention(BaseModel):
    stale_days: int
    stale_members: list[StaleMember] = Field(description="Members with an active goal and no check-in for stale_days")
    goals_at_risk: list[GoalAtRisk] = Field(description="Active goals behind a linear pace to their due date")


class Tie(BaseModel):
    member_a: str
    member_b: str
    shared_experiences: int


class TieList(BaseModel):
    items: list[Tie]


class MemberTies(BaseModel):
    member_id: str
    display_name: str
    role: str
    ties: int = Field(description="How many distinct members they attended at least one session with")
    attended: int = Field(description="How many sessions they attended")


class MemberTiesList(BaseModel):
    items: list[MemberTies]


# ---- authorisation ----

async def _roster(request: Request, community_id: str, member_id: str) -> asyncpg.Record | None:
    async with runtime_of(request).pool.acquire() as conn:
        return await projections.roster_entry(conn, community_id, member_id)


async def acting_rank(request: Request, who: Principal, community_id: str, minimum: Role = "member") -> int:
    """Only active members act; a role counts if either the roster or the caller's token grants it."""
    who.require_community(community_id)
    if who.is_operator:
        return ROLE_RANK["owner"]
    if who.scope != "member":
        raise Forbidden(f"a {who.scope} token cannot do this")
    entry = await _roster(request, community_id, str(who.member_id))
    if entry is None or not entry["active"]:
        raise Forbidden("only active members of the community can do this", slug="not-an-active-member")
    rank = max(ROLE_RANK.get(who.role or "", 0), ROLE_RANK.get(entry["role"], 0))
    if rank < ROLE_RANK[minimum]:
        raise Forbidden(f"requires the {minimum} role or higher", required_role=minimum)
    return rank


async def reader_rank(request: Request, who: Principal, community_id: str) -> int:
    who.require_community(community_id)
    if who.is_operator:
        return ROLE_RANK["owner"]
    entry = await _roster(request, community_id, str(who.member_id))
    roster_rank = ROLE_RANK.get(entry["role"], 0) if entry is not None and entry["active"] else 0
    return max(ROLE_RANK.get(who.role or "", 0), roster_rank)


async def require_reader_role(request: Request, who: Principal, community_id: str, minimum: Role) -> None:
    if await reader_rank(request, who, community_id) < ROLE_RANK[minimum]:
        raise Forbidden(f"requires the {minimum} role or higher", required_role=minimum)


async def require_active_member(request: Request, community_id: str, member_id: str, field: str) -> None:
    entry = await _roster(request, community_id, member_id)
    if entry is None or not entry["active"]:
        raise Invalid(field, f"{member_id} is not an active member of this community")


def _ctx(request: Request, who: Principal, community_id: str) -> CommandContext:
    return CommandContext.from_request(request, who, community_id)


def _store(request: Request) -> Any:
    return runtime_of(request).store


def _etag(response: Response, version: int) -> None:
    response.headers["ETag"] = f'"{version}"'


def session_view(session: Session, response: Response | None = None) -> SessionView:
    if response is not None:
        _etag(response, session.version)
    return SessionView.model_validate(session.snapshot())


def goal_view_from(snapshot: dict[str, Any]) -> GoalView:
    return GoalView.model_validate({**snapshot, "progress": goal_progress(snapshot, datetime.now(UTC))})


def goal_view(goal: Goal, response: Response | None = None) -> GoalView:
    if response is not None:
        _etag(response, goal.version)
    return goal_view_from(goal.snapshot())


# ---- sessions ----

SCHEDULE_EXAMPLE = {"kind": "group-coaching", "title": "Cohort A — week 1", "starts_at": "2030-05-04T18:00:00",
                    "ends_at": "2030-05-04T20:00:00", "time_zone": "Asia/Tokyo", "place": "Community house",
                    "capacity": 8, "cohort": "A"}


@router.post("/communities/{community_id}/sessions", status_code=201, response_model=SessionView,
             tags=["sessions"], summary="Schedule a session (facilitator or owner)")
async def schedule(community_id: str, request: Request, response: Response,
                   body: ScheduleSession = Body(openapi_examples={"cohort": {"value": SCHEDULE_EXAMPLE}}),
                   who: Principal = Depends(principal)) -> SessionView:
    await acting_rank(request, who, community_id, "facilitator")
    session = await handlers.schedule_session(_store(request), community_id, body, _ctx(request, who, community_id))
    response.headers["Location"] = f"/communities/{community_id}/sessions/{session.snapshot()['session_id']}"
    return session_view(session, response)


@router.get("/communities/{community_id}/sessions", response_model=SessionPage, tags=["sessions"],
            summary="List the community's sessions by start time")
async def list_sessions(community_id: str, request: Request, cursor: str | None = None,
                        limit: int = Query(50, ge=1, le=200),
                        member_id: str | None = Query(None, description="Only sessions this member registered for"),
                        who: Principal = Depends(principal)) -> dict[str, Any]:
    who.require_community(community_id)
    async with runtime_of(request).pool.acquire() as conn:
        return await projections.list_sessions(conn, community_id, cursor, limit, member_id)


@router.get("/communities/{community_id}/sessions/{session_id}", response_model=SessionView, tags=["sessions"],
            summary="One session with its registrations, waitlist and attendance")
async def get_session(community_id: str, session_id: str, request: Request, response: Response,
                      who: Principal = Depends(principal)) -> SessionView:
    who.require_community(community_id)
    return session_view(await handlers.load_session(_store(request), community_id, session_id), response)


@router.post("/communities/{community_id}/sessions/{session_id}/registrations", response_model=RegistrationOutcome,
             tags=["sessions"], summary="Register for a session; past capacity the member is waitlisted")
async def register(community_id: str, session_id: str, request: Request, response: Response,
                   body: RegisterForSession = Body(default_factory=RegisterForSession,
                                                   openapi_examples={"self": {"value": {}}}),
                   who: Principal = Depends(principal)) -> RegistrationOutcome:
    rank = await acting_rank(request, who, community_id)
    member_id = body.member_id or who.member_id
    if member_id is None:
        raise Invalid("member_id", "the operator must name the member")
    if member_id != who.member_id and rank < ROLE_RANK["facilitator"]:
        raise Forbidden("only facilitators register other members", required_role="facilitator")
    await require_active_member(request, community_id, member_id, "member_id")
    session = await handlers.register(_store(request), community_id, session_id, member_id,
                                      _ctx(request, who, community_id))
    waiting = member_id in session.waitlist
    return RegistrationOutcome(member_id=member_id, status="waitlisted" if waiting else "registered",
                               waitlist_position=session.waitlist.index(member_id) + 1 if waiting else None,
                               session=session_view(session, response))


@router.post("/communities/{community_id}/sessions/{session_id}/registrations/{member_id}/cancellation",
             response_model=SessionView, tags=["sessions"],
             summary="Cancel a registration; the first on the waitlist takes the place")
async def cancel_registration(community_id: str, session_id: str, member_id: str, request: Request,
                              response: Response, who: Principal = Depends(principal)) -> SessionView:
    rank = await acting_rank(request, who, community_id)
    if member_id != who.member_id and rank < ROLE_RANK["facilitator"]:
        raise Forbidden("only facilitators cancel other members' registrations", required_role="facilitator")
    return session_view(await handlers.cancel_registration(_store(request), community_id, session_id, member_id,
                                                           _ctx(request, who, community_id)), response)


@router.post("/communities/{community_id}/sessions/{session_id}/reschedule", response_model=SessionView,
             tags=["sessions"], summary="Move a session; registrants are told through SessionRescheduled")
async def reschedule(community_id: str, session_id: str, request: Request, response: Response,
                     body: RescheduleSession = Body(openapi_examples={"later": {"value": {
                         "starts_at": "2030-05-05T18:00:00", "ends_at": "2030-05-05T20:00:00",
                         "time_zone": "Asia/Tokyo", "reason": "room taken"}}}),
                     who: Principal = Depends(principal)) -> SessionView:
    await acting_rank(request, who, community_id, "facilitator")
    return session_view(await handlers.reschedule_session(_store(request), community_id, session_id, body,
                                                          _ctx(request, who, community_id)), response)


@router.post("/communities/{community_id}/sessions/{session_id}/cancellation", response_model=SessionView,
             tags=["sessions"], summary="Cancel a session; registrants are told through SessionCancelled")
async def cancel(community_id: str, session_id: str, request: Request, response: Response,
                 body: CancelSession = Body(openapi_examples={"ill": {"value": {"reason": "facilitator ill"}}}),
                 who: Principal = Depends(principal)) -> SessionView:
    await acting_rank(request, who, community_id, "facilitator")
    return session_view(await handlers.cancel_session(_store(request), community_id, session_id, body,
                                                      _ctx(request, who, community_id)), response)


@router.post("/communities/{community_id}/sessions/{session_id}/attendance", response_model=SessionView,
             tags=["sessions"], summary="Record who attended (facilitator); replaces an earlier record")
async def attendance(community_id: str, session_id: str, request: Request, response: Response,
                     body: RecordAttendance = Body(openapi_examples={"two": {"value": {"attendees": ["m1", "m2"]}}}),
                     who: Principal = Depends(principal)) -> SessionView:
    await acting_rank(request, who, community_id, "facilitator")
    for index, member_id in enumerate(body.attendees):
        await require_active_member(request, community_id, member_id, f"attendees.{index}")
    return session_view(await handlers.record_attendance(_store(request), community_id, session_id, body,
                                                         _ctx(request, who, community_id)), response)


# ---- calendar ----

def _ics(name: str, sessions: list[dict[str, Any]]) -> Response:
    cal = Calendar()
    cal.add("prodid", "-//Kizuna//sessions//EN")
    cal.add("version", "2.0")
    cal.add("x-wr-calname", name)
    for s in sessions:
        event = Event()
        event.add("uid", f"{s['session_id']}@kizuna")
        event.add("summary", s["title"])
        event.add("dtstart", datetime.fromisoformat(s["starts_at"]).astimezone(ZoneInfo(s["time_zone"])))
        event.add("dtend", datetime.fromisoformat(s["ends_at"]).astimezone(ZoneInfo(s["time_zone"])))
        event.add("dtstamp", datetime.now(UTC))
        event.add("sequence", s["version"])
        event.add("status", "CANCELLED" if s["status"] == "cancelled" else "CONFIRMED")
        event.add("categories", [s["kind"]])
        if s.get("place") or s.get("link"):
            event.add("location", s.get("place") or s.get("link"))
        if s.get("link"):
            event.add("url", s["link"])
        description = f"{s['kind']}" + (f", cohort {s['cohort']}" if s.get("cohort") else "")
        event.add("description", description)
        cal.add_component(event)
    cal.add_missing_timezones()
    return Response(cal.to_ical(), media_type=ICS_MEDIA_TYPE)


ICS_RESPONSE: dict[int | str, dict[str, Any]] = {200: {"content": {ICS_MEDIA_TYPE: {}},
                                                        "description": "An iCalendar (RFC 5545) file"}}


@router.get("/communities/{community_id}/calendar/community.ics", tags=["calendar"], response_class=Response,
            responses=ICS_RESPONSE, summary="The community's sessions as iCalendar")
async def community_calendar(community_id: str, request: Request, who: Principal = Depends(principal)) -> Response:
    who.require_community(community_id)
    async with runtime_of(request).pool.acquire() as conn:
        sessions = await projections.sessions_for_calendar(conn, community_id)
    return _ics("Community sessions", sessions)


@router.get("/communities/{community_id}/calendar/members/{member_id}.ics", tags=["calendar"],
            response_class=Response, responses=ICS_RESPONSE,
            summary="The sessions a member registered (or is waitlisted) for, as iCalendar")
async def member_calendar(community_id: str, member_id: str, request: Request,
                          who: Principal = Depends(principal)) -> Response:
    if member_id != who.member_id:
        await require_reader_role(request, who, community_id, "facilitator")
    else:
        who.require_community(community_id)
    async with runtime_of(request).pool.acquire() as conn:
        sessions = await projections.sessions_for_calendar(conn, community_id, member_id)
    return _ics(f"Sessions of {member_id}", sessions)


class CalendarLinkIssued(BaseModel):
    key: str = Field(description="The secret (shown once): whoever holds it reads this member's sessions")
    path: str = Field(description="The feed's address on the gateway, without a token: "
                                  "subscribe to it as https:// or webcal://")


@router.post("/communities/{community_id}/calendar/link", status_code=201, response_model=CalendarLinkIssued,
             tags=["calendar"], summary="A private address of my sessions for a calendar app (a new one each time: "
                                        "the previous address stops working)")
async def issue_calendar_link(community_id: str, request: Request,
                              who: Principal = Depends(principal)) -> CalendarLinkIssued:
    who.require_writer(community_id)
    if who.member_id is None:
        raise Invalid("member_id", "a calendar link belongs to a member: ask with a member's token")
    await require_active_member(request, community_id, who.member_id, "member_id")
    key = await handlers.issue_calendar_link(_store(request), community_id, who.member_id,
                                             _ctx(request, who, community_id))
    return CalendarLinkIssued(key=key, path=f"/v1/calendar/{key}.ics")


# Reached only through the gateway's public /v1/calendar/{key}.ics (front_door.py), which documents it.
@router.get("/calendar-feeds/{key}.ics", response_class=Response, include_in_schema=False)
async def calendar_feed(key: str, request: Request) -> Response:
    async with runtime_of(request).pool.acquire() as conn:
        owner = await projections.calendar_of_link(conn, hashlib.sha256(key.encode()).hexdigest())
        if owner is None:
            raise NotFound("no calendar answers to this address (a newer link replaced it, or its member left)")
        sessions = await projections.sessions_for_calendar(conn, *owner)
    return _ics("Kizuna", sessions)


# ---- ties ----

@router.get("/communities/{community_id}/ties", response_model=TieList, tags=["ties"],
            summary="Pairs of members and how many attended sessions they shared (facilitators)")
async def list_ties(community_id: str, request: Request, who: Principal = Depends(principal)) -> dict[str, Any]:
    await require_reader_role(request, who, community_id, "facilitator")
    async with runtime_of(request).pool.acquire() as conn:
        return {"items": await projections.ties(conn, community_id)}


@router.get("/communities/{community_id}/ties/members", response_model=MemberTiesList, tags=["ties"],
            summary="Every active member with their number of ties (facilitators)")
async def member_ties(community_id: str, request: Request, who: Principal = Depends(principal)) -> dict[str, Any]:
    await require_reader_role(request, who, community_id, "facilitator")
    async with runtime_of(request).pool.acquire() as conn:
        return {"items": await projections.ties_per_member(conn, community_id)}


@router.get("/communities/{community_id}/ties/at-risk", response_model=MemberTiesList, tags=["ties"],
            summary="Active members with at most max_ties ties: at risk of drifting away (facilitators)")
async def at_risk(community_id: str, request: Request, max_ties: int = Query(1, ge=0),
                  who: Principal = Depends(principal)) -> dict[str, Any]:
    await require_reader_role(request, who, community_id, "facilitator")
    async with runtime_of(request).pool.acquire() as conn:
        rows = await projections.ties_per_member(conn, community_id)
    return {"items": [r for r in rows if r["ties"] <= max_ties]}


# ---- goals ----

GOAL_EXAMPLE = {"facilitator_id": "f-1", "statement": "Run a 10 km race",
                "motivation": "I want to feel strong again for my kids",
                "kpis": [{"name": "weekly km", "unit": "km", "baseline": 5, "target": 25, "direction": "increase"}],
                "due_date": "2030-09-30"}


async def _goal_reader(request: Request, who: Principal, community_id: str, goal: Goal) -> None:
    who.require_community(community_id)
    if goal.set is None:  # an invariant, kept under python -O too
        raise RuntimeError("goal.set is missing: an invariant of this code was broken")
    if who.member_id in (goal.set.member_id, goal.set.facilitator_id):
        return
    await require_reader_role(request, who, community_id, "facilitator")


async def _goal_actor(request: Request, who: Principal, community_id: str, goal_id: str) -> None:
    """The goal's member, its facilitator, or any facilitator may act on it."""
    rank = await acting_rank(request, who, community_id)
    goal = await handlers.load_goal(_store(request), community_id, goal_id)
    if goal.set is None:  # an invariant, kept under python -O too
        raise RuntimeError("goal.set is missing: an invariant of this code was broken")
    if who.member_id not in (goal.set.member_id, goal.set.facilitator_id) and rank < ROLE_RANK["facilitator"]:
        raise Forbidden("only the goal's member or a facilitator can do this", required_role="facilitator")


@router.post("/communities/{community_id}/goals", status_code=201, response_model=GoalView, tags=["goals"],
             summary="Set a personal goal with a facilitator")
async def set_goal(community_id: str, request: Request, response: Response,
                   body: SetGoal = Body(openapi_examples={"run": {"value": GOAL_EXAMPLE}}),
                   who: Principal = Depends(principal)) -> GoalView:
    rank = await acting_rank(request, who, community_id)
    member_id = body.member_id or who.member_id
    if member_id is None:
        raise Invalid("member_id", "the operator must name the member")
    if member_id != who.member_id and rank < ROLE_RANK["facilitator"]:
        raise Forbidden("only facilitators set goals for other members", required_role="facilitator")
    await require_active_member(request, community_id, member_id, "member_id")
    facilitator = await _roster(request, community_id, body.facilitator_id)
    if facilitator is None or not facilitator["active"] or ROLE_RANK.get(facilitator["role"], 0) < 2:
        raise Invalid("facilitator_id", "must be an active facilitator or owner of this community")
    goal = await handlers.set_goal(_store(request), community_id, member_id, body, _ctx(request, who, community_id))
    response.headers["Location"] = f"/communities/{community_id}/goals/{goal.snapshot()['goal_id']}"
    return goal_view(goal, response)


@router.get("/communities/{community_id}/goals", response_model=GoalPage, tags=["goals"],
            summary="Goals: a member sees their own, facilitators see everyone's")
async def list_goals(community_id: str, request: Request, cursor: str | None = None,
                     limit: int = Query(50, ge=1, le=200), member_id: str | None = None,
                     status: Literal["active", "achieved", "abandoned"] | None = None,
                     who: Principal = Depends(principal)) -> dict[str, Any]:
    rank = await reader_rank(request, who, community_id)
    if rank < ROLE_RANK["facilitator"]:
        if member_id not in (None, who.member_id):
            raise Forbidden("members see only their own goals", required_role="facilitator")
        member_id = who.member_id
    async with runtime_of(request).pool.acquire() as conn:
        page = await projections.list_goals(conn, community_id, cursor, limit, member_id, status)
    return {"items": [goal_view_from(g) for g in page["items"]], "next_cursor": page["next_cursor"]}


@router.get("/communities/{community_id}/goals/attention", response_model=GoalAttention, tags=["goals"],
            summary="Members whose goals went quiet and goals behind pace (facilitators)")
async def attention(community_id: str, request: Request, stale_days: int = Query(14, ge=1, le=365),
                    who: Principal = Depends(principal)) -> GoalAttention:
    await require_reader_role(request, who, community_id, "facilitator")
    async with runtime_of(request).pool.acquire() as conn:
        goals = await projections.active_goals(conn, community_id)
    now = datetime.now(UTC)
    stale: dict[str, StaleMember] = {}
    at_risk_goals: list[GoalAtRisk] = []
    for goal in goals:
        last = goal["check_ins"][-1]["checked_in_at"] if goal["check_ins"] else None
        quiet_since = datetime.fromisoformat(last or goal["set_at"])
        if now - quiet_since >= timedelta(days=stale_days):
            entry = stale.setdefault(goal["member_id"], StaleMember(member_id=goal["member_id"], goal_ids=[],
                                                                    last_check_in_at=None))
            entry.goal_ids.append(goal["goal_id"])
            if last and (entry.last_check_in_at is None or datetime.fromisoformat(last) > entry.last_check_in_at):
                entry.last_check_in_at = datetime.fromisoformat(last)
        progress = goal_progress(goal, now)
        if progress["at_risk"]:
            at_risk_goals.append(GoalAtRisk(goal_id=goal["goal_id"], member_id=goal["member_id"],
                                            percent=progress["percent"],
                                            expected_percent=progress["expected_percent"],
                                            due_date=goal["due_date"]))
    return GoalAttention(stale_days=stale_days, stale_members=list(stale.values()), goals_at_risk=at_risk_goals)


@router.get("/communities/{community_id}/goals/members/{member_id}", response_model=MemberGoals, tags=["goals"],
            summary="A member's active goals and last check-in")
async def member_goals(community_id: str, member_id: str, request: Request,
                       who: Principal = Depends(principal)) -> MemberGoals:
    if member_id != who.member_id:
        await require_reader_role(request, who, community_id, "facilitator")
    else:
        who.require_community(community_id)
    async with runtime_of(request).pool.acquire() as conn:
        page = await projections.list_goals(conn, community_id, None, 200, member_id, "active")
    goals = [goal_view_from(g) for g in page["items"]]
    times = [c.checked_in_at for g in goals for c in g.check_ins]
    return MemberGoals(member_id=member_id, active_goals=goals, last_check_in_at=max(times) if times else None)


@router.get("/communities/{community_id}/goals/{goal_id}", response_model=GoalView, tags=["goals"],
            summary="One goal with revisions, check-ins and progress")
async def get_goal(community_id: str, goal_id: str, request: Request, response: Response,
                   who: Principal = Depends(principal)) -> GoalView:
    who.require_community(community_id)
    goal = await handlers.load_goal(_store(request), community_id, goal_id)
    await _goal_reader(request, who, community_id, goal)
    return goal_view(goal, response)


@router.post("/communities/{community_id}/goals/{goal_id}/check-ins", response_model=GoalView, tags=["goals"],
             summary="Record KPI values and a note")
async def check_in(community_id: str, goal_id: str, request: Request, response: Response,
                   body: CheckIn = Body(openapi_examples={"week": {"value": {"values": {"weekly km": 12},
                                                                             "note": "rainy week"}}}),
                   who: Principal = Depends(principal)) -> GoalView:
    await _goal_actor(request, who, community_id, goal_id)
    return goal_view(await handlers.check_in(_store(request), community_id, goal_id, body,
                                             _ctx(request, who, community_id)), response)


@router.post("/communities/{community_id}/goals/{goal_id}/revisions", response_model=GoalView, tags=["goals"],
             summary="Revise a goal's terms; the previous terms stay in the history")
async def revise(community_id: str, goal_id: str, request: Request, response: Response,
                 body: ReviseGoal = Body(openapi_examples={"lower": {"value": {
                     "kpis": [{"name": "weekly km", "unit": "km", "baseline": 5, "target": 20,
                               "direction": "increase"}], "reason": "knee injury"}}}),
                 who: Principal = Depends(principal)) -> GoalView:
    await _goal_actor(request, who, community_id, goal_id)
    return goal_view(await handlers.revise_goal(_store(request), community_id, goal_id, body,
                                                _ctx(request, who, community_id)), response)


@router.post("/communities/{community_id}/goals/{goal_id}/achievement", response_model=GoalView, tags=["goals"],
             summary="Mark a goal achieved")
async def achieve(community_id: str, goal_id: str, request: Request, response: Response,
                  body: AchieveGoal = Body(default_factory=AchieveGoal,
                                           openapi_examples={"done": {"value": {"note": "ran it in 58 min"}}}),
                  who: Principal = Depends(principal)) -> GoalView:
    await _goal_actor(request, who, community_id, goal_id)
    return goal_view(await handlers.achieve_goal(_store(request), community_id, goal_id, body,
                                                 _ctx(request, who, community_id)), response)


@router.post("/communities/{community_id}/goals/{goal_id}/abandonment", response_model=GoalView, tags=["goals"],
             summary="Abandon a goal, with the reason")
async def abandon(community_id: str, goal_id: str, request: Request, response: Response,
                  body: AbandonGoal = Body(openapi_examples={"moved": {"value": {"reason": "moved city"}}}),
                  who: Principal = Depends(principal)) -> GoalView:
    await _goal_actor(request, who, community_id, goal_id)
    return goal_view(await handlers.abandon_goal(_store(request), community_id, goal_id, body,
                                                 _ctx(request, who, community_id)), response)



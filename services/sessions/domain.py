"""Sessions and goals: scheduling, registration with capacity and waitlist, attendance, personal
goals with KPIs and check-ins. Pure — no I/O; "now" is always passed in.

Streams: ``session-<session_id>`` holds one session, so every registration competes on one
stream and the capacity invariant holds under concurrency; ``goal-<goal_id>`` holds one goal.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field

from kizuna.domain import Aggregate, DomainEvent, StrictModel
from kizuna.errors import Conflict, Invalid, NotFound, reason
from kizuna.personal import Personal, member_data

SessionKind = Literal["group-coaching", "share-meeting", "meal", "retreat", "online"]
Direction = Literal["increase", "decrease"]
LATE_CANCELLATION = timedelta(hours=24)


# ---- events (the public contract on the bus: <prefix>.<community_id>.sessions.<EventType>) ----

class SessionScheduled(DomainEvent):
    session_id: str
    community_id: str
    kind: SessionKind
    title: str
    starts_at: datetime
    ends_at: datetime
    time_zone: str
    place: str | None = None
    link: str | None = None
    capacity: int
    cohort: str | None = None
    scheduled_by: str


class SessionRescheduled(DomainEvent):
    session_id: str
    community_id: str
    starts_at: datetime
    ends_at: datetime
    time_zone: str
    place: str | None = None
    link: str | None = None
    reason: str
    rescheduled_by: str
    registrants: list[str]


class SessionCancelled(DomainEvent):
    session_id: str
    community_id: str
    reason: str
    cancelled_by: str
    registrants: list[str]


class CalendarLinkIssued(DomainEvent):
    """A member's private calendar feed now answers to a new secret (the old one, if any, no longer does). Only
    the secret's SHA-256 is recorded: the secret itself is shown once, to the member."""

    community_id: str
    member_id: str
    key_sha256: str


class MemberRegistered(DomainEvent):
    session_id: str
    community_id: str
    member_id: str
    registered_by: str


class RegistrationWaitlisted(DomainEvent):
    session_id: str
    community_id: str
    member_id: str
    position: int
    registered_by: str


class WaitlistPromoted(DomainEvent):
    session_id: str
    community_id: str
    member_id: str


class RegistrationCancelled(DomainEvent):
    session_id: str
    community_id: str
    member_id: str
    was_waitlisted: bool
    late: bool
    cancelled_by: str
    cancelled_at: datetime


class AttendanceRecorded(DomainEvent):
    session_id: str
    community_id: str
    attendees: list[str]
    recorded_by: str


class Kpi(StrictModel):
    name: str = Field(min_length=1, max_length=80)
    unit: str = Field(default="", max_length=40)
    baseline: float
    target: float
    direction: Direction


class GoalSet(DomainEvent):
    personal: ClassVar[Personal] = member_data("member_id", texts=["statement", "motivation"])
    goal_id: str
    community_id: str
    member_id: str
    facilitator_id: str
    statement: str
    motivation: str
    kpis: list[Kpi]
    due_date: date
    set_by: str
    set_at: datetime


class GoalRevised(DomainEvent):
    personal: ClassVar[Personal] = member_data("member_id", texts=["statement", "motivation", "reason"])
    # Whose goal: what the personal fields belong to (kizuna.personal). Empty in events recorded before it was
    # carried, which were stored in plaintext and are rewritten on erasure by the goal's GoalSet member.
    member_id: str = ""
    goal_id: str
    community_id: str
    revision: int
    statement: str
    motivation: str
    kpis: list[Kpi]
    due_date: date
    reason: str
    revised_by: str
    revised_at: datetime


class ProgressCheckedIn(DomainEvent):
    personal: ClassVar[Personal] = member_data("member_id", texts=["note"])
    # Whose goal: what the personal fields belong to (kizuna.personal). Empty in events recorded before it was
    # carried, which were stored in plaintext and are rewritten on erasure by the goal's GoalSet member.
    member_id: str = ""
    goal_id: str
    community_id: str
    values: dict[str, float]
    note: str
    checked_in_by: str
    checked_in_at: datetime


class GoalAchieved(DomainEvent):
    personal: ClassVar[Personal] = member_data("member_id", texts=["note"])
    # Whose goal: what the personal fields belong to (kizuna.personal). Empty in events recorded before it was
    # carried, which were stored in plaintext and are rewritten on erasure by the goal's GoalSet member.
    member_id: str = ""
    goal_id: str
    community_id: str
    note: str
    achieved_by: str
    achieved_at: datetime


class GoalAbandoned(DomainEvent):
    personal: ClassVar[Personal] = member_data("member_id", texts=["reason"])
    # Whose goal: what the personal fields belong to (kizuna.personal). Empty in events recorded before it was
    # carried, which were stored in plaintext and are rewritten on erasure by the goal's GoalSet member.
    member_id: str = ""
    goal_id: str
    community_id: str
    reason: str
    abandoned_by: str
    abandoned_at: datetime


# ---- commands ----

class SessionTime(StrictModel):
    starts_at: datetime = Field(description="Local wall time in `time_zone` (or an offset time)")
    ends_at: datetime
    time_zone: str = Field(description="IANA time zone, e.g. Europe/Berlin", examples=["Asia/Tokyo"])


class ScheduleSession(SessionTime):
    kind: SessionKind
    title: str = Field(min_length=1, max_length=200)
    place: str | None = Field(default=None, max_length=300)
    link: str | None = Field(default=None, max_length=500)
    capacity: int = Field(ge=1, le=1000)
    cohort: str | None = Field(default=None, max_length=80)


class RescheduleSession(SessionTime):
    place: str | None = Field(default=None, max_length=300)
    link: str | None = Field(default=None, max_length=500)
    reason: str = Field(default="", max_length=500)


class CancelSession(StrictModel):
    reason: str = Field(default="", max_length=500)


class RegisterForSession(StrictModel):
    member_id: str | None = Field(default=None, description="Defaults to the caller")


class RecordAttendance(StrictModel):
    attendees: list[str] = Field(description="Member ids who were there")


class SetGoal(StrictModel):
    member_id: str | None = Field(default=None, description="Defaults to the caller")
    facilitator_id: str
    statement: str = Field(min_length=1, max_length=500)
    motivation: str = Field(min_length=1, max_length=2000, description="The member's energy well, in their words")
    kpis: list[Kpi] = Field(min_length=1, max_length=10)
    due_date: date


class ReviseGoal(StrictModel):
    statement: str | None = Field(default=None, min_length=1, max_length=500)
    motivation: str | None = Field(default=None, min_length=1, max_length=2000)
    kpis: list[Kpi] | None = Field(default=None, min_length=1, max_length=10)
    due_date: date | None = None
    reason: str = Field(min_length=1, max_length=500)


class CheckIn(StrictModel):
    values: dict[str, float] = Field(description="KPI name → current value")
    note: str = Field(default="", max_length=2000)


class AchieveGoal(StrictModel):
    note: str = Field(default="", max_length=2000)


class AbandonGoal(StrictModel):
    reason: str = Field(min_length=1, max_length=1000)


# ---- rules ----

def resolve_time(when: SessionTime) -> tuple[datetime, datetime]:
    """Aware start and end: naive times are wall times in ``time_zone``."""
    try:
        zone = ZoneInfo(when.time_zone)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise Invalid("time_zone", "{time_zone} is not an IANA time zone (such as Asia/Tokyo)",
                      time_zone=when.time_zone) from error
    starts = _placed("starts_at", when.starts_at, zone)
    ends = _placed("ends_at", when.ends_at, zone)
    if ends <= starts:
        raise Invalid("ends_at", "must be after starts_at")
    return starts.astimezone(zone), ends.astimezone(zone)


def _placed(field: str, when: datetime, zone: ZoneInfo) -> datetime:
    """A naive wall time made aware in ``zone``; one the clocks skip or show twice is refused.

    Python would quietly pick an instant for both (a skipped 02:30 becomes 03:30 or 01:30), so a
    session could start and end at the same moment, or an hour away from what its members read.
    An offset time (``…T01:30:00-04:00``) says which instant is meant and is always accepted."""
    if when.tzinfo is not None:
        return when
    first, second = when.replace(tzinfo=zone, fold=0), when.replace(tzinfo=zone, fold=1)
    if first.utcoffset() != second.utcoffset():
        shown = when.strftime("%Y-%m-%d %H:%M")
        if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != when:
            raise Invalid(field, f"{shown} does not exist in {zone.key} (the clocks skip it); choose another time")
        raise Invalid(field, f"{shown} happens twice in {zone.key} (the clocks go back); give it with its UTC "
                             f"offset, e.g. {first.isoformat()} or {second.isoformat()}")
    return first


def validate_kpis(kpis: list[Kpi]) -> None:
    names = [k.name for k in kpis]
    for index, kpi in enumerate(kpis):
        if kpi.name in names[:index]:
            raise Invalid(f"kpis.{index}.name", "the measure {kpi} appears more than once", kpi=kpi.name)
        if kpi.target == kpi.baseline:
            raise Invalid(f"kpis.{index}.target", "must differ from the baseline")
        if kpi.direction == "increase" and kpi.target < kpi.baseline:
            raise Invalid(f"kpis.{index}.target", "must be above the baseline for an increasing KPI")
        if kpi.direction == "decrease" and kpi.target > kpi.baseline:
            raise Invalid(f"kpis.{index}.target", "must be below the baseline for a decreasing KPI")


def validate_due(due: date, now: datetime) -> None:
    if due < now.date():
        raise Invalid("due_date", "must not be in the past")


class Session(Aggregate):
    def __init__(self) -> None:
        self.scheduled: SessionScheduled | None = None
        self.starts_at: datetime | None = None
        self.ends_at: datetime | None = None
        self.time_zone = ""
        self.place: str | None = None
        self.link: str | None = None
        self.cancelled = False
        self.registered: list[str] = []
        self.waitlist: list[str] = []
        self.attendees: list[str] = []
        self.late_cancellations: list[str] = []

    @property
    def exists(self) -> bool:
        return self.scheduled is not None

    @property
    def capacity(self) -> int:
        return self.scheduled.capacity if self.scheduled else 0

    def _on_SessionScheduled(self, e: SessionScheduled) -> None:
        self.scheduled = e
        self.starts_at, self.ends_at, self.time_zone = e.starts_at, e.ends_at, e.time_zone
        self.place, self.link = e.place, e.link

    def _on_SessionRescheduled(self, e: SessionRescheduled) -> None:
        self.starts_at, self.ends_at, self.time_zone = e.starts_at, e.ends_at, e.time_zone
        self.place, self.link = e.place, e.link

    def _on_SessionCancelled(self, e: SessionCancelled) -> None:
        self.cancelled = True

    def _on_MemberRegistered(self, e: MemberRegistered) -> None:
        self.registered.append(e.member_id)

    def _on_RegistrationWaitlisted(self, e: RegistrationWaitlisted) -> None:
        self.waitlist.append(e.member_id)

    def _on_WaitlistPromoted(self, e: WaitlistPromoted) -> None:
        self.waitlist.remove(e.member_id)
        self.registered.append(e.member_id)

    def _on_RegistrationCancelled(self, e: RegistrationCancelled) -> None:
        if e.was_waitlisted:
            self.waitlist.remove(e.member_id)
        else:
            self.registered.remove(e.member_id)
        if e.late:
            self.late_cancellations.append(e.member_id)

    def _on_AttendanceRecorded(self, e: AttendanceRecorded) -> None:
        self.attendees = list(e.attendees)

    def snapshot(self) -> dict[str, Any]:
        s = self.scheduled
        if s is None:  # an invariant, kept under python -O too
            raise RuntimeError("s is missing: an invariant of this code was broken")
        return {
            "session_id": s.session_id, "community_id": s.community_id, "kind": s.kind, "title": s.title,
            "starts_at": _iso(self.starts_at), "ends_at": _iso(self.ends_at), "time_zone": self.time_zone,
            "place": self.place, "link": self.link, "capacity": s.capacity, "cohort": s.cohort,
            "status": "cancelled" if self.cancelled else "scheduled", "registered": list(self.registered),
            "waitlist": list(self.waitlist), "attendees": list(self.attendees),
            "late_cancellations": list(self.late_cancellations), "scheduled_by": s.scheduled_by,
            "version": self.version,
        }

    def _require_open(self) -> SessionScheduled:
        if self.scheduled is None:
            raise NotFound("session not found")
        if self.cancelled:
            raise Conflict("the session has been cancelled", slug="session-cancelled")
        return self.scheduled

    def schedule(self, session_id: str, community_id: str, cmd: ScheduleSession, by: str) -> list[DomainEvent]:
        if self.exists:
            raise Conflict("session already exists")
        starts, ends = resolve_time(cmd)
        if cmd.kind == "online" and not cmd.link:
            raise Invalid("link", "an online session needs a link")
        if cmd.kind != "online" and not (cmd.place or cmd.link):
            raise Invalid("place", "give a place (or a link)")
        return [SessionScheduled(session_id=session_id, community_id=community_id, kind=cmd.kind, title=cmd.title,
                                 starts_at=starts, ends_at=ends, time_zone=cmd.time_zone, place=cmd.place,
                                 link=cmd.link, capacity=cmd.capacity, cohort=cmd.cohort, scheduled_by=by)]

    def reschedule(self, cmd: RescheduleSession, by: str) -> list[DomainEvent]:
        s = self._require_open()
        starts, ends = resolve_time(cmd)
        return [SessionRescheduled(session_id=s.session_id, community_id=s.community_id, starts_at=starts,
                                   ends_at=ends, time_zone=cmd.time_zone, place=cmd.place or self.place,
                                   link=cmd.link or self.link, reason=cmd.reason, rescheduled_by=by,
                                   registrants=[*self.registered, *self.waitlist])]

    def cancel(self, cmd: CancelSession, by: str) -> list[DomainEvent]:
        s = self._require_open()
        return [SessionCancelled(session_id=s.session_id, community_id=s.community_id, reason=cmd.reason,
                                 cancelled_by=by, registrants=[*self.registered, *self.waitlist])]

    def register(self, member_id: str, by: str) -> list[DomainEvent]:
        s = self._require_open()
        if member_id in self.registered or member_id in self.waitlist:
            return []  # registering twice is a no-op, so retries are safe
        if len(self.registered) < s.capacity:
            return [MemberRegistered(session_id=s.session_id, community_id=s.community_id, member_id=member_id,
                                     registered_by=by)]
        return [RegistrationWaitlisted(session_id=s.session_id, community_id=s.community_id, member_id=member_id,
                                       position=len(self.waitlist) + 1, registered_by=by)]

    def cancel_registration(self, member_id: str, by: str, now: datetime) -> list[DomainEvent]:
        s = self._require_open()
        waitlisted = member_id in self.waitlist
        if not waitlisted and member_id not in self.registered:
            raise NotFound("no registration for this member")
        if self.starts_at is None:  # an invariant, kept under python -O too
            raise RuntimeError("self.starts_at is missing: an invariant of this code was broken")
        late = not waitlisted and self.starts_at - now < LATE_CANCELLATION
        events: list[DomainEvent] = [RegistrationCancelled(
            session_id=s.session_id, community_id=s.community_id, member_id=member_id, was_waitlisted=waitlisted,
            late=late, cancelled_by=by, cancelled_at=now)]
        if not waitlisted and self.waitlist:
            events.append(WaitlistPromoted(session_id=s.session_id, community_id=s.community_id,
                                           member_id=self.waitlist[0]))
        return events

    def record_attendance(self, cmd: RecordAttendance, by: str, now: datetime) -> list[DomainEvent]:
        s = self.scheduled
        if s is None:
            raise NotFound("session not found")
        if self.cancelled:
            raise Conflict("the session has been cancelled", slug="session-cancelled")
        if self.starts_at is None:  # an invariant, kept under python -O too
            raise RuntimeError("self.starts_at is missing: an invariant of this code was broken")
        if now < self.starts_at:
            raise Invalid("attendees", "attendance can be recorded once the session has started")
        attendees = list(dict.fromkeys(cmd.attendees))
        return [AttendanceRecorded(session_id=s.session_id, community_id=s.community_id, attendees=attendees,
                                   recorded_by=by)]


class CalendarLink(Aggregate):
    """One member's calendar subscription: the hash of the secret its address carries."""

    def __init__(self) -> None:
        self.key_sha256: str | None = None

    def _on_CalendarLinkIssued(self, e: CalendarLinkIssued) -> None:
        self.key_sha256 = e.key_sha256

    def issue(self, community_id: str, member_id: str, key_sha256: str) -> list[DomainEvent]:
        return [CalendarLinkIssued(community_id=community_id, member_id=member_id, key_sha256=key_sha256)]


class Goal(Aggregate):
    def __init__(self) -> None:
        self.set: GoalSet | None = None
        self.statement = ""
        self.motivation = ""
        self.kpis: list[Kpi] = []
        self.due_date: date | None = None
        self.status: Literal["active", "achieved", "abandoned"] = "active"
        self.revisions: list[dict[str, Any]] = []
        self.check_ins: list[dict[str, Any]] = []
        self.closed_note = ""

    def _on_GoalSet(self, e: GoalSet) -> None:
        self.set = e
        self.statement, self.motivation, self.kpis, self.due_date = e.statement, e.motivation, e.kpis, e.due_date

    def _on_GoalRevised(self, e: GoalRevised) -> None:
        self.revisions.append({"revision": e.revision, "previous": self._terms(), "reason": e.reason,
                               "revised_by": e.revised_by, "revised_at": _iso(e.revised_at)})
        self.statement, self.motivation, self.kpis, self.due_date = e.statement, e.motivation, e.kpis, e.due_date

    def _on_ProgressCheckedIn(self, e: ProgressCheckedIn) -> None:
        self.check_ins.append({"values": dict(e.values), "note": e.note, "checked_in_by": e.checked_in_by,
                               "checked_in_at": _iso(e.checked_in_at)})

    def _on_GoalAchieved(self, e: GoalAchieved) -> None:
        self.status, self.closed_note = "achieved", e.note

    def _on_GoalAbandoned(self, e: GoalAbandoned) -> None:
        self.status, self.closed_note = "abandoned", e.reason

    def _terms(self) -> dict[str, Any]:
        return {"statement": self.statement, "motivation": self.motivation,
                "kpis": [k.model_dump() for k in self.kpis],
                "due_date": self.due_date.isoformat() if self.due_date else None}

    def snapshot(self) -> dict[str, Any]:
        s = self.set
        if s is None:  # an invariant, kept under python -O too
            raise RuntimeError("s is missing: an invariant of this code was broken")
        return {"goal_id": s.goal_id, "community_id": s.community_id, "member_id": s.member_id,
                "facilitator_id": s.facilitator_id, **self._terms(), "status": self.status,
                "closed_note": self.closed_note, "set_at": _iso(s.set_at), "revisions": list(self.revisions),
                "check_ins": list(self.check_ins), "version": self.version}

    def _require_active(self) -> GoalSet:
        if self.set is None:
            raise NotFound("goal not found")
        if self.status != "active":
            raise Conflict(reason("the goal is already achieved") if self.status == "achieved"
                           else reason("the goal was already let go"), slug="goal-closed", goal_status=self.status)
        return self.set

    def set_goal(self, goal_id: str, community_id: str, member_id: str, cmd: SetGoal, by: str,
                 now: datetime) -> list[DomainEvent]:
        if self.set is not None:
            raise Conflict("goal already exists")
        validate_kpis(cmd.kpis)
        validate_due(cmd.due_date, now)
        return [GoalSet(goal_id=goal_id, community_id=community_id, member_id=member_id,
                        facilitator_id=cmd.facilitator_id, statement=cmd.statement, motivation=cmd.motivation,
                        kpis=cmd.kpis, due_date=cmd.due_date, set_by=by, set_at=now)]

    def revise(self, cmd: ReviseGoal, by: str, now: datetime) -> list[DomainEvent]:
        s = self._require_active()
        kpis = cmd.kpis if cmd.kpis is not None else self.kpis
        due = cmd.due_date if cmd.due_date is not None else self.due_date
        if due is None:  # an invariant, kept under python -O too
            raise RuntimeError("due is missing: an invariant of this code was broken")
        validate_kpis(kpis)
        if cmd.due_date is not None:
            validate_due(cmd.due_date, now)
        return [GoalRevised(goal_id=s.goal_id, community_id=s.community_id, member_id=s.member_id,
                            revision=len(self.revisions) + 1,
                            statement=cmd.statement or self.statement, motivation=cmd.motivation or self.motivation,
                            kpis=kpis, due_date=due, reason=cmd.reason, revised_by=by, revised_at=now)]

    def check_in(self, cmd: CheckIn, by: str, now: datetime) -> list[DomainEvent]:
        s = self._require_active()
        if not cmd.values:
            raise Invalid("values", "give at least one KPI value")
        known = {k.name for k in self.kpis}
        for name in cmd.values:
            if name not in known:
                raise Invalid(f"values.{name}", "this goal has no measure named {kpi}", kpi=name)
        return [ProgressCheckedIn(goal_id=s.goal_id, community_id=s.community_id, member_id=s.member_id,
                                  values=cmd.values, note=cmd.note,
                                  checked_in_by=by, checked_in_at=now)]

    def achieve(self, cmd: AchieveGoal, by: str, now: datetime) -> list[DomainEvent]:
        s = self._require_active()
        return [GoalAchieved(goal_id=s.goal_id, community_id=s.community_id, member_id=s.member_id,
                             note=cmd.note, achieved_by=by,
                             achieved_at=now)]

    def abandon(self, cmd: AbandonGoal, by: str, now: datetime) -> list[DomainEvent]:
        s = self._require_active()
        return [GoalAbandoned(goal_id=s.goal_id, community_id=s.community_id, member_id=s.member_id,
                              reason=cmd.reason, abandoned_by=by,
                              abandoned_at=now)]


# ---- progress (pure, used by the read models) ----

def kpi_percent(kpi: dict[str, Any], value: float) -> float:
    """Share of the way from baseline to target, 0-100 (direction is in the sign of target - baseline)."""
    span = kpi["target"] - kpi["baseline"]
    return round(max(0.0, min(100.0, (value - kpi["baseline"]) / span * 100)), 1)


def kpi_trend(kpi: dict[str, Any], values: list[float]) -> str:
    """Direction of the last two check-ins relative to the KPI's goal."""
    if len(values) < 2:
        return "unknown"
    delta = values[-1] - values[-2]
    if kpi["direction"] == "decrease":
        delta = -delta
    return "improving" if delta > 0 else "worsening" if delta < 0 else "flat"


def goal_progress(goal: dict[str, Any], now: datetime) -> dict[str, Any]:
    kpis_out = []
    for kpi in goal["kpis"]:
        history = [c["values"][kpi["name"]] for c in goal["check_ins"] if kpi["name"] in c["values"]]
        latest = history[-1] if history else kpi["baseline"]
        kpis_out.append({"name": kpi["name"], "unit": kpi["unit"], "baseline": kpi["baseline"],
                         "target": kpi["target"], "latest": latest, "percent": kpi_percent(kpi, latest),
                         "trend": kpi_trend(kpi, history), "recent": history[-5:]})
    overall = round(sum(k["percent"] for k in kpis_out) / len(kpis_out), 1) if kpis_out else 0.0
    set_at = datetime.fromisoformat(goal["set_at"])
    due = datetime.combine(date.fromisoformat(goal["due_date"]), datetime.max.time(), tzinfo=set_at.tzinfo)
    total = (due - set_at).total_seconds()
    elapsed = (now - set_at).total_seconds()
    expected = round(max(0.0, min(100.0, elapsed / total * 100)), 1) if total > 0 else 100.0
    return {"goal_id": goal["goal_id"], "status": goal["status"], "kpis": kpis_out, "percent": overall,
            "expected_percent": expected, "at_risk": goal["status"] == "active" and overall < expected}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None

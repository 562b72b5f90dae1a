"""Pure rules of sessions and goals: capacity, waitlist order, late cancellation, goal rules, progress."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from kizuna.domain import DomainEvent
from kizuna.errors import Conflict, Invalid
from services.sessions.domain import (
    AbandonGoal,
    AchieveGoal,
    AttendanceRecorded,
    CancelSession,
    CheckIn,
    Goal,
    Kpi,
    RecordAttendance,
    RegistrationCancelled,
    RescheduleSession,
    ReviseGoal,
    ScheduleSession,
    Session,
    SessionCancelled,
    SetGoal,
    WaitlistPromoted,
    goal_progress,
)

NOW = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)


def fold(state: Session | Goal, events: list[DomainEvent]) -> None:
    for event in events:
        state.apply(event)
        state.version += 1


def scheduled(capacity: int = 2, starts: str = "2030-05-10T18:00:00") -> Session:
    session = Session()
    cmd = ScheduleSession(kind="group-coaching", title="Cohort A", starts_at=datetime.fromisoformat(starts),
                          ends_at=datetime.fromisoformat(starts) + timedelta(hours=2), time_zone="Asia/Tokyo",
                          place="House", capacity=capacity, cohort="A")
    fold(session, session.schedule("s1", "c1", cmd, "member:f"))
    return session


def register_all(session: Session, members: list[str]) -> None:
    for member in members:
        fold(session, session.register(member, f"member:{member}"))


def test_naive_times_are_wall_times_in_the_time_zone() -> None:
    session = scheduled()
    assert session.starts_at is not None
    assert session.starts_at.utcoffset() == timedelta(hours=9)
    assert session.starts_at.astimezone(UTC).hour == 9


@pytest.mark.parametrize(("change", "field"), [
    ({"time_zone": "Mars/Olympus"}, "time_zone"),
    ({"ends_at": datetime(2030, 5, 10, 17)}, "ends_at"),
])
def test_bad_times_name_the_field(change: dict[str, object], field: str) -> None:
    base: dict[str, object] = {"kind": "meal", "title": "Dinner", "starts_at": datetime(2030, 5, 10, 18),
                               "ends_at": datetime(2030, 5, 10, 20), "time_zone": "Europe/Berlin",
                               "place": "Kitchen", "capacity": 4}
    with pytest.raises(Invalid) as caught:
        Session().schedule("s", "c", ScheduleSession.model_validate({**base, **change}), "member:f")
    assert caught.value.extensions["errors"][0]["field"] == field


def test_online_session_needs_a_link() -> None:
    cmd = ScheduleSession(kind="online", title="Call", starts_at=datetime(2030, 5, 10, 18),
                          ends_at=datetime(2030, 5, 10, 19), time_zone="UTC", capacity=3)
    with pytest.raises(Invalid) as caught:
        Session().schedule("s", "c", cmd, "member:f")
    assert caught.value.extensions["errors"][0]["field"] == "link"


def test_capacity_then_waitlist_in_order() -> None:
    session = scheduled(capacity=2)
    register_all(session, ["a", "b", "c", "d"])
    assert session.registered == ["a", "b"]
    assert session.waitlist == ["c", "d"]


def test_registering_twice_changes_nothing() -> None:
    session = scheduled(capacity=1)
    register_all(session, ["a", "b"])
    assert session.register("a", "member:a") == []
    assert session.register("b", "member:b") == []


def test_cancellation_promotes_the_first_waiting_member() -> None:
    session = scheduled(capacity=2)
    register_all(session, ["a", "b", "c", "d"])
    events = session.cancel_registration("a", "member:a", NOW)
    assert isinstance(events[1], WaitlistPromoted) and events[1].member_id == "c"
    fold(session, events)
    assert session.registered == ["b", "c"]
    assert session.waitlist == ["d"]
    fold(session, session.cancel_registration("d", "member:d", NOW))
    assert session.waitlist == []
    assert len(session.registered) <= session.capacity


def test_cancelling_a_waitlisted_registration_promotes_no_one() -> None:
    session = scheduled(capacity=1)
    register_all(session, ["a", "b", "c"])
    events = session.cancel_registration("b", "member:b", NOW)
    assert len(events) == 1
    fold(session, events)
    assert session.registered == ["a"] and session.waitlist == ["c"]


def test_late_cancellation_is_recorded() -> None:
    session = scheduled(capacity=3)
    register_all(session, ["a", "b"])
    assert session.starts_at is not None
    [early] = session.cancel_registration("a", "member:a", session.starts_at - timedelta(hours=25))
    [late] = session.cancel_registration("b", "member:b", session.starts_at - timedelta(hours=23))
    assert isinstance(early, RegistrationCancelled) and not early.late
    assert isinstance(late, RegistrationCancelled) and late.late
    fold(session, [late])
    assert session.late_cancellations == ["b"]


def test_cancelled_session_refuses_registrations_and_reschedules() -> None:
    session = scheduled()
    register_all(session, ["a"])
    [cancelled] = session.cancel(CancelSession(reason="ill"), "member:f")
    assert isinstance(cancelled, SessionCancelled)
    assert cancelled.registrants == ["a"]
    fold(session, [cancelled])
    with pytest.raises(Conflict):
        session.register("b", "member:b")
    with pytest.raises(Conflict):
        session.reschedule(RescheduleSession(starts_at=datetime(2030, 6, 1, 10), ends_at=datetime(2030, 6, 1, 11),
                                             time_zone="UTC"), "member:f")


def test_attendance_only_once_started() -> None:
    session = scheduled()
    assert session.starts_at is not None
    with pytest.raises(Invalid):
        session.record_attendance(RecordAttendance(attendees=["a"]), "member:f", session.starts_at - timedelta(hours=1))
    [recorded] = session.record_attendance(RecordAttendance(attendees=["a", "b", "a"]), "member:f", session.starts_at)
    assert isinstance(recorded, AttendanceRecorded)
    assert recorded.attendees == ["a", "b"]


def kpi(**change: object) -> Kpi:
    return Kpi.model_validate({"name": "km", "unit": "km", "baseline": 5, "target": 25, "direction": "increase",
                               **change})


def new_goal(due: date = date(2030, 6, 1)) -> Goal:
    goal = Goal()
    cmd = SetGoal(facilitator_id="f", statement="Run 10k", motivation="strong for my kids", kpis=[kpi()],
                  due_date=due)
    fold(goal, goal.set_goal("g1", "c1", "m1", cmd, "member:m1", NOW))
    return goal


@pytest.mark.parametrize(("kpis", "due", "field"), [
    ([kpi(target=5)], date(2030, 6, 1), "kpis.0.target"),
    ([kpi(target=1)], date(2030, 6, 1), "kpis.0.target"),
    ([kpi(direction="decrease")], date(2030, 6, 1), "kpis.0.target"),
    ([kpi(), kpi()], date(2030, 6, 1), "kpis.1.name"),
    ([kpi()], date(2030, 4, 30), "due_date"),
])
def test_goal_rules_name_the_field(kpis: list[Kpi], due: date, field: str) -> None:
    cmd = SetGoal(facilitator_id="f", statement="s", motivation="m", kpis=kpis, due_date=due)
    with pytest.raises(Invalid) as caught:
        Goal().set_goal("g", "c", "m", cmd, "member:m", NOW)
    assert caught.value.extensions["errors"][0]["field"] == field


def test_revisions_keep_history_and_check_ins_need_known_kpis() -> None:
    goal = new_goal()
    fold(goal, goal.revise(ReviseGoal(kpis=[kpi(target=20)], reason="knee"), "member:f", NOW))
    fold(goal, goal.revise(ReviseGoal(statement="Run 8k", reason="later"), "member:f", NOW))
    assert [r["revision"] for r in goal.revisions] == [1, 2]
    assert goal.revisions[0]["previous"]["kpis"][0]["target"] == 25
    assert goal.kpis[0].target == 20 and goal.statement == "Run 8k"
    with pytest.raises(Invalid) as caught:
        goal.check_in(CheckIn(values={"steps": 3}), "member:m1", NOW)
    assert caught.value.extensions["errors"][0]["field"] == "values.steps"


def test_closed_goals_refuse_changes() -> None:
    goal = new_goal()
    fold(goal, goal.achieve(AchieveGoal(note="done"), "member:m1", NOW))
    with pytest.raises(Conflict):
        goal.check_in(CheckIn(values={"km": 3}), "member:m1", NOW)
    with pytest.raises(Conflict):
        goal.abandon(AbandonGoal(reason="x"), "member:m1", NOW)


def test_progress_percent_trend_and_pace() -> None:
    goal = new_goal(due=date(2030, 5, 31))
    for value in (9.0, 15.0):
        fold(goal, goal.check_in(CheckIn(values={"km": value}), "member:m1", NOW))
    snapshot = goal.snapshot()
    early = goal_progress(snapshot, NOW + timedelta(days=3))
    assert early["kpis"][0]["percent"] == 50.0
    assert early["kpis"][0]["trend"] == "improving"
    assert not early["at_risk"]
    late = goal_progress(snapshot, NOW + timedelta(days=25))
    assert late["at_risk"] and late["expected_percent"] > 50


def test_decreasing_kpi_progress() -> None:
    goal = Goal()
    cmd = SetGoal(facilitator_id="f", statement="Less sugar", motivation="m",
                  kpis=[kpi(name="sugar", baseline=100, target=20, direction="decrease")], due_date=date(2030, 6, 1))
    fold(goal, goal.set_goal("g", "c", "m", cmd, "member:m", NOW))
    fold(goal, goal.check_in(CheckIn(values={"sugar": 60}), "member:m", NOW))
    fold(goal, goal.check_in(CheckIn(values={"sugar": 70}), "member:m", NOW))
    progress = goal_progress(goal.snapshot(), NOW)
    assert progress["kpis"][0]["percent"] == 37.5
    assert progress["kpis"][0]["trend"] == "worsening"

"""One function per command: load the aggregate, decide on fresh state, append."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from kizuna.errors import NotFound
from kizuna.eventstore import EventStore
from kizuna.handling import CommandContext, execute, load_existing

from .domain import (
    AbandonGoal,
    AchieveGoal,
    CalendarLink,
    CancelSession,
    CheckIn,
    Goal,
    RecordAttendance,
    RescheduleSession,
    ReviseGoal,
    ScheduleSession,
    Session,
    SetGoal,
)


def session_stream(session_id: str) -> str:
    return f"session-{session_id}"


def goal_stream(goal_id: str) -> str:
    return f"goal-{goal_id}"


def calendar_link_stream(community_id: str, member_id: str) -> str:
    return f"calendar-link-{community_id}-{member_id}"


def _now() -> datetime:
    return datetime.now(UTC)


async def load_session(store: EventStore, community_id: str, session_id: str) -> Session:
    session = await load_existing(store, session_stream(session_id), Session, "session")
    _same_community(session.scheduled.community_id if session.scheduled else None, community_id, "session")
    return session


async def load_goal(store: EventStore, community_id: str, goal_id: str) -> Goal:
    goal = await load_existing(store, goal_stream(goal_id), Goal, "goal")
    _same_community(goal.set.community_id if goal.set else None, community_id, "goal")
    return goal


def _same_community(actual: str | None, expected: str, what: str) -> None:
    if actual != expected:
        raise NotFound(f"{what} not found")


async def schedule_session(store: EventStore, community_id: str, cmd: ScheduleSession, ctx: CommandContext) -> Session:
    session_id = ctx.new_id("session")
    state, _ = await execute(store, session_stream(session_id), Session,
                             lambda s: s.schedule(session_id, community_id, cmd, ctx.actor), ctx,
                             community_id=community_id)
    return state


async def reschedule_session(store: EventStore, community_id: str, session_id: str, cmd: RescheduleSession,
                             ctx: CommandContext) -> Session:
    await load_session(store, community_id, session_id)
    state, _ = await execute(store, session_stream(session_id), Session, lambda s: s.reschedule(cmd, ctx.actor), ctx,
                             community_id=community_id)
    return state


async def cancel_session(store: EventStore, community_id: str, session_id: str, cmd: CancelSession,
                         ctx: CommandContext) -> Session:
    await load_session(store, community_id, session_id)
    state, _ = await execute(store, session_stream(session_id), Session, lambda s: s.cancel(cmd, ctx.actor), ctx,
                             community_id=community_id)
    return state


async def register(store: EventStore, community_id: str, session_id: str, member_id: str,
                   ctx: CommandContext) -> Session:
    await load_session(store, community_id, session_id)
    state, _ = await execute(store, session_stream(session_id), Session,
                             lambda s: s.register(member_id, ctx.actor), ctx, community_id=community_id)
    return state


async def cancel_registration(store: EventStore, community_id: str, session_id: str, member_id: str,
                              ctx: CommandContext) -> Session:
    await load_session(store, community_id, session_id)
    state, _ = await execute(store, session_stream(session_id), Session,
                             lambda s: s.cancel_registration(member_id, ctx.actor, _now()), ctx,
                             community_id=community_id)
    return state


async def record_attendance(store: EventStore, community_id: str, session_id: str, cmd: RecordAttendance,
                            ctx: CommandContext) -> Session:
    await load_session(store, community_id, session_id)
    state, _ = await execute(store, session_stream(session_id), Session,
                             lambda s: s.record_attendance(cmd, ctx.actor, _now()), ctx, community_id=community_id)
    return state


async def set_goal(store: EventStore, community_id: str, member_id: str, cmd: SetGoal, ctx: CommandContext) -> Goal:
    goal_id = ctx.new_id("goal")
    state, _ = await execute(store, goal_stream(goal_id), Goal,
                             lambda g: g.set_goal(goal_id, community_id, member_id, cmd, ctx.actor, _now()), ctx,
                             community_id=community_id)
    return state


async def revise_goal(store: EventStore, community_id: str, goal_id: str, cmd: ReviseGoal,
                      ctx: CommandContext) -> Goal:
    await load_goal(store, community_id, goal_id)
    state, _ = await execute(store, goal_stream(goal_id), Goal, lambda g: g.revise(cmd, ctx.actor, _now()), ctx,
                             community_id=community_id)
    return state


async def check_in(store: EventStore, community_id: str, goal_id: str, cmd: CheckIn, ctx: CommandContext) -> Goal:
    await load_goal(store, community_id, goal_id)
    state, _ = await execute(store, goal_stream(goal_id), Goal, lambda g: g.check_in(cmd, ctx.actor, _now()), ctx,
                             community_id=community_id)
    return state


async def achieve_goal(store: EventStore, community_id: str, goal_id: str, cmd: AchieveGoal,
                       ctx: CommandContext) -> Goal:
    await load_goal(store, community_id, goal_id)
    state, _ = await execute(store, goal_stream(goal_id), Goal, lambda g: g.achieve(cmd, ctx.actor, _now()), ctx,
                             community_id=community_id)
    return state


async def abandon_goal(store: EventStore, community_id: str, goal_id: str, cmd: AbandonGoal,
                       ctx: CommandContext) -> Goal:
    await load_goal(store, community_id, goal_id)
    state, _ = await execute(store, goal_stream(goal_id), Goal, lambda g: g.abandon(cmd, ctx.actor, _now()), ctx,
                             community_id=community_id)
    return state


async def issue_calendar_link(store: EventStore, community_id: str, member_id: str, ctx: CommandContext) -> str:
    """A new secret for the member's calendar feed; the previous one stops working. Returns the secret, which
    is recorded only as its hash."""
    key = secrets.token_urlsafe(32)
    digest = hashlib.sha256(key.encode()).hexdigest()
    await execute(store, calendar_link_stream(community_id, member_id), CalendarLink,
                  lambda link: link.issue(community_id, member_id, digest), ctx, community_id=community_id)
    return key

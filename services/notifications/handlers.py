"""One function per command: load, decide on fresh state, append."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from kizuna.envelope import Envelope
from kizuna.eventstore import EventStore
from kizuna.handling import CommandContext, execute, load

from .domain import (
    ChangePreferences,
    Notification,
    NotificationEmailed,
    NotificationEmailFailed,
    NotificationEmailSkipped,
    NotificationRaised,
    Preferences,
    notification_stream,
    preferences_stream,
)


def _now() -> datetime:
    return datetime.now(UTC)


def notification_id(community_id: str, member_id: str, kind: str, cause_id: str) -> str:
    """The same cause, kind and member always name the same notification (so replays find it)."""
    return str(uuid.UUID(hashlib.sha256(f"{community_id}|{member_id}|{kind}|{cause_id}".encode()).hexdigest()[:32]))


async def raise_notification(store: EventStore, conn: asyncpg.Connection, cause: Envelope, kind: str,
                             member_id: str, facts: dict[str, Any], ctx: CommandContext) -> None:
    cid, cause_id = cause.community_id, str(cause.id)
    event = NotificationRaised(notification_id=notification_id(cid, member_id, kind, cause_id), community_id=cid,
                               member_id=member_id, kind=kind, cause_id=cause_id, facts=facts,
                               raised_at=cause.time)
    await execute(store, notification_stream(cid, member_id, kind, cause_id), Notification,
                  lambda n: n.raise_once(event), ctx, community_id=cid, connection=conn)


async def stream_of(conn: asyncpg.Connection, notification_id: str) -> str | None:
    value = await conn.fetchval("SELECT stream_id FROM notifications_view WHERE notification_id = $1",
                                notification_id)
    return str(value) if value else None


async def mark_read(store: EventStore, community_id: str, member_id: str, notification_id: str,
                    ctx: CommandContext) -> None:
    from kizuna.errors import NotFound

    async with store.pool.acquire() as conn:
        stream = await stream_of(conn, notification_id)
    if stream is None:
        raise NotFound("notification not found")
    state = await load(store, stream, Notification)
    if state.raised is None or state.raised.community_id != community_id:
        raise NotFound("notification not found")
    await execute(store, stream, Notification, lambda n: n.mark_read(member_id, _now()), ctx,
                  community_id=community_id)


async def change_preferences(store: EventStore, person_id: str, cmd: ChangePreferences,
                             ctx: CommandContext) -> Preferences:
    state, _ = await execute(store, preferences_stream(person_id), Preferences, lambda p: p.change(person_id, cmd), ctx)
    return state


async def preferences(store: EventStore, person_id: str) -> Preferences:
    return await load(store, preferences_stream(person_id), Preferences)


async def record_delivery(store: EventStore, conn: asyncpg.Connection, stream: str,
                          event: NotificationEmailed | NotificationEmailFailed | NotificationEmailSkipped) -> None:
    """What became of one email, appended on the sender's connection (the queue row it holds is released with
    it)."""
    ctx = CommandContext(actor="notifications:mail", community_id=event.community_id)
    await execute(store, stream, Notification, lambda n: [] if n.done else [event], ctx,
                  community_id=event.community_id, connection=conn)

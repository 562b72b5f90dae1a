"""One function per command: load, decide on fresh state, append."""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from kizuna.envelope import Envelope
from kizuna.errors import NotFound
from kizuna.eventstore import EventStore
from kizuna.handling import CommandContext, execute, load

from .domain import (
    ChangePreferences,
    Notification,
    NotificationEmailDeferred,
    NotificationEmailed,
    NotificationEmailFailed,
    NotificationEmailSkipped,
    NotificationHeldForDigest,
    NotificationRaised,
    Preferences,
    RegisterWebhook,
    WebhookEndpoint,
    WebhookEndpointRegistered,
    WebhookSecretRotated,
    notification_stream,
    preferences_stream,
    stored_community,
    webhook_stream,
)

log = logging.getLogger("kizuna.notifications.webhooks")


def new_secret() -> str:
    """A webhook signing secret as Standard Webhooks writes it: ``whsec_`` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _now() -> datetime:
    return datetime.now(UTC)


def notification_id(community_id: str, member_id: str, kind: str, cause_id: str) -> str:
    """The same cause, kind and member always name the same notification (so replays find it)."""
    return str(uuid.UUID(hashlib.sha256(f"{community_id}|{member_id}|{kind}|{cause_id}".encode()).hexdigest()[:32]))


async def raise_notification(store: EventStore, conn: asyncpg.Connection, cause: Envelope, kind: str,
                             member_id: str, facts: dict[str, Any], ctx: CommandContext, *,
                             names: dict[str, str] | None = None, quoted: dict[str, str] | None = None,
                             quoted_from: str | None = None) -> None:
    await raise_for(store, conn, cause.community_id, member_id, kind, str(cause.id), cause.time, facts, ctx,
                    names=names, quoted=quoted, quoted_from=quoted_from)


async def raise_for(store: EventStore, conn: asyncpg.Connection, cid: str, member_id: str, kind: str, cause_id: str,
                    raised_at: datetime, facts: dict[str, Any], ctx: CommandContext, *,
                    names: dict[str, str] | None = None, quoted: dict[str, str] | None = None,
                    quoted_from: str | None = None) -> None:
    event = NotificationRaised(notification_id=notification_id(cid, member_id, kind, cause_id), community_id=cid,
                               member_id=member_id, kind=kind, cause_id=cause_id, facts=facts,
                               names=names or {}, quoted={k: v for k, v in (quoted or {}).items() if v},
                               quoted_from=quoted_from if quoted else None, raised_at=raised_at)
    await execute(store, notification_stream(cid, member_id, kind, cause_id), Notification,
                  lambda n: n.raise_once(event), ctx, community_id=cid, connection=conn)


async def stream_of(conn: asyncpg.Connection, notification_id: str) -> str | None:
    value = await conn.fetchval("SELECT stream_id FROM notifications_view WHERE notification_id = $1",
                                notification_id)
    return str(value) if value else None


async def mark_read(store: EventStore, community_id: str, member_id: str, notification_id: str,
                    ctx: CommandContext) -> None:
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
                          event: NotificationEmailed | NotificationEmailFailed | NotificationEmailSkipped
                          | NotificationEmailDeferred | NotificationHeldForDigest) -> None:
    """What became of one email, appended on the sender's connection (the queue row it holds is released with
    it)."""
    ctx = CommandContext(actor="notifications:mail", community_id=event.community_id)
    await execute(store, stream, Notification, lambda n: [] if n.done else [event], ctx,
                  community_id=event.community_id, connection=conn)


# ---- webhooks ----

async def register_endpoint(store: EventStore, community_id: str, cmd: RegisterWebhook, viewer_role: str,
                            ctx: CommandContext) -> tuple[str, str]:
    """The endpoint's id and its first secret (shown once; kept only in the secrets table)."""
    endpoint_id = ctx.new_id("webhook")
    secret = new_secret()
    event = WebhookEndpointRegistered(endpoint_id=endpoint_id, community_id=community_id, url=cmd.url,
                                      event_types=cmd.event_types, description=cmd.description,
                                      viewer_role=viewer_role, registered_by=ctx.actor)
    async with store.pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO webhook_secrets (endpoint_id, secret) VALUES ($1, $2)", endpoint_id, secret)
        await execute(store, webhook_stream(endpoint_id), WebhookEndpoint,
                      lambda e: [] if e.registered else [event], ctx, community_id=stored_community(community_id),
                      connection=conn)
    return endpoint_id, secret


async def rotate_secret(store: EventStore, community_id: str, endpoint_id: str, overlap_hours: float,
                        ctx: CommandContext) -> tuple[str, datetime]:
    state = await load(store, webhook_stream(endpoint_id), WebhookEndpoint)
    state.existing(community_id)
    secret, until = new_secret(), _now() + timedelta(hours=overlap_hours)
    async with store.pool.acquire() as conn, conn.transaction():
        await conn.execute("UPDATE webhook_secrets SET valid_until = $2 WHERE endpoint_id = $1 AND "
                           "(valid_until IS NULL OR valid_until > $2)", endpoint_id, until)
        await conn.execute("INSERT INTO webhook_secrets (endpoint_id, secret) VALUES ($1, $2)", endpoint_id, secret)
        await execute(store, webhook_stream(endpoint_id), WebhookEndpoint, lambda e: [WebhookSecretRotated(
            endpoint_id=endpoint_id, community_id=community_id, previous_valid_until=until, rotated_by=ctx.actor)],
            ctx, community_id=stored_community(community_id), connection=conn)
    return secret, until


async def on_endpoint(store: EventStore, community_id: str, endpoint_id: str, ctx: CommandContext,
                      decide: Any) -> WebhookEndpoint:
    state, _ = await execute(store, webhook_stream(endpoint_id), WebhookEndpoint, decide, ctx,
                             community_id=stored_community(community_id))
    return state


async def disable_endpoint(store: EventStore, conn: asyncpg.Connection, community_id: str, endpoint_id: str,
                           reason: str) -> None:
    """Stops an endpoint that failed for too long, and tells the community's owners (once per disabling). The
    operator's own endpoints have no owners to tell: the log says it (and their listing shows it)."""
    ctx = CommandContext(actor="notifications:webhooks", community_id=stored_community(community_id))
    state, recorded = await execute(store, webhook_stream(endpoint_id), WebhookEndpoint,
                                    lambda e: e.disable(community_id, reason), ctx,
                                    community_id=stored_community(community_id),
                                    connection=conn)
    if not recorded or state.registered is None:
        return
    log.warning("webhook endpoint disabled", extra={"endpoint_id": endpoint_id, "community_id": community_id,
                                                    "url": state.registered.url, "reason": reason})
    owners = await conn.fetch("SELECT member_id FROM roster WHERE community_id = $1 AND active AND role = 'owner'",
                              community_id)
    for owner in owners:
        await raise_for(store, conn, community_id, owner["member_id"], "webhook-disabled", str(recorded[0].event_id),
                        _now(), {"url": state.registered.url, "reason": reason, "community_id": community_id,
                                 "community": "", "path": "/app"}, ctx)

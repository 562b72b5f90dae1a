"""Outgoing webhooks: a community's events, as its registrant may see them on the event stream, POSTed to
the systems that asked — signed per the Standard Webhooks specification (``webhook-id``,
``webhook-timestamp``, ``webhook-signature``), in order per endpoint, each once.

Queueing is a reaction on the whole bus: every event of a community with endpoints becomes one delivery
row per endpoint that wants its type and may see it (the read policy, ``kizuna.read_policy``), keyed by
the event id, so a redelivered event queues nothing more. Delivering takes one endpoint at a time
(``FOR UPDATE SKIP LOCKED``: replicas share the endpoints, never one endpoint) and sends its oldest
pending delivery; a later one waits until it has gone, so an endpoint sees events in the order they were
queued. A failure is retried with exponential backoff; after ``give_up_hours`` (at least three days)
the endpoint is disabled and the community's owners are told. The signing secrets are kept in a table
of their own, never in an event: the newest signs, and a rotated-out one keeps signing beside it until
its overlap ends.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from kizuna.addresses import AddressGuard, UnsafeAddress
from kizuna.envelope import Envelope
from kizuna.read_policy import Viewer, visible_event
from kizuna.service import Runtime

from .domain import EVERY_COMMUNITY
from .handlers import disable_endpoint

log = logging.getLogger("kizuna.notifications.webhooks")

WEBHOOKS_SQL = """
CREATE TABLE webhook_endpoints (
    endpoint_id   text PRIMARY KEY,
    community_id  text NOT NULL,
    url           text NOT NULL,
    event_types   text[] NOT NULL,
    description   text NOT NULL,
    viewer_role   text NOT NULL,
    status        text NOT NULL,
    version       bigint NOT NULL
);
CREATE INDEX webhook_endpoints_by_community ON webhook_endpoints (community_id);
CREATE TABLE webhook_secrets (
    endpoint_id  text NOT NULL,
    secret       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    valid_until  timestamptz,
    PRIMARY KEY (endpoint_id, secret)
);
CREATE TABLE webhook_deliveries (
    seq            bigserial PRIMARY KEY,
    delivery_id    text NOT NULL UNIQUE,
    endpoint_id    text NOT NULL,
    event_id       text NOT NULL,
    event_type     text NOT NULL,
    dedupe_key     text UNIQUE,
    body           text NOT NULL,
    status         text NOT NULL DEFAULT 'pending',
    attempts       int NOT NULL DEFAULT 0,
    next_at        timestamptz NOT NULL DEFAULT now(),
    first_tried_at timestamptz,
    delivered_at   timestamptz,
    last_status    int,
    last_error     text
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (endpoint_id, seq) WHERE status = 'pending';
"""


class WebhookSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KIZUNA_WEBHOOK_", extra="ignore")
    allow_private_addresses: bool = Field(False, description="Deliver to private, loopback and link-local "
                                                              "addresses too (a development machine only).")
    retry_base_seconds: float = Field(5.0, gt=0, description="First wait after a failed delivery.")
    retry_cap_seconds: float = Field(3600.0, gt=0, description="Longest wait between two tries.")
    give_up_hours: float = Field(80.0, gt=0, description="After failing this long an endpoint is disabled "
                                                          "(the specification's at least three days).")
    timeout_seconds: float = Field(10.0, gt=0)
    secret_overlap_hours: float = Field(24.0, ge=0, description="How long a rotated-out secret still signs.")
    poll_seconds: float = Field(0.5, gt=0)


def signature(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """``v1,<base64 HMAC-SHA256>`` of ``id.timestamp.body`` with the secret's key (Standard Webhooks)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{message_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


async def project_endpoint(conn: asyncpg.Connection, event: Any) -> None:
    d = event.data
    if event.type == "WebhookEndpointRegistered":
        await conn.execute(
            "INSERT INTO webhook_endpoints VALUES ($1, $2, $3, $4, $5, $6, 'active', $7) ON CONFLICT DO NOTHING",
            d["endpoint_id"], d["community_id"], d["url"], d["event_types"], d["description"], d["viewer_role"],
            event.stream_version)
    elif event.type in ("WebhookEndpointDisabled", "WebhookEndpointEnabled", "WebhookEndpointRemoved"):
        status = {"WebhookEndpointDisabled": "disabled", "WebhookEndpointEnabled": "active",
                  "WebhookEndpointRemoved": "removed"}[event.type]
        await conn.execute("UPDATE webhook_endpoints SET status = $2, version = $3 WHERE endpoint_id = $1 "
                           "AND version < $3", d["endpoint_id"], status, event.stream_version)
        if status == "active":  # enabled again: what waited is tried at once, its backoff forgotten
            await conn.execute("UPDATE webhook_deliveries SET next_at = now(), first_tried_at = NULL "
                               "WHERE endpoint_id = $1 AND status = 'pending'", d["endpoint_id"])


def cloudevent(e: Envelope) -> dict[str, Any]:
    body: dict[str, Any] = {"specversion": "1.0", "id": str(e.id), "source": e.source, "type": e.type,
                            "subject": e.subject, "time": e.time.isoformat(), "datacontenttype": "application/json",
                            "communityid": e.community_id, "streamversion": e.stream_version,
                            "dataversion": e.data_version, "data": e.data}
    if e.actor:
        body["actor"] = e.actor
    return body


async def queue(conn: asyncpg.Connection, e: Envelope) -> None:
    """One delivery per endpoint of the event's community (or of every community) that wants its type and may
    see it."""
    endpoints = await conn.fetch(  # the community's endpoints, and the operator's for every community
        "SELECT endpoint_id, viewer_role FROM webhook_endpoints WHERE community_id IN ($1, $3) AND status <> "
        "'removed' AND ($2 = ANY(event_types) OR '*' = ANY(event_types))", e.community_id, e.type, EVERY_COMMUNITY)
    for endpoint in endpoints:
        viewer = Viewer(is_operator=True) if endpoint["viewer_role"] == "operator" else Viewer(
            role=endpoint["viewer_role"], scope="dashboard")
        shown = visible_event(cloudevent(e), viewer)
        if shown is None:
            continue
        key = f"{endpoint['endpoint_id']}|{e.id}"
        await conn.execute(
            "INSERT INTO webhook_deliveries (delivery_id, endpoint_id, event_id, event_type, dedupe_key, body) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (dedupe_key) DO NOTHING",
            "msg_" + uuid.uuid5(uuid.NAMESPACE_URL, key).hex, endpoint["endpoint_id"], str(e.id), e.type, key,
            json.dumps(shown, ensure_ascii=False, separators=(",", ":")))


async def signing_secrets(conn: asyncpg.Connection, endpoint_id: str) -> list[str]:
    rows = await conn.fetch("SELECT secret FROM webhook_secrets WHERE endpoint_id = $1 AND (valid_until IS NULL "
                            "OR valid_until > now()) ORDER BY created_at DESC", endpoint_id)
    return [r["secret"] for r in rows]


async def deliver_webhooks(runtime: Runtime) -> None:
    """Background job: sends what is due, one endpoint at a time."""
    settings = WebhookSettings()
    guard = AddressGuard(settings.allow_private_addresses)
    async with httpx.AsyncClient(timeout=settings.timeout_seconds, follow_redirects=False) as http:
        while True:
            try:
                sent = await deliver_some(runtime, http, guard, settings)
            except (OSError, asyncpg.PostgresError) as error:
                log.warning("webhook deliveries not read", extra={"error": repr(error)})
                sent = 0
            if not sent:
                await asyncio.sleep(settings.poll_seconds)


async def deliver_some(runtime: Runtime, http: httpx.AsyncClient, guard: AddressGuard,
                       settings: WebhookSettings, most: int = 20) -> int:
    """Delivers up to ``most`` of one endpoint's pending deliveries, oldest first; stops at its first failure."""
    async with runtime.pool.acquire() as conn, conn.transaction():
        endpoint = await conn.fetchrow(  # an active endpoint whose oldest pending delivery is due
            "SELECT e.endpoint_id, e.community_id, e.url FROM webhook_endpoints e JOIN LATERAL (SELECT next_at "
            "FROM webhook_deliveries d WHERE d.endpoint_id = e.endpoint_id AND d.status = 'pending' ORDER BY seq "
            "LIMIT 1) head ON true WHERE e.status = 'active' AND head.next_at <= now() "
            "LIMIT 1 FOR UPDATE OF e SKIP LOCKED")
        if endpoint is None:
            return 0
        keys = await signing_secrets(conn, endpoint["endpoint_id"])
        sent = 0
        for _ in range(most):
            head = await conn.fetchrow("SELECT * FROM webhook_deliveries WHERE endpoint_id = $1 AND status = "
                                       "'pending' ORDER BY seq LIMIT 1", endpoint["endpoint_id"])
            if head is None or head["next_at"] > datetime.now(UTC):
                break
            status, error = await _post(http, guard, endpoint["url"], head, keys)
            now = datetime.now(UTC)
            if status is not None and 200 <= status < 300:
                await conn.execute("UPDATE webhook_deliveries SET status = 'delivered', delivered_at = $2, "
                                   "attempts = attempts + 1, last_status = $3, last_error = NULL WHERE seq = $1",
                                   head["seq"], now, status)
                sent += 1
                continue
            first = head["first_tried_at"] or now
            attempts = head["attempts"] + 1
            wait = min(settings.retry_cap_seconds, settings.retry_base_seconds * 2 ** (attempts - 1))
            await conn.execute("UPDATE webhook_deliveries SET attempts = $2, first_tried_at = $3, next_at = $4, "
                               "last_status = $5, last_error = $6 WHERE seq = $1", head["seq"], attempts, first,
                               now + timedelta(seconds=wait), status, (error or "")[:500])
            if now - first >= timedelta(hours=settings.give_up_hours):
                await disable_endpoint(runtime.store, conn, endpoint["community_id"], endpoint["endpoint_id"],
                                       f"failing since {first.isoformat()}: {error or status}")
            break
        return sent + 1  # an endpoint was looked at: look again at once


async def _post(http: httpx.AsyncClient, guard: AddressGuard, url: str, head: asyncpg.Record,
                keys: list[str]) -> tuple[int | None, str | None]:
    try:
        await guard.check(url)
    except UnsafeAddress as error:
        return None, str(error)
    timestamp = int(datetime.now(UTC).timestamp())
    headers = {"content-type": "application/json", "user-agent": "Kizuna-Webhooks/1",
               "webhook-id": head["delivery_id"], "webhook-timestamp": str(timestamp),
               "webhook-signature": " ".join(signature(k, head["delivery_id"], timestamp, head["body"]) for k in keys)}
    try:
        answer = await http.post(url, content=head["body"].encode(), headers=headers)
    except httpx.HTTPError as error:
        return None, repr(error)
    return answer.status_code, None if answer.status_code < 300 else answer.text[:200]

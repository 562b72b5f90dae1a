"""HTTP routes of the notifications service: a member's inbox in a community, the person's preferences (the
same in every community they belong to), and one-click unsubscribe from an email (no token: RFC 8058)."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from kizuna.addresses import AddressGuard, UnsafeAddress
from kizuna.auth import Principal, principal
from kizuna.errors import Conflict, Forbidden, Invalid, NotFound
from kizuna.handling import CommandContext
from kizuna.personal_data import events_naming
from kizuna.problems import PROBLEM_RESPONSES
from kizuna.service import runtime_of

from . import handlers, projections
from .domain import (
    EVERY_COMMUNITY,
    KINDS,
    ChangePreferences,
    Delivery,
    Language,
    Preferences,
    QuietHours,
    RegisterWebhook,
)
from .messages import compose
from .webhooks import WebhookSettings

router = APIRouter(responses=PROBLEM_RESPONSES)


class Words(BaseModel):
    subject: str
    lines: list[str]
    path: str = Field(description="Where on this deployment to act on it (a member-app or sign-in page)")


class NotificationView(BaseModel):
    notification_id: str
    kind: str
    facts: dict[str, Any]
    message: Words = Field(description="What it says, in the language and time zone asked for")
    raised_at: datetime
    read_at: datetime | None
    email: str = Field(description="pending, sent, failed, or skipped: <why>")


class Inbox(BaseModel):
    unread: int
    items: list[NotificationView]


class PreferencesView(BaseModel):
    kinds: dict[str, Delivery] = Field(description="Every kind, with how the person hears about it")
    descriptions: dict[str, str]
    language: Language
    time_zone: str
    quiet_hours: QuietHours | None = Field(description="Hours without email in the person's time zone")
    digest_at: time = Field(description="When the daily digest goes out, in the person's time zone")
    email_verified: bool


def _me(who: Principal, community_id: str) -> str:
    who.require_community(community_id)
    if who.member_id is None or who.scope not in ("member",):
        raise Invalid("member_id", "notifications belong to a member: ask with a member's token")
    return who.member_id


@router.get("/communities/{community_id}/notifications", response_model=Inbox, tags=["notifications"],
            summary="My notifications in this community, newest first, with how many are unread")
async def inbox(community_id: str, request: Request, limit: int = Query(50, ge=1, le=200),
                unread_only: bool = Query(False), language: Language = Query("ja"),
                time_zone: str = Query("Asia/Tokyo", max_length=64), who: Principal = Depends(principal)) -> Any:
    member_id = _me(who, community_id)
    zone = _zone(time_zone)
    async with runtime_of(request).pool.acquire() as conn:
        box = await projections.inbox(conn, community_id, member_id, limit, unread_only)
    for item in box["items"]:
        words = compose(item["kind"], item["facts"], language, zone)
        item["message"] = {"subject": words.subject, "lines": words.lines, "path": words.path}
    return box


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise Invalid("time_zone", "not an IANA time zone, e.g. Asia/Tokyo") from error
    return name


@router.post("/communities/{community_id}/notifications/{notification_id}/read", status_code=204,
             tags=["notifications"], summary="Mark one of my notifications read")
async def mark_read(community_id: str, notification_id: str, request: Request,
                    who: Principal = Depends(principal)) -> Response:
    member_id = _me(who, community_id)
    await handlers.mark_read(runtime_of(request).store, community_id, member_id, notification_id,
                             CommandContext.from_request(request, who, community_id))
    return Response(status_code=204)


async def _person(request: Request, community_id: str, member_id: str) -> tuple[str, bool]:
    async with runtime_of(request).pool.acquire() as conn:
        person = await projections.person_of(conn, community_id, member_id)
    if person is None:
        raise Conflict("this member is not linked to a signed-in person yet: sign in and join (or claim the "
                       "membership) to choose how you hear about things", slug="no-account")
    return str(person["person_id"]), bool(person["email"])


def _view(state: Preferences, verified: bool) -> dict[str, Any]:
    return {"kinds": {kind: state.delivery(kind) for kind in KINDS}, "descriptions": KINDS,
            "language": state.language, "time_zone": state.time_zone, "quiet_hours": state.quiet_hours,
            "digest_at": state.digest_at, "email_verified": verified}


@router.get("/communities/{community_id}/notification-preferences", response_model=PreferencesView,
            tags=["notifications"], summary="How I hear about each kind of notification (every community alike)")
async def get_preferences(community_id: str, request: Request, who: Principal = Depends(principal)) -> Any:
    person_id, verified = await _person(request, community_id, _me(who, community_id))
    return _view(await handlers.preferences(runtime_of(request).store, person_id), verified)


@router.put("/communities/{community_id}/notification-preferences", response_model=PreferencesView,
            tags=["notifications"], summary="Change how I hear about kinds of notification, my language and zone")
async def change_preferences(community_id: str, body: ChangePreferences, request: Request,
                             who: Principal = Depends(principal)) -> Any:
    person_id, verified = await _person(request, community_id, _me(who, community_id))
    state = await handlers.change_preferences(runtime_of(request).store, person_id, body,
                                              CommandContext.from_request(request, who, community_id))
    return _view(state, verified)


# ---- what is kept about a person (their export's person-level part; docs/data-rights.md) ----

@router.get("/internal/people/{person_id}/personal-data", include_in_schema=False)
async def person_data(person_id: str, request: Request, who: Principal = Depends(principal)) -> dict[str, Any]:
    """The person's preferences (as they apply now, and whether they ever chose them), the address mails go to,
    the unsubscribe links made for them (kind and date, no token), digests waiting and sent, and the events that
    name them. For the operator (the gateway's export job) alone: a person is nobody's community token."""
    if not who.is_operator:
        raise NotFound("person not found")
    runtime = runtime_of(request)
    records: dict[str, list[Any]] = {}
    async with runtime.pool.acquire() as conn:
        for section in projections.PERSON_DATA:
            records[section.name] = [json.loads(row["row"]) for row in await conn.fetch(section.sql, person_id)]
    wishes = await handlers.preferences(runtime.store, person_id)
    view = _view(wishes, bool(records["email_address"]))
    preferences = {"kinds": view["kinds"], "language": wishes.language, "time_zone": wishes.time_zone,
                   "quiet_hours": wishes.quiet_hours.model_dump(mode="json") if wishes.quiet_hours else None,
                   "digest_at": wishes.digest_at.strftime("%H:%M"), "chosen": wishes.version > 0}
    events = await events_naming(runtime.store, None, person_id)
    digests = [{"day": e.data["day"], "notifications": len(e.data["notification_ids"]),
                "sent_at": e.recorded_at.isoformat()} for e in events if e.type == "DigestEmailed"]
    return {"service": "notifications", "person_id": person_id,
            "records": {"preferences": [preferences], **records, "digests_sent": digests},
            "events": [{"event_id": str(e.event_id), "type": e.type, "stream_id": e.stream_id,
                        "stream_version": e.stream_version, "recorded_at": e.recorded_at.isoformat(),
                        "data": e.data} for e in events]}


# ---- one-click unsubscribe, reached through the gateway's /v1/notifications/unsubscribe/{token} ----

DIGEST = "まとめ便（毎日のお知らせのまとめ） / the daily digest"

async def _link(request: Request, token: str) -> tuple[str, str]:
    async with runtime_of(request).pool.acquire() as conn:
        row = await conn.fetchrow("SELECT person_id, kind FROM unsubscribe_links WHERE token_sha256 = $1",
                                  hashlib.sha256(token.encode()).hexdigest())
    if row is None:
        raise NotFound("this unsubscribe link is not known")
    return str(row["person_id"]), str(row["kind"])


@router.get("/unsubscribe/{token}", response_class=HTMLResponse, include_in_schema=False)
async def unsubscribe_page(token: str, request: Request) -> HTMLResponse:
    """A page with one button: mail clients and scanners fetch links, so a GET changes nothing (RFC 8058)."""
    _, kind = await _link(request, token)
    what = DIGEST if kind == "digest" else KINDS[kind]
    return HTMLResponse(
        "<!doctype html><html lang=\"ja\"><meta charset=\"utf-8\"><meta name=\"viewport\" "
        "content=\"width=device-width, initial-scale=1\"><title>Kizuna</title>"
        f"<form method=\"post\"><p>{what}</p><button type=\"submit\">配信を止める / Stop these emails"
        "</button></form></html>",
        headers={"content-security-policy": "default-src 'none'; form-action 'self'", "cache-control": "no-store"})


@router.post("/unsubscribe/{token}", include_in_schema=False)
async def unsubscribe(token: str, request: Request) -> Response:
    person_id, kind = await _link(request, token)
    store = runtime_of(request).store
    if kind == "digest":  # the digest's link stops the digest: every kind heard about that way
        wishes = await handlers.preferences(store, person_id)
        off: dict[str, Delivery] = {k: "off" for k in KINDS if wishes.delivery(k) == "digest"}
    else:
        off = {kind: "off"}
    await handlers.change_preferences(store, person_id, ChangePreferences(kinds=off),
                                      CommandContext(actor=f"person:{person_id}"))
    return HTMLResponse("<!doctype html><html><meta charset=\"utf-8\"><p>配信を止めました / Unsubscribed</p></html>",
                        headers={"content-security-policy": "default-src 'none'", "cache-control": "no-store"})



# ---- webhooks (the community's owner, or the operator) ----

class WebhookView(BaseModel):
    endpoint_id: str
    url: str
    event_types: list[str]
    description: str
    status: str
    pending: int
    failed: int


class RegisteredWebhook(WebhookView):
    secret: str = Field(description="Shown once: verify each delivery's webhook-signature with it (Standard "
                                    "Webhooks); rotate it with …/secret-rotation")


class RotatedSecret(BaseModel):
    secret: str
    previous_valid_until: datetime


class DeliveryView(BaseModel):
    delivery_id: str = Field(description="The webhook-id header it was sent with")
    event_id: str
    event_type: str
    status: str = Field(description="pending, delivered or failed")
    attempts: int
    next_at: datetime | None
    delivered_at: datetime | None
    last_status: int | None
    last_error: str | None


@dataclass(frozen=True)
class Registrant:
    """Whose endpoints a webhook route acts on: a community's (its owner, or the operator on its behalf), or
    the operator's own endpoints for every community (routes without a community: ``/webhooks…``)."""

    community_id: str
    role: str
    ctx: CommandContext


async def registrant(request: Request, who: Principal = Depends(principal)) -> Registrant:
    community_id = request.path_params.get("community_id")
    if community_id is None:
        if not who.is_operator:
            raise Forbidden("webhooks for every community are the operator's; an owner registers the community's "
                            "own under /communities/{community_id}/webhooks", slug="operator-only")
        return Registrant(EVERY_COMMUNITY, "operator", CommandContext.from_request(request, who))
    if who.is_operator:
        who.require_community(community_id)
        role = "operator"
    else:
        who.require_role(community_id, "owner")
        role = "owner"
    return Registrant(community_id, role, CommandContext.from_request(request, who, community_id))


def _community_in_path(community_id: str = Path(description="The community whose endpoints these are")) -> None:
    """Declares the path's community (``registrant`` reads it) so that the API's description names it."""


def _webhook_route(method: str, path: str, summary: str, **options: Any) -> Any:
    """Serves one webhook route twice: for a community's endpoints and for the operator's, which see every
    community (the same code; ``registrant`` tells them apart)."""
    def register(endpoint: Any) -> Any:
        router.add_api_route("/communities/{community_id}" + path, endpoint, methods=[method], tags=["webhooks"],
                             summary=f"{summary} (owner)", responses=PROBLEM_RESPONSES,
                             dependencies=[Depends(_community_in_path)], **options)
        router.add_api_route(path, endpoint, methods=[method], tags=["webhooks"],
                             summary=f"{summary} (operator, every community)", responses=PROBLEM_RESPONSES,
                             **options)
        return endpoint

    return register


async def _endpoint_view(request: Request, community_id: str, endpoint_id: str) -> dict[str, Any]:
    async with runtime_of(request).pool.acquire() as conn:
        views = await webhook_views(conn, community_id, endpoint_id)
    if not views:
        raise NotFound("webhook endpoint not found")
    return views[0]


async def _require_endpoint(conn: Any, community_id: str, endpoint_id: str) -> None:
    """The same 404 as a missing endpoint for one of another community, or one removed."""
    if not await conn.fetchval("SELECT true FROM webhook_endpoints WHERE community_id = $1 AND endpoint_id = $2 "
                               "AND status <> 'removed'", community_id, endpoint_id):
        raise NotFound("webhook endpoint not found")


async def webhook_views(conn: Any, community_id: str, endpoint_id: str | None = None) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT e.endpoint_id, e.url, e.event_types, e.description, e.status, "
        "count(d.*) FILTER (WHERE d.status = 'pending') AS pending, "
        "count(d.*) FILTER (WHERE d.status = 'pending' AND d.attempts > 0) AS failed FROM webhook_endpoints e "
        "LEFT JOIN webhook_deliveries d ON d.endpoint_id = e.endpoint_id WHERE e.community_id = $1 AND "
        "e.status <> 'removed' AND ($2::text IS NULL OR e.endpoint_id = $2) GROUP BY e.endpoint_id "
        "ORDER BY e.endpoint_id", community_id, endpoint_id)
    return [dict(r) for r in rows]


@_webhook_route("POST", "/webhooks", "Send events of these types to a URL, signed", status_code=201,
                response_model=RegisteredWebhook)
async def register_webhook(body: RegisterWebhook, request: Request, by: Registrant = Depends(registrant)) -> Any:
    settings = WebhookSettings()
    try:
        await AddressGuard(settings.allow_private_addresses).check(body.url)
    except UnsafeAddress as error:
        raise Invalid("url", str(error)) from error
    if urlsplit(body.url).scheme != "https" and not settings.allow_private_addresses:
        raise Invalid("url", "use https://")
    endpoint_id, secret = await handlers.register_endpoint(runtime_of(request).store, by.community_id, body,
                                                           by.role, by.ctx)
    return {**await _endpoint_view(request, by.community_id, endpoint_id), "secret": secret}


@_webhook_route("GET", "/webhooks", "The webhook endpoints, with what waits for each",
                response_model=list[WebhookView])
async def list_webhooks(request: Request, by: Registrant = Depends(registrant)) -> Any:
    async with runtime_of(request).pool.acquire() as conn:
        return await webhook_views(conn, by.community_id)


@_webhook_route("DELETE", "/webhooks/{endpoint_id}", "Stop and forget an endpoint", status_code=204,
                response_class=Response)
async def remove_webhook(endpoint_id: str, request: Request, by: Registrant = Depends(registrant)) -> Response:
    await handlers.on_endpoint(runtime_of(request).store, by.community_id, endpoint_id, by.ctx,
                               lambda e: e.remove(by.community_id, by.ctx.actor))
    return Response(status_code=204)


@_webhook_route("POST", "/webhooks/{endpoint_id}/enable", "Deliver again to a disabled endpoint: what waited "
                "goes first, in order", response_model=WebhookView)
async def enable_webhook(endpoint_id: str, request: Request, by: Registrant = Depends(registrant)) -> Any:
    await handlers.on_endpoint(runtime_of(request).store, by.community_id, endpoint_id, by.ctx,
                               lambda e: e.enable(by.community_id, by.ctx.actor))
    return await _endpoint_view(request, by.community_id, endpoint_id)


@_webhook_route("POST", "/webhooks/{endpoint_id}/secret-rotation", "A new signing secret; the old one keeps "
                "signing beside it for a while", response_model=RotatedSecret)
async def rotate_webhook_secret(endpoint_id: str, request: Request, by: Registrant = Depends(registrant)) -> Any:
    secret, until = await handlers.rotate_secret(runtime_of(request).store, by.community_id, endpoint_id,
                                                 WebhookSettings().secret_overlap_hours, by.ctx)
    return {"secret": secret, "previous_valid_until": until}


@_webhook_route("GET", "/webhooks/{endpoint_id}/deliveries", "The endpoint's deliveries, newest first",
                response_model=list[DeliveryView])
async def webhook_deliveries(endpoint_id: str, request: Request, limit: int = Query(50, ge=1, le=500),
                             by: Registrant = Depends(registrant)) -> Any:
    async with runtime_of(request).pool.acquire() as conn:
        await _require_endpoint(conn, by.community_id, endpoint_id)
        rows = await conn.fetch(
            "SELECT delivery_id, event_id, event_type, status, attempts, CASE WHEN status = 'pending' THEN next_at "
            "END AS next_at, delivered_at, last_status, last_error FROM webhook_deliveries WHERE endpoint_id = $1 "
            "ORDER BY seq DESC LIMIT $2", endpoint_id, limit)
    return [dict(r) for r in rows]


@_webhook_route("POST", "/webhooks/{endpoint_id}/deliveries/{delivery_id}/redelivery", "Send a delivery again "
                "(a copy queued after what waits now; its webhook-id is new)", status_code=201,
                response_model=DeliveryView)
async def redeliver(endpoint_id: str, delivery_id: str, request: Request,
                    by: Registrant = Depends(registrant)) -> Any:
    async with runtime_of(request).pool.acquire() as conn:
        await _require_endpoint(conn, by.community_id, endpoint_id)
        row = await conn.fetchrow(
            "INSERT INTO webhook_deliveries (delivery_id, endpoint_id, event_id, event_type, body) SELECT $3, "
            "endpoint_id, event_id, event_type, body FROM webhook_deliveries WHERE endpoint_id = $1 AND "
            "delivery_id = $2 RETURNING delivery_id, event_id, event_type, status, attempts, next_at, delivered_at, "
            "last_status, last_error", endpoint_id, delivery_id, "msg_" + uuid.uuid4().hex)
    if row is None:
        raise NotFound("delivery not found")
    return dict(row)

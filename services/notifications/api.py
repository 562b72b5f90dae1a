"""HTTP routes of the notifications service: a member's inbox in a community, the person's preferences (the
same in every community they belong to), and one-click unsubscribe from an email (no token: RFC 8058)."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from kizuna.auth import Principal, principal
from kizuna.errors import Conflict, Invalid, NotFound
from kizuna.handling import CommandContext
from kizuna.problems import PROBLEM_RESPONSES
from kizuna.service import runtime_of

from . import handlers, projections
from .domain import KINDS, ChangePreferences, Delivery, Language, Preferences
from .messages import compose

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
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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
    return {"kinds": {kind: state.kinds.get(kind, "immediately") for kind in KINDS}, "descriptions": KINDS,
            "language": state.language, "time_zone": state.time_zone, "email_verified": verified}


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


# ---- one-click unsubscribe, reached through the gateway's /v1/notifications/unsubscribe/{token} ----

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
    return HTMLResponse(
        "<!doctype html><html lang=\"ja\"><meta charset=\"utf-8\"><meta name=\"viewport\" "
        "content=\"width=device-width, initial-scale=1\"><title>Kizuna</title>"
        f"<form method=\"post\"><p>{KINDS[kind]}</p><button type=\"submit\">配信を止める / Stop these emails"
        "</button></form></html>",
        headers={"content-security-policy": "default-src 'none'; form-action 'self'", "cache-control": "no-store"})


@router.post("/unsubscribe/{token}", include_in_schema=False)
async def unsubscribe(token: str, request: Request) -> Response:
    person_id, kind = await _link(request, token)
    await handlers.change_preferences(runtime_of(request).store, person_id,
                                      ChangePreferences(kinds={kind: "off"}),
                                      CommandContext(actor=f"person:{person_id}"))
    return HTMLResponse("<!doctype html><html><meta charset=\"utf-8\"><p>配信を止めました / Unsubscribed</p></html>",
                        headers={"content-security-policy": "default-src 'none'", "cache-control": "no-store"})


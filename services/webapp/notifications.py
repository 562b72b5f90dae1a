"""My notifications: what needs me in each of my communities, newest first, in my language and time zone;
opening one marks it read and goes where it can be acted on. And how I hear about each kind — by email
at once, in a daily digest, or only here; quiet hours; the digest's hour, the time zone and the emails'
language — the same in every community (the notifications service keeps them per person)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from kizuna.errors import Problem

from .pages import Form, Visit, command, framed, posted_form, show, visit

router = APIRouter()
# Time zones offered on the preferences page (the person's own, if another, is listed first).
ZONES = ("Asia/Tokyo", "Asia/Seoul", "Asia/Taipei", "Asia/Shanghai", "Asia/Singapore", "Asia/Kolkata",
         "Australia/Sydney", "Pacific/Auckland", "Europe/London", "Europe/Berlin", "America/New_York",
         "America/Los_Angeles", "America/Sao_Paulo", "UTC")


@router.get("/notifications")
async def notifications_page(request: Request) -> Response:
    return await show(request, _notifications)


async def _notifications(v: Visit, problem: Problem | None = None, saved: bool = False) -> Response:
    memberships = [m for m in v.person.me["memberships"] if m["status"] == "active"]
    words = f"language={v.words.language}&time_zone={v.words.zone.key}"
    boxes: list[dict[str, Any]] = []
    for m in memberships:
        box = await v.call(m["community_id"], "GET", f"/notifications?limit=30&{words}")
        boxes.append({"community_id": m["community_id"], "name": m.get("community_name") or m["community_id"],
                      **box})
    preferences = None
    if memberships:
        try:
            preferences = await v.call(memberships[0]["community_id"], "GET", "/notification-preferences")
        except Problem:
            preferences = None  # not linked to a person here (a membership made by the operator): no choices yet
    return v.page("notifications.html", status=problem.status if problem else 200, boxes=boxes,
                  preferences=preferences, zones=_zones(preferences),
                  saved=saved or v.request.query_params.get("saved"),
                  via=memberships[0]["community_id"] if memberships else None,
                  problem=framed(v.words, problem) if problem else None)


def _zones(preferences: dict[str, Any] | None) -> list[str]:
    mine = preferences["time_zone"] if preferences else ZONES[0]
    return [mine, *(zone for zone in ZONES if zone != mine)]


@router.post("/notifications/{community_id}/{notification_id}/opened")
async def opened(community_id: str, notification_id: str, request: Request) -> Response:
    """Marks it read, then goes where it can be acted on (only a path on this site)."""
    found = await visit(request)
    if isinstance(found, Response):
        return found
    form = await posted_form(request, found.person)
    try:
        await found.call(community_id, "POST", f"/notifications/{notification_id}/read")
    except Problem as refused:
        return await _notifications(found, refused)
    target = form.get("path", "/app/notifications")
    return RedirectResponse(target if target.startswith("/") and not target.startswith("//") else "/app",
                            status_code=303)


@router.post("/notifications/preferences/{community_id}")
async def save_preferences(community_id: str, request: Request) -> Response:
    def body(form: Form) -> dict[str, Any]:
        kinds = {key.removeprefix("kind:"): value for key, value in form.items() if key.startswith("kind:")}
        start, end = form.get("quiet_start") or None, form.get("quiet_end") or None
        # Both empty: no quiet hours. One alone is sent as it is, so the API names the one missing.
        quiet = None if start is None and end is None else {"start": start, "end": end}
        return {"kinds": kinds, "language": form.get("language") or None, "time_zone": form.get("time_zone") or None,
                "digest_at": form.get("digest_at") or None, "quiet_hours": quiet}

    return await command(request, community_id, "PUT", "/notification-preferences", body,
                         redisplay=lambda v, refused, _form: _notifications(v, refused),
                         then="/app/notifications?saved=1#preferences")

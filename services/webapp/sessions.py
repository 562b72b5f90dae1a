"""Sessions: each scheduled one with its time in the person's zone, places left and my standing; register,
join the waitlist, cancel; my calendar as a private subscription link. Facilitators and owners also schedule,
move and cancel sessions and take attendance once one has started (who came is what the ties are made of)."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, Response

from kizuna.errors import Problem

from .i18n import time_zone_of
from .names import N_
from .pages import Form, Visit, command, framed, posted_form, show, visit, whole_number

router = APIRouter()
STEWARDS = ("owner", "facilitator")
KINDS = [N_("kind:group-coaching"), N_("kind:share-meeting"), N_("kind:meal"), N_("kind:retreat"),
         N_("kind:online")]


@router.get("/c/{community_id}/sessions")
async def sessions_page(community_id: str, request: Request) -> Response:
    return await show(request, _sessions, community_id)


async def _sessions(v: Visit, community_id: str, problem: Problem | None = None, form: Form | None = None) -> Response:
    membership = v.person.membership(community_id)
    if membership is None:
        return v.not_a_member()
    me = str(membership["member_id"])
    steward = membership["role"] in STEWARDS
    now = datetime.now(UTC)
    listed = await v.call(community_id, "GET", "/sessions?limit=50")
    scheduled = [s for s in listed["items"] if s["status"] == "scheduled"]
    upcoming = [{**s, "mine": "registered" if me in s["registered"] else
                 "waitlisted" if me in s["waitlist"] else None,
                 "position": s["waitlist"].index(me) + 1 if me in s["waitlist"] else None,
                 "left": max(0, s["capacity"] - len(s["registered"])),
                 "day": v.words.local(s["starts_at"]).date().isoformat(),
                 "start": v.words.local(s["starts_at"]).strftime("%H:%M"),
                 "end": v.words.local(s["ends_at"]).strftime("%H:%M")}
                for s in scheduled if _moment(s["ends_at"]) > now]
    started = [s for s in scheduled if _moment(s["starts_at"]) <= now and not s["attendees"]] if steward else []
    names: dict[str, str] = {}
    if started:
        members = await v.call(community_id, "GET", "/members?limit=200")
        names = {m["member_id"]: m["display_name"] for m in members["items"]}
    return v.page("sessions.html", status=problem.status if problem else 200, sessions=upcoming, started=started,
                  names=names, steward=steward, kinds=KINDS, form=form or {}, zone=v.words.zone.key,
                  community=await v.community(community_id), problem=framed(v.words, problem) if problem else None)


def _moment(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _on_session(request: Request, community_id: str, path: str, body: Any = None, anchor: str = "") -> Any:
    return command(request, community_id, "POST", path, body or (lambda form: {}),
                   redisplay=lambda v, refused, form: _sessions(v, community_id, refused, form),
                   then=lambda answer: f"/app/c/{community_id}/sessions{anchor}")


@router.post("/c/{community_id}/sessions/{session_id}/registration")
async def register(community_id: str, session_id: str, request: Request) -> Response:
    return await _on_session(request, community_id, f"/sessions/{session_id}/registrations",
                             anchor=f"#session-{session_id}")


@router.post("/c/{community_id}/sessions/{session_id}/cancellation")
async def cancel(community_id: str, session_id: str, request: Request) -> Response:
    return await _on_session(request, community_id, f"/sessions/{session_id}/registrations/{{me}}/cancellation",
                             anchor=f"#session-{session_id}")


def _when(form: Form, zone: str) -> dict[str, str]:
    """A session's time as the form gives it: a day and two wall-clock times in the person's zone."""
    day = unicodedata.normalize("NFKC", form.get("day", "")).strip()
    start, end = (unicodedata.normalize("NFKC", form.get(key, "")).strip() for key in ("start", "end"))
    return {"starts_at": f"{day}T{start}" if day and start else "", "ends_at": f"{day}T{end}" if day and end else "",
            "time_zone": zone}


@router.post("/c/{community_id}/sessions")
async def schedule(community_id: str, request: Request) -> Response:
    zone = time_zone_of(request).key
    return await command(
        request, community_id, "POST", "/sessions", lambda form: {
            **_when(form, zone), "kind": form.get("kind", ""), "title": form.get("title", "").strip(),
            "place": form.get("place", "").strip() or None, "link": form.get("link", "").strip() or None,
            "capacity": whole_number(form.get("capacity", ""))},
        redisplay=lambda v, refused, form: _sessions(v, community_id, refused, form),
        then=lambda made: f"/app/c/{community_id}/sessions#session-{made['session_id']}")


@router.post("/c/{community_id}/sessions/{session_id}/reschedule")
async def reschedule(community_id: str, session_id: str, request: Request) -> Response:
    zone = time_zone_of(request).key
    return await _on_session(request, community_id, f"/sessions/{session_id}/reschedule", lambda form: {
        **_when(form, zone), "place": form.get("place", "").strip() or None,
        "link": form.get("link", "").strip() or None, "reason": form.get("reason", "").strip()},
        anchor=f"#session-{session_id}")


@router.post("/c/{community_id}/sessions/{session_id}/called-off")
async def call_off(community_id: str, session_id: str, request: Request) -> Response:
    return await _on_session(request, community_id, f"/sessions/{session_id}/cancellation",
                             lambda form: {"reason": form.get("reason", "").strip()})


@router.post("/c/{community_id}/sessions/{session_id}/attendance")
async def attendance(community_id: str, session_id: str, request: Request) -> Response:
    return await _on_session(request, community_id, f"/sessions/{session_id}/attendance",
                             lambda form: {"attendees": form.all("attendees")}, anchor="#taken")



@router.get("/c/{community_id}/calendar")
async def calendar_page(community_id: str, request: Request) -> Response:
    return await show(request, _calendar, community_id)


async def _calendar(v: Visit, community_id: str, key: str | None = None) -> Response:
    if v.member_id(community_id) is None:
        return v.not_a_member()
    feed = None
    if key is not None:
        public = urlsplit(v.request.app.state.settings.public_url)
        address = f"{public.netloc}{public.path.rstrip('/')}/v1/calendar/{key}.ics"
        feed = {"webcal": f"webcal://{address}", "https": f"{public.scheme}://{address}"}
    return v.page("calendar.html", community=await v.community(community_id), feed=feed)


@router.post("/c/{community_id}/calendar")
async def make_calendar_link(community_id: str, request: Request) -> Response:
    """The new address is shown on this answer only (it is a secret; nothing keeps it but the person)."""
    found = await visit(request)
    if isinstance(found, Response):
        return found
    await posted_form(request, found.person)
    try:
        issued = await found.call(community_id, "POST", "/calendar/link")
    except Problem as refused:
        return found.refused(refused)
    return await _calendar(found, community_id, str(issued["key"]))

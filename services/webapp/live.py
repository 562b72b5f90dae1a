"""What changes while a page is open, without a reload: the page's small script listens here (Server-Sent
Events, same origin, the session cookie), and this relays the community's event stream — read as the person,
with the read policy their token gets — keeping only what concerns the page, as a bare "something changed"
signal; the page then offers to show it. Without the script the page is simply as it was rendered.

The gateway's stream is called over loopback at the address this request came in on (streaming needs a real
connection; the in-process client buffers whole answers). It starts at the community's first event, so
events older than the page (``since``) are dropped here.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from kizuna.errors import Problem

from .pages import Visit, visit

router = APIRouter()
JOB_EVENTS = ("JobOffered,JobReferred,JobOfferedByPartner,JobAssigned,JobStarted,JobCompleted,JobCancelled,"
              "FeedbackGiven")
HOME_EVENTS = ("JobRequestPosted,JobAssigned,JobCompleted,JobCancelled,MemberJoined,SessionScheduled,"
               "SessionRescheduled,SessionCancelled,OfferingPublished")
INTRODUCTION_EVENTS = "ReferralMade,ReferralAccepted,ReferralDeclined,ReferralOutcomeRecorded"
# The stream shows a member only their own notifications (the read policy's subject), so each one concerns me.
NOTIFICATION_EVENTS = "NotificationRaised,NotificationRead"


Concerns = Callable[[dict[str, Any]], bool]
# What the page is told of a change that concerns it: by default a bare "changed"; some pages get a fact.
Announce = Callable[[dict[str, Any]], Awaitable[bytes]]


async def _changed(event: dict[str, Any]) -> bytes:
    return f"event: changed\ndata: {json.dumps({'type': event.get('type')})}\n\n".encode()


@router.get("/c/{community_id}/jobs/{job_id}/live")
async def job_live(community_id: str, job_id: str, request: Request, since: str = "") -> Response:
    async def about_the_job(_v: Visit, _me: str) -> Concerns:
        return lambda data: data.get("job_id") == job_id

    return await _relay(request, community_id, since, JOB_EVENTS, about_the_job)


@router.get("/c/{community_id}/live")
async def home_live(community_id: str, request: Request, since: str = "") -> Response:
    """The community's home: a new job request, member, session or offering, or a job leaving the open list."""
    async def anything(_v: Visit, _me: str) -> Concerns:
        return lambda _data: True

    return await _relay(request, community_id, since, HOME_EVENTS, anything)


@router.get("/c/{community_id}/introductions/live")
async def introductions_live(community_id: str, request: Request, since: str = "") -> Response:
    """Introductions I am part of: one made to me or by me, its answer, its outcome. Answers name only the
    introduction, so the ones I am part of are looked up first, and new ones added as they are made."""
    async def mine(v: Visit, me: str) -> Concerns:
        made = await v.call(community_id, "GET", "/referrals?limit=200")
        ids = {r["referral_id"] for r in made["items"]
               if me in (r["referrer_id"], r["referred_id"], r["to_member_id"])}

        def concerns(data: dict[str, Any]) -> bool:
            if me in (data.get("referrer_id"), data.get("referred_id"), data.get("to_member_id")):
                ids.add(str(data.get("referral_id")))
                return True
            return data.get("referral_id") in ids

        return concerns

    return await _relay(request, community_id, since, INTRODUCTION_EVENTS, mine)


@router.get("/c/{community_id}/notifications/live")
async def unread_live(community_id: str, request: Request, since: str = "") -> Response:
    """My unread count here, as it changes: a notification raised for me or read by me (in another tab, or by
    an email's link) sends the new count, in my words, for the page to show in place."""
    async def mine(_v: Visit, me: str) -> Concerns:
        return lambda data: data.get("member_id") == me

    async def count(v: Visit) -> Announce:
        async def announce(_event: dict[str, Any]) -> bytes:
            box = await v.call(community_id, "GET", "/notifications?limit=1&unread_only=true")
            unread = int(box["unread"])
            label = (v.words.gettext("Notifications ({n} unread)", n=unread) if unread
                     else v.words.gettext("Notifications"))
            return f"event: unread\ndata: {json.dumps({'unread': unread, 'label': label})}\n\n".encode()

        return announce

    return await _relay(request, community_id, since, NOTIFICATION_EVENTS, mine, count)


async def _bare(_v: Visit) -> Announce:
    return _changed


async def _relay(request: Request, community_id: str, since: str, types: str,
                 concerns_of: Callable[[Visit, str], Awaitable[Concerns]],
                 announcer: Callable[[Visit], Awaitable[Announce]] = _bare) -> Response:
    found = await visit(request)
    if not isinstance(found, Visit) or (me := found.member_id(community_id)) is None:
        return Response(status_code=204)  # not signed in, or not a member: 204 tells EventSource not to come back
    try:
        token = await found.api.token(found.person, community_id)
        concerns = await concerns_of(found, me)
    except Problem:
        return Response(status_code=204)
    announce = await announcer(found)
    return StreamingResponse(_changes(request, community_id, token, since, types, concerns, announce),
                             media_type="text/event-stream", headers={"cache-control": "no-cache",
                                                                      "x-accel-buffering": "no"})


def _moment(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


async def _changes(request: Request, community_id: str, token: str, since: str, types: str,
                   concerns: Concerns, announce: Announce) -> AsyncIterator[bytes]:
    host, port = request.scope.get("server") or ("127.0.0.1", 80)
    url = f"http://{host}:{port}/v1/communities/{community_id}/events"
    yield b"retry: 5000\n\n"
    async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as client:
        async with client.stream("GET", url, params={"type": types},
                                 headers={"authorization": f"Bearer {token}"}) as answer:
            if answer.status_code != 200:
                return
            data = ""
            async for line in answer.aiter_lines():
                if line.startswith(":"):
                    yield b": heartbeat\n\n"  # keeps the browser's connection (and proxies) awake
                elif line.startswith("data: "):
                    data += line[6:]
                elif line == "" and data:
                    event, data = json.loads(data), ""
                    if _moment(str(event.get("time", ""))) >= _moment(since) and concerns(event.get("data") or {}):
                        yield await announce(event)

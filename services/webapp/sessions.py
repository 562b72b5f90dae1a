"""Sessions: each scheduled one with its time in the person's zone, places left and my standing; register,
join the waitlist, cancel."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from kizuna.errors import Problem

from .pages import Visit, command, framed, show

router = APIRouter()


@router.get("/c/{community_id}/sessions")
async def sessions_page(community_id: str, request: Request) -> Response:
    return await show(request, _sessions, community_id)


async def _sessions(v: Visit, community_id: str, problem: Problem | None = None) -> Response:
    me = v.member_id(community_id)
    if me is None:
        return v.not_a_member()
    listed = await v.call(community_id, "GET", "/sessions?limit=50")
    sessions = [{**s, "mine": "registered" if me in s["registered"] else
                 "waitlisted" if me in s["waitlist"] else None,
                 "position": s["waitlist"].index(me) + 1 if me in s["waitlist"] else None,
                 "left": max(0, s["capacity"] - len(s["registered"]))}
                for s in listed["items"] if s["status"] == "scheduled"]
    return v.page("sessions.html", status=problem.status if problem else 200, sessions=sessions,
                  community=await v.community(community_id), problem=framed(v.words, problem) if problem else None)


async def _on_session(request: Request, community_id: str, session_id: str, action: str) -> Response:
    return await command(request, community_id, "POST", f"/sessions/{session_id}{action}", lambda form: {},
                         redisplay=lambda v, refused, _form: _sessions(v, community_id, refused),
                         then=f"/app/c/{community_id}/sessions#session-{session_id}")


@router.post("/c/{community_id}/sessions/{session_id}/registration")
async def register(community_id: str, session_id: str, request: Request) -> Response:
    return await _on_session(request, community_id, session_id, "/registrations")


@router.post("/c/{community_id}/sessions/{session_id}/cancellation")
async def cancel(community_id: str, session_id: str, request: Request) -> Response:
    return await _on_session(request, community_id, session_id, "/registrations/{me}/cancellation")

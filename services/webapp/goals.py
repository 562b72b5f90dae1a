"""Goals: set one from what matters to me, with KPIs; check in, with a progress chart drawn on the server (an
SVG, no script); mark it achieved or let it go."""

from __future__ import annotations

import unicodedata
from typing import Any

from fastapi import APIRouter, Request, Response

from kizuna.errors import Problem

from .pages import Form, Visit, command, framed, show

router = APIRouter()
KPI_ROWS = 3  # the form offers three; blank rows are left out
MAX_KPIS = 10  # as many as a goal may have (set over the API, a goal may have more than the form offers)


@router.get("/c/{community_id}/goals")
async def goals_page(community_id: str, request: Request) -> Response:
    return await show(request, _goals, community_id)


async def _goals(v: Visit, community_id: str) -> Response:
    me = v.member_id(community_id)
    if me is None:
        return v.not_a_member()
    mine = await v.call(community_id, "GET", f"/goals?member_id={me}&limit=50")
    return v.page("goals.html", community=await v.community(community_id), goals=mine["items"])


@router.get("/c/{community_id}/goals/new")
async def new_goal(community_id: str, request: Request) -> Response:
    return await show(request, _new_goal, community_id)


async def _new_goal(v: Visit, community_id: str, problem: Problem | None = None, form: Form | None = None) -> Response:
    stewards = await v.call(community_id, "GET", "/members?limit=100")
    facilitators = [m for m in stewards["items"] if m["role"] in ("owner", "facilitator")]
    return v.page("goal_new.html", status=problem.status if problem else 200, community=await v.community(community_id),
                  facilitators=facilitators, rows=range(KPI_ROWS), form=form or {},
                  problem=framed(v.words, problem) if problem else None)


def _number(text: str) -> float | str:
    """A number as typed (a Japanese full-width one too); anything else goes as it is, for the API to name."""
    cleaned = unicodedata.normalize("NFKC", text).strip().replace(",", "")
    try:
        return float(cleaned)
    except ValueError:
        return text


def _goal_body(form: Form) -> dict[str, Any]:
    kpis = [{"name": form.get(f"kpi_name_{i}", "").strip(), "unit": form.get(f"kpi_unit_{i}", "").strip(),
             "baseline": _number(form.get(f"kpi_baseline_{i}", "")),
             "target": _number(form.get(f"kpi_target_{i}", "")),
             "direction": form.get(f"kpi_direction_{i}", "increase")}
            for i in range(KPI_ROWS) if form.get(f"kpi_name_{i}", "").strip()]
    return {"facilitator_id": form.get("facilitator_id", ""), "statement": form.get("statement", "").strip(),
            "motivation": form.get("motivation", "").strip(), "kpis": kpis, "due_date": form.get("due_date", "")}


@router.post("/c/{community_id}/goals")
async def set_goal(community_id: str, request: Request) -> Response:
    return await command(request, community_id, "POST", "/goals", _goal_body,
                         redisplay=lambda v, refused, form: _new_goal(v, community_id, refused, form),
                         then=lambda goal: f"/app/c/{community_id}/goals/{goal['goal_id']}")


@router.get("/c/{community_id}/goals/{goal_id}")
async def goal_page(community_id: str, goal_id: str, request: Request) -> Response:
    return await show(request, _goal, community_id, goal_id)


async def _goal(v: Visit, community_id: str, goal_id: str, problem: Problem | None = None) -> Response:
    try:
        goal = await v.call(community_id, "GET", f"/goals/{goal_id}")
    except Problem as missing:
        return v.refused(missing)
    charts = {k["name"]: chart(k) for k in goal["progress"]["kpis"]}
    return v.page("goal.html", status=problem.status if problem else 200, goal=goal, charts=charts,
                  community_id=community_id, problem=framed(v.words, problem) if problem else None)


def chart(kpi: dict[str, Any], width: int = 300, height: int = 80) -> dict[str, Any]:
    """The KPI's recent values as points of a line from its baseline (bottom) to its target (top)."""
    values = [kpi["baseline"], *kpi["recent"]]
    span = (kpi["target"] - kpi["baseline"]) or 1.0
    step = width / max(1, len(values) - 1)
    points = []
    for i, value in enumerate(values):
        share = min(1.2, max(-0.2, (value - kpi["baseline"]) / span))
        points.append(f"{round(i * step, 1)},{round(height - share * height * 0.8 - height * 0.1, 1)}")
    return {"points": " ".join(points), "width": width, "height": height, "goal_y": round(height * 0.1, 1)}


async def _on_goal(request: Request, community_id: str, goal_id: str, action: str, body: Any) -> Response:
    return await command(request, community_id, "POST", f"/goals/{goal_id}{action}", body,
                         redisplay=lambda v, refused, _form: _goal(v, community_id, goal_id, refused),
                         then=f"/app/c/{community_id}/goals/{goal_id}")


@router.post("/c/{community_id}/goals/{goal_id}/check-ins")
async def check_in(community_id: str, goal_id: str, request: Request) -> Response:
    return await _on_goal(request, community_id, goal_id, "/check-ins", lambda form: {
        "values": {key.removeprefix("value:"): _number(value) for key, value in form.items()
                   if key.startswith("value:") and value.strip()},
        "note": form.get("note", "")})


@router.post("/c/{community_id}/goals/{goal_id}/achievement")
async def achieved(community_id: str, goal_id: str, request: Request) -> Response:
    return await _on_goal(request, community_id, goal_id, "/achievement", lambda form: {"note": form.get("note", "")})


@router.post("/c/{community_id}/goals/{goal_id}/abandonment")
async def let_go(community_id: str, goal_id: str, request: Request) -> Response:
    return await _on_goal(request, community_id, goal_id, "/abandonment",
                          lambda form: {"reason": form.get("reason", "")})


@router.post("/c/{community_id}/goals/{goal_id}/revisions")
async def revise(community_id: str, goal_id: str, request: Request) -> Response:
    """New words, a new date or new targets for the same measures — with the reason, kept in the goal's story."""
    return await _on_goal(request, community_id, goal_id, "/revisions", _revision)


def _revision(form: Form) -> dict[str, Any]:
    kpis = [{"name": form.get(f"kpi_name_{i}", ""), "unit": form.get(f"kpi_unit_{i}", ""),
             "baseline": _number(form.get(f"kpi_baseline_{i}", "")), "target": _number(form.get(f"kpi_target_{i}", "")),
             "direction": form.get(f"kpi_direction_{i}", "increase")}
            for i in range(MAX_KPIS) if form.get(f"kpi_name_{i}")]
    due = form.get("due_date", "")
    # An unchanged date is not sent: only a new date must lie ahead (an overdue goal may still be reworded).
    return {"statement": form.get("statement", "").strip(), "due_date": None if due == form.get("was_due") else due,
            "kpis": kpis, "reason": form.get("reason", "").strip()}

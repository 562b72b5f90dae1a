"""Job requests: ask the community for help, offer, refer someone you trust, assign, start, finish, and 360°
feedback afterwards."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response

from kizuna.errors import Problem

from .pages import Form, Visit, command, framed, listed, show

router = APIRouter()
FEEDBACK_SCALES = ("quality", "reliability", "beyond", "collaboration")


@router.get("/c/{community_id}/jobs/new")
async def new_job(community_id: str, request: Request) -> Response:
    return await show(request, _new_job, community_id)


async def _new_job(v: Visit, community_id: str, problem: Problem | None = None, form: Form | None = None) -> Response:
    return v.page("job_new.html", status=problem.status if problem else 200,
                  community=await v.community(community_id), form=form or {},
                  problem=framed(v.words, problem) if problem else None)


@router.post("/c/{community_id}/jobs")
async def post_job(community_id: str, request: Request) -> Response:
    return await command(
        request, community_id, "POST", "/jobs",
        lambda form: {"title": form.get("title", "").strip(), "description": form.get("description", ""),
                      "skills": listed(form.get("skills", "")), "deadline": form.get("deadline", "")},
        redisplay=lambda v, refused, form: _new_job(v, community_id, refused, form),
        then=lambda job: f"/app/c/{community_id}/jobs/{job['job_id']}")


@router.get("/c/{community_id}/jobs/{job_id}")
async def job_page(community_id: str, job_id: str, request: Request) -> Response:
    return await show(request, _job, community_id, job_id)


async def _job(v: Visit, community_id: str, job_id: str, problem: Problem | None = None) -> Response:
    try:
        job = await v.call(community_id, "GET", f"/jobs/{job_id}")
    except Problem as missing:
        return v.refused(missing)
    members = await v.call(community_id, "GET", "/members?limit=100")
    names = {m["member_id"]: m["display_name"] for m in members["items"]}
    me = v.member_id(community_id)
    taking_part = {job["requester_id"], *job["workers"]}
    return v.page("job.html", status=problem.status if problem else 200, job=job, names=names, me=me,
                  community_id=community_id, scales=FEEDBACK_SCALES,
                  people=[m for m in members["items"] if m["member_id"] not in (me, job["requester_id"])],
                  subjects=sorted(taking_part - {me}) if me in taking_part else [],
                  given=v.request.query_params.get("given"),
                  offered=any(o["member_id"] == me for o in job["offers"]),
                  now=datetime.now(UTC).isoformat(),
                  problem=framed(v.words, problem) if problem else None)


async def _on_job(request: Request, community_id: str, job_id: str, action: str, body: Any,
                  then: str = "") -> Response:
    return await command(request, community_id, "POST", f"/jobs/{job_id}{action}", body,
                         redisplay=lambda v, refused, _form: _job(v, community_id, job_id, refused),
                         then=f"/app/c/{community_id}/jobs/{job_id}{then}")


@router.post("/c/{community_id}/jobs/{job_id}/offers")
async def offer(community_id: str, job_id: str, request: Request) -> Response:
    return await _on_job(request, community_id, job_id, "/offers",
                         lambda form: {"why_next_step": form.get("why_next_step", "")})


@router.post("/c/{community_id}/jobs/{job_id}/referrals")
async def refer(community_id: str, job_id: str, request: Request) -> Response:
    return await _on_job(request, community_id, job_id, "/referrals",
                         lambda form: {"member_id": form.get("member_id", ""), "note": form.get("note", "")})


@router.post("/c/{community_id}/jobs/{job_id}/assignment")
async def assign(community_id: str, job_id: str, request: Request) -> Response:
    return await _on_job(request, community_id, job_id, "/assignment",
                         lambda form: {"member_ids": [form.get("member_id", "")]})


@router.post("/c/{community_id}/jobs/{job_id}/start")
async def start(community_id: str, job_id: str, request: Request) -> Response:
    return await _on_job(request, community_id, job_id, "/start", lambda form: None)


@router.post("/c/{community_id}/jobs/{job_id}/completion")
async def complete(community_id: str, job_id: str, request: Request) -> Response:
    return await _on_job(request, community_id, job_id, "/completion", lambda form: None)


@router.post("/c/{community_id}/jobs/{job_id}/cancellation")
async def cancel(community_id: str, job_id: str, request: Request) -> Response:
    return await _on_job(request, community_id, job_id, "/cancellation",
                         lambda form: {"reason": form.get("reason", "")})


@router.post("/c/{community_id}/jobs/{job_id}/feedback")
async def feedback(community_id: str, job_id: str, request: Request) -> Response:
    def body(form: Form) -> dict[str, Any]:
        # A missing or non-numeric rating is sent as it is, for the API to name the field.
        ratings = {scale: int(form[scale]) if form.get(scale, "").isdigit() else form.get(scale)
                   for scale in FEEDBACK_SCALES}
        return {"subject_id": form.get("subject_id", ""), **ratings, "comment": form.get("comment", "")}

    return await _on_job(request, community_id, job_id, "/feedback", body, then="?given=1#feedback")


# ---- job requests partner communities shared with us ----

@router.get("/c/{community_id}/partner-jobs")
async def partner_jobs(community_id: str, request: Request) -> Response:
    return await show(request, _partner_jobs, community_id)


async def _partner_jobs(v: Visit, community_id: str, problem: Problem | None = None) -> Response:
    if v.member_id(community_id) is None:
        return v.not_a_member()
    shared = await v.call(community_id, "GET", "/partner-jobs?limit=50")
    return v.page("partner_jobs.html", status=problem.status if problem else 200,
                  community=await v.community(community_id), jobs=shared["items"],
                  problem=framed(v.words, problem) if problem else None)


@router.post("/c/{community_id}/partnerships/{partnership_id}/jobs/{job_id}/offers")
async def offer_to_partner(community_id: str, partnership_id: str, job_id: str, request: Request) -> Response:
    # The offer travels to the partner deployment with my consented card (what my profile page previews).
    return await command(request, community_id, "POST", f"/partnerships/{partnership_id}/jobs/{job_id}/offers",
                         lambda form: {"note": form.get("note", "")},
                         redisplay=lambda v, refused, _form: _partner_jobs(v, community_id, refused),
                         then=f"/app/c/{community_id}/partner-jobs#job-{job_id}")

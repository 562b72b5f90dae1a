"""Offerings: producers' pre-commitment shares (a season's vegetables, a print run). Members browse them with
how far each is from its minimum, commit to shares before the deadline and withdraw while it is open; sign up
to help at a busy time; see what was delivered to them and, after a delivery, give the producer lead-user
feedback. A producer publishes an offering, shares progress, records each member's delivery (a short harvest
is a smaller portion) and reads who committed, the help still missing and the feedback."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response

from kizuna.errors import Problem

from .i18n import time_zone_of
from .pages import Form, Visit, command, framed, listed, show, whole_number

router = APIRouter()


@router.get("/c/{community_id}/offerings")
async def offerings_page(community_id: str, request: Request) -> Response:
    return await show(request, _offerings, community_id)


async def _offerings(v: Visit, community_id: str, problem: Problem | None = None) -> Response:
    me = v.member_id(community_id)
    if me is None:
        return v.not_a_member()
    offerings = await v.call(community_id, "GET", "/offerings?limit=50")
    mine = await v.call(community_id, "GET", f"/offerings/commitments/{me}")
    held = {c["offering_id"]: c["shares"] for c in mine["items"] if c["commitment_status"] == "committed"}
    return v.page("offerings.html", status=problem.status if problem else 200,
                  community=await v.community(community_id), offerings=offerings["items"], held=held,
                  names=await _names(v, community_id), problem=framed(v.words, problem) if problem else None)


async def _names(v: Visit, community_id: str) -> dict[str, str]:
    members = await v.call(community_id, "GET", "/members?limit=200")
    return {m["member_id"]: m["display_name"] for m in members["items"]}


@router.get("/c/{community_id}/offerings/new")
async def new_offering_page(community_id: str, request: Request) -> Response:
    return await show(request, _new_offering, community_id)


async def _new_offering(v: Visit, community_id: str, problem: Problem | None = None,
                        form: Form | None = None) -> Response:
    if v.member_id(community_id) is None:
        return v.not_a_member()
    return v.page("offering_new.html", status=problem.status if problem else 200, zone=v.words.zone.key,
                  community=await v.community(community_id), form=form or {},
                  problem=framed(v.words, problem) if problem else None)


@router.post("/c/{community_id}/offerings")
async def publish(community_id: str, request: Request) -> Response:
    zone = time_zone_of(request)
    return await command(request, community_id, "POST", "/offerings", lambda form: _terms(form, zone),
                         redisplay=lambda v, refused, form: _new_offering(v, community_id, refused, form),
                         then=lambda made: f"/app/c/{community_id}/offerings/{made['offering_id']}")


def _terms(form: Form, zone: Any) -> dict[str, Any]:
    """The publishing form as the API's terms: a deadline on the person's wall clock, delivery days separated by
    commas, at most one help shift (more can be added over the API), a price in money, barter or none."""
    day, time = (unicodedata.normalize("NFKC", form.get(k, "")).strip() for k in ("deadline_day", "deadline_time"))
    try:
        deadline: str = datetime.fromisoformat(f"{day}T{time or '23:59'}").replace(tzinfo=zone).isoformat()
    except ValueError:
        deadline = f"{day} {time}".strip()
    kind = form.get("price_kind", "none")
    price: dict[str, Any] = {"kind": kind}
    if kind == "money":
        amount = unicodedata.normalize("NFKC", form.get("amount", "")).replace(",", "").strip()
        price |= {"amount": float(amount) if amount.replace(".", "", 1).isdigit() else amount,
                  "currency": form.get("currency", "JPY").strip().upper()}
    elif kind == "barter":
        price["barter"] = form.get("barter", "").strip()
    shifts = []
    if form.get("shift_day", "").strip():
        shifts.append({"date": form["shift_day"].strip(), "place": form.get("shift_place", "").strip(),
                       "hands": whole_number(form.get("shift_hands", "")), "what": form.get("shift_what", "").strip()})
    return {"title": form.get("title", "").strip(), "description": form.get("description", "").strip(),
            "season": form.get("season", "").strip(), "shares": whole_number(form.get("shares", "")),
            "minimum_shares": whole_number(form.get("minimum_shares", "")), "price": price,
            "commitment_deadline": deadline, "help_shifts": shifts,
            "delivery_dates": [unicodedata.normalize("NFKC", d) for d in listed(form.get("delivery_dates", ""))],
            "visibility": "partners" if form.get("partners") else "community",
            "short_harvest": form.get("short_harvest", "reduced-delivery")}


@router.get("/c/{community_id}/offerings/{offering_id}")
async def offering_page(community_id: str, offering_id: str, request: Request) -> Response:
    return await show(request, _offering, community_id, offering_id)


async def _offering(v: Visit, community_id: str, offering_id: str, problem: Problem | None = None) -> Response:
    me = v.member_id(community_id)
    if me is None:
        return v.not_a_member()
    try:
        offering = await v.call(community_id, "GET", f"/offerings/{offering_id}")
    except Problem as missing:
        return v.refused(missing)
    producing = offering["producer_id"] == me
    mine = await v.call(community_id, "GET", f"/offerings/commitments/{me}")
    commitment = next((c for c in mine["items"] if c["offering_id"] == offering_id), None)
    return v.page(
        "offering.html", status=problem.status if problem else 200, community=await v.community(community_id),
        o=offering, names=await _names(v, community_id), producing=producing, commitment=commitment,
        helping={s["shift_id"] for s in commitment["help_shifts"]} if commitment else set(),
        producer=await v.call(community_id, "GET", f"/offerings/{offering_id}/producer-view") if producing else None,
        past_deadline=datetime.fromisoformat(offering["terms"]["commitment_deadline"]) <= datetime.now().astimezone(),
        thanked=v.request.query_params.get("done"), problem=framed(v.words, problem) if problem else None)


async def _on_offering(request: Request, community_id: str, offering_id: str, action: str,
                       body: Callable[[Form], Any], *, method: str = "POST", back_to_list: bool = False,
                       done: str = "") -> Response:
    """An action on one offering; refused, the page it was taken on, with the refusal."""
    if back_to_list:
        return await command(request, community_id, method, f"/offerings/{offering_id}{action}", body,
                             redisplay=lambda v, refused, _form: _offerings(v, community_id, refused),
                             then=f"/app/c/{community_id}/offerings#offering-{offering_id}")
    return await command(request, community_id, method, f"/offerings/{offering_id}{action}", body,
                         redisplay=lambda v, refused, _form: _offering(v, community_id, offering_id, refused),
                         then=f"/app/c/{community_id}/offerings/{offering_id}" + (f"?done={done}" if done else ""))


@router.post("/c/{community_id}/offerings/{offering_id}/commitments")
async def commit(community_id: str, offering_id: str, request: Request) -> Response:
    return await _on_offering(request, community_id, offering_id, "/commitments", lambda form: {
        "shares": whole_number(form.get("shares", ""))}, back_to_list=True)


@router.post("/c/{community_id}/offerings/{offering_id}/withdrawal")
async def withdraw(community_id: str, offering_id: str, request: Request) -> Response:
    return await _on_offering(request, community_id, offering_id, "/commitments/withdrawal",
                              lambda form: {"reason": form.get("reason", "")}, back_to_list=True)


@router.post("/c/{community_id}/offerings/{offering_id}/shifts/{shift_id}/signup")
async def help_out(community_id: str, offering_id: str, shift_id: str, request: Request) -> Response:
    return await _on_offering(request, community_id, offering_id, f"/shifts/{shift_id}/signups", lambda form: None)


@router.post("/c/{community_id}/offerings/{offering_id}/shifts/{shift_id}/signup-cancellation")
async def stop_helping(community_id: str, offering_id: str, shift_id: str, request: Request) -> Response:
    return await _on_offering(request, community_id, offering_id, f"/shifts/{shift_id}/signups", lambda form: None,
                              method="DELETE")


@router.post("/c/{community_id}/offerings/{offering_id}/feedback")
async def give_feedback(community_id: str, offering_id: str, request: Request) -> Response:
    return await _on_offering(request, community_id, offering_id, "/feedback", lambda form: {
        "good": form.get("good", "").strip(), "improve": form.get("improve", "").strip(),
        "would_commit_again": form.get("again") == "yes"}, done="feedback")


@router.post("/c/{community_id}/offerings/{offering_id}/progress")
async def share_progress(community_id: str, offering_id: str, request: Request) -> Response:
    return await _on_offering(request, community_id, offering_id, "/progress", lambda form: {
        "stage": form.get("stage", "").strip(), "note": form.get("note", "").strip()})


@router.post("/c/{community_id}/offerings/{offering_id}/deliveries")
async def record_delivery(community_id: str, offering_id: str, request: Request) -> Response:
    def body(form: Form) -> dict[str, Any]:
        portion = unicodedata.normalize("NFKC", form.get("portion", "100")).strip().rstrip("%")
        return {"member_id": form.get("member_id", ""), "delivery_date": form.get("delivery_date", ""),
                "portion_per_share": float(portion) / 100 if portion.replace(".", "", 1).isdigit() else portion,
                "note": form.get("note", "").strip()}

    return await _on_offering(request, community_id, offering_id, "/deliveries", body)


@router.post("/c/{community_id}/offerings/{offering_id}/settlement")
async def settle(community_id: str, offering_id: str, request: Request) -> Response:
    return await _on_offering(request, community_id, offering_id, "/settlement", lambda form: None)

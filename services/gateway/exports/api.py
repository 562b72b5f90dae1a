"""Export routes: a signed-in person asks for their own export and follows it (session cookie; starting one
also carries the session's CSRF token, like every change a person asks for); the operator does the same for
any person with an operator token. Anyone else's export is a 404, as if there were none."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from kizuna.auth import Principal, issue_token, principal
from kizuna.domain import StrictModel
from kizuna.errors import Forbidden, NotFound, Problem
from kizuna.handling import CommandContext, to_new_events
from kizuna.problems import PROBLEM_RESPONSES
from kizuna.service import Runtime, runtime_of

from ..people import _ask_identity, identity_refusal
from . import projections
from .domain import KEPT_DAYS, ExportRequested, Language, plan
from .readable import CONTENT_SECURITY_POLICY

router = APIRouter(responses=PROBLEM_RESPONSES, tags=["exports"])
# A person id as identity makes them; anything else is named in a 422 before a request is built from it.
PersonId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="The person's id (GET /v1/me)")]
INTERNAL_TOKEN_SECONDS = 120


def internal_operator_token(request_or_state: Any) -> str:
    """A two-minute operator token the gateway signs for its own calls to identity and the services; it never
    leaves the gateway."""
    return issue_token(request_or_state.signing_key, community_id="*", member_id="operator", role="operator",
                       scope="operator", ttl_seconds=INTERNAL_TOKEN_SECONDS)


class ExportRequest(StrictModel):
    model_config = {"extra": "forbid", "json_schema_extra": {"examples": [{"language": "ja"}]}}
    language: Language = Field("ja", description="The language of the readable document (ja or en)")


class ExportStep(BaseModel):
    service: str
    community_id: str | None
    community_name: str | None
    member_id: str | None
    standing: str | None
    done: bool


class ExportProgress(BaseModel):
    export_id: str
    status: str = Field(description="running, or ready (then links says where to download it)")
    language: str
    requested_by: str
    requested_at: str | None
    completed_at: str | None
    expires_at: str | None = Field(description="When it is deleted (7 days after it is ready)")
    steps_done: int
    steps_total: int
    steps: list[ExportStep]
    waiting_for: str | None = Field(description="Why the next step is not done yet, when it was tried and failed")
    links: dict[str, str] | None = None


class ExportList(BaseModel):
    exports: list[ExportProgress]


async def _person(request: Request, *, to_act: bool) -> str:
    """The signed-in person (identity decides from the session cookie, and for a change checks its CSRF token)."""
    upstream = await _ask_identity(request, "/internal/whoami", method="POST" if to_act else "GET", body=b"",
                                   content_type="application/json")
    if upstream.status_code != 200:
        raise identity_refusal(upstream, "sign in first")
    return str(upstream.json()["person_id"])


def _operator(who: Principal) -> None:
    if not who.is_operator:
        raise Forbidden("only the operator may ask for another person's export", slug="operator-only")


async def _start(request: Request, person_id: str, requested_by: str, language: str) -> Response:
    runtime = runtime_of(request)
    state = request.app.state
    base = "/v1/me/exports" if requested_by == "person" else f"/v1/people/{person_id}/exports"
    async with runtime.pool.acquire() as conn:
        running = await conn.fetchval("SELECT export_id FROM exports WHERE person_id = $1 AND status = 'running' "
                                      "ORDER BY requested_at LIMIT 1", person_id)
    if running is None:
        memberships = await _memberships(request, person_id)
        services = [*state.settings.service_replicas(), "gateway"]
        steps = plan(memberships, services)
        running = str(uuid.uuid4())
        event = ExportRequested(export_id=running, person_id=person_id, requested_by=requested_by,
                                steps_total=len(steps))
        metadata = CommandContext(actor=requested_by if requested_by == "operator" else "person").metadata(None)
        async with runtime.store.unit_of_work() as conn:
            await conn.execute(
                "INSERT INTO exports (export_id, person_id, requested_by, language, steps, expires_at) "
                "VALUES ($1, $2, $3, $4, $5::jsonb, $6)", running, person_id, requested_by, language,
                json.dumps([step.as_json() for step in steps]), datetime.now(UTC) + timedelta(days=KEPT_DAYS))
            await runtime.store.append(f"export-{running}", to_new_events([event], metadata), connection=conn)
    view = await _view(runtime, str(running), person_id, f"{base}/{running}")
    return JSONResponse(view, status_code=202, headers={"location": f"{base}/{running}"})


async def _memberships(request: Request, person_id: str) -> list[dict[str, Any]]:
    """The person's communities as identity knows them (a person identity does not know is a 404)."""
    state = request.app.state
    for base in state.settings.identity_replicas():
        try:
            answer = await state.http.get(f"{base}/internal/people/{quote(person_id, safe='')}/personal-data",
                                          headers={"authorization": f"Bearer {internal_operator_token(state)}"},
                                          timeout=state.upstream_timeout)
        except httpx.HTTPError:
            continue
        if answer.status_code == 404:
            raise NotFound("person not found")
        if answer.status_code == 200:
            return list(answer.json()["memberships"])
    raise Problem("identity did not answer; try again in a minute", status=503, slug="identity-unavailable",
                  title="Service unavailable")


async def _view(runtime: Runtime, export_id: str, person_id: str, base: str) -> dict[str, Any]:
    async with runtime.pool.acquire() as conn:
        held = await projections.one(conn, export_id)
    if held is None or held[0]["person_id"] != person_id:
        raise NotFound("export not found")
    return projections.progress(held[0], held[1], base)


async def _document(runtime: Runtime, export_id: str, person_id: str, kind: str) -> Response:
    async with runtime.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT person_id, status, document, html FROM exports WHERE export_id = $1",
                                  export_id)
    if row is None or row["person_id"] != person_id:
        raise NotFound("export not found")
    if row["status"] != "ready":
        raise Problem("the export is not ready yet", status=409, slug="export-not-ready", title="Conflict")
    name = f"kizuna-export-{export_id}"
    if kind == "json":
        return Response(row["document"], media_type="application/json", headers={
            "content-disposition": f'attachment; filename="{name}.json"', "cache-control": "no-store"})
    return HTMLResponse(row["html"], headers={"content-security-policy": CONTENT_SECURITY_POLICY,
                                              "cache-control": "no-store", "referrer-policy": "no-referrer"})


HTML_DOCUMENT: dict[int | str, dict[str, Any]] = {200: {"content": {"text/html": {"schema": {"type": "string"}}},
                       "description": "The readable document, in the language asked for"}}
JSON_DOCUMENT: dict[int | str, dict[str, Any]] = {200: {"content": {"application/json": {"schema": {"type": "object"}}},
                       "description": "The export as one JSON document (docs/data-rights.md)"}}
STARTED: dict[int | str, dict[str, Any]] = {
    202: {"model": ExportProgress, "description": "Started (or the one already running); Location says where to "
                                                  "follow it"}}


# ---- the person's own ----

@router.post("/v1/me/exports", status_code=202, responses=STARTED, response_model=ExportProgress,
             summary="Ask for everything Kizuna holds about me (session cookie and X-CSRF-Token)")
async def start_my_export(body: ExportRequest, request: Request) -> Response:
    person_id = await _person(request, to_act=True)
    return await _start(request, person_id, "person", body.language)


@router.get("/v1/me/exports", response_model=ExportList, summary="My exports, newest first (session cookie)")
async def my_exports(request: Request) -> dict[str, Any]:
    person_id = await _person(request, to_act=False)
    async with runtime_of(request).pool.acquire() as conn:
        held = await projections.of_person(conn, person_id)
    return {"exports": [projections.progress(row, done, f"/v1/me/exports/{row['export_id']}")
                        for row, done in held]}


@router.get("/v1/me/exports/{export_id}", response_model=ExportProgress,
            summary="How far my export has come, and where to download it when ready (session cookie)")
async def my_export(export_id: str, request: Request) -> dict[str, Any]:
    person_id = await _person(request, to_act=False)
    return await _view(runtime_of(request), export_id, person_id, f"/v1/me/exports/{export_id}")


@router.get("/v1/me/exports/{export_id}/export.json", responses=JSON_DOCUMENT, response_class=Response,
            summary="My export as JSON (session cookie)")
async def my_export_json(export_id: str, request: Request) -> Response:
    return await _document(runtime_of(request), export_id, await _person(request, to_act=False), "json")


@router.get("/v1/me/exports/{export_id}/export.html", responses=HTML_DOCUMENT, response_class=HTMLResponse,
            summary="My export as a readable document (session cookie)")
async def my_export_html(export_id: str, request: Request) -> Response:
    return await _document(runtime_of(request), export_id, await _person(request, to_act=False), "html")


# ---- the operator, on a person's behalf ----

@router.post("/v1/people/{person_id}/exports", status_code=202, responses=STARTED, response_model=ExportProgress,
             summary="Ask for everything Kizuna holds about a person, on their behalf (operator)")
async def start_export_for(person_id: PersonId, body: ExportRequest, request: Request,
                           who: Principal = Depends(principal)) -> Response:
    _operator(who)
    return await _start(request, person_id, "operator", body.language)


@router.get("/v1/people/{person_id}/exports/{export_id}", response_model=ExportProgress,
            summary="How far a person's export has come (operator)")
async def export_for(person_id: PersonId, export_id: str, request: Request,
                     who: Principal = Depends(principal)) -> dict[str, Any]:
    _operator(who)
    return await _view(runtime_of(request), export_id, person_id, f"/v1/people/{person_id}/exports/{export_id}")


@router.get("/v1/people/{person_id}/exports/{export_id}/export.json", responses=JSON_DOCUMENT,
            response_class=Response, summary="A person's export as JSON (operator)")
async def export_json_for(person_id: PersonId, export_id: str, request: Request,
                          who: Principal = Depends(principal)) -> Response:
    _operator(who)
    return await _document(runtime_of(request), export_id, person_id, "json")


@router.get("/v1/people/{person_id}/exports/{export_id}/export.html", responses=HTML_DOCUMENT,
            response_class=HTMLResponse, summary="A person's export as a readable document (operator)")
async def export_html_for(person_id: PersonId, export_id: str, request: Request,
                          who: Principal = Depends(principal)) -> Response:
    _operator(who)
    return await _document(runtime_of(request), export_id, person_id, "html")

"""The member app's pages: server-rendered, every action a plain form post (no script is needed), in the
person's language, laid out for a phone first.

Each page is the signed-in person looking at one community through the public API (``client.PersonApi``);
what they may see and do is the API's decision, never the page's. A form post carries the session's CSRF
token and must come from this site. A refusal is shown on the page it came from, in the person's language,
with the field it names; nothing is half-done (the API decided it whole).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData

from kizuna.errors import Forbidden, Problem, Unauthorized

from .client import Person, PersonApi
from .i18n import Words, words_for

router = APIRouter(prefix="/app", include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
LANGUAGE_COOKIE_SECONDS = 365 * 86400


def _page(request: Request, template: str, words: Words, status: int = 200, **context: Any) -> HTMLResponse:
    response = templates.TemplateResponse(request, template, {
        "_": words.gettext, "w": words, "lang": words.language, **context}, status_code=status)
    response.headers["cache-control"] = "no-store"
    response.headers["content-security-policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'")
    chosen = request.query_params.get("lang")
    if chosen in ("ja", "en"):
        response.set_cookie("kizuna-lang", chosen, max_age=LANGUAGE_COOKIE_SECONDS, path="/", samesite="lax")
    return response


async def _signed_in(request: Request) -> tuple[PersonApi, Person] | Response:
    api = PersonApi(request)
    try:
        return api, await api.person()
    except Unauthorized:
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/sign-in?next={quote(here, safe='')}", status_code=303)


class Form(dict[str, str]):
    """A posted form's fields (the last value of each), and every value of the repeated ones."""

    def __init__(self, data: FormData) -> None:
        super().__init__({key: str(value) for key, value in data.items()})
        self.data = data

    def all(self, key: str) -> list[str]:
        return [str(value) for value in self.data.getlist(key)]


async def _form(request: Request, person: Person) -> Form:
    """The posted form, once it is known to come from this site with the session's CSRF token."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise Forbidden("this request came from another site", slug="cross-site-request")
    form = Form(await request.form())
    if not secrets.compare_digest(form.pop("csrf_token", ""), person.csrf):
        raise Forbidden("the form's CSRF token is missing or wrong; reload the page and try again",
                        slug="csrf-token-invalid")
    return form


def _listed(text: str) -> list[str]:
    """A comma-separated field (Japanese commas too) as a list."""
    return [item.strip() for item in text.replace("、", ",").split(",") if item.strip()]


def _problem(words: Words, problem: Problem) -> dict[str, Any]:
    """A refusal as the page shows it: a sentence in the person's language, and the fields it names."""
    fields = [str(e.get("field", "")).rsplit(".", 1)[-1] for e in problem.extensions.get("errors") or []]
    sentences = {
        "validation-error": words.gettext("Please check: {fields}.", fields=", ".join(
            words.gettext(f"field:{f}") for f in fields) or "—"),
        "not-a-member": words.gettext("You are not a member of this community."),
        "forbidden": words.gettext("You may not do that here."),
        "not-found": words.gettext("That is not here any more."),
        "rate-limited": words.gettext("Too many requests: wait a minute and try again."),
    }
    # A refusal this page has no sentence of its own for is framed by its status, in the person's language
    # (the API's own detail, in English, is kept inside the frame: it says what exactly).
    by_status = {403: sentences["forbidden"], 404: sentences["not-found"], 422: sentences["validation-error"],
                 429: sentences["rate-limited"],
                 409: words.gettext("That cannot be done now: {detail}", detail=problem.detail)}
    return {"status": problem.status, "slug": problem.slug, "fields": fields,
            "message": sentences.get(problem.slug) or by_status.get(problem.status) or problem.detail}


@router.get("", response_class=HTMLResponse)
async def my_communities(request: Request) -> Response:
    found = await _signed_in(request)
    if isinstance(found, Response):
        return found
    _, person = found
    words = words_for(request)
    active = [m for m in person.me["memberships"] if m["status"] == "active"]
    return _page(request, "communities.html", words, memberships=active)


async def _community(api: PersonApi, person: Person, cid: str) -> dict[str, Any]:
    return dict(await api.call(person, cid, "GET", ""))


@router.get("/c/{community_id}", response_class=HTMLResponse)
async def community_home(community_id: str, request: Request) -> Response:
    found = await _signed_in(request)
    if isinstance(found, Response):
        return found
    api, person = found
    words = words_for(request)
    membership = person.membership(community_id)
    if membership is None:
        return _page(request, "problem.html", words, status=403,
                     problem=_problem(words, Forbidden("not a member", slug="not-a-member")))
    community = await _community(api, person, community_id)
    members = await api.call(person, community_id, "GET", "/members?limit=100")
    jobs = await api.call(person, community_id, "GET", "/jobs?state=posted&limit=20")
    sessions = await api.call(person, community_id, "GET", "/sessions?limit=5")
    newest = sorted(members["items"], key=lambda m: str(m.get("joined_at") or ""), reverse=True)[:5]
    return _page(request, "home.html", words, community=community, me=membership, newest=newest,
                 jobs=jobs["items"], sessions=sessions["items"])


@router.get("/c/{community_id}/jobs/new", response_class=HTMLResponse)
async def new_job(community_id: str, request: Request) -> Response:
    found = await _signed_in(request)
    if isinstance(found, Response):
        return found
    api, person = found
    words = words_for(request)
    community = await _community(api, person, community_id)
    return _page(request, "job_new.html", words, community=community, csrf=person.csrf, form={}, problem=None)


@router.post("/c/{community_id}/jobs", response_class=HTMLResponse)
async def post_job(community_id: str, request: Request) -> Response:
    found = await _signed_in(request)
    if isinstance(found, Response):
        return found
    api, person = found
    words = words_for(request)
    form = await _form(request, person)
    body: dict[str, Any] = {"title": form.get("title", "").strip(), "description": form.get("description", ""),
                            "skills": _listed(form.get("skills", "")),
                            "deadline": form.get("deadline", "")}
    try:
        job = await api.call(person, community_id, "POST", "/jobs", body)
    except Problem as refused:
        community = await _community(api, person, community_id)
        return _page(request, "job_new.html", words, status=refused.status, community=community, csrf=person.csrf,
                     form=form, problem=_problem(words, refused))
    return RedirectResponse(f"/app/c/{community_id}/jobs/{job['job_id']}", status_code=303)


@router.get("/c/{community_id}/jobs/{job_id}", response_class=HTMLResponse)
async def job_page(community_id: str, job_id: str, request: Request) -> Response:
    found = await _signed_in(request)
    if isinstance(found, Response):
        return found
    return await _job_page(request, *found, community_id, job_id)


async def _job_page(request: Request, api: PersonApi, person: Person, community_id: str, job_id: str,
                    problem: Problem | None = None) -> Response:
    words = words_for(request)
    try:
        job = await api.call(person, community_id, "GET", f"/jobs/{job_id}")
    except Problem as missing:
        return _page(request, "problem.html", words, status=missing.status, problem=_problem(words, missing))
    members = await api.call(person, community_id, "GET", "/members?limit=100")
    names = {m["member_id"]: m["display_name"] for m in members["items"]}
    me = (person.membership(community_id) or {}).get("member_id")
    people = [m for m in members["items"] if m["member_id"] not in (me, job["requester_id"])]
    taking_part = {job["requester_id"], *job["workers"]}
    return _page(request, "job.html", words, status=problem.status if problem else 200, job=job, names=names,
                 me=me, csrf=person.csrf, community_id=community_id, people=people, scales=FEEDBACK_SCALES,
                 subjects=sorted(taking_part - {me}) if me in taking_part else [],
                 given=request.query_params.get("given"),
                 offered=any(o["member_id"] == me for o in job["offers"]),
                 problem=_problem(words, problem) if problem else None)


@router.post("/c/{community_id}/jobs/{job_id}/offers", response_class=HTMLResponse)
async def offer(community_id: str, job_id: str, request: Request) -> Response:
    return await _act(request, community_id, job_id, "/offers",
                      lambda form: {"why_next_step": form.get("why_next_step", "")})


@router.post("/c/{community_id}/jobs/{job_id}/assignment", response_class=HTMLResponse)
async def assign(community_id: str, job_id: str, request: Request) -> Response:
    return await _act(request, community_id, job_id, "/assignment",
                      lambda form: {"member_ids": [form.get("member_id", "")]})


@router.post("/c/{community_id}/jobs/{job_id}/referrals", response_class=HTMLResponse)
async def refer(community_id: str, job_id: str, request: Request) -> Response:
    return await _act(request, community_id, job_id, "/referrals",
                      lambda form: {"member_id": form.get("member_id", ""), "note": form.get("note", "")})


@router.post("/c/{community_id}/jobs/{job_id}/start", response_class=HTMLResponse)
async def start(community_id: str, job_id: str, request: Request) -> Response:
    return await _act(request, community_id, job_id, "/start", lambda form: None)


@router.post("/c/{community_id}/jobs/{job_id}/completion", response_class=HTMLResponse)
async def complete(community_id: str, job_id: str, request: Request) -> Response:
    return await _act(request, community_id, job_id, "/completion", lambda form: None)


@router.post("/c/{community_id}/jobs/{job_id}/cancellation", response_class=HTMLResponse)
async def cancel_job(community_id: str, job_id: str, request: Request) -> Response:
    return await _act(request, community_id, job_id, "/cancellation", lambda form: {"reason": form.get("reason", "")})


FEEDBACK_SCALES = ("quality", "reliability", "beyond", "collaboration")


@router.post("/c/{community_id}/jobs/{job_id}/feedback", response_class=HTMLResponse)
async def feedback(community_id: str, job_id: str, request: Request) -> Response:
    def body(form: Form) -> dict[str, Any]:
        # A missing or non-numeric rating is sent as it is, for the API to name the field.
        ratings = {scale: int(form[scale]) if form.get(scale, "").isdigit() else form.get(scale)
                   for scale in FEEDBACK_SCALES}
        return {"subject_id": form.get("subject_id", ""), **ratings, "comment": form.get("comment", "")}

    return await _act(request, community_id, job_id, "/feedback", body, then="#feedback")


async def _act(request: Request, community_id: str, job_id: str, action: str, body: Any,
               then: str = "") -> Response:
    found = await _signed_in(request)
    if isinstance(found, Response):
        return found
    api, person = found
    form = await _form(request, person)
    try:
        await api.call(person, community_id, "POST", f"/jobs/{job_id}{action}", body(form))
    except Problem as refused:
        return await _job_page(request, api, person, community_id, job_id, problem=refused)
    done = "?given=1" if action == "/feedback" else ""
    return RedirectResponse(f"/app/c/{community_id}/jobs/{job_id}{done}{then}", status_code=303)


# ---- my profile, and what partner communities see of it ----

SHAREABLE = ("display_name", "vector", "skills", "values", "reputation")


@router.get("/c/{community_id}/profile", response_class=HTMLResponse)
async def profile_page(community_id: str, request: Request) -> Response:
    found = await _signed_in(request)
    if isinstance(found, Response):
        return found
    return await _profile_page(request, *found, community_id)


async def _profile_page(request: Request, api: PersonApi, person: Person, community_id: str,
                        problem: Problem | None = None, form: dict[str, str] | None = None) -> Response:
    words = words_for(request)
    me = (person.membership(community_id) or {}).get("member_id")
    if me is None:
        return _page(request, "problem.html", words, status=403,
                     problem=_problem(words, Forbidden("not a member", slug="not-a-member")))
    member = await api.call(person, community_id, "GET", f"/members/{me}")
    community = await _community(api, person, community_id)
    return _page(request, "profile.html", words, status=problem.status if problem else 200, member=member,
                 community=community, csrf=person.csrf, shareable=SHAREABLE, form=form or {},
                 saved=request.query_params.get("saved"), problem=_problem(words, problem) if problem else None)


@router.post("/c/{community_id}/profile", response_class=HTMLResponse)
async def save_profile(community_id: str, request: Request) -> Response:
    return await _save(request, community_id, "profile", lambda form: {
        "display_name": form.get("display_name", "").strip(), "vector": form.get("vector", ""),
        "skills": _listed(form.get("skills", "")), "values": _listed(form.get("values", ""))})


@router.post("/c/{community_id}/sharing", response_class=HTMLResponse)
async def save_sharing(community_id: str, request: Request) -> Response:
    # The display name always travels with a card (partners must call the person something).
    return await _save(request, community_id, "consent", lambda form: {
        "shared_fields": ["display_name", *[f for f in form.all("shared_fields") if f != "display_name"]]})


async def _save(request: Request, community_id: str, what: str, body: Any) -> Response:
    found = await _signed_in(request)
    if isinstance(found, Response):
        return found
    api, person = found
    form = await _form(request, person)
    me = (person.membership(community_id) or {}).get("member_id", "")
    try:
        await api.call(person, community_id, "PUT", f"/members/{me}/{what}", body(form))
    except Problem as refused:
        return await _profile_page(request, api, person, community_id, problem=refused, form=form)
    return RedirectResponse(f"/app/c/{community_id}/profile?saved={what}", status_code=303)


# ---- sessions: register, the waitlist, cancel ----

@router.get("/c/{community_id}/sessions", response_class=HTMLResponse)
async def sessions_page(community_id: str, request: Request) -> Response:
    found = await _signed_in(request)
    if isinstance(found, Response):
        return found
    return await _sessions_page(request, *found, community_id)


async def _sessions_page(request: Request, api: PersonApi, person: Person, community_id: str,
                         problem: Problem | None = None) -> Response:
    words = words_for(request)
    me = (person.membership(community_id) or {}).get("member_id")
    if me is None:
        return _page(request, "problem.html", words, status=403,
                     problem=_problem(words, Forbidden("not a member", slug="not-a-member")))
    listed = await api.call(person, community_id, "GET", "/sessions?limit=50")
    community = await _community(api, person, community_id)
    sessions = [{**s, "mine": "registered" if me in s["registered"] else
                 "waitlisted" if me in s["waitlist"] else None,
                 "position": s["waitlist"].index(me) + 1 if me in s["waitlist"] else None,
                 "left": max(0, s["capacity"] - len(s["registered"]))}
                for s in listed["items"] if s["status"] == "scheduled"]
    return _page(request, "sessions.html", words, status=problem.status if problem else 200, sessions=sessions,
                 community=community, csrf=person.csrf, problem=_problem(words, problem) if problem else None)


@router.post("/c/{community_id}/sessions/{session_id}/registration", response_class=HTMLResponse)
async def register(community_id: str, session_id: str, request: Request) -> Response:
    return await _session_action(request, community_id, session_id, "/registrations")


@router.post("/c/{community_id}/sessions/{session_id}/cancellation", response_class=HTMLResponse)
async def cancel(community_id: str, session_id: str, request: Request) -> Response:
    return await _session_action(request, community_id, session_id, "/registrations/{me}/cancellation")


async def _session_action(request: Request, community_id: str, session_id: str, action: str) -> Response:
    found = await _signed_in(request)
    if isinstance(found, Response):
        return found
    api, person = found
    await _form(request, person)
    me = (person.membership(community_id) or {}).get("member_id", "")
    try:
        await api.call(person, community_id, "POST", f"/sessions/{session_id}{action.format(me=me)}", {})
    except Problem as refused:
        return await _sessions_page(request, api, person, community_id, problem=refused)
    return RedirectResponse(f"/app/c/{community_id}/sessions#session-{session_id}", status_code=303)


# ---- the directory ----

@router.get("/c/{community_id}/members", response_class=HTMLResponse)
async def directory(community_id: str, request: Request, skill: str = "", q: str = "", cursor: str = "") -> Response:
    found = await _signed_in(request)
    if isinstance(found, Response):
        return found
    api, person = found
    words = words_for(request)
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in (("skill", skill), ("q", q), ("cursor", cursor)) if v)
    try:
        page = await api.call(person, community_id, "GET", f"/members?limit=30&{query}")
    except Problem as refused:
        return _page(request, "problem.html", words, status=refused.status, problem=_problem(words, refused))
    community = await _community(api, person, community_id)
    more = None
    if page.get("next_cursor"):
        more = "&".join(f"{k}={quote(v, safe='')}" for k, v in (("skill", skill), ("q", q),
                                                                ("cursor", page["next_cursor"])) if v)
    return _page(request, "directory.html", words, community=community, members=page["items"], skill=skill, q=q,
                 more=more)

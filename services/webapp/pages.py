"""What every page of the member app shares: the signed-in visit, the page with its headers, the form a person
posts (from this site, with the session's CSRF token), a refusal framed in the person's language, and the one
shape of every action — post the form, call the API, then show the result or the same page with the refusal.
"""

from __future__ import annotations

import secrets
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData

from kizuna.errors import Forbidden, Problem, Unauthorized

from .client import Person, PersonApi
from .i18n import Words, words_for
from .refusals import framed

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
LANGUAGE_COOKIE_SECONDS = 365 * 86400


@dataclass
class Visit:
    """A signed-in person's request: who they are, their words, and the API as them."""

    request: Request
    api: PersonApi
    person: Person

    @cached_property
    def words(self) -> Words:
        return words_for(self.request)

    def member_id(self, community_id: str) -> str | None:
        membership = self.person.membership(community_id)
        return str(membership["member_id"]) if membership else None

    async def call(self, community_id: str, method: str, path: str, body: Any = None) -> Any:
        return await self.api.call(self.person, community_id, method, path, body)

    async def community(self, community_id: str) -> dict[str, Any]:
        return dict(await self.call(community_id, "GET", ""))

    def page(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        return page(self.request, template, self.words, status, csrf=self.person.csrf, **context)

    def refused(self, problem: Problem) -> HTMLResponse:
        return self.page("problem.html", status=problem.status, problem=framed(self.words, problem))

    def not_a_member(self) -> HTMLResponse:
        return self.refused(Forbidden("not a member of this community", slug="not-a-member"))


def page(request: Request, template: str, words: Words, status: int = 200, **context: Any) -> HTMLResponse:
    response = templates.TemplateResponse(request, template, {
        "_": words.gettext, "w": words, "lang": words.language, **context}, status_code=status)
    response.headers["cache-control"] = "no-store"
    response.headers["content-security-policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'")
    chosen = request.query_params.get("lang")
    if chosen in ("ja", "en"):
        response.set_cookie("kizuna-lang", chosen, max_age=LANGUAGE_COOKIE_SECONDS, path="/", samesite="lax")
    return response


async def visit(request: Request) -> Visit | Response:
    """The signed-in visit, or the way to the sign-in page (and back here afterwards)."""
    api = PersonApi(request)
    try:
        return Visit(request, api, await api.person())
    except Unauthorized:
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/sign-in?next={quote(here, safe='')}", status_code=303)


async def show(request: Request, render: Callable[..., Awaitable[Response]], *args: Any) -> Response:
    """A page for a signed-in person: ``render(visit, *args)``."""
    found = await visit(request)
    if isinstance(found, Response):
        return found
    return await render(found, *args)


class Form(dict[str, str]):
    """A posted form's fields (the last value of each), and every value of the repeated ones."""

    def __init__(self, data: FormData) -> None:
        super().__init__({key: str(value) for key, value in data.items()})
        self.data = data

    def all(self, key: str) -> list[str]:
        return [str(value) for value in self.data.getlist(key)]


async def posted_form(request: Request, person: Person) -> Form:
    """The posted form, once it is known to come from this site with the session's CSRF token."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise Forbidden("this request came from another site", slug="cross-site-request")
    form = Form(await request.form())
    if not secrets.compare_digest(form.pop("csrf_token", ""), person.csrf):
        raise Forbidden("the form's CSRF token is missing or wrong; reload the page and try again",
                        slug="csrf-token-invalid")
    return form


Redisplay = Callable[[Visit, Problem, Form], Awaitable[Response]]


async def command(request: Request, community_id: str, method: str, path: str, body: Callable[[Form], Any], *,
                  redisplay: Redisplay, then: Callable[[Any], str] | str, front_door: bool = False) -> Response:
    """Every action: the posted form becomes an API call as the person (``{me}`` in the path is their member
    id here; ``front_door``: before they are a member, through ``/v1/join/{community}…``); then the page
    showing the result, or — refused — the same page with the refusal and what they typed."""
    found = await visit(request)
    if isinstance(found, Response):
        return found
    form = await posted_form(request, found.person)
    try:
        if front_door:
            answer = await found.api.front_door(found.person, community_id, method, path, body(form))
        else:  # replaced, not formatted: an id in the path may hold braces of its own
            answer = await found.call(community_id, method,
                                      path.replace("{me}", found.member_id(community_id) or ""), body(form))
    except Problem as refused:
        return await redisplay(found, refused, form)
    return RedirectResponse(then(answer) if callable(then) else then, status_code=303)


def listed(text: str) -> list[str]:
    """A comma-separated field (Japanese commas too) as a list."""
    return [item.strip() for item in text.replace("、", ",").split(",") if item.strip()]


def whole_number(typed: str) -> int | str:
    """A count as typed — full-width digits too, as Japanese keyboards give them; anything else is passed on
    as it is, for the API to name the field."""
    number = unicodedata.normalize("NFKC", typed).strip()
    return int(number) if number.isdigit() else number

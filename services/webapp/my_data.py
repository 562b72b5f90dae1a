"""My data: ask for everything Kizuna holds about me (docs/data-rights.md, "Export"), watch it being gathered,
and download it as a readable document in my language or as JSON. Kept for 7 days, then deleted.

While an export runs, a small script of this site (static/progress.js) follows it and moves the progress bar,
then loads the page again when it is ready, so the links appear; without the script, "Look again" does."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from kizuna.errors import Invalid, Problem

from .client import SESSION_COOKIES
from .i18n import words_for
from .pages import Visit, framed, page, posted_form, show, visit

router = APIRouter()


@router.get("/my-data")
async def my_data_page(request: Request) -> Response:
    return await show(request, _my_data)


async def _my_data(v: Visit, problem: Problem | None = None) -> Response:
    exports = (await v.api.own(v.person, "GET", "/exports"))["exports"]
    latest = exports[0] if exports else None
    running = latest is not None and latest["status"] == "running"
    return v.page("my_data.html", status=problem.status if problem else 200, latest=latest, running=running,
                  earlier=exports[1:], active=[m for m in v.person.me["memberships"] if m["status"] == "active"],
                  problem=framed(v.words, problem) if problem else None)


@router.post("/my-data/exports")
async def request_export(request: Request) -> Response:
    found = await visit(request)
    if isinstance(found, Response):
        return found
    await posted_form(request, found.person)
    try:
        await found.api.own(found.person, "POST", "/exports", {"language": found.words.language})
    except Problem as refused:
        return await _my_data(found, refused)
    return RedirectResponse("/app/my-data", status_code=303)


@router.post("/my-data/erasure")
async def erase_me(request: Request) -> Response:
    """Erases the person (docs/data-rights.md, "A person's erasure"): refused while they are still in a
    community (they leave each first, and can be erased from it as they leave). Afterwards nobody is signed
    in: a page that needs no sign-in says it is done."""
    found = await visit(request)
    if isinstance(found, Response):
        return found
    form = await posted_form(request, found.person)
    if form.get("confirm") != "yes":
        return await _my_data(found, Invalid("confirm", "tick the box to say you understand it cannot be undone"))
    try:
        await found.api.own(found.person, "POST", "/erasure")
    except Problem as refused:
        return await _my_data(found, refused)
    done = RedirectResponse("/app/erased", status_code=303)
    for name in SESSION_COOKIES:
        done.delete_cookie(name, path="/")
    return done


@router.get("/erased")
async def erased_page(request: Request) -> Response:
    return page(request, "erased.html", words_for(request))

"""A phone in Debian's Chromium for each signed-in person, and what every page must pass on it: it fits a
390-px screen and axe-core finds nothing serious or critical."""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Error as PlaywrightError

from tests.identity.journey import browser, csrf, sign_in_by_email
from tests.identity.smtp import SmtpInbox
from tests.reliability.harness import ROSTERS, roster_rows
from tests.support import Ecosystem, eventually, launch_chromium

PHONE = {"width": 390, "height": 844}
# Numbers as a Japanese keyboard often types them: full-width digits (U+FF10…).
FULL_WIDTH = {n: "".join(chr(0xFF10 + int(d)) for d in n) for n in ("0", "2", "8", "32", "48")}
JSON = {"accept": "application/json"}
WITHOUT_SCRIPTS: weakref.WeakSet[Any] = weakref.WeakSet()  # phones with JavaScript turned off


async def everyone_knows(eco: Ecosystem, cid: str, members: int) -> bool:
    for service in ROSTERS:
        if len((await roster_rows(eco, service, [cid]))[cid]) < members:
            return False
    return True


@asynccontextmanager
async def phones(eco: Ecosystem, *people: tuple[httpx.AsyncClient, str],
                 scripts: bool = True) -> AsyncIterator[tuple[Any, ...]]:
    """One Chromium, and a phone-sized page for each (signed-in person, language) — one browser context each;
    ``scripts=False`` turns JavaScript off in them, to show a flow needs none.
    No request may leave the deployment and nothing may break the Content-Security-Policy: either fails the
    test when the phones are put away (such a request is stopped, not sent)."""
    from playwright.async_api import async_playwright

    trouble: list[str] = []
    async with async_playwright() as pw:
        chromium = await launch_chromium(pw)
        try:
            yield tuple([await _phone(chromium, eco, person, language, trouble, scripts)
                         for person, language in people])
        finally:
            await chromium.close()
    assert not trouble, trouble


async def _phone(chromium: Any, eco: Ecosystem, person: httpx.AsyncClient, language: str,
                 trouble: list[str], scripts: bool = True) -> Any:
    context = await chromium.new_context(viewport=PHONE, locale="ja-JP" if language == "ja" else "en-GB",
                                         extra_http_headers={"accept-language": language},
                                         java_script_enabled=scripts)
    await context.add_cookies([{"name": name, "value": str(value), "url": eco.url("gateway")}
                               for name, value in person.cookies.items()])
    home = urlsplit(eco.url("gateway")).netloc

    async def only_this_deployment(route: Any) -> None:
        if urlsplit(route.request.url).netloc == home:
            await route.continue_()
        else:
            trouble.append(f"a request left the deployment: {route.request.url}")
            await route.abort()

    await context.route("**/*", only_this_deployment)
    page = await context.new_page()
    if not scripts:
        WITHOUT_SCRIPTS.add(page)
    page.on("console", lambda message: trouble.append(f"{page.url}: {message.text}")
            if "Content Security Policy" in message.text else None)
    return page


async def checked(page: Any) -> None:
    """The page fits a phone and axe-core finds nothing serious or critical on it. A click on a link just
    before may still be loading the next page (no document yet): the check waits until one has loaded."""
    width = None
    for _ in range(50):
        await page.wait_for_load_state("load")
        try:
            width = await page.evaluate("document.documentElement && document.documentElement.scrollWidth")
        except PlaywrightError as error:  # the page navigated away while being measured: measure the next one
            if "context was destroyed" not in str(error):
                raise
        if width is not None:
            break
    assert width is not None, f"{page.url} never finished loading a document"
    assert width <= PHONE["width"], f"{page.url} is {width}px wide on a {PHONE['width']}px screen"
    results = await _axe(page)
    serious = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
               for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert not serious, (page.url, serious)


async def _axe(page: Any) -> Any:
    """axe-core's findings on the page. axe is a script, so on a phone with scripts off it looks at the same
    document in a twin page that may run scripts: the page's HTML as it is now, at its address, with the
    stylesheets it loads (a server-rendered page without scripts is exactly its HTML)."""
    if page not in WITHOUT_SCRIPTS:
        return await Axe().run(page)
    html, here = await page.content(), page.url
    twin_context = await page.context.browser.new_context(viewport=PHONE)
    try:
        twin = await twin_context.new_page()
        await twin.route(lambda url: url == here,
                         lambda route: route.fulfill(body=html, content_type="text/html; charset=utf-8"))
        await twin.goto(here)
        return await Axe().run(twin)
    finally:
        await twin_context.close()


async def by_keyboard(page: Any, button: str, most_tabs: int = 60) -> None:
    """Presses a button as someone without a pointer does: Tab from the top of the page until it has the
    focus, then Enter. Fails when Tab never reaches it (not focusable, or hidden from the keyboard)."""
    await page.locator("body").focus()
    for _ in range(most_tabs):
        await page.keyboard.press("Tab")
        focused = await page.evaluate("document.activeElement && document.activeElement.innerText || ''")
        if focused.strip() == button:
            await page.keyboard.press("Enter")
            return
    raise AssertionError(f"{button!r} is not reached by Tab within {most_tabs} presses on {page.url}")


async def given_role(eco: Ecosystem, cid: str, member_id: str, role: str) -> None:
    """The operator gives a member a role (or the ownership), then waits until every read model that decides
    on roles — each service's roster and the gateway's directory — knows it, so the pages act on it at once."""
    async with httpx.AsyncClient(base_url=eco.url("gateway"), headers=eco.operator_headers(), timeout=30) as operator:
        if role == "owner":
            answer = await operator.post(f"/v1/communities/{cid}/ownership",
                                         json={"to_member_id": member_id, "reason": "hands over"})
        else:
            answer = await operator.put(f"/v1/communities/{cid}/members/{member_id}/role",
                                        json={"role": role, "reason": "steps up"})
        assert answer.status_code == 200, answer.text

    async def everywhere() -> bool:
        for service, table in ROSTERS.items():
            conn = await asyncpg.connect(eco.database_url(service))
            try:
                known = await conn.fetchval(f"SELECT role FROM {table} WHERE community_id = $1 AND member_id = $2",
                                            cid, member_id)
            finally:
                await conn.close()
            if known != role:
                return False
        return True

    await eventually(everywhere, timeout=30)


async def member_id_of(person: httpx.AsyncClient, cid: str) -> str:
    me = (await person.get("/v1/me", headers=JSON)).json()
    return str(next(m["member_id"] for m in me["memberships"] if m["community_id"] == cid))


@asynccontextmanager
async def hikari_makers(eco: Ecosystem, inbox: SmtpInbox) -> AsyncIterator[tuple[str, httpx.AsyncClient,
                                                                                 httpx.AsyncClient]]:
    """A community (Hikari Makers, founded by Yui) and two of its members, Hana and Ken, each signed in by
    email in a browser of their own — once every read model a page's command is decided on knows all three."""
    async with httpx.AsyncClient(base_url=eco.url("gateway"), timeout=30, headers=eco.operator_headers()) as operator:
        founded = await operator.post("/v1/communities", json={
            "name": "Hikari Makers", "owner_display_name": "Yui", "purpose": "Makers helping makers",
            "values": ["trust", "craft"]})
        assert founded.status_code == 201, founded.text
    cid = str(founded.json()["community_id"])
    async with browser(eco) as hana, browser(eco) as ken:
        for person, name in ((hana, "Hana"), (ken, "Ken")):
            await sign_in_by_email(person, inbox, f"{name.lower()}-{cid[:8]}@app.test")

            async def joined(person: httpx.AsyncClient = person, name: str = name) -> bool:
                answer = await person.post(f"/v1/join/{cid}", json={"display_name": name},
                                           headers={"x-csrf-token": await csrf(person), **JSON})
                return answer.status_code == 201 or "already" in answer.text

            await eventually(joined)

            async def active(person: httpx.AsyncClient = person) -> bool:
                me = (await person.get("/v1/me", headers=JSON)).json()
                return any(m["community_id"] == cid and m["status"] == "active" for m in me["memberships"])

            await eventually(active)
        # Without this the first post can meet a roster a second behind (403 not-a-member), as clean runs showed.
        await eventually(lambda: everyone_knows(eco, cid, 3), timeout=30)
        yield cid, hana, ken

"""The built-in dashboard in headless Chromium: sign in with a token, see an event created through
the API appear in the live feed."""

from __future__ import annotations

import shutil

import httpx
import pytest

from tests.support import BusPublisher, Ecosystem, issue, launch_chromium

pytestmark = pytest.mark.browser


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="Debian's chromium is not installed (make test installs it where apt is available)")
async def test_dashboard_shows_live_events(stack: tuple[BusPublisher, httpx.AsyncClient], ecosystem: Ecosystem) -> None:
    from playwright.async_api import async_playwright

    bus, http = stack
    cid, owner = await bus.found({"aiko": "member"}, name="Hikari")
    token = await issue(http, ecosystem, cid, owner)
    async with async_playwright() as pw:
        browser = await launch_chromium(pw)
        try:
            page = await browser.new_page()
            await page.goto(f"{ecosystem.url('gateway')}/dashboard#token={token}")
            await page.wait_for_selector("text=Hikari", timeout=15000)
            await page.wait_for_selector("#status:has-text('live')", timeout=15000)
            await page.wait_for_selector("li.event[data-type='MemberJoined']", timeout=15000)

            await bus.publish("members", f"community-{cid}", cid, "MemberJoined", {
                "member_id": "sora", "display_name": "Sora Tanaka", "role": "member", "joined_via": "invitation"})
            await page.wait_for_selector("li.event:has-text('Sora Tanaka')", timeout=15000)
            await page.wait_for_selector("#partners:has-text('none')", timeout=15000)  # no partners yet
            members_card = await page.inner_text("#cards")
            assert "members / cap" in members_card.lower() and "/ 150" in members_card
        finally:
            await browser.close()


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="Debian's chromium is not installed (make test installs it where apt is available)")
async def test_dashboard_fits_a_phone_and_stops_cleanly_when_its_token_ends(
        stack: tuple[BusPublisher, httpx.AsyncClient], ecosystem: Ecosystem) -> None:
    from playwright.async_api import async_playwright

    bus, http = stack
    cid, owner = await bus.found({"aiko": "member"}, name="Hikari")
    await issue(http, ecosystem, cid, owner)  # the gateway's directory knows the owner now
    # Long enough to load the page on a loaded machine (with 6 s, a clean run saw it expire before the first
    # figures came), short enough to see it end within the test.
    short_lived = ecosystem.token(cid, owner, "owner", ttl=15)
    async with async_playwright() as pw:
        browser = await launch_chromium(pw)
        try:
            page = await browser.new_page(viewport={"width": 390, "height": 844})
            await page.goto(f"{ecosystem.url('gateway')}/dashboard#token={short_lived}")
            await page.wait_for_selector("text=Hikari", timeout=15000)
            await page.wait_for_selector("#partners table, #partners .empty", timeout=15000)
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"the dashboard is {width}px wide on a 390px screen"
            # The token expires: the page says so and asks for a new one, instead of failing on forever.
            await page.wait_for_selector("#signin:not([hidden])", timeout=40000)
            assert "stopped" in await page.inner_text("#why")
            assert await page.evaluate("sessionStorage.getItem('kizuna-token')") is None
        finally:
            await browser.close()

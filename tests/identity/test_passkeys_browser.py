"""A person in Debian's Chromium, on a 390-px phone screen: signs in with the emailed link, joins a community
from its join link, becomes the founder of another with the owner's code and opens its dashboard, adds a passkey
(Chromium's virtual authenticator, over the DevTools protocol), signs out, and signs back in with the
passkey alone (issue 20). A replayed passkey answer signs nobody in. Real members, identity and gateway
processes and a real SMTP server; the deployment's public origin is http://localhost (WebAuthn refuses IP
addresses as relying parties)."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kizuna.devstack import NatsServer, PostgresServer
from tests.identity.conftest import THROUGH_A_PROXY
from tests.identity.smtp import SmtpInbox
from tests.support import Ecosystem, launch_chromium

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(shutil.which("chromium") is None,
                                 reason="Debian's chromium is not installed (make test installs it where apt is)")]
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def on_localhost(postgres: PostgresServer, nats_server: NatsServer, workdir: Path,
                 inbox: SmtpInbox) -> Iterator[tuple[Ecosystem, str]]:
    unique = uuid.uuid4().hex[:10]
    eco = Ecosystem(postgres=postgres, nats=nats_server, prefix=f"t{unique}", workdir=workdir / unique)
    origin = f"http://localhost:{eco.ports['gateway']}"
    eco.start("members", "identity", "gateway", **inbox.env(), **THROUGH_A_PROXY, KIZUNA_PUBLIC_URL=origin)
    yield eco, origin
    eco.stop_all()


async def _no_sideways_scroll(page: Any) -> None:
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{page.url} is {width}px wide on a {PHONE['width']}px screen"


async def test_a_person_adds_a_passkey_and_signs_in_with_it_on_a_phone(
        on_localhost: tuple[Ecosystem, str], inbox: SmtpInbox) -> None:
    from playwright.async_api import async_playwright

    eco, origin = on_localhost
    async with async_playwright() as pw:
        browser = await launch_chromium(pw)
        try:
            context = await browser.new_context(viewport=PHONE, locale="ja-JP", extra_http_headers={
                "accept-language": "ja,en;q=0.5", "x-forwarded-for": "198.18.7.7"})
            page = await context.new_page()
            devtools = await context.new_cdp_session(page)
            await devtools.send("WebAuthn.enable")
            await devtools.send("WebAuthn.addVirtualAuthenticator", {"options": {
                "protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
                "hasUserVerification": True, "isUserVerified": True, "automaticPresenceSimulation": True}})

            await page.goto(f"{origin}/sign-in")
            assert "サインイン" in await page.title()  # Japanese first, from the browser's language
            await _no_sideways_scroll(page)
            await page.fill("#email", "mei@example.test")
            await page.click("button[type=submit]")
            await page.wait_for_selector("text=mei@example.test")
            await page.goto(await inbox.next_link("mei@example.test"))
            await page.click("#continue")
            await page.wait_for_url(f"{origin}/me")
            await _no_sideways_scroll(page)

            # The join link, in the browser: the page's form joins through the front door as this person, and
            # opens the community's home.
            async with httpx.AsyncClient(base_url=origin, headers=eco.operator_headers()) as operator:
                cid = (await operator.post("/v1/communities", json={"name": "Hikari", "owner_display_name": "Yui"}
                                           )).json()["community_id"]
            await page.goto(f"{origin}/join/{cid}")
            await page.fill("#display_name", "Mei")
            await page.click("#join button[type=submit]")
            await page.wait_for_url(f"{origin}/app/c/{cid}", timeout=30_000)  # the community's home, once in
            await page.goto(f"{origin}/me")
            for _ in range(50):  # the membership reaches the account page over the bus
                if "Hikari" in await page.inner_text("#communities, main"):
                    break
                await page.wait_for_timeout(200)
                await page.reload()
            assert "Hikari" in await page.inner_text("main")
            await _no_sideways_scroll(page)

            # The owner's code, in the browser: Mei becomes the founder of Sora the operator made, and the
            # dashboard then opens for her without a pasted token (from her sign-in).
            async with httpx.AsyncClient(base_url=origin, headers=eco.operator_headers()) as operator:
                sora = (await operator.post("/v1/communities", json={"name": "Sora", "owner_display_name": "Mei"}
                                            )).json()
                claim = (await operator.post(
                    f"/v1/communities/{sora['community_id']}/members/{sora['owner_member_id']}/account-claim",
                    json={})).json()
            await page.goto(f"{origin}{claim['claim_path']}")
            await page.click("#claim button[type=submit]")
            await page.wait_for_url(f"{origin}/app/c/{sora['community_id']}", timeout=30_000)
            await page.goto(f"{origin}/me")
            for _ in range(50):
                if "Sora" in await page.inner_text("main"):
                    break
                await page.wait_for_timeout(200)
                await page.reload()
            await page.goto(f"{origin}/dashboard")
            await page.wait_for_selector("#community:has-text('Sora')", timeout=15000)
            await _no_sideways_scroll(page)
            await page.goto(f"{origin}/me")

            await page.click("#add-passkey")
            await page.wait_for_selector("#passkeys li")
            await page.click("#sign-out")
            await page.wait_for_url(f"{origin}/sign-in")

            answers: list[dict[str, Any]] = []
            page.on("request", lambda request: answers.append(json.loads(request.post_data or "{}"))
                    if request.url.endswith("/sign-in/passkey") else None)
            await page.click("#passkey-sign-in")
            await page.wait_for_url(f"{origin}/me")
            assert "mei@example.test" in await page.inner_text("main")
            await _no_sideways_scroll(page)
        finally:
            await browser.close()

    # The same answer again — a replay, by someone who captured it — finds its challenge spent.
    [answer] = answers
    async with httpx.AsyncClient(base_url=origin, headers={"x-forwarded-for": "198.18.7.8"}) as thief:
        options = await thief.post("/sign-in/passkey/options")
        assert options.status_code == 200
        replayed = await thief.post("/sign-in/passkey", json=answer)
        assert replayed.status_code == 400, replayed.text
        assert (await thief.get("/v1/me")).status_code == 401

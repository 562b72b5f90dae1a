"""/docs and /redoc work air-gapped (issue 19, item 7): every asset they load comes from the gateway
itself, and Swagger UI renders the merged contract in Chromium with every other host unreachable."""

from __future__ import annotations

import re
import shutil

import httpx
import pytest

from tests.support import BusPublisher, Ecosystem, launch_chromium


async def test_docs_pages_load_nothing_from_elsewhere(stack: tuple[BusPublisher, httpx.AsyncClient]) -> None:
    _, http = stack
    for page in ("/docs", "/redoc"):
        html = (await http.get(page)).text
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert assets, page
        for asset in assets:
            assert asset.startswith("/"), f"{page} loads {asset} from another host"
            answer = await http.get(asset)
            assert answer.status_code == 200 and len(answer.content) > 100, asset


@pytest.mark.browser
@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="Debian's chromium is not installed (make test installs it where apt is available)")
async def test_swagger_ui_renders_with_every_other_host_unreachable(
    stack: tuple[BusPublisher, httpx.AsyncClient], ecosystem: Ecosystem
) -> None:
    from playwright.async_api import Route, async_playwright

    gateway = ecosystem.url("gateway")
    elsewhere: list[tuple[str, str]] = []

    async def only_the_gateway(route: Route) -> None:
        if route.request.url.startswith(gateway):
            await route.continue_()
        else:
            elsewhere.append((route.request.resource_type, route.request.url))
            await route.abort()

    async with async_playwright() as pw:
        browser = await launch_chromium(pw)
        try:
            page = await browser.new_page()
            await page.route("**/*", only_the_gateway)
            await page.goto(f"{gateway}/docs")
            await page.wait_for_selector(".swagger-ui .opblock-tag", timeout=20000)
            assert await page.get_by_text("/v1/tokens", exact=True).count() > 0
            await page.goto(f"{gateway}/redoc")
            await page.wait_for_selector(".api-content h2", timeout=20000)  # ReDoc rendered the operations
            assert "/v1/tokens" in await page.content()
        finally:
            await browser.close()
    # ReDoc's bundle asks cdn.redoc.ly for the small logo of its "API docs by Redocly" link: refused here, and
    # the page works without it. Nothing the pages need — scripts, styles, the document — comes from elsewhere.
    assert all(kind == "image" for kind, _ in elsewhere), elsewhere

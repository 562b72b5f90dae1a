"""A person's steps as a browser takes them, over HTTP against the gateway (cookies kept by the client)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.identity.smtp import SmtpInbox
from tests.support import Ecosystem, launch_chromium


def browser(eco: Ecosystem) -> httpx.AsyncClient:
    """A person's browser, from an address of its own (198.18.0.0/15, the benchmarking range, via the trusted
    proxy's X-Forwarded-For: tests/identity/conftest.py)."""
    address = f"198.18.{secrets.randbelow(256)}.{1 + secrets.randbelow(254)}"
    return httpx.AsyncClient(base_url=eco.url("gateway"), timeout=30, follow_redirects=False,
                             headers={"accept": "text/html", "accept-language": "en", "x-forwarded-for": address})


async def sign_in_by_email(client: httpx.AsyncClient, inbox: SmtpInbox, address: str, next_path: str = "/me") -> str:
    """Asks for a link, opens the email, presses the button; returns where the browser was sent."""
    asked = await client.post("/sign-in/email", data={"email": address, "next": next_path})
    assert asked.status_code == 200, asked.text
    link = await inbox.next_link(address)
    path = urlsplit(link).path
    page = await client.get(path)
    assert page.status_code == 200 and "<form" in page.text
    done = await client.post(path)
    assert done.status_code == 303, done.text
    return done.headers["location"]


async def csrf(client: httpx.AsyncClient) -> str:
    me = await client.get("/v1/me", headers={"accept": "application/json"})
    assert me.status_code == 200, me.text
    return str(me.json()["csrf_token"])


async def community_token(client: httpx.AsyncClient, community_id: str) -> httpx.Response:
    return await client.post("/v1/me/tokens", json={"community_id": community_id},
                             headers={"x-csrf-token": await csrf(client), "accept": "application/json"})


@asynccontextmanager
async def chromium_as(person: httpx.AsyncClient, eco: Ecosystem, language: str = "en") -> AsyncIterator[Any]:
    """A page in Debian's Chromium, 390 px wide, signed in as the person this client signed in (its cookie)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await launch_chromium(pw)
        try:
            context = await chromium.new_context(viewport={"width": 390, "height": 844},
                                                 extra_http_headers={"accept-language": language})
            await context.add_cookies([{"name": name, "value": str(value), "url": eco.url("gateway")}
                                       for name, value in person.cookies.items()])
            yield await context.new_page()
        finally:
            await chromium.close()

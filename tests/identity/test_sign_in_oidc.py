"""Signing in with an OpenID Provider through the gateway, as a browser does it: the sign-in page's button,
the provider's login and consent, the callback — against a real provider (oidc-provider on Node.js)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from kizuna.devstack import NatsServer, PostgresServer
from services.identity.oidc import callback_path
from tests.identity.conftest import THROUGH_A_PROXY
from tests.identity.journey import browser, csrf, sign_in_by_email
from tests.identity.oidc_fixture import OidcProviderFactory, OidcProviderProcess, sign_in_at_provider
from tests.identity.smtp import SmtpInbox
from tests.support import Ecosystem

JSON = {"accept": "application/json"}


@pytest.fixture(scope="module")
def with_provider(oidc_provider_factory: OidcProviderFactory, postgres: PostgresServer,
                  nats_server: NatsServer, workdir: Path, inbox: SmtpInbox) -> Iterator[Ecosystem]:
    unique = uuid.uuid4().hex[:10]
    eco = Ecosystem(postgres=postgres, nats=nats_server, prefix=f"t{unique}", workdir=workdir / unique)
    redirect = eco.url("gateway") + callback_path("test")
    provider: OidcProviderProcess = oidc_provider_factory(
        [{"client_id": "kizuna", "client_secret": "kizuna-secret", "redirect_uris": [redirect]}])
    eco.start("members", "identity", "gateway", **inbox.env(), **THROUGH_A_PROXY, KIZUNA_OIDC_PROVIDERS="test",
              KIZUNA_OIDC_TEST_ISSUER=provider.issuer, KIZUNA_OIDC_TEST_CLIENT_ID="kizuna",
              KIZUNA_OIDC_TEST_CLIENT_SECRET="kizuna-secret", KIZUNA_OIDC_TEST_DISPLAY_NAME="Test ID",
              KIZUNA_OIDC_TEST_OPERATOR_CLAIM="name=Test person chief")
    yield eco
    eco.stop_all()


async def _to_provider(client: httpx.AsyncClient) -> str:
    page = await client.get("/sign-in?next=/me")
    assert "Test ID" in page.text and "/sign-in/oidc/test" in page.text
    started = await client.get("/sign-in/oidc/test", params={"next": "/me"})
    assert started.status_code == 302, started.text
    return started.headers["location"]


async def test_a_person_signs_in_with_the_provider_and_is_the_same_person_by_email_link(
        with_provider: Ecosystem, inbox: SmtpInbox) -> None:
    async with browser(with_provider) as aiko:
        callback = await sign_in_at_provider(aiko, await _to_provider(aiko), "aiko")
        assert callback.startswith(with_provider.url("gateway") + callback_path("test"))
        landed = await aiko.get(callback)
        assert landed.status_code == 303 and landed.headers["location"] == "/me", landed.text
        me = (await aiko.get("/v1/me", headers={"accept": "application/json"})).json()
        assert me["emails"] == ["aiko@example.test"]  # the provider vouched for it (email_verified)
        assert [i["subject"] for i in me["identities"]] == ["aiko"]
    # The same address by email link, in another browser: the same person, not a second account.
    async with browser(with_provider) as elsewhere:
        await sign_in_by_email(elsewhere, inbox, "aiko@example.test")
        again = (await elsewhere.get("/v1/me", headers={"accept": "application/json"})).json()
        assert again["person_id"] == me["person_id"]


async def test_a_callback_with_a_wrong_state_or_from_another_browser_signs_nobody_in(
        with_provider: Ecosystem) -> None:
    async with browser(with_provider) as victim, browser(with_provider) as attacker:
        callback = await sign_in_at_provider(attacker, await _to_provider(attacker), "mallory")
        # Login CSRF: the attacker's finished sign-in, opened in the victim's browser, is refused there...
        planted = await victim.get(callback)
        assert planted.status_code == 400 and planted.json()["type"].endswith("oidc-state-mismatch"), planted.text
        assert (await victim.get("/v1/me", headers={"accept": "application/json"})).status_code == 401
        # ...and a state that is not the one this browser was given is refused too.
        parts = urlsplit(callback)
        tampered = await attacker.get(parts.path + "?" + parts.query.replace("state=", "state=x"))
        assert tampered.status_code == 400, tampered.text
        assert (await attacker.get("/v1/me", headers={"accept": "application/json"})).status_code == 401


async def test_operator_rights_follow_the_providers_claim(with_provider: Ecosystem) -> None:
    async with browser(with_provider) as chief, browser(with_provider) as aiko:
        for person, login in ((chief, "chief"), (aiko, "aiko-2")):
            assert (await person.get(await sign_in_at_provider(person, await _to_provider(person), login))
                    ).status_code == 303
        assert (await chief.get("/v1/me", headers=JSON)).json()["operator"] is True
        assert (await aiko.get("/v1/me", headers=JSON)).json()["operator"] is False
        issued = await chief.post("/v1/me/operator-token", headers={**JSON, "x-csrf-token": await csrf(chief)})
        assert issued.status_code == 201, issued.text
        founded = await chief.post("/v1/communities", headers={"authorization": f"Bearer {issued.json()['token']}"},
                                   json={"name": "Kumo", "owner_display_name": "Chief"})
        assert founded.status_code == 201, founded.text
        refused = await aiko.post("/v1/me/operator-token", headers={**JSON, "x-csrf-token": await csrf(aiko)})
        assert refused.status_code == 403

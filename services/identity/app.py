"""Wiring of the identity service: people, sign-in and browser sessions.

Identity is a service of its own, not part of the gateway: it keeps personal data (addresses, provider
accounts) that no community may read, in a database of its own, and it follows the members service's
events like any other service. The gateway stays the one public edge: it forwards the sign-in pages and
the person's own routes here with their cookies, and issues community tokens for a signed-in person
after asking this service what they hold (docs/identity.md).
"""

from __future__ import annotations

import asyncio
import os
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path

import httpx
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from kizuna.retention import INBOX
from kizuna.roster import RosterFollower
from kizuna.service import Runtime, ServiceSpec, create_service
from kizuna.settings import ServiceSettings

from . import handlers
from .api import IdentityConfig, router
from .domain import SessionTimeouts
from .mail import Mailer, MailSettings
from .oidc import OidcClient, load_providers
from .projections import INLINE_PROJECTIONS, MIGRATIONS, READ_MODEL_TABLES, RETENTION, SUBSCRIPTIONS

# Served without a bearer token: the session cookie (or nothing, before signing in) authenticates here.
PUBLIC_PATHS = ("/healthz", "/readyz", "/sign-in", "/sign-in/", "/v1/sign-in/", "/sign-out", "/me", "/me/", "/v1/me",
                "/internal/", "/static/identity/")


class IdentitySettings(BaseSettings):
    """Settings only the identity service reads (``KIZUNA_`` prefix like the shared ones)."""

    model_config = SettingsConfigDict(env_prefix="KIZUNA_", extra="ignore")
    session_idle_hours: float = Field(24 * 14, gt=0, description="A browser session ends after this long unused.")
    session_absolute_days: float = Field(30, gt=0, description="…and this long after signing in, whatever happens.")
    email_link_minutes: float = Field(15, gt=0, description="How long a sign-in link works (once).")
    email_links_per_address_per_hour: int = Field(5, ge=1, description="Sign-in links one address may be sent.")
    email_links_per_client_per_hour: int = Field(20, ge=1, description="Sign-in links one client may ask for.")


SPEC = ServiceSpec(
    name="identity",
    title="Kizuna identity",
    description="People and how they sign in: email links, OpenID Connect, browser sessions, and each "
                "person's account in the communities they belong to.",
    routers=[router],
    migrations=MIGRATIONS,
    inline_projections=INLINE_PROJECTIONS,
    subscriptions=SUBSCRIPTIONS,
    read_model_tables=READ_MODEL_TABLES,
    retention=(INBOX, *RETENTION),
    erasure=[RosterFollower("roster").erasure()],  # an erased member's name leaves the roster (kizuna.erasure)
    public_paths=PUBLIC_PATHS,
)


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = settings or ServiceSettings(service_name="identity")
    own = IdentitySettings()
    # Keeps no cookies: a provider's cookies belong to the person's browser, never to this server.
    http = httpx.AsyncClient(timeout=15, cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])))
    providers = {config.name: OidcClient(config, http) for config in load_providers(os.environ)}

    async def close_http_on_shutdown(_: Runtime) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await http.aclose()

    app = create_service(ServiceSpec(**{**SPEC.__dict__, "background": [close_http_on_shutdown]}), settings)
    app.state.identity = IdentityConfig(
        timeouts=SessionTimeouts(idle_seconds=own.session_idle_hours * 3600,
                                 absolute_seconds=own.session_absolute_days * 86400),
        limits=handlers.LinkLimits(ttl_seconds=own.email_link_minutes * 60,
                                   per_address_per_hour=own.email_links_per_address_per_hour,
                                   per_client_per_hour=own.email_links_per_client_per_hour),
        public_url=settings.public_url, providers=providers, mailer=Mailer(MailSettings()))
    app.mount("/static/identity", StaticFiles(directory=Path(__file__).parent / "static"), name="identity-static")
    return app

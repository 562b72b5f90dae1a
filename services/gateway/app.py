"""Wiring of the gateway: the one public API, its security and the dashboards."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.routing import Route

from kizuna.addresses import AddressGuard
from kizuna.auth import load_private_key, public_pem
from kizuna.contract import PUBLIC_PATHS
from kizuna.service import Runtime, ServiceSpec, create_service
from kizuna.settings import ServiceSettings
from services.webapp.api import router as webapp_router

from .api import TokenBucket, forwarding_router, make_http_client, router
from .consumers import ERASURE, SUBSCRIPTIONS
from .erasure import router as erasure_router
from .exports import projections as export_projections
from .exports.api import internal_operator_token
from .exports.api import router as exports_router
from .exports.job import fetcher, run_exports
from .federation import projections as federation_projections
from .federation.api import router as federation_router
from .federation.consumers import federation_reactions
from .federation.delivery import Deliverer, RetryPolicy
from .federation.handlers import parse_message, receive
from .federation.identity import Identity
from .front_door import calendar_router, unsubscribe_router
from .front_door import router as front_door_router
from .memory import GatewayMemory
from .metrics import federation_outbox
from .openapi import MergedOpenAPI
from .people import router as people_router
from .projections import INLINE_PROJECTIONS, MIGRATIONS, READ_MODEL_TABLES, RETENTION
from .rate_limits import parse_networks
from .routes import RouteTable
from .stream import router as stream_router

SPEC = ServiceSpec(
    name="gateway",
    title="Kizuna",
    description="The public API of a Kizuna deployment: communities, members, referrals, job requests, "
                "feedback, sessions and goals under /v1, community tokens, health figures, a live event "
                "stream and the built-in dashboard. Errors are RFC 9457 problem details.",
    # the /v1 catch-all last
    # The member app (services/webapp) is its own package; it holds nothing and calls this gateway's public
    # API as the signed-in person, so it is served from this process (docs/member-app.md).
    routers=[router, stream_router, front_door_router, calendar_router, unsubscribe_router, people_router,
             exports_router, erasure_router, federation_router, webapp_router, forwarding_router],
    migrations=[*MIGRATIONS, *federation_projections.MIGRATIONS, *export_projections.MIGRATIONS],
    inline_projections=[*INLINE_PROJECTIONS, federation_projections.apply],
    subscriptions=SUBSCRIPTIONS,
    reactions=[federation_reactions],
    read_model_tables=[*READ_MODEL_TABLES, *federation_projections.READ_MODEL_TABLES],
    metric_samplers=[federation_outbox],
    retention=RETENTION,
    erasure=[*ERASURE, *export_projections.ERASURE],
    # /v1/me and the sign-in routes are authenticated by the browser session cookie (services/gateway/people.py).
    public_paths=[*PUBLIC_PATHS, "/.well-known/", "/v1/join/", "/federation/inbox", "/v1/me", "/v1/me/",
                  "/v1/sign-in/"],
    openapi_tags=[
        {"name": "tokens", "description": "Community tokens: issue, revoke, verify"},
        {"name": "dashboards", "description": "Health figures and the live event stream"},
        {"name": "exports", "description": "Everything Kizuna holds about a person, as JSON and as a readable "
                                           "document, gathered in the background (docs/data-rights.md)"},
        {"name": "federation", "description": "Partnerships with communities on other deployments, signed "
                                              "messages between gateways, and delivery (docs/federation.md)"},
    ],
)


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = settings or ServiceSettings(service_name="gateway")
    if not settings.jwt_private_key:
        raise SystemExit("KIZUNA_JWT_PRIVATE_KEY is required by the gateway (see deploy/README.md)")
    signing_key = load_private_key(settings.jwt_private_key)
    # The gateway accepts its own signing key plus any older keys still listed (rotation).
    accepted_keys = settings.jwt_public_keys + "\n" + public_pem(signing_key)
    settings = settings.model_copy(update={"jwt_public_keys": accepted_keys})
    http = make_http_client()
    identity = Identity.from_settings(settings.public_url, settings.federation_private_key, signing_key,
                                      settings.federation_retired_keys, settings.federation_key_valid_hours)
    address_guard = AddressGuard(settings.federation_allow_private_addresses)
    policy = RetryPolicy(settings.federation_retry_base_seconds, settings.federation_retry_cap_seconds,
                         settings.federation_give_up_hours * 3600)

    async def close_http_on_shutdown(_: Runtime) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await http.aclose()

    async def deliver_federation(runtime: Runtime) -> None:
        async def deliver_locally(body: bytes) -> str:
            return await receive(runtime.store, parse_message(body), identity.origin, identity.origin)

        await Deliverer(runtime.pool, http, identity, policy, deliver_locally, guard=address_guard,
                        database_url=runtime.settings.database_url).run()

    async def gather_exports(runtime: Runtime) -> None:
        fetch = fetcher(runtime, http, settings.service_replicas(), settings.identity_replicas(),
                        lambda: internal_operator_token(app.state), settings.upstream_timeout_seconds)
        await run_exports(runtime, fetch)

    spec = ServiceSpec(**{**SPEC.__dict__, "background": [close_http_on_shutdown, deliver_federation,
                                                          gather_exports]})
    app = create_service(spec, settings)
    merged = MergedOpenAPI(app, settings.service_url_map(), http)
    _serve_merged_openapi(app, merged)
    app.state.routes = RouteTable(merged)
    app.state.signing_key = signing_key
    app.state.federation_identity = identity
    app.state.federation_address_guard = address_guard
    app.state.http = http
    app.state.upstream_timeout = settings.upstream_timeout_seconds
    app.state.rate_limiter = TokenBucket(settings.rate_limit_per_second, settings.rate_limit_burst)
    app.state.trusted_proxies = parse_networks(settings.trusted_proxies)
    app.state.memory = GatewayMemory(settings.database_url, settings.health_cache_seconds,
                                     settings.retention_revoked_tokens_days * 86400)
    _listen_for_read_model_changes(app)
    return app


def _listen_for_read_model_changes(app: FastAPI) -> None:
    """The listener that keeps the health cache and the revoked ids fresh runs for the life of the
    process, from the start (it needs PostgreSQL only, not the bus)."""
    service_lifespan = app.router.lifespan_context
    memory: GatewayMemory = app.state.memory

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with service_lifespan(app):
            listener = asyncio.create_task(memory.listener.run())
            try:
                yield
            finally:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener

    app.router.lifespan_context = lifespan


def _serve_merged_openapi(app: FastAPI, merged: MergedOpenAPI) -> None:
    """Replace FastAPI's own /openapi.json with the merged document (the /docs page reads it too)."""
    app.router.routes[:] = [r for r in app.router.routes if not (isinstance(r, Route) and r.path == "/openapi.json")]

    async def openapi_json(_: object) -> JSONResponse:
        return JSONResponse(await merged.document())

    app.router.routes.insert(0, Route("/openapi.json", openapi_json, include_in_schema=False))

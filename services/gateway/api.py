"""The public API: tokens, keys, health, the dashboard, and /v1 forwarding (the event stream is stream.py)."""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import time
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from kizuna import auth
from kizuna.auth import Authenticator, Principal, key_id
from kizuna.domain import StrictModel
from kizuna.errors import Forbidden, NotFound, Unauthorized
from kizuna.handling import CommandContext
from kizuna.problems import PROBLEM_RESPONSES, problem_response
from kizuna.service import runtime_of

from . import handlers, projections
from .domain import Scope, service_for, session_revocation_id
from .idempotency import idempotent
from .memory import GatewayMemory
from .proxy import MAX_BODY_BYTES, forward
from .rate_limits import TokenBucket, caller_key

router = APIRouter(responses=PROBLEM_RESPONSES)
# The /v1 catch-all forwarder, included after every other router: routes are matched in order, so the
# gateway's own routes (tokens, health, events) come first and are found after a few patterns, not forty.
forwarding_router = APIRouter(responses=PROBLEM_RESPONSES)
DASHBOARD = Path(__file__).parent / "static" / "dashboard.html"


async def gateway_principal(request: Request) -> Principal:
    """Authenticates and refuses revoked tokens (only the gateway knows revocations)."""
    authenticator: Authenticator = request.app.state.authenticator
    header = request.headers.get("authorization")
    if header is None and request.scope["path"].endswith("/events") and request.query_params.get("access_token"):
        header = f"Bearer {request.query_params['access_token']}"  # EventSource cannot send headers
    who = authenticator.authenticate(header)
    if who.token_id is None:  # the operator
        return who
    memory: GatewayMemory = request.app.state.memory
    revoked = await _revoked(request, memory, who.token_id)
    if not revoked and who.session_id is not None:  # exchanged for a browser session: ended with it
        revoked = await _revoked(request, memory, session_revocation_id(who.session_id))
    if revoked:
        raise Unauthorized("the token has been revoked", slug="revoked-token")
    return await _with_current_role(request, who)


async def _revoked(request: Request, memory: GatewayMemory, token_id: str) -> bool:
    revoked = memory.revocations.is_revoked(token_id)
    if revoked is None:  # the listener is down: the database decides
        async with runtime_of(request).pool.acquire() as conn:
            revoked = await projections.is_revoked(conn, token_id)
    return revoked


async def _with_current_role(request: Request, who: Principal) -> Principal:
    """Authority comes from the member's standing now, not from the role their token was issued with.

    A member who left or was removed is refused; a member whose role changed acts with the new role,
    here and in the service the request is forwarded to (which reads the role from the token it is
    given, so the gateway hands it one re-signed with the current role, for the rest of the original's
    life and with the same id, so a revocation of the original still reaches it)."""
    if who.community_id is None or who.member_id is None:
        return who
    memory: GatewayMemory = request.app.state.memory
    community_id, member_id = who.community_id, who.member_id

    async def lookup() -> str | None:
        async with runtime_of(request).pool.acquire() as conn:
            return await projections.standing(conn, community_id, member_id)

    role = await memory.standings.role_of(community_id, member_id, lookup)
    if role == projections.GONE:
        raise Unauthorized("the token's member is no longer in this community", slug="member-gone")
    if role is None or role == who.role:  # None: not in the directory yet, so nothing is known to be stale
        return who
    current = dataclasses.replace(who, role=role)
    ttl = max(1, int((who.expires_at or time.time() + 60) - time.time()))
    token = auth.issue_token(request.app.state.signing_key, community_id=community_id, member_id=member_id,
                             role=role, scope=who.scope, ttl_seconds=ttl, token_id=who.token_id,
                             session_id=who.session_id)
    request.state.forward_authorization = f"Bearer {token}"
    return current


def require_reader(who: Principal, community_id: str) -> None:
    """Owners, facilitators, dashboard tokens and the operator may read the community's figures."""
    who.require_community(community_id)
    if who.is_operator or who.scope == "dashboard":
        return
    who.require_role(community_id, "facilitator")


# ---- tokens ----

class TokenRequest(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "community_id": "5d1c0a6e-4a8e-4f57-9a53-1f0e5a0c9b11", "member_id": "a1f3…", "scope": "member",
        "ttl_seconds": 3600}]})
    community_id: str = Field(min_length=1, max_length=64)
    member_id: str = Field(min_length=1, max_length=64)
    scope: Scope = "member"
    ttl_seconds: int = Field(3600, ge=60, le=30 * 24 * 3600)


class TokenResponse(BaseModel):
    token: str
    token_id: str
    community_id: str
    member_id: str
    role: str
    scope: Scope
    expires_at: str


class RevocationRequest(StrictModel):
    reason: str = Field("", max_length=500)


@router.post("/v1/tokens", status_code=201, response_model=TokenResponse, tags=["tokens"],
             summary="Issue a community token (operator, or the community's owner)")
async def issue_token(body: TokenRequest, request: Request,
                      who: Principal = Depends(gateway_principal)) -> TokenResponse:
    runtime = runtime_of(request)
    ctx = CommandContext.from_request(request, who, body.community_id)
    # The caller's own authority (re-signed if their role changed) asks the members service about a
    # member the bus has not brought to the directory yet.
    authorization = getattr(request.state, "forward_authorization", None) or request.headers["authorization"]
    role_now = handlers.members_service_role(request.app.state.http, runtime.settings.service_url_map()["members"],
                                             authorization, request.app.state.upstream_timeout)
    token, event = await handlers.issue(runtime.store, request.app.state.signing_key, who, ctx,
                                        community_id=body.community_id, member_id=body.member_id,
                                        scope=body.scope, ttl_seconds=body.ttl_seconds, role_now=role_now)
    return TokenResponse(token=token, **event.model_dump(include={"token_id", "community_id", "member_id", "role",
                                                                  "scope", "expires_at"}))


@router.post("/v1/tokens/{token_id}/revocation", status_code=204, tags=["tokens"],
             summary="Revoke a token (operator, the community's owner, or its holder)")
async def revoke_token(token_id: str, request: Request, body: RevocationRequest | None = None,
                       who: Principal = Depends(gateway_principal)) -> Response:
    ctx = CommandContext.from_request(request, who)
    await handlers.revoke_token(runtime_of(request).store, who, ctx, token_id, body.reason if body else "")
    memory: GatewayMemory = request.app.state.memory
    memory.revocations.add(token_id)  # refused here at once; other replicas hear the notification
    return Response(status_code=204)


@router.get("/.well-known/jwks.json", tags=["tokens"], summary="Public keys that verify community tokens")
async def jwks(request: Request) -> dict[str, Any]:
    authenticator: Authenticator = request.app.state.authenticator
    keys = []
    for kid, key in authenticator.public_keys.items():
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        keys.append({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": kid,
                     "x": base64.urlsafe_b64encode(raw).decode().rstrip("=")})
    return {"keys": keys}


# ---- dashboards ----

@router.get("/v1/communities/{community_id}/health", tags=["dashboards"], response_model=dict[str, Any],
            summary="Community health for owners, facilitators and dashboards")
async def community_health(community_id: str, request: Request, few_ties: int = Query(1, ge=0, le=150),
                           who: Principal = Depends(gateway_principal)) -> Response:
    """One statement for all the figures; the encoded answer is kept per community until the read model
    notifies a change to it, or for at most ``KIZUNA_HEALTH_CACHE_SECONDS`` (services/gateway/memory.py)."""
    require_reader(who, community_id)

    async def compute() -> bytes:
        async with runtime_of(request).pool.acquire() as conn:
            figures = await projections.health(conn, community_id, few_ties)
        if figures is None:
            raise NotFound("community not found")
        return json.dumps(figures, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()

    memory: GatewayMemory = request.app.state.memory
    return Response(await memory.health.get(community_id, few_ties, compute), media_type="application/json")


@router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
async def dashboard() -> HTMLResponse:
    return HTMLResponse(_dashboard_html())


@functools.cache
def _dashboard_html() -> str:
    """The page listens for every event type the catalog knows, so new events show without editing it."""
    from kizuna.catalog import events_by_service

    types = sorted({event.__name__ for events in events_by_service().values() for event in events})
    return DASHBOARD.read_text().replace("__EVENT_TYPES__", json.dumps(types))


# ---- forwarding to the services ----

@forwarding_router.api_route("/v1/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
                             include_in_schema=False)
async def forward_to_service(path: str, request: Request) -> Response:
    allowed = await request.app.state.routes.methods_for(f"/v1/{path}")
    if allowed is not None and request.method not in allowed:  # before authentication, as for any route
        return problem_response(405, "method-not-allowed", "Method not allowed",
                                f"{request.method} is not one of {', '.join(sorted(allowed))}", request.url.path,
                                headers={"Allow": ", ".join(sorted(allowed))})
    who = await gateway_principal(request)
    service = service_for(path)
    parts = [p for p in path.split("/") if p]
    if service is None:
        raise NotFound(f"no route /v1/{path}")
    if parts[0] == "communities" and len(parts) >= 2:
        who.require_community(parts[1])
    if who.scope == "dashboard" and request.method != "GET":
        raise Forbidden("a dashboard token is read-only")
    state = request.app.state
    wait = state.rate_limiter.take(caller_key(who))
    if wait:
        return problem_response(429, "rate-limited", "Too many requests", "slow down and retry later",
                                request.url.path, headers={"Retry-After": str(max(1, round(wait)))})
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return problem_response(413, "body-too-large", "Request body too large",
                                f"the body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}", request.url.path)
    base = state.settings.service_replicas().get(service)
    if not base:
        raise NotFound(f"no route /v1/{path}")
    key = request.headers.get("idempotency-key")
    if key and request.method != "GET":
        return await idempotent(request, who, key, body, state.upstream_timeout,
                                lambda: forward(state.http, base, request, body, state.upstream_timeout))
    return await forward(state.http, base, request, body, state.upstream_timeout)


def make_http_client() -> httpx.AsyncClient:
    """One client for every upstream call. It keeps no cookies: the gateway forwards each person's own cookie
    header, and a jar would hand one person's session, set by the identity service, to the next request."""
    return httpx.AsyncClient(limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
                             cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])))


__all__ = ["TokenBucket", "key_id", "make_http_client", "router"]

"""Where people come in: the identity service's pages and routes at the public edge, and community tokens
for a signed-in person.

The gateway forwards the sign-in pages, the person's own routes and their assets to the identity service
with the browser's cookies and passes its cookies back; it never reads a session itself. For a signed-in
person it asks the identity service (with the same cookie and CSRF token) what they hold, and issues the
community token — the gateway remains the only issuer and the only place revocations are known. A token
exchanged for a session names it (``sid``); when the identity service answers that a session ended, the
gateway records ``SessionTokensRevoked`` before answering, so those tokens stop working at once, on every
replica (the registry's notification), and after any rebuild.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from kizuna.auth import issue_token
from kizuna.domain import StrictModel
from kizuna.errors import NotFound, Problem
from kizuna.eventstore import NO_STREAM
from kizuna.handling import CommandContext, to_new_events
from kizuna.problems import PROBLEM_RESPONSES
from kizuna.service import runtime_of

from .domain import SessionTokensRevoked, TokenIssued, session_revocation_id
from .memory import GatewayMemory
from .proxy import in_turn
from .rate_limits import client_address

router = APIRouter(responses=PROBLEM_RESPONSES, tags=["people"])
FORWARDED = ("cookie", "content-type", "accept", "accept-language", "user-agent", "origin", "sec-fetch-site",
             "x-csrf-token", "x-correlation-id", "traceparent")
PASSED_BACK = ("content-type", "location", "set-cookie", "cache-control", "content-security-policy",
               "referrer-policy", "retry-after", "etag", "last-modified")
ENDED_HEADER = "kizuna-session-ended"
COMMUNITY_TOKEN_SECONDS = 15 * 60


async def _ask_identity(request: Request, path: str, *, method: str | None = None, body: bytes | None = None,
                        content_type: str | None = None) -> httpx.Response:
    state = request.app.state
    headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARDED}
    if content_type is not None:
        headers["content-type"] = content_type
    # Who is asking, for identity's per-client limits: the address beyond our own proxies, as for every limit.
    headers["x-kizuna-client"] = client_address(request, state.trusted_proxies)
    content = await request.body() if body is None else body
    for base in in_turn(state.settings.identity_replicas()):
        try:
            return await state.http.request(method or request.method, f"{base}{path}",
                                            params=request.query_params if body is None else None,
                                            content=content, headers=headers,
                                            timeout=state.upstream_timeout, follow_redirects=False)
        except httpx.InvalidURL as error:
            raise NotFound(f"no route {request.url.path}") from error
        except httpx.ConnectError:  # refused before anything was sent: the next replica may answer
            continue
        except httpx.HTTPError as error:
            raise _identity_unavailable() from error
    raise _identity_unavailable()


def _identity_unavailable() -> Problem:
    return Problem("signing in is not available just now; try again in a minute", status=503,
                   slug="identity-unavailable", title="Service unavailable")


async def _revoke_session_tokens(request: Request, session_id: str, reason: str) -> None:
    runtime = runtime_of(request)
    event = SessionTokensRevoked(session_id=session_id, reason=reason)
    ctx = CommandContext(actor="system:sign-out")
    stream = f"session-{session_id}"
    if not await runtime.store.read_stream(stream, from_version=1):
        await runtime.store.append(stream, to_new_events([event], ctx.metadata(None)), NO_STREAM)
    memory: GatewayMemory = request.app.state.memory
    memory.revocations.add(session_revocation_id(session_id))


async def forward_to_identity(request: Request) -> Response:
    # The raw, still percent-encoded path: decoded, it may hold characters no URL may carry.
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    upstream = await _ask_identity(request, raw_path.decode("latin-1"))
    ended = upstream.headers.get(ENDED_HEADER)
    if ended and 200 <= upstream.status_code < 400:
        await _revoke_session_tokens(request, ended, "session ended")
    response = Response(upstream.content, status_code=upstream.status_code)
    for name in PASSED_BACK:
        for value in upstream.headers.get_list(name):
            response.headers.append(name, value)
    return response


# The identity service's public paths (its own document lists them); everything else there stays inside.
for path, methods in (("/sign-in", ["GET"]), ("/sign-in/email", ["POST"]), ("/sign-in/email/{token}", ["GET", "POST"]),
                      ("/sign-in/oidc/{provider}", ["GET"]), ("/v1/sign-in/oidc/{provider}/callback", ["GET"]),
                      ("/sign-out", ["POST"]), ("/me", ["GET"]), ("/me/sessions/{session_id}/revocation", ["POST"]),
                      ("/v1/me", ["GET"]), ("/v1/me/brief", ["GET"]), ("/me/invitations", ["POST"]),
                      ("/me/passkeys/options", ["POST"]),
                      ("/me/passkeys", ["POST"]), ("/me/passkeys/{credential_id}/removal", ["POST"]),
                      ("/sign-in/passkey/options", ["POST"]), ("/sign-in/passkey", ["POST"]),
                      ("/static/identity/{asset}", ["GET"])):
    # /v1/me is part of the API's document; the pages and the provider's callback (a browser redirect) are not.
    router.add_api_route(path, forward_to_identity, methods=methods, include_in_schema=path.startswith("/v1/me"),
                         summary="Forwarded to the identity service (docs/identity.md)")


async def _grant(request: Request, path: str, body: bytes) -> tuple[dict[str, Any], int] | Response:
    """What identity grants the signed-in person (and for how many seconds), or identity's refusal as it is."""
    upstream = await _ask_identity(request, path, method="POST", body=body, content_type="application/json")
    if upstream.status_code != 200:
        return Response(upstream.content, status_code=upstream.status_code,
                        headers={"content-type": upstream.headers.get("content-type", "application/problem+json")})
    grant = upstream.json()
    ttl = min(COMMUNITY_TOKEN_SECONDS, int(grant["session_seconds_left"]))
    if ttl < 60:
        raise Problem("your sign-in is about to end; sign in again", status=401, slug="session-ending",
                      title="Sign in again")
    return grant, ttl


class SessionTokenRequest(StrictModel):
    community_id: str = Field(min_length=1, max_length=64)


class SessionTokenResponse(BaseModel):
    token: str
    token_id: str
    community_id: str
    member_id: str
    role: str
    expires_at: str


@router.post("/v1/me/tokens", status_code=201, response_model=SessionTokenResponse,
             summary="A short-lived community token for the signed-in person (session cookie and X-CSRF-Token)")
async def token_for_session(body: SessionTokenRequest, request: Request) -> Any:
    answer = await _grant(request, "/internal/grants", body.model_dump_json().encode())
    if isinstance(answer, Response):
        return answer
    grant, ttl = answer
    token_id = str(uuid.uuid4())
    runtime = runtime_of(request)
    event = TokenIssued(token_id=token_id, community_id=body.community_id, member_id=grant["member_id"],
                        role=grant["role"], scope="member", issued_by="sign-in",
                        expires_at=datetime.fromtimestamp(time.time() + ttl, UTC).isoformat())
    ctx = CommandContext(actor=f"member:{grant['member_id']}", community_id=body.community_id)
    await runtime.store.append(f"token-{token_id}", to_new_events([event], ctx.metadata(body.community_id)), NO_STREAM)
    token = issue_token(request.app.state.signing_key, community_id=body.community_id, member_id=grant["member_id"],
                        role=grant["role"], ttl_seconds=ttl, token_id=token_id, session_id=grant["session_id"])
    return SessionTokenResponse(token=token, token_id=token_id, community_id=body.community_id,
                                member_id=grant["member_id"], role=grant["role"], expires_at=event.expires_at)


class OperatorTokenResponse(BaseModel):
    token: str
    token_id: str
    expires_at: str


@router.post("/v1/me/operator-token", status_code=201, response_model=OperatorTokenResponse,
             summary="A short-lived operator token for a signed-in person with operator rights (docs/identity.md)")
async def operator_token_for_session(request: Request) -> Any:
    answer = await _grant(request, "/internal/operator-grants", b"{}")
    if isinstance(answer, Response):
        return answer
    grant, ttl = answer
    token_id = str(uuid.uuid4())
    token = issue_token(request.app.state.signing_key, community_id="*", member_id="operator", role="operator",
                        scope="operator", ttl_seconds=ttl, token_id=token_id, session_id=grant["session_id"])
    return OperatorTokenResponse(token=token, token_id=token_id,
                                 expires_at=datetime.fromtimestamp(time.time() + ttl, UTC).isoformat())


async def account_for_visitor(request: Request, community_id: str) -> str | None:
    """The signed-in person's account in the community, when the request carries a session cookie; None for
    someone not signed in. A cookie that names no live session is refused rather than ignored: joining
    anonymously would leave the person with a membership they could never find again."""
    if not any(name.endswith("kizuna-session") for name in request.cookies):
        return None
    upstream = await _ask_identity(request, "/internal/accounts", method="POST",
                                   body=SessionTokenRequest(community_id=community_id).model_dump_json().encode(),
                                   content_type="application/json")
    if upstream.status_code != 200:
        raise identity_refusal(upstream, "sign in again")
    return str(upstream.json()["account"])


def identity_refusal(upstream: httpx.Response, unsaid: str) -> Problem:
    """Identity's refusal of a session (signed out, expired, a wrong CSRF token) as this gateway's own problem,
    with identity's type and words (``unsaid`` when it gave none)."""
    problem = upstream.json() if upstream.headers.get("content-type", "").endswith("json") else {}
    return Problem(str(problem.get("detail") or unsaid), status=upstream.status_code,
                   slug=str(problem.get("type", "")).rsplit("/", 1)[-1] or "not-signed-in",
                   title=str(problem.get("title") or "Not signed in"))

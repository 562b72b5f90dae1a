"""Identity's routes: the sign-in pages and the person's own view, served to browsers through the gateway
(which forwards these paths with their cookies), and two internal routes the gateway asks on a signed-in
person's behalf (their account in a community, and what a community token for them would carry).

Everything here is authenticated by the browser session cookie, not by a bearer token. Every state-changing
request of a signed-in person carries the session's CSRF token (a form field or ``X-CSRF-Token``), and any
unsafe request whose ``Origin`` or ``Sec-Fetch-Site`` says it came from another site is refused.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field, ValidationError

from kizuna.auth import Principal, principal
from kizuna.domain import StrictModel
from kizuna.errors import Forbidden, NotFound, Problem, Unauthorized
from kizuna.handling import execute
from kizuna.i18n import language_of, words_for
from kizuna.personal_data import events_naming
from kizuna.service import Runtime

from . import handlers, passkeys, projections
from .domain import BrowserSession, Person, SessionTimeouts, normalise_email, safe_next
from .mail import Mailer
from .oidc import OidcClient, OidcError, PendingSignIn, callback_path

router = APIRouter()
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
LOCALES = Path(__file__).parent / "locales"  # the sign-in and account pages' words (`make messages`)
BINDING_COOKIE = "kizuna-oidc"


@dataclass
class IdentityConfig:
    timeouts: SessionTimeouts
    limits: handlers.LinkLimits
    public_url: str
    providers: dict[str, OidcClient]
    mailer: Mailer

    @property
    def secure(self) -> bool:
        return self.public_url.startswith("https://")

    @property
    def cookie_name(self) -> str:
        # __Host-: only over HTTPS, for this host alone and the whole site (no Domain, Path=/), so neither a
        # sibling subdomain nor plain HTTP can plant or read it. A plain-HTTP deployment (make up on
        # 127.0.0.1) cannot use the prefix: browsers refuse Secure cookies there.
        return "__Host-kizuna-session" if self.secure else "kizuna-session"


def config_of(request: Request) -> IdentityConfig:
    config: IdentityConfig = request.app.state.identity
    return config


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def csrf_of(secret: str) -> str:
    """The session's CSRF token: derived from its secret (so it needs no storage and dies with the session),
    one way (the token in a page gives nothing back)."""
    return hashlib.sha256(f"kizuna-csrf:{secret}".encode()).hexdigest()


def _same_site(request: Request, config: IdentityConfig) -> None:
    """Unsafe requests from another site are refused before anything else (login CSRF included)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise Forbidden("this request came from another site", slug="cross-site-request")
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":
        expected = urlsplit(config.public_url)
        given = urlsplit(origin)
        if (given.scheme, given.netloc) != (expected.scheme, expected.netloc):
            raise Forbidden("this request came from another site", slug="cross-site-request")


async def _session(request: Request) -> tuple[BrowserSession, str] | None:
    config = config_of(request)
    secret = request.cookies.get(config.cookie_name)
    session = await handlers.current_session(runtime_of(request).pool, secret, config.timeouts)
    return (session, str(secret)) if session is not None else None


async def _signed_in(request: Request, *, csrf: str | None = None,
                     check_csrf: bool = False) -> tuple[BrowserSession, str]:
    found = await _session(request)
    if found is None:
        raise Unauthorized("sign in first", slug="not-signed-in")
    if check_csrf:
        _same_site(request, config_of(request))
        given = csrf or request.headers.get("x-csrf-token")
        if not given or not secrets.compare_digest(csrf_of(found[1]), given):
            raise Forbidden("the form's CSRF token is missing or wrong; reload the page and try again",
                            slug="csrf-token-invalid")
    return found


def _set_session_cookie(response: Response, config: IdentityConfig, secret: str) -> None:
    response.set_cookie(config.cookie_name, secret, max_age=int(config.timeouts.absolute_seconds), path="/",
                        secure=config.secure, httponly=True, samesite="lax")


def _page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    words = words_for(request, LOCALES)
    response = templates.TemplateResponse(request, template, {
        "_": words.gettext, "lang": words.language,
        "passkeys_possible": passkeys.possible(config_of(request).public_url), **context}, status_code=status)
    response.headers["cache-control"] = "no-store"
    response.headers["content-security-policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self' " + " ".join(_provider_origins(request)))
    response.headers["referrer-policy"] = "no-referrer"  # a link's token never leaks through Referer
    return response


def _provider_origins(request: Request) -> list[str]:
    origins = []
    for client in config_of(request).providers.values():
        parts = urlsplit(client.config.issuer)
        origins.append(f"{parts.scheme}://{parts.netloc}")
    return origins


def _client(request: Request) -> str:
    return request.headers.get("x-kizuna-client") or (request.client.host if request.client else "unknown")


# ---- sign-in pages ----

@router.get("/sign-in", response_class=HTMLResponse, summary="The sign-in page: an email link or a provider")
async def sign_in_page(request: Request, next: str | None = None) -> HTMLResponse:
    providers = [{"name": n, "display_name": c.config.display_name} for n, c in config_of(request).providers.items()]
    return _page(request, "sign_in.html", next=safe_next(next), providers=providers)


class EmailLinkRequest(StrictModel):
    email: str = Field(min_length=3, max_length=320)
    next: str | None = Field(None, max_length=512)


@router.post("/sign-in/email", summary="Email a single-use sign-in link (form or JSON)")
async def request_email_link(request: Request) -> Response:
    config = config_of(request)
    _same_site(request, config)
    wants_json = request.headers.get("content-type", "").startswith("application/json")
    try:
        if wants_json:
            body = EmailLinkRequest.model_validate_json(await request.body())
        else:
            form = await request.form()
            body = EmailLinkRequest.model_validate({k: str(v) for k, v in form.items() if k != "next" or v})
    except ValidationError as error:  # the same 422 problem, naming the field, as any other body gets
        raise RequestValidationError(error.errors(include_url=False)) from error
    email = normalise_email(body.email)
    await handlers.send_email_link(runtime_of(request).pool, config.mailer, config.limits, email=email,
                                   next_path=safe_next(body.next), client=_client(request),
                                   public_url=config.public_url, language=language_of(request))
    minutes = max(1, round(config.limits.ttl_seconds / 60))
    if wants_json:
        return JSONResponse({"sent_to": email, "expires_in_seconds": int(config.limits.ttl_seconds)}, status_code=202)
    return _page(request, "link_sent.html", email=email, minutes=minutes)


@router.get("/sign-in/email/{token}", response_class=HTMLResponse,
            summary="The page a sign-in link opens: one button, so a mail scanner's visit spends nothing")
async def confirm_email_link(token: str, request: Request) -> HTMLResponse:
    return _page(request, "confirm.html", token=token)


@router.post("/sign-in/email/{token}", summary="Spend a sign-in link: signs this browser in")
async def use_email_link(token: str, request: Request) -> Response:
    config = config_of(request)
    _same_site(request, config)
    try:
        email, next_path = await handlers.use_email_link(runtime_of(request).pool, token)
    except Problem as problem:
        await handlers.record_refusal(runtime_of(request).store, "email", problem.slug or "refused")
        if problem.status == 410 and "text/html" in request.headers.get("accept", ""):
            return _page(request, "link_invalid.html", status=410)
        raise
    person_id = await handlers.person_for_email(runtime_of(request).store, email, "email")
    return await _signed_in_response(request, person_id, "email", next_path)


async def _signed_in_response(request: Request, person_id: str, method: str, next_path: str) -> Response:
    config = config_of(request)
    secret, session_id = await handlers.start_session(
        runtime_of(request).pool, person_id, method,  # type: ignore[arg-type]
        request.headers.get("user-agent", ""), request.cookies.get(config.cookie_name))
    await handlers.record_sign_in(runtime_of(request).store, person_id, method, session_id)  # type: ignore[arg-type]
    response = RedirectResponse(safe_next(next_path), status_code=303)
    _set_session_cookie(response, config, secret)
    response.delete_cookie(BINDING_COOKIE, path="/")
    return response


@router.get("/sign-in/oidc/{provider}", summary="Sign in with a configured OpenID Provider")
async def begin_oidc(provider: str, request: Request, next: str | None = None) -> Response:
    config = config_of(request)
    client = config.providers.get(provider)
    if client is None:
        raise NotFound("no such sign-in provider")
    redirect_uri = f"{config.public_url.rstrip('/')}{callback_path(provider)}"
    url, pending = await client.begin(redirect_uri)
    binding = secrets.token_urlsafe(24)  # ties the callback to this browser (no login CSRF with a stolen state)
    async with runtime_of(request).pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO oidc_pending (state_sha256, binding_sha256, provider, nonce, code_verifier, redirect_uri, "
            "next_path) VALUES ($1, $2, $3, $4, $5, $6, $7)", handlers.digest(pending.state),
            handlers.digest(binding), provider, pending.nonce, pending.code_verifier, redirect_uri, safe_next(next))
    response = RedirectResponse(url, status_code=302)
    response.set_cookie(BINDING_COOKIE, binding, max_age=600, path="/", secure=config.secure, httponly=True,
                        samesite="lax")
    return response


@router.get("/v1/sign-in/oidc/{provider}/callback", summary="Where the OpenID Provider sends the person back")
async def finish_oidc(provider: str, request: Request, state: str | None = None, code: str | None = None,
                      error: str | None = None) -> Response:
    config = config_of(request)
    client = config.providers.get(provider)
    if client is None:
        raise NotFound("no such sign-in provider")
    binding = request.cookies.get(BINDING_COOKIE, "")
    async with runtime_of(request).pool.acquire() as conn:
        row = await conn.fetchrow(
            "DELETE FROM oidc_pending WHERE state_sha256 = $1 AND binding_sha256 = $2 AND provider = $3 "
            "RETURNING nonce, code_verifier, redirect_uri, next_path, created_at",
            handlers.digest(state or ""), handlers.digest(binding), provider)
    if row is None:
        await handlers.record_refusal(runtime_of(request).store, "oidc", "oidc-state-mismatch")
        raise OidcError("this sign-in was not started here, or was already finished; start again",
                        slug="oidc-state-mismatch")
    pending = PendingSignIn(provider=provider, state=str(state), nonce=row["nonce"], code_verifier=row["code_verifier"],
                            redirect_uri=row["redirect_uri"], created_at=row["created_at"].timestamp())
    try:
        identity = await client.finish(pending, state=state, code=code, error=error,
                                       iss=request.query_params.get("iss"))
    except OidcError as refused:
        await handlers.record_refusal(runtime_of(request).store, "oidc", refused.slug or "oidc-refused")
        raise
    person_id = await handlers.person_for_identity(
        runtime_of(request).store, issuer=identity.issuer, subject=identity.subject,
        email=normalise_email(identity.email) if identity.email else None, email_verified=identity.email_verified)
    if client.config.operator_claim is not None:
        await execute(runtime_of(request).store, f"person-{person_id}", Person,
                      lambda p: p.follow_operator_claim(provider, client.config.grants_operator(identity.claims)),
                      handlers.SYSTEM)
    return await _signed_in_response(request, person_id, "oidc", row["next_path"])


class CsrfForm(StrictModel):
    """The body of a form button: only the session's CSRF token (or none, when sent in X-CSRF-Token)."""

    csrf_token: str | None = Field(None, max_length=128)


# ---- passkeys ----

PASSKEY_COOKIE = "kizuna-passkey"


class PasskeyAnswer(StrictModel):
    credential: dict[str, Any]
    name: str = Field("", max_length=80)
    next: str | None = Field(None, max_length=512)


@router.post("/me/passkeys/options", summary="Begin adding a passkey (signed in, with the CSRF token)")
async def passkey_registration_options(request: Request) -> dict[str, Any]:
    session, _ = await _signed_in(request, check_csrf=True)
    runtime = runtime_of(request)
    async with runtime.pool.acquire() as conn:
        emails = await projections.emails_of(conn, session.person_id)
    return await passkeys.registration_options(runtime.store, config_of(request).public_url, session.person_id,
                                               session.session_id, emails[0] if emails else session.person_id)


@router.post("/me/passkeys", status_code=201, summary="Finish adding a passkey")
async def add_passkey(body: PasskeyAnswer, request: Request) -> dict[str, str]:
    session, _ = await _signed_in(request, check_csrf=True)
    credential_id = await passkeys.register(runtime_of(request).store, config_of(request).public_url,
                                            session.person_id, session.session_id, body.credential,
                                            body.name.strip() or _device_name(request))
    return {"credential_id": credential_id}


def _device_name(request: Request) -> str:
    agent = request.headers.get("user-agent", "")
    for name in ("iPhone", "iPad", "Android", "Mac OS X", "Windows", "Linux"):
        if name in agent:
            return name.replace("Mac OS X", "Mac")
    return "passkey"


@router.post("/me/passkeys/{credential_id}/removal", summary="Remove one of my passkeys")
async def remove_passkey(credential_id: str, request: Request,
                         form: Annotated[CsrfForm, Form()]) -> Response:
    session, _ = await _signed_in(request, csrf=form.csrf_token, check_csrf=True)
    await execute(runtime_of(request).store, f"person-{session.person_id}", Person,
                  lambda p: p.remove_passkey(credential_id), handlers.SYSTEM)
    if "application/json" in request.headers.get("accept", ""):
        return Response(status_code=204)
    return RedirectResponse("/me", status_code=303)


@router.post("/sign-in/passkey/options", summary="Begin signing in with a passkey")
async def passkey_sign_in_options(request: Request) -> Response:
    config = config_of(request)
    _same_site(request, config)
    options, binding = await passkeys.authentication_options(runtime_of(request).pool, config.public_url)
    response = JSONResponse(options)
    response.set_cookie(PASSKEY_COOKIE, binding, max_age=passkeys.CHALLENGE_SECONDS, path="/", secure=config.secure,
                        httponly=True, samesite="strict")
    return response


@router.post("/sign-in/passkey", summary="Sign in with a passkey")
async def passkey_sign_in(body: PasskeyAnswer, request: Request) -> Response:
    config = config_of(request)
    _same_site(request, config)
    try:
        person_id = await passkeys.authenticate(runtime_of(request).pool, config.public_url,
                                                request.cookies.get(PASSKEY_COOKIE, ""), body.credential)
    except passkeys.PasskeyError as refused:
        await handlers.record_refusal(runtime_of(request).store, "passkey", refused.slug or "passkey-refused")
        raise
    signed_in = await _signed_in_response(request, person_id, "passkey", safe_next(body.next))
    response = JSONResponse({"next": signed_in.headers["location"]})
    for value in signed_in.headers.getlist("set-cookie"):
        response.headers.append("set-cookie", value)
    response.delete_cookie(PASSKEY_COOKIE, path="/")
    return response


# ---- the person's own view ----

@router.get("/me", response_class=HTMLResponse, summary="My account: communities, addresses, where I am signed in")
async def account_page(request: Request) -> Response:
    found = await _session(request)
    if found is None:
        return RedirectResponse(f"/sign-in?next={quote('/me')}", status_code=303)
    session, secret = found
    view = await _me(request, session)
    return _page(request, "me.html", me=view, csrf=csrf_of(secret), current=session.session_id)


class MeView(BaseModel):
    person_id: str
    emails: list[str]
    identities: list[dict[str, str]]
    memberships: list[dict[str, Any]]
    sessions: list[dict[str, Any]]
    passkeys: list[dict[str, Any]]
    operator: bool
    session_id: str
    session_ends_at: str
    csrf_token: str


async def _me(request: Request, session: BrowserSession) -> dict[str, Any]:
    runtime = runtime_of(request)
    async with runtime.pool.acquire() as conn:
        memberships = await projections.memberships(conn, session.person_id)
        emails = await projections.emails_of(conn, session.person_id)
        identities = await projections.identities_of(conn, session.person_id)
        keys = await projections.passkeys_of(conn, session.person_id)
        operator = await projections.is_operator(conn, session.person_id)
    sessions = await handlers.sessions_of(runtime.pool, session.person_id, config_of(request).timeouts)
    return {"person_id": session.person_id, "emails": emails, "identities": identities,
            "memberships": memberships, "sessions": sessions, "passkeys": keys, "operator": operator,
            "session_id": session.session_id,
            "session_ends_at": datetime.fromtimestamp(session.ends_at(config_of(request).timeouts), UTC).isoformat()}


@router.get("/v1/me", response_model=MeView, summary="Who I am: my communities (each with my member there), "
            "addresses, identities and sessions — only the person sees this")
async def me(request: Request) -> MeView:
    session, secret = await _signed_in(request)
    return MeView(**await _me(request, session), csrf_token=csrf_of(secret))


class BriefMeView(BaseModel):
    person_id: str
    memberships: list[dict[str, Any]]
    session_id: str
    csrf_token: str


@router.get("/v1/me/brief", response_model=BriefMeView,
            summary="Who I am, briefly: my communities, this session and its CSRF token — what a page needs on "
                    "every request (one query; GET /v1/me has the rest)")
async def me_briefly(request: Request) -> BriefMeView:
    session, secret = await _signed_in(request)
    async with runtime_of(request).pool.acquire() as conn:
        memberships = await projections.memberships(conn, session.person_id)
    return BriefMeView(person_id=session.person_id, memberships=memberships, session_id=session.session_id,
                       csrf_token=csrf_of(secret))


@router.post("/sign-out", summary="Sign this browser out (its community tokens stop working at once)")
async def sign_out(request: Request, form: Annotated[CsrfForm, Form()]) -> Response:
    session, _ = await _signed_in(request, csrf=form.csrf_token, check_csrf=True)
    await handlers.end_session(runtime_of(request).pool, session.person_id, session.session_id, "signed out")
    await handlers.record_session_end(runtime_of(request).store, session.person_id, session.session_id, "signed out")
    return _ended(request, session.session_id, "/sign-in", clear=True)


@router.post("/me/sessions/{session_id}/revocation", summary="Sign out one of my sessions, here or elsewhere")
async def revoke_session(session_id: str, request: Request,
                         form: Annotated[CsrfForm, Form()]) -> Response:
    session, _ = await _signed_in(request, csrf=form.csrf_token, check_csrf=True)
    if not await handlers.end_session(runtime_of(request).pool, session.person_id, session_id, "revoked"):
        raise NotFound("session not found")
    await handlers.record_session_end(runtime_of(request).store, session.person_id, session_id, "revoked")
    return _ended(request, session_id, "/me", clear=session_id == session.session_id)


def _ended(request: Request, session_id: str, then: str, *, clear: bool) -> Response:
    """The answer to ending a session. ``Kizuna-Session-Ended`` tells the gateway, which forwarded the request,
    to refuse that session's community tokens from now on (it strips the header before answering)."""
    wants_json = "application/json" in request.headers.get("accept", "")
    response: Response = Response(status_code=204) if wants_json else RedirectResponse(then, status_code=303)
    response.headers["kizuna-session-ended"] = session_id
    if clear:
        response.delete_cookie(config_of(request).cookie_name, path="/", secure=config_of(request).secure,
                               httponly=True, samesite="lax")
    return response


# ---- invitations by email ----
# (the pages a join link, an invitation or a claim code opens are the member app's: services/webapp/front_door.py)

class InvitationByEmail(StrictModel):
    model_config = {"json_schema_extra": {"examples": [{
        "community_id": "3f6c…", "invitation_id": "9a1d…", "code": "k3Jd…", "email": "mika@example.jp",
        "expires_at": "2026-12-08T09:00:00+09:00", "language": "ja"}]}}
    community_id: str = Field(min_length=1, max_length=64)
    invitation_id: str = Field(min_length=1, max_length=64)
    code: str = Field(min_length=1, max_length=200, description="The code POST …/invitations gave you")
    email: str = Field(min_length=3, max_length=320)
    expires_at: datetime = Field(description="The invitation's expiry, as POST …/invitations gave it")
    language: Literal["ja", "en"] | None = Field(None, description="The mail's language (default: this page's)")


@router.post("/me/invitations", status_code=202,
             summary="Email an invitation I issued (POST /v1/communities/{cid}/invitations) to the person I invite")
async def email_invitation(body: InvitationByEmail, request: Request) -> dict[str, str]:
    session, _ = await _signed_in(request, check_csrf=True)
    config = config_of(request)
    email = normalise_email(body.email)
    await handlers.email_invitation(
        runtime_of(request).store, config.mailer,
        handlers.EmailedInvitation(person_id=session.person_id, community_id=body.community_id,
                                   invitation_id=body.invitation_id, code=body.code, email=email,
                                   expires_at=body.expires_at),
        public_url=config.public_url, language=body.language or language_of(request))
    return {"sent_to": email, "invitation_id": body.invitation_id}


# ---- asked by the gateway on a signed-in person's behalf ----

class AccountRequest(StrictModel):
    community_id: str = Field(min_length=1, max_length=64)


@router.post("/internal/accounts", summary="The signed-in person's account in a community (opened on first use)")
async def account(body: AccountRequest, request: Request) -> dict[str, str]:
    session, _ = await _signed_in(request, check_csrf=True)
    reference = await handlers.account_in(runtime_of(request).store, session.person_id, body.community_id)
    return {"account": reference}


@router.post("/internal/operator-grants", summary="Whether the signed-in person may act as the operator now")
async def operator_grant(request: Request) -> dict[str, Any]:
    session, _ = await _signed_in(request, check_csrf=True)
    async with runtime_of(request).pool.acquire() as conn:
        allowed = await projections.is_operator(conn, session.person_id)
    if not allowed:
        raise Forbidden("you have no operator rights on this deployment", slug="not-an-operator")
    ends_at = session.ends_at(config_of(request).timeouts)
    return {"session_id": session.session_id, "session_seconds_left": max(0, int(ends_at - time.time()))}


@router.post("/internal/grants", summary="What a community token for the signed-in person would carry")
async def grant(body: AccountRequest, request: Request) -> dict[str, Any]:
    session, _ = await _signed_in(request, check_csrf=True)
    async with runtime_of(request).pool.acquire() as conn:
        memberships = await projections.memberships(conn, session.person_id)
    held = next((m for m in memberships if m["community_id"] == body.community_id and m["status"] == "active"), None)
    if held is None:
        raise NotFound("you are not a member of this community")
    ends_at = session.ends_at(config_of(request).timeouts)
    return {"member_id": held["member_id"], "role": held["role"], "session_id": session.session_id,
            "session_seconds_left": max(0, int(ends_at - time.time()))}


# ---- a person's export (docs/data-rights.md): asked by the gateway's export job ----

@router.get("/internal/whoami", summary="Which person the session cookie belongs to")
async def whoami(request: Request) -> dict[str, str]:
    session, _ = await _signed_in(request)
    return {"person_id": session.person_id}


@router.post("/internal/whoami", summary="Which person the session cookie belongs to, for a change they ask for "
                                         "(the session's CSRF token, from this site)")
async def whoami_to_act(request: Request) -> dict[str, str]:
    session, _ = await _signed_in(request, check_csrf=True)
    return {"person_id": session.person_id}


@router.get("/internal/people/{person_id}/personal-data",
            summary="Everything identity holds about a person, for their export (the operator only)")
async def person_data(person_id: str, request: Request, who: Principal = Depends(principal)) -> dict[str, Any]:
    if not who.is_operator:
        raise NotFound("person not found")
    runtime = runtime_of(request)
    async with runtime.pool.acquire() as conn:
        emails = await projections.emails_of(conn, person_id)
        memberships = await projections.memberships(conn, person_id)
        accounts = [dict(row) for row in await conn.fetch(
            "SELECT community_id, account FROM community_accounts WHERE person_id = $1 ORDER BY community_id",
            person_id)]
        identities = await projections.identities_of(conn, person_id)
        keys = await projections.passkeys_of(conn, person_id)
        operator = await projections.is_operator(conn, person_id)
    events = await events_naming(runtime.store, None, person_id)
    if not emails and not events:
        raise NotFound("person not found")
    # Sessions as the person's own list shows them: no secret's hash; ended ones are not kept beyond the audit
    # events (PersonSignedIn, BrowserSessionEnded), which are below.
    sessions = await handlers.sessions_of(runtime.pool, person_id, config_of(request).timeouts)
    return {"person_id": person_id, "emails": emails, "identities": identities, "passkeys": keys,
            "operator": operator, "sessions": sessions, "community_accounts": accounts, "memberships": memberships,
            "events": [{"event_id": str(e.event_id), "type": e.type, "stream_id": e.stream_id,
                        "stream_version": e.stream_version, "recorded_at": e.recorded_at.isoformat(), "data": e.data}
                       for e in events]}


# ---- a person's erasure (docs/data-rights.md): asked by the gateway, which erased their memberships first ----

class PersonErasure(StrictModel):
    erased_by: Literal["person", "operator"]


@router.post("/internal/people/{person_id}/erasure",
             summary="Erase a person: their key, and everything identity keeps under them (the operator only)")
async def erase_person(person_id: str, body: PersonErasure, request: Request,
                       who: Principal = Depends(principal)) -> dict[str, Any]:
    if not who.is_operator:
        raise NotFound("person not found")
    ended = await handlers.erase_person(runtime_of(request).store, person_id, body.erased_by)
    return {"person_id": person_id, "sessions_ended": ended}

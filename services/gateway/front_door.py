"""The front door: the few routes people use before they are members, without a token.

Someone with a community's join link may join an open community, apply to one that admits by
application (and follow their application with its id), accept an invitation with its code, and
take or decline a place offered from the waitlist with the claim code they were given (the offer
id alone answers nothing: the members service gives it the same 404 as a missing offer) — or, signed in,
see their place in the queue and answer the offer made to them without a code. The
gateway forwards these — and nothing else — to the members service with a one-minute ``visitor``
token for that community, so the service still decides everything and records the visitor as the
actor. Rate limits apply per client address. A signed-in person (the session cookie, with the CSRF
token in ``X-CSRF-Token``) comes in as themselves: the visitor token names their account in the
community, which the members service links to the member or applicant it creates.

Two more doors need no token, because what knocks cannot sign in: a member's calendar feed
(``/v1/calendar/{secret}.ics``, for calendar apps) and one-click unsubscribe from an email
(``/v1/notifications/unsubscribe/{secret}``, RFC 8058, for mail clients). The secret in the address is the
credential; the service behind it knows only its hash.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import Field

from kizuna.auth import issue_token
from kizuna.domain import StrictModel
from kizuna.errors import NotFound
from kizuna.problems import PROBLEM_RESPONSES, problem_response

from .people import account_for_visitor
from .proxy import MAX_BODY_BYTES, forward
from .rate_limits import visitor_key

router = APIRouter(prefix="/v1/join", tags=["front door"], responses=PROBLEM_RESPONSES)
calendar_router = APIRouter(prefix="/v1/calendar", tags=["front door"], responses=PROBLEM_RESPONSES)
unsubscribe_router = APIRouter(prefix="/v1/notifications", tags=["front door"], responses=PROBLEM_RESPONSES)
_SEGMENT = r"[A-Za-z0-9-]{1,64}"
_CAPABILITY_SHAPE = r"[A-Za-z0-9_-]{32,64}"  # a secret carried in an address (calendar, unsubscribe)


class JoinOpenCommunity(StrictModel):
    model_config = {"json_schema_extra": {"examples": [{"display_name": "Hana Ueda", "waitlist_if_full": True}]}}
    display_name: str = Field(min_length=1, max_length=120)
    waitlist_if_full: bool = False


def _too_often(request: Request) -> Response | None:
    wait = request.app.state.rate_limiter.take(visitor_key(request))
    if not wait:
        return None
    return problem_response(429, "rate-limited", "Too many requests", "slow down and retry later",
                            request.url.path, headers={"Retry-After": str(max(1, round(wait)))})


async def _through(request: Request, community_id: str, path: str, body: bytes | None = None) -> Response:
    if not re.fullmatch(_SEGMENT, community_id):
        raise NotFound("community not found")
    state = request.app.state
    if refused := _too_often(request):
        return refused
    raw = await request.body() if body is None else body
    if len(raw) > MAX_BODY_BYTES:
        return problem_response(413, "body-too-large", "Request body too large",
                                f"the body is {len(raw)} bytes; the limit is {MAX_BODY_BYTES}", request.url.path)
    account = await account_for_visitor(request, community_id)  # a signed-in person joins as themselves
    token = issue_token(state.signing_key, community_id=community_id, member_id="visitor", role="visitor",
                        scope="visitor", ttl_seconds=60, account=account)
    base = state.settings.service_replicas()["members"]
    return await forward(state.http, base, request, raw, state.upstream_timeout, path=path,
                         authorization=f"Bearer {token}")


@router.get("/{community_id}", summary="How this community admits people: policy, questions, places left")
async def admission(community_id: str, request: Request) -> Response:
    return await _through(request, community_id, f"/communities/{community_id}/admission")


@router.post("/{community_id}", status_code=201, summary="Join an open community with its join link")
async def join_open(community_id: str, body: JoinOpenCommunity, request: Request) -> Response:
    return await _through(request, community_id, f"/communities/{community_id}/members",
                          body.model_dump_json().encode())


@router.post("/{community_id}/applications", status_code=201,
             summary="Apply, answering the community's questions; keep the application id to follow it")
async def apply(community_id: str, request: Request, body: dict[str, Any]) -> Response:
    return await _through(request, community_id, f"/communities/{community_id}/applications")


@router.get("/{community_id}/applications/{application_id}", summary="Where my application stands")
async def application(community_id: str, application_id: str, request: Request) -> Response:
    if not re.fullmatch(_SEGMENT, application_id):
        raise NotFound("application not found")
    return await _through(request, community_id, f"/communities/{community_id}/applications/{application_id}")


@router.post("/{community_id}/invitations/acceptance", status_code=201,
             summary="Accept an invitation with the code a member gave you")
async def accept_invitation(community_id: str, request: Request, body: dict[str, Any]) -> Response:
    return await _through(request, community_id, f"/communities/{community_id}/invitations/acceptance")


@router.post("/{community_id}/account-claims", status_code=201,
             summary="Signed in, become the existing member an owner gave you a code for: {\"code\": \"…\"}")
async def claim_account(community_id: str, request: Request, body: dict[str, Any]) -> Response:
    return await _through(request, community_id, f"/communities/{community_id}/account-claims")


@router.get("/{community_id}/my-place", summary="Signed in: my place in the queue, or the place offered to me")
async def my_place(community_id: str, request: Request) -> Response:
    return await _through(request, community_id, f"/communities/{community_id}/waitlist/mine")


@router.post("/{community_id}/offers/{offer_id}/{answer}", status_code=201,
             summary="Take (acceptance) or decline (decline) a place offered from the waitlist, with the claim "
                     "code in the body: {\"claim_code\": \"…\"} (and an optional \"reason\" to decline)")
async def answer_offer(community_id: str, offer_id: str, answer: str, request: Request) -> Response:
    if answer not in ("acceptance", "decline") or not re.fullmatch(_SEGMENT, offer_id):
        raise NotFound(f"no route {request.url.path}")
    return await _through(request, community_id, f"/communities/{community_id}/offers/{offer_id}/{answer}")


@calendar_router.get("/{key}.ics", summary="A member's sessions for a calendar app, by the secret address they "
                                          "were given (POST …/calendar/link); no token",
                     response_class=Response,
                     responses={200: {"content": {"text/calendar": {}}, "description": "An iCalendar file"}})
async def calendar_feed(key: str, request: Request) -> Response:
    return await _by_secret(request, key, "sessions", f"/calendar-feeds/{key}.ics",
                            "no calendar answers to this address")


_UNSUBSCRIBE_PAGE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/html": {}}, "description": "A small page"}}


@unsubscribe_router.get("/unsubscribe/{token}", response_class=Response, responses=_UNSUBSCRIBE_PAGE,
                        summary="The page of an email's unsubscribe link: one button (fetching it changes nothing)")
async def unsubscribe_page(token: str, request: Request) -> Response:
    return await _by_secret(request, token, "notifications", f"/unsubscribe/{token}",
                            "this unsubscribe link is not known")


@unsubscribe_router.post("/unsubscribe/{token}", response_class=Response, responses=_UNSUBSCRIBE_PAGE,
                         summary="One-click unsubscribe (RFC 8058, what mail clients send): that kind of email stops")
async def unsubscribe(token: str, request: Request) -> Response:
    return await _by_secret(request, token, "notifications", f"/unsubscribe/{token}",
                            "this unsubscribe link is not known")


async def _by_secret(request: Request, secret: str, service: str, path: str, unknown: str) -> Response:
    """Forwards a request that carries its credential in the address (calendar apps and mail clients send no
    token); the service behind checks the secret against the hash it keeps."""
    if not re.fullmatch(_CAPABILITY_SHAPE, secret):
        raise NotFound(unknown)
    if refused := _too_often(request):
        return refused
    state = request.app.state
    return await forward(state.http, state.settings.service_replicas()[service], request, b"",
                         state.upstream_timeout, path=path, authorization="")

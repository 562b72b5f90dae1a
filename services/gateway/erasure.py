"""A person's erasure at the public edge (docs/data-rights.md, "A person's erasure"): the person themself
(session cookie and CSRF token) or the operator on their behalf.

The gateway does it for the same reasons it runs exports: it knows where identity and every service are and
signs the operator tokens it calls them with. In order:

1. identity says which communities the person has (or had) a member in; someone it never knew is a 404;
2. a person still **active** in a community is refused, ``409 leave-communities-first`` listing those
   memberships — as erasing a member refuses an active member: leaving is the person's act in each
   community (an owner hands over first, a facilitator's sessions move), and Kizuna does not make it for them;
3. every other membership (left, waiting for a place, an application) is erased in its community
   (``POST …/members/{id}/erasure`` to the members service: ``MemberErased``, each service scrubs);
4. identity erases the person (``PersonErased``: their key deleted, everything it keeps under them gone, every
   browser session ended); the gateway then refuses every community token those sessions were exchanged for.

Each step is idempotent, so a failure part-way is put right by asking again.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Depends, Request, Response

from kizuna.auth import Principal, principal
from kizuna.domain import StrictModel
from kizuna.errors import Conflict, Forbidden, Problem
from kizuna.problems import PROBLEM_RESPONSES

from .exports.api import PersonId, _memberships, _person, internal_operator_token
from .people import _revoke_session_tokens
from .proxy import in_turn

router = APIRouter(responses=PROBLEM_RESPONSES, tags=["people"])

DESCRIPTION = ("Their memberships that are over (left, waiting, applied) are erased in each community, then the "
               "person: their key is deleted, so their addresses, provider accounts and passkey names read as "
               "empty everywhere; every service forgets what it kept under them (addresses, preferences' links, "
               "digests); every browser session and the community tokens taken with it end. Signing in again "
               "with the same address later makes a new person. A person still active in a community is "
               "refused (409 `leave-communities-first`, listing them): leave each first (`erase` on leave "
               "erases that membership at once). docs/data-rights.md.")


class ErasureRequest(StrictModel):
    """No options: erasing a person is the whole of them. (An unknown field is a 422 naming it.)"""

    model_config = {"extra": "forbid", "json_schema_extra": {"examples": [{}]}}


def _unavailable(what: str) -> Problem:
    return Problem(f"{what} did not answer; nothing more was erased — ask again in a minute", status=503,
                   slug="erasure-unavailable", title="Service unavailable")


async def _call(request: Request, replicas: list[str], path: str, what: str,
                body: dict[str, Any] | None = None) -> httpx.Response:
    state = request.app.state
    for base in in_turn(replicas):
        try:
            return await state.http.post(f"{base}{path}", json=body or {}, timeout=state.upstream_timeout,
                                         headers={"authorization": f"Bearer {internal_operator_token(state)}"})
        except httpx.ConnectError:
            continue
        except httpx.HTTPError as error:
            raise _unavailable(what) from error
    raise _unavailable(what)


async def erase_person(request: Request, person_id: str, by: str) -> None:
    memberships = await _memberships(request, person_id)
    active = [{"community_id": m["community_id"], "community_name": m.get("community_name"),
               "member_id": m["member_id"]} for m in memberships if m.get("status") == "active"]
    if active:
        names = ", ".join(str(m["community_name"] or m["community_id"]) for m in active)
        raise Conflict(f"still a member of {names}: leave each community first (leaving with erase: true erases "
                       "that membership at once), then ask again", slug="leave-communities-first",
                       memberships=active)
    members = request.app.state.settings.service_replicas().get("members", [])
    for membership in memberships:
        if not membership.get("member_id"):
            continue
        path = (f"/communities/{quote(str(membership['community_id']), safe='')}/members/"
                f"{quote(str(membership['member_id']), safe='')}/erasure")
        answer = await _call(request, members, path, "the members service")
        if answer.status_code == 409:  # came back meanwhile
            raise Conflict("a membership became active again; leave it first, then ask again",
                           slug="leave-communities-first")
        if answer.status_code not in (204, 404):
            raise _unavailable("the members service")
    answer = await _call(request, request.app.state.settings.identity_replicas(),
                         f"/internal/people/{quote(person_id, safe='')}/erasure", "identity", {"erased_by": by})
    if answer.status_code == 404:
        raise Problem("person not found", status=404, slug="not-found", title="Not found")
    if answer.status_code != 200:
        raise _unavailable("identity")
    for session_id in answer.json()["sessions_ended"]:
        await _revoke_session_tokens(request, str(session_id), "person erased")


ERASED: dict[int | str, dict[str, Any]] = {204: {"description": "Erased (or already was)"}}


@router.post("/v1/people/{person_id}/erasure", status_code=204, responses=ERASED, response_class=Response,
             summary="Erase a person and every membership of theirs that is over (operator, on their behalf)",
             description=DESCRIPTION)
async def erase_person_for(person_id: PersonId, request: Request, body: ErasureRequest | None = None,
                           who: Principal = Depends(principal)) -> Response:
    if not who.is_operator:
        raise Forbidden("only the operator may erase another person", slug="operator-only")
    await erase_person(request, person_id, "operator")
    return Response(status_code=204)


@router.post("/v1/me/erasure", status_code=204, responses=ERASED, response_class=Response,
             summary="Erase me: my account and every membership of mine that is over; signs me out everywhere "
                     "(session cookie and X-CSRF-Token)", description=DESCRIPTION)
async def erase_me(request: Request, body: ErasureRequest | None = None) -> Response:
    person_id = await _person(request, to_act=True)
    await erase_person(request, person_id, "person")
    response = Response(status_code=204)
    secure = request.app.state.settings.public_url.startswith("https://")
    response.delete_cookie("__Host-kizuna-session" if secure else "kizuna-session", path="/", secure=secure,
                           httponly=True, samesite="lax")
    return response

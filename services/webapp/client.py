"""The member app reaches Kizuna only through its public API, as the signed-in person — the same routes, read
policy and limits as any other client. It runs in the gateway's process today, so it calls the gateway's own
ASGI app directly (no second network hop); moved to a process of its own, only ``transport`` changes.

A page request carries the person's session cookie. From it the app learns who they are and the session's
CSRF token (``GET /v1/me/brief``), and exchanges it for a 15-minute community token (``POST /v1/me/tokens``), kept
in memory per session and community until a minute before it ends.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import Request

from kizuna.errors import Problem, Unauthorized

SESSION_COOKIES = ("__Host-kizuna-session", "kizuna-session")
_tokens: dict[tuple[str, str], tuple[str, float]] = {}  # (session id, community) → (token, monotonic expiry)
MAX_TOKENS_KEPT = 10_000


@dataclass
class Person:
    """The signed-in person as ``GET /v1/me/brief`` tells it: their communities, this session, its CSRF token."""

    me: dict[str, Any]

    @property
    def csrf(self) -> str:
        return str(self.me["csrf_token"])

    @property
    def session_id(self) -> str:
        return str(self.me["session_id"])

    def membership(self, community_id: str) -> dict[str, Any] | None:
        return next((m for m in self.me["memberships"]
                     if m["community_id"] == community_id and m["status"] == "active"), None)


class PersonApi:
    def __init__(self, request: Request) -> None:
        self.request = request
        self.cookies = {name: value for name, value in request.cookies.items() if name in SESSION_COOKIES}
        # The person's address as the gateway saw it, so its per-client limits still count people.
        forwarded = request.headers.get("x-forwarded-for")
        self.headers = {"accept": "application/json", "accept-language": request.headers.get("accept-language", "")}
        if forwarded:
            self.headers["x-forwarded-for"] = forwarded

    def _client(self) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.request.app)
        return httpx.AsyncClient(transport=transport, base_url=str(self.request.base_url).rstrip("/"),
                                 cookies=self.cookies, headers=self.headers, timeout=30)

    async def person(self) -> Person:
        if not self.cookies:
            raise Unauthorized("sign in first", slug="not-signed-in")
        async with self._client() as client:
            answer = await client.get("/v1/me/brief")  # what every page needs, in one query
        if answer.status_code != 200:
            raise Unauthorized("sign in first", slug="not-signed-in")
        return Person(answer.json())

    async def token(self, person: Person, community_id: str) -> str:
        key = (person.session_id, community_id)
        held = _tokens.get(key)
        if held is not None and held[1] > time.monotonic():
            return held[0]
        async with self._client() as client:
            answer = await client.post("/v1/me/tokens", json={"community_id": community_id},
                                       headers={"x-csrf-token": person.csrf})
        _raise_for_problem(answer)
        body = answer.json()
        if len(_tokens) >= MAX_TOKENS_KEPT:
            _tokens.clear()
        # Its life is 15 minutes at most (less near the session's end): renewed a minute early.
        _tokens[key] = (str(body["token"]), time.monotonic() + 14 * 60)
        return str(body["token"])

    async def own(self, person: Person, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """A route of the person's own (``/v1/me/…``): the session cookie, and for a change its CSRF token."""
        return await self._send(method, f"/v1/me{path}", body,
                                {"x-csrf-token": person.csrf} if method != "GET" else {})

    async def front_door(self, person: Person, community_id: str, method: str, path: str = "",
                         body: dict[str, Any] | None = None) -> Any:
        """The front door (``/v1/join/{community}…``), for someone not yet a member: the session cookie names
        them, so what they do there is linked to their account; every request carries the session's CSRF token
        (the gateway finds their account in the community only with it, reads included)."""
        return await self._send(method, f"/v1/join/{community_id}{path}", body, {"x-csrf-token": person.csrf})

    async def call(self, person: Person, community_id: str, method: str, path: str,
                   body: dict[str, Any] | None = None) -> Any:
        token = await self.token(person, community_id)
        return await self._send(method, f"/v1/communities/{community_id}{path}", body,
                                {"authorization": f"Bearer {token}"})

    async def _send(self, method: str, url: str, body: dict[str, Any] | None, headers: dict[str, str]) -> Any:
        async with self._client() as client:
            answer = await client.request(method, url, json=body, headers=headers)
        _raise_for_problem(answer)
        return answer.json() if answer.content else None


def _raise_for_problem(answer: httpx.Response) -> None:
    """An API refusal becomes the same problem here (its status, type and fields), to show on the page."""
    if answer.status_code < 400:
        return
    try:
        problem = answer.json()
    except ValueError:
        problem = {}
    slug = str(problem.get("type", "")).rsplit("/", 1)[-1] or "upstream-error"
    extra = {k: v for k, v in problem.items() if k not in ("type", "title", "status", "detail", "instance")}
    raise Problem(str(problem.get("detail") or answer.reason_phrase), status=answer.status_code, slug=slug,
                  title=str(problem.get("title") or "Error"), **extra)

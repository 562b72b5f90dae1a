"""Gateway commands: issue and revoke community tokens."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from urllib.parse import quote

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kizuna.auth import Principal, issue_token
from kizuna.domain import DomainEvent
from kizuna.errors import Forbidden, NotFound, Problem
from kizuna.eventstore import NO_STREAM, EventStore
from kizuna.handling import CommandContext, execute, to_new_events

from . import projections
from .domain import IssuedToken, Scope, TokenIssued, revoke

RoleOf = Callable[[str, str], Awaitable[str | None]]
"""(community id, member id) → the member's role if they are an active member now, else None."""


def members_service_role(http: httpx.AsyncClient, members_url: str, authorization: str, timeout: float) -> RoleOf:
    """Asks the members service, with the caller's own authority, for a member's role right now.

    The gateway's directory is fed by the bus, so a member founded or added a moment ago may not be in
    it yet; the members service's own read model is updated in the transaction that wrote the member
    (read-your-writes), so it knows. Asked only when the directory does not know the member."""

    async def role_of(community_id: str, member_id: str) -> str | None:
        url = f"{members_url}/communities/{quote(community_id, safe='')}/members/{quote(member_id, safe='')}"
        try:
            response = await http.get(url, headers={"authorization": authorization}, timeout=timeout)
        except httpx.ConnectError:
            # Nothing listens: the members service is down, so nothing can have been written there since the
            # directory last heard from it, beyond the bus's last moments; the directory's answer stands.
            return None
        except httpx.HTTPError:
            response = None
        if response is not None and response.status_code == 404:
            return None
        if response is None or response.status_code != 200:
            raise Problem("the members service could not confirm the member; nothing was issued, try again",
                          status=503, slug="service-unavailable", title="Service unavailable")
        view = response.json()
        return str(view["role"]) if view.get("status") == "active" else None

    return role_of


async def issue(store: EventStore, key: Ed25519PrivateKey, who: Principal, ctx: CommandContext, *,
                community_id: str, member_id: str, scope: Scope, ttl_seconds: int,
                role_now: RoleOf | None = None) -> tuple[str, TokenIssued]:
    caller_is_owner = (not who.is_operator and who.community_id == community_id and who.scope == "member"
                       and who.role == "owner")
    if not (who.is_operator or caller_is_owner):
        if who.community_id != community_id:
            raise NotFound("community not found")
        raise Forbidden("only the operator or the community's owner may issue tokens", required_role="owner")
    async with store.pool.acquire() as conn:
        target = await projections.member(conn, community_id, member_id)
    role = target["role"] if target is not None else None
    if role is None and role_now is not None:
        role = await role_now(community_id, member_id)  # not heard of on the bus yet: ask who wrote it
    if role is None:
        raise NotFound("member not found in this community")
    token_id = str(uuid.uuid4())
    event = TokenIssued(token_id=token_id, community_id=community_id, member_id=member_id, role=role,
                        scope=scope, issued_by=who.actor,
                        expires_at=datetime.fromtimestamp(time.time() + ttl_seconds, UTC).isoformat())
    await store.append(f"token-{token_id}", to_new_events([event], ctx.metadata(community_id)), NO_STREAM)
    token = issue_token(key, community_id=community_id, member_id=member_id, role=role, scope=scope,
                        ttl_seconds=ttl_seconds, token_id=token_id)
    return token, event


async def revoke_token(store: EventStore, who: Principal, ctx: CommandContext, token_id: str, reason: str) -> None:
    def decide(token: IssuedToken) -> list[DomainEvent]:
        if token.version == 0:
            raise NotFound("token not found")
        return revoke(token, token_id, actor=who.actor, actor_community=who.community_id,
                      is_operator=who.is_operator, actor_is_owner=who.role == "owner" and who.scope == "member",
                      actor_member=who.member_id, reason=reason)

    await execute(store, f"token-{token_id}", IssuedToken, decide, ctx)

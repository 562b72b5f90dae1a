"""Gateway commands: issue and revoke community tokens."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kizuna.auth import Principal, issue_token
from kizuna.domain import DomainEvent
from kizuna.errors import Forbidden, NotFound
from kizuna.eventstore import NO_STREAM, EventStore
from kizuna.handling import CommandContext, execute, to_new_events

from . import projections
from .domain import IssuedToken, Scope, TokenIssued, revoke


async def issue(store: EventStore, key: Ed25519PrivateKey, who: Principal, ctx: CommandContext, *,
                community_id: str, member_id: str, scope: Scope, ttl_seconds: int) -> tuple[str, TokenIssued]:
    async with store.pool.acquire() as conn:
        target = await projections.member(conn, community_id, member_id)
        caller_is_owner = (not who.is_operator and who.community_id == community_id and who.scope == "member"
                           and who.role == "owner")
        if not (who.is_operator or caller_is_owner):
            if who.community_id != community_id:
                raise NotFound("community not found")
            raise Forbidden("only the operator or the community's owner may issue tokens", required_role="owner")
        if target is None:
            raise NotFound("member not found in this community")
    token_id = str(uuid.uuid4())
    event = TokenIssued(token_id=token_id, community_id=community_id, member_id=member_id, role=target["role"],
                        scope=scope, issued_by=who.actor,
                        expires_at=datetime.fromtimestamp(time.time() + ttl_seconds, UTC).isoformat())
    await store.append(f"token-{token_id}", to_new_events([event], ctx.metadata(community_id)), NO_STREAM)
    token = issue_token(key, community_id=community_id, member_id=member_id, role=target["role"], scope=scope,
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

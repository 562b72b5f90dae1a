"""Members commands: load the community (or profile), decide, append."""

from __future__ import annotations

import uuid

from kizuna.auth import Principal
from kizuna.errors import Forbidden, NotFound
from kizuna.eventstore import EventStore
from kizuna.handling import CommandContext, execute, load_existing

from .domain import (
    ChangeCap,
    ChangeConsent,
    ChangeRole,
    Community,
    FoundCommunity,
    JoinCommunity,
    LeaveCommunity,
    Profile,
    RemoveMember,
    TransferOwnership,
    UpdateProfile,
)


def community_stream(community_id: str) -> str:
    return f"community-{community_id}"


def profile_stream(member_id: str) -> str:
    return f"profile-{member_id}"


async def found(store: EventStore, cmd: FoundCommunity, ctx: CommandContext, default_cap: int) -> tuple[str, str]:
    community_id, owner_id = str(uuid.uuid4()), str(uuid.uuid4())
    await execute(store, community_stream(community_id), Community,
                  lambda c: c.found(community_id, owner_id, cmd, default_cap), ctx, community_id=community_id)
    return community_id, owner_id


async def community(store: EventStore, community_id: str) -> Community:
    return await load_existing(store, community_stream(community_id), Community, "community")


async def change_cap(store: EventStore, community_id: str, cmd: ChangeCap, ctx: CommandContext) -> Community:
    await community(store, community_id)
    state, _ = await execute(store, community_stream(community_id), Community,
                             lambda c: c.change_cap(cmd, ctx.actor), ctx, community_id=community_id)
    return state


async def join(store: EventStore, community_id: str, cmd: JoinCommunity, who: Principal,
               ctx: CommandContext) -> tuple[str, str]:
    """Returns (member id, "joined" | "waitlisted")."""
    await community(store, community_id)
    member_id = str(uuid.uuid4())
    vouched_by = cmd.vouched_by if who.is_operator else who.member_id
    _, recorded = await execute(store, community_stream(community_id), Community,
                                lambda c: c.join(member_id, cmd, vouched_by), ctx, community_id=community_id)
    return member_id, "waitlisted" if recorded and recorded[0].type == "MemberWaitlisted" else "joined"


async def leave(store: EventStore, community_id: str, member_id: str, cmd: LeaveCommunity,
                ctx: CommandContext) -> None:
    await community(store, community_id)
    await execute(store, community_stream(community_id), Community, lambda c: c.leave(member_id, cmd), ctx,
                  community_id=community_id)


async def remove(store: EventStore, community_id: str, member_id: str, cmd: RemoveMember,
                 ctx: CommandContext) -> None:
    await community(store, community_id)
    await execute(store, community_stream(community_id), Community,
                  lambda c: c.remove(member_id, cmd, ctx.actor), ctx, community_id=community_id)


async def change_role(store: EventStore, community_id: str, member_id: str, cmd: ChangeRole,
                      ctx: CommandContext) -> None:
    await community(store, community_id)
    await execute(store, community_stream(community_id), Community,
                  lambda c: c.change_role(member_id, cmd, ctx.actor), ctx, community_id=community_id)


async def transfer_ownership(store: EventStore, community_id: str, cmd: TransferOwnership,
                             ctx: CommandContext) -> None:
    await community(store, community_id)
    await execute(store, community_stream(community_id), Community, lambda c: c.transfer_ownership(cmd), ctx,
                  community_id=community_id)


async def _require_active_member(store: EventStore, community_id: str, member_id: str) -> None:
    state = await community(store, community_id)
    if member_id not in state.roles:
        raise NotFound("member not found")


async def update_profile(store: EventStore, community_id: str, member_id: str, cmd: UpdateProfile,
                         ctx: CommandContext) -> None:
    await _require_active_member(store, community_id, member_id)
    await execute(store, profile_stream(member_id), Profile, lambda p: p.update(community_id, member_id, cmd), ctx,
                  community_id=community_id)


async def change_consent(store: EventStore, community_id: str, member_id: str, cmd: ChangeConsent,
                         ctx: CommandContext) -> None:
    await _require_active_member(store, community_id, member_id)
    await execute(store, profile_stream(member_id), Profile,
                  lambda p: p.change_consent(community_id, member_id, cmd), ctx, community_id=community_id)


def require_self_or_operator(who: Principal, member_id: str) -> None:
    if not (who.is_operator or who.is_self(member_id)):
        raise Forbidden("only the member themselves may do this")

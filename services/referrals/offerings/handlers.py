"""Offering commands: only active members act; load, decide on fresh state, append to ``offering-<id>``.

Every decision gets the current time from here, inside ``execute``'s retry loop, so a commitment that
loses a race is decided again on fresh state and at the time of its retry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from kizuna.auth import ROLE_RANK, Principal
from kizuna.domain import DomainEvent
from kizuna.errors import Forbidden, NotFound, Problem
from kizuna.eventstore import EventStore
from kizuna.handling import CommandContext, execute, load_existing
from kizuna.service import Runtime

from ..handlers import acting_member
from . import projections
from .domain import Offering, PublishOffering

log = logging.getLogger("kizuna.referrals.offerings")
SETTLE_EVERY_SECONDS = 2.0
SETTLER = "system:offering-settlement"

Decision = Callable[[Offering, str, datetime], Sequence[DomainEvent]]


def stream(offering_id: str) -> str:
    return f"offering-{offering_id}"


def now() -> datetime:
    return datetime.now(UTC)


async def publish(store: EventStore, who: Principal, community_id: str, cmd: PublishOffering,
                  ctx: CommandContext) -> str:
    producer = await acting_member(store, who, community_id)
    offering_id = ctx.new_id("offering")
    await execute(store, stream(offering_id), Offering,
                  lambda o: o.publish(offering_id, community_id, producer, cmd, now()), ctx, community_id=community_id)
    return offering_id


async def existing(store: EventStore, community_id: str, offering_id: str) -> Offering:
    offering = await load_existing(store, stream(offering_id), Offering, "offering")
    if offering.community_id != community_id:
        raise NotFound("offering not found")
    return offering


async def on_offering(store: EventStore, who: Principal, community_id: str, offering_id: str,
                      ctx: CommandContext, decide: Decision) -> Offering:
    actor = await acting_member(store, who, community_id)
    await existing(store, community_id, offering_id)
    state, _ = await execute(store, stream(offering_id), Offering, lambda o: decide(o, actor, now()), ctx,
                             community_id=community_id)
    return state


async def settle(store: EventStore, who: Principal, community_id: str, offering_id: str,
                 ctx: CommandContext) -> Offering:
    """The producer (or the community's facilitators, or the operator) settles after the deadline."""
    offering = await existing(store, community_id, offering_id)
    if not who.is_operator:
        actor = await acting_member(store, who, community_id)
        if actor != offering.producer and ROLE_RANK.get(who.role or "", 0) < ROLE_RANK["facilitator"]:
            raise Forbidden("only the producer or a facilitator settles the offering")
    state, _ = await execute(store, stream(offering_id), Offering, lambda o: o.settle(now()), ctx,
                             community_id=community_id)
    return state


async def settle_due(store: EventStore) -> int:
    """Settle every open offering whose deadline has passed; returns how many were looked at."""
    async with store.pool.acquire() as conn:
        due = await projections.due_for_settlement(conn)
    for row in due:
        ctx = CommandContext(actor=SETTLER, community_id=row["community_id"])
        try:
            await execute(store, stream(row["offering_id"]), Offering, lambda o: o.settle(now()), ctx,
                          community_id=row["community_id"])
        except Problem as error:  # e.g. a clock a little behind the database's: try again next round
            log.info("offering not settled yet", extra={"offering_id": row["offering_id"], "error": error.detail})
    return len(due)


async def settle_due_offerings(runtime: Runtime) -> None:
    """Background job: at the deadline an offering is confirmed or lapses without anyone asking."""
    while True:
        await settle_due(runtime.store)
        await asyncio.sleep(SETTLE_EVERY_SECONDS)

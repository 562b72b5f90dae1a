"""What the notifications service follows on the bus: who is in each community (the roster), who each member
is as a person (account links, verified addresses), and every event that may need someone (``causes``)."""

from __future__ import annotations

import asyncpg

from kizuna.consumer import Subscription
from kizuna.envelope import Envelope
from kizuna.eventstore import EventStore
from kizuna.handling import CommandContext
from kizuna.roster import RosterFollower
from kizuna.service import Runtime

from . import handlers
from .causes import causes, remember
from .webhooks import queue

ROSTER = RosterFollower("roster")

PEOPLE_SQL = """
CREATE TABLE people (person_id text PRIMARY KEY, email text NOT NULL, verified_at timestamptz NOT NULL);
CREATE TABLE community_accounts (community_id text NOT NULL, account text NOT NULL, person_id text NOT NULL,
                                 PRIMARY KEY (community_id, account));
CREATE TABLE member_accounts (community_id text NOT NULL, member_id text NOT NULL, account text NOT NULL,
                              PRIMARY KEY (community_id, member_id));
"""


async def apply_directory_event(conn: asyncpg.Connection, e: Envelope) -> None:
    """Who a member is as a person. Each row is an upsert (an address verified later replaces an earlier one),
    so the order these arrive in does not matter."""
    d = e.data
    if e.type == "EmailAddressVerified":
        await conn.execute(
            "INSERT INTO people VALUES ($1, $2, $3) ON CONFLICT (person_id) DO UPDATE SET email = EXCLUDED.email, "
            "verified_at = EXCLUDED.verified_at WHERE people.verified_at <= EXCLUDED.verified_at",
            d["person_id"], d["email"], e.time)
    elif e.type == "CommunityAccountOpened":
        await conn.execute("INSERT INTO community_accounts VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                           d["community_id"], d["account"], d["person_id"])
    elif e.type == "MemberAccountLinked":
        await conn.execute("INSERT INTO member_accounts VALUES ($1, $2, $3) ON CONFLICT (community_id, member_id) "
                           "DO UPDATE SET account = EXCLUDED.account", e.community_id, d["member_id"], d["account"])


DIRECTORY = Subscription("notifications-directory", [
    "*.identity.EmailAddressVerified", "*.identity.CommunityAccountOpened", "*.members.MemberAccountLinked"],
    apply_directory_event)
# Every event of a community with webhook endpoints queues its deliveries (webhooks.queue). It only writes
# rows on the connection it is given, so it follows the bus like a read model: a fetched batch in one
# transaction (a reaction takes one event per transaction, for the aggregates it loads) — the whole bus
# passes through it. The durable name is the one it had as a reaction: a running deployment carries on.
WEBHOOK_QUEUE = Subscription("notifications-webhooks", ["*.>"], queue)
SUBSCRIPTIONS = [DIRECTORY, WEBHOOK_QUEUE]


def raising_reaction(runtime: Runtime) -> Subscription:
    """Every event that needs someone raises their notifications, in the same transaction as the roster and
    the facts kept for later messages — one ordered consumer, so a job's title and a community's stewards are
    known before an offer on the job or an application to the community."""
    store = runtime.store

    async def react(conn: asyncpg.Connection, envelope: Envelope) -> None:
        if envelope.service == "members":
            await ROSTER(conn, envelope)
        await remember(conn, envelope)
        for cause in await causes(conn, envelope):
            ctx = CommandContext(actor=f"notifications:{envelope.type}", community_id=envelope.community_id,
                                 causation_id=str(envelope.id))
            for member_id in dict.fromkeys(cause.members):
                if cause.opt_in and not await opted_in(store, conn, envelope.community_id, member_id, cause.kind):
                    continue
                await handlers.raise_notification(store, conn, envelope, cause.kind, member_id, cause.facts, ctx,
                                                  names=cause.names, quoted=cause.quoted,
                                                  quoted_from=cause.quoted_from)

    # The gateway's events: partnerships proposed to a community, partners' job requests received (federation).
    return Subscription("notifications-causes", ["*.members.>", "*.referrals.>", "*.sessions.>", "*.gateway.>"],
                        react)


async def opted_in(store: EventStore, conn: asyncpg.Connection, community_id: str, member_id: str,
                   kind: str) -> bool:
    """Whether the person behind a member asked for a kind that starts off: their wishes as they are when the
    cause arrives (a member with no signed-in person linked has none, so hears nothing of it)."""
    person_id = await conn.fetchval(
        "SELECT c.person_id FROM member_accounts m JOIN community_accounts c ON c.community_id = m.community_id "
        "AND c.account = m.account WHERE m.community_id = $1 AND m.member_id = $2", community_id, member_id)
    return person_id is not None and (await handlers.preferences(store, str(person_id))).wants(kind)

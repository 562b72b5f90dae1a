"""Faults on the bus itself, through the real services: a poison message among real traffic, and a
flood of the same events delivered again and again.

The library-level versions (one consumer, a table) are in tests/foundation/test_relay_and_consumer.py;
these run every consumer of every service against the gateway's write load.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from nats.js import JetStreamContext

from kizuna import bus
from tests.reliability.harness import (
    DUPLICATE_FLOOD,
    WRITES,
    JoinLoad,
    assert_exactly_once,
    bus_messages,
    converge,
    figures,
    found,
    roster_rows,
    stored_joins,
)
from tests.support import SERVICES, Ecosystem, eventually

# Every consumer that follows the members service's events, by service.
MEMBER_FOLLOWERS = {"gateway": "gateway-directory", "referrals": "referrals-roster", "sessions": "sessions-roster",
                    "identity": "identity-members", "notifications": "notifications-causes"}
MAX_DELIVER = 3


@pytest.fixture
async def stack(ecosystem: Ecosystem) -> AsyncIterator[tuple[httpx.AsyncClient, JetStreamContext]]:
    # The poison below claims a stream version far ahead, so every follower holds it for order_wait
    # (ack_wait + 10 s) before trying it: a short ack wait keeps that short.
    ecosystem.start_replicated(*SERVICES, KIZUNA_CONSUMER_MAX_DELIVER=str(MAX_DELIVER),
                               KIZUNA_CONSUMER_ACK_WAIT_SECONDS="5")
    nc = await bus.connect(ecosystem.nats.url, "bus-faults-test")
    try:
        async with httpx.AsyncClient(base_url=ecosystem.url("gateway"), timeout=30) as http:
            yield http, nc.jetstream()
    finally:
        await nc.close()


async def drained(js: JetStreamContext, eco: Ecosystem, names: list[str]) -> bool:
    """Every named consumer has been handed every message and has acknowledged (or terminated) it."""
    for name in names:
        info = await js.consumer_info(eco.prefix.upper(), f"{eco.prefix}-{name}")
        if info.num_pending or info.num_ack_pending:
            return False
    return True


async def test_a_poison_event_is_dead_lettered_by_every_follower_and_the_rest_flow(
    stack: tuple[httpx.AsyncClient, JetStreamContext], ecosystem: Ecosystem
) -> None:
    http, js = stack
    communities = [await found(http, ecosystem, "Poisoned")]
    cid = communities[0][0]
    load = JoinLoad(ecosystem, communities, writers=2)
    load.start()
    await load.until_accepted(WRITES // 4)
    # A producer bug: a MemberJoined without a member id, on the subject every roster follows.
    poison_id = str(uuid.uuid4())
    poison = {"specversion": "1.0", "id": poison_id, "source": "kizuna/members", "type": "MemberJoined",
              "subject": f"community-{cid}", "time": "2031-01-01T00:00:00+00:00", "communityid": cid,
              "datacontenttype": "application/json", "streamversion": 10_000, "sequence": 10_000,
              "data": {"community_id": cid, "display_name": "Nobody", "role": "member"}}
    await js.publish(f"{ecosystem.prefix}.{cid}.members.MemberJoined", json.dumps(poison).encode(),
                     headers={"Nats-Msg-Id": poison_id})
    poisoned_at = time.monotonic()
    await load.until(load.attempted + WRITES // 2)
    await load.stop()
    assert not load.unexpected and not load.refused, (load.unexpected[:3], load.refused)

    stored = await stored_joins(ecosystem, [cid])
    assert_exactly_once(load, stored)
    recovery = await converge(ecosystem, http, stored)  # every real join arrived, the poison applied nowhere

    async def dead_letters() -> list[dict[str, Any]]:
        letters = await bus_messages(js, f"{ecosystem.prefix.upper()}_DLQ", f"{ecosystem.prefix}_dlq.>")
        return letters if len(letters) >= len(MEMBER_FOLLOWERS) else []

    letters = await eventually(dead_letters, timeout=60)
    assert sorted(letter["consumer"] for letter in letters) == sorted(MEMBER_FOLLOWERS.values())
    for letter in letters:
        assert letter["event"]["id"] == poison_id and letter["attempts"] == MAX_DELIVER, letter
        assert "member_id" in letter["error"], letter["error"]
    await eventually(lambda: drained(js, ecosystem, list(MEMBER_FOLLOWERS.values())), timeout=30)
    for service, consumer in MEMBER_FOLLOWERS.items():
        conn = await asyncpg.connect(ecosystem.database_url(service))
        try:
            # Dead-lettered, not applied: no inbox row claims it was.
            assert not await conn.fetchval("SELECT count(*) FROM inbox WHERE consumer = $1 AND event_id = $2",
                                           consumer, uuid.UUID(poison_id))
        finally:
            await conn.close()
    figures("poison_message", writes_accepted=load.total_accepted, writes_lost=0, duplicates=0,
            dead_letters=len(letters), attempts_each=MAX_DELIVER,
            poison_to_converged_seconds=round(time.monotonic() - poisoned_at, 2),
            converged_after_load_stopped_seconds=round(recovery, 2))


async def test_a_duplicate_flood_is_applied_once(
    stack: tuple[httpx.AsyncClient, JetStreamContext], ecosystem: Ecosystem
) -> None:
    http, js = stack
    communities = [await found(http, ecosystem, "Flooded")]
    cid, owner = communities[0]
    load = JoinLoad(ecosystem, communities, writers=2)
    load.start()
    await load.until_accepted(WRITES // 4)
    await load.stop()
    # Some members leave again: a redelivered MemberJoined applied a second time would bring them back.
    leavers = load.accepted[cid][: max(3, len(load.accepted[cid]) // 4)]
    for member in leavers:
        left = await http.post(f"/v1/communities/{cid}/members/{member}/leave", headers=ecosystem.operator_headers(),
                               json={})
        assert left.status_code == 204, left.text
    stored = await stored_joins(ecosystem, [cid])
    assert_exactly_once(load, stored)
    expected = {cid: set(stored[cid]) - set(leavers)}
    await eventually(lambda: _rosters_are(ecosystem, expected), timeout=60)
    before = (await http.get(f"/v1/communities/{cid}/health", headers=ecosystem.operator_headers())).json()

    # The flood: every event of this community re-published many times, each copy with a new Nats-Msg-Id
    # so that JetStream's duplicate window cannot drop it — only the consumers' inboxes stand in the way.
    # Newest first, so that without the inbox an old MemberJoined would bring back a member who left.
    originals = list(await bus_messages(js, ecosystem.prefix.upper(), f"{ecosystem.prefix}.{cid}.members.>"))
    assert len(originals) == len(stored[cid]) + len(leavers)
    copies = 0
    for _ in range(DUPLICATE_FLOOD):
        acks = [await js.publish_async(f"{ecosystem.prefix}.{cid}.members.{m['type']}", json.dumps(m).encode(),
                                       headers={"Nats-Msg-Id": str(uuid.uuid4())}) for m in reversed(originals)]
        await asyncio.gather(*acks)
        copies += len(acks)
    flooded_at = time.monotonic()
    await eventually(lambda: drained(js, ecosystem, list(MEMBER_FOLLOWERS.values())), timeout=120)
    drained_after = time.monotonic() - flooded_at

    assert await _rosters_are(ecosystem, expected), "a redelivered event was applied again"
    after = (await http.get(f"/v1/communities/{cid}/health", headers=ecosystem.operator_headers())).json()
    assert after["members"] == before["members"] == len(expected[cid])
    assert after["roles"] == before["roles"]
    # Each read model applied every member stream exactly up to its head, once: its applied versions say so
    # (kizuna.ordering; versioned events are recognised by version, not by an inbox row).
    heads: dict[str, int] = {}
    for message in originals:
        heads[str(message["subject"])] = max(heads.get(str(message["subject"]), 0), int(message["streamversion"]))
    for service, consumer in MEMBER_FOLLOWERS.items():
        conn = await asyncpg.connect(ecosystem.database_url(service))
        try:
            rows = await conn.fetch("SELECT stream_id, version FROM applied_versions WHERE projection = $1 "
                                    "AND stream_id = ANY($2::text[])", consumer, list(heads))
        finally:
            await conn.close()
        assert {row["stream_id"]: row["version"] for row in rows} == heads, service
    figures("duplicate_flood", events=len(originals), copies_published=copies, copies_per_event=DUPLICATE_FLOOD,
            consumers=len(MEMBER_FOLLOWERS), deliveries=copies * len(MEMBER_FOLLOWERS), duplicates_applied=0,
            members_before=before["members"], members_after=after["members"],
            drained_seconds=round(drained_after, 2))
    del owner


async def _rosters_are(eco: Ecosystem, expected: dict[str, set[str]]) -> bool:
    for service in MEMBER_FOLLOWERS:
        if await roster_rows(eco, service, list(expected)) != expected:
            return False
    return True

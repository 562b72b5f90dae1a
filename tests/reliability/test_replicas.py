"""Two replicas of a service share each durable consumer; one stalls past the ack wait (issue 18, item 2).

The stalled replica's fetched messages come back ``ack_wait`` later, after the events behind them were
applied by the other replica: a ``MemberJoined`` redelivered after its ``MemberLeft``. Without the per-stream
version guard (kizuna.ordering) the member who left stayed active in the referrals roster and in the
gateway directory. Real processes, a real JetStream stream, the members' events published as its relay does.
"""

from __future__ import annotations

import asyncio
import os
import signal

import asyncpg

from kizuna import bus
from tests.support import BusPublisher, Ecosystem, eventually

ACK_WAIT = 2.0
MEMBERS = 100


async def test_a_member_who_left_stays_inactive_whatever_replica_stalled(ecosystem: Ecosystem) -> None:
    settings = {"KIZUNA_CONSUMER_ACK_WAIT_SECONDS": str(ACK_WAIT)}
    ecosystem.start("referrals", "gateway", **settings)
    stalled = [ecosystem.start_replica("referrals", **settings), ecosystem.start_replica("gateway", **settings)]
    nc = await bus.connect(ecosystem.nats.url, "replicas-test")
    js = nc.jetstream()
    await bus.ensure_streams(js, ecosystem.prefix.upper(), ecosystem.prefix)
    publisher = BusPublisher(ecosystem, js)
    cid, _ = await publisher.found({})
    stream = f"community-{cid}"
    members = [f"m{n:03}" for n in range(MEMBERS)]
    try:
        for n, member in enumerate(members):
            if n == MEMBERS // 5:  # both second replicas stop while holding whatever they had fetched
                for proc in stalled:
                    assert proc.process is not None
                    os.kill(proc.process.pid, signal.SIGSTOP)
            await publisher.publish("members", stream, cid, "MemberJoined",
                                    {"member_id": member, "display_name": member, "role": "member"})
            await publisher.publish("members", stream, cid, "MemberLeft", {"member_id": member})
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)
        # What the stalled replicas fetched and never acknowledged (the other replicas keep up meanwhile).
        stuck = [(await js.consumer_info(ecosystem.prefix.upper(), durable)).num_ack_pending or 0
                 for durable in (f"{ecosystem.prefix}-referrals-roster", f"{ecosystem.prefix}-gateway-directory")]
        await asyncio.sleep(ACK_WAIT * 3)  # well past the ack wait: their messages went to the other replicas
    finally:
        for proc in stalled:
            assert proc.process is not None
            os.kill(proc.process.pid, signal.SIGCONT)

    queries = {"roster": "SELECT member_id, active FROM roster WHERE community_id = $1",
               "directory": "SELECT member_id, active FROM directory WHERE community_id = $1"}

    async def settled(service: str, table: str) -> bool:
        conn = await asyncpg.connect(ecosystem.database_url(service))
        try:
            rows = await conn.fetch(queries[table], cid)
        finally:
            await conn.close()
        return len(rows) == MEMBERS + 1 and not any(r["active"] for r in rows if r["member_id"] in members)

    await eventually(lambda: settled("referrals", "roster"), timeout=60)
    await eventually(lambda: settled("gateway", "directory"), timeout=60)
    await asyncio.sleep(ACK_WAIT * 2)  # late redeliveries of the stalled replicas' messages change nothing
    assert await settled("referrals", "roster")
    assert await settled("gateway", "directory")
    await nc.drain()
    assert all(stuck), f"a stalled replica held no message ({stuck}): the test did not exercise redelivery"
    for proc in ecosystem.processes.values():
        assert "unhandled error" not in proc.log_path.read_text()

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
import uuid

import asyncpg
import httpx

from kizuna import bus
from tests.gateway.test_gateway import SESSION
from tests.reliability.harness import scheduled_sessions
from tests.support import REPLICAS, BusPublisher, Ecosystem, eventually, issue

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


async def test_killing_one_of_two_replicas_under_write_load_loses_and_doubles_nothing(ecosystem: Ecosystem) -> None:
    """The gateway takes turns with a service's replicas and fails over when one is gone (issue 18): four
    writers post sessions through the gateway while one of two (``KIZUNA_REPLICAS``) sessions replicas is
    killed with SIGKILL.
    Only requests in flight to it at that moment may be refused (honestly: 502); every accepted write is
    stored once, and every write after the kill is accepted."""
    ecosystem.start("sessions")
    others = [ecosystem.start_replica("sessions") for _ in range(REPLICAS - 1)]
    first, second = ecosystem.processes["sessions"], others[0]
    replicas = "|".join(f"http://127.0.0.1:{proc.port}" for proc in (first, *others))
    urls = ",".join(f"{name}=http://127.0.0.1:{ecosystem.ports[name]}" for name in ("members", "referrals"))
    ecosystem.start("gateway", KIZUNA_SERVICE_URLS=f"{urls},sessions={replicas}")
    async with httpx.AsyncClient(base_url=ecosystem.url("gateway"), timeout=30) as http:
        nc = await bus.connect(ecosystem.nats.url, "replica-kill-test")
        js = nc.jetstream()
        await bus.ensure_streams(js, ecosystem.prefix.upper(), ecosystem.prefix)
        cid, owner = await BusPublisher(ecosystem, js).found({})
        await nc.close()
        token = await issue(http, ecosystem, cid, owner)
        headers = {"authorization": f"Bearer {token}"}
        await eventually(lambda: _sessions_answer(http, cid, headers))
        accepted: list[str] = []
        refused: list[int] = []
        after_kill: list[int] = []
        killed = asyncio.Event()

        async def writer(w: int) -> None:
            for n in range(30):
                was_killed = killed.is_set()
                response = await http.post(f"/v1/communities/{cid}/sessions", json={**SESSION, "title": f"{w}-{n}"},
                                           headers={**headers, "Idempotency-Key": f"k-{w}-{n}-{uuid.uuid4()}"})
                if response.status_code == 201:
                    accepted.append(response.json()["session_id"])
                else:
                    assert response.status_code in (502, 503, 504), response.text
                    refused.append(response.status_code)
                    if was_killed:
                        after_kill.append(response.status_code)
                if w == 0 and n == 10:
                    await _both_answered(first.port, *(proc.port for proc in others))
                    second.kill()
                    killed.set()

        await asyncio.gather(*(writer(w) for w in range(4)))
    assert not after_kill, f"writes sent after the kill were refused: {after_kill}"
    assert len(refused) <= 4, refused  # at most the requests in flight to the killed replica
    stored = await scheduled_sessions(ecosystem)
    assert set(accepted) <= set(stored), "an accepted write was lost"
    assert len(stored) == len(set(stored)) and len(accepted) == len(set(accepted)), "a write was applied twice"


async def _sessions_answer(http: httpx.AsyncClient, cid: str, headers: dict[str, str]) -> bool:
    return (await http.get(f"/v1/communities/{cid}/sessions", headers=headers)).status_code == 200


async def _both_answered(*ports: int) -> None:
    """Every replica has answered writes already: the gateway takes turns with them."""
    async with httpx.AsyncClient(timeout=10) as http:
        for port in ports:
            figures = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            assert any(line.startswith("kizuna_http_requests_total") and 'method="POST"' in line
                       and 'status="201"' in line for line in figures.splitlines()), f"replica {port}: {figures[:500]}"

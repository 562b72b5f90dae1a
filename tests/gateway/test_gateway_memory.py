"""What the gateway keeps in memory: the health answer per community (dropped when the read model
notifies a change, never served while the listener is down) and the revoked token ids (a revocation
is refused at once by the replica that made it and shortly after by every other replica)."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import ValidationError

from kizuna.service import migrate
from kizuna.settings import ServiceSettings
from services.gateway import projections
from services.gateway.memory import (
    HEALTH_CHANNEL,
    LISTENER_NAME,
    REVOCATIONS_CHANNEL,
    HealthCache,
    Revocations,
)
from tests.support import (
    BusPublisher,
    Ecosystem,
    ServiceProcess,
    eventually,
    issue,
    sessions_behind_gateway,
    unclaimed_port,
)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token_id(token: str) -> str:
    jti: str = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["jti"]
    return jti


@pytest.fixture
async def cached(ecosystem: Ecosystem) -> AsyncIterator[tuple[BusPublisher, httpx.AsyncClient]]:
    """Sessions and the gateway, with answers kept long enough that only a notification refreshes them."""
    async with sessions_behind_gateway(ecosystem, "gateway-memory-test", KIZUNA_HEALTH_CACHE_SECONDS="600") as running:
        yield running


async def _listener_pid(db: asyncpg.Connection) -> int | None:
    pid: int | None = await db.fetchval(
        "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()",
        LISTENER_NAME)
    return pid


async def test_health_answers_are_kept_until_the_read_model_notifies_a_change(
    cached: tuple[BusPublisher, httpx.AsyncClient], ecosystem: Ecosystem
) -> None:
    bus, http = cached
    cid, owner = await bus.found({"aiko": "member"})
    token = await issue(http, ecosystem, cid, owner)
    path = f"/v1/communities/{cid}/health"

    async def name() -> str:
        response = await http.get(path, headers=bearer(token))
        assert response.status_code == 200, response.text
        value: str = response.json()["name"]
        return value

    assert await name() == "Hikari"
    db = await asyncpg.connect(ecosystem.database_url("gateway"))
    quiet = await asyncpg.connect(ecosystem.database_url("gateway"))
    await quiet.execute("SET session_replication_role = replica")  # its writes fire no triggers
    attempts = 0

    async def kept() -> bool:
        """An answer read, then a write that does not notify, then the same answer again."""
        nonlocal attempts
        attempts += 1
        before = await name()
        await quiet.execute("UPDATE community_caps SET name = $2 WHERE community_id = $1", cid, f"Quiet {attempts}")
        return await name() == before

    try:
        await eventually(kept, timeout=10)  # the listener is up (it starts with the process)
        # A write that does not notify stays unseen: the answer comes from memory.
        current = await name()
        await quiet.execute("UPDATE community_caps SET name = 'Renamed quietly' WHERE community_id = $1", cid)
        assert await name() == current
        # The notification drops the answer.
        await db.execute("SELECT pg_notify($1, $2)", HEALTH_CHANNEL, cid)
        await eventually(lambda: _named(http, path, token, "Renamed quietly"), timeout=5)
        await quiet.execute("UPDATE community_caps SET name = 'Renamed quietly again' WHERE community_id = $1", cid)
        assert await name() == "Renamed quietly"
        await db.execute("SELECT pg_notify($1, '*')", HEALTH_CHANNEL)  # a truncated table: drop everything
        await eventually(lambda: _named(http, path, token, "Renamed quietly again"), timeout=5)
        # Any write to the tables the figures read notifies (a trigger), whoever makes it.
        await db.execute("UPDATE community_caps SET name = 'Renamed' WHERE community_id = $1", cid)
        await eventually(lambda: _named(http, path, token, "Renamed"), timeout=5)

        # Events through the consumers: a member joining shows (the cache keeps answers 600 s).
        await bus.publish("members", f"community-{cid}", cid, "MemberJoined", {
            "member_id": "ken", "display_name": "Ken", "role": "facilitator", "joined_via": "invitation"})
        joined = await eventually(lambda: _figures_when(http, path, token, lambda f: f["members"] == 3), timeout=10)
        assert joined["roles"] == {"owner": 1, "facilitator": 1, "member": 1}
        await bus.publish("referrals", "job-1", cid, "JobRequestPosted", {"title": "Logo"})
        await eventually(lambda: _figures_when(http, path, token, lambda f: f["jobs"]["open"] == 1), timeout=10)
        await bus.publish("sessions", "session-1", cid, "AttendanceRecorded", {"attendees": ["aiko", "ken"]})
        await eventually(lambda: _figures_when(http, path, token, lambda f: f["sessions"]["held"] == 1), timeout=10)

        # The listener's connection drops: the process reconnects, and drops what it kept meanwhile.
        first = await _listener_pid(db)
        assert first is not None
        await db.execute("SELECT pg_terminate_backend($1)", first)
        await quiet.execute("UPDATE community_caps SET name = 'While it was away' WHERE community_id = $1", cid)
        await eventually(lambda: _named(http, path, token, "While it was away"), timeout=10)
        second = await eventually(lambda: _listener_pid(db), timeout=10)
        assert second != first
        # ... and keeps answers again once it is back (and has read the revoked ids): an answer read,
        # then a write that does not notify, then the same answer again.
        await eventually(kept, timeout=10)
    finally:
        await quiet.close()
        await db.close()


async def _named(http: httpx.AsyncClient, path: str, token: str, expected: str) -> bool:
    response = await http.get(path, headers=bearer(token))
    return response.status_code == 200 and response.json()["name"] == expected


async def _figures_when(http: httpx.AsyncClient, path: str, token: str, check: Any) -> dict[str, Any] | None:
    response = await http.get(path, headers=bearer(token))
    figures: dict[str, Any] = response.json()
    return figures if response.status_code == 200 and check(figures) else None


async def test_a_revocation_is_refused_at_once_here_and_shortly_after_by_another_replica(
    cached: tuple[BusPublisher, httpx.AsyncClient], ecosystem: Ecosystem
) -> None:
    bus, http = cached
    cid, owner = await bus.found({"aiko": "member"})
    owner_token = await issue(http, ecosystem, cid, owner)
    first_dashboard = await issue(http, ecosystem, cid, owner, scope="dashboard")
    second_dashboard = await issue(http, ecosystem, cid, owner, scope="dashboard")
    path = f"/v1/communities/{cid}/health"
    # A revocation before the second replica starts: it reads the revoked ids when it connects.
    assert (await http.post(f"/v1/tokens/{token_id(first_dashboard)}/revocation",
                            headers=bearer(owner_token), json={})).status_code == 204

    port = unclaimed_port()
    replica = ServiceProcess("gateway", port, ecosystem.env("gateway", KIZUNA_HTTP_PORT=str(port)),
                             ecosystem.workdir / "gateway-replica.log").start()
    try:
        replica.wait_ready()
        async with httpx.AsyncClient(base_url=replica.url, timeout=30) as other:
            loaded = await other.get(path, headers=bearer(first_dashboard))
            assert loaded.status_code == 401 and loaded.json()["type"].endswith("revoked-token")
            assert (await other.get(path, headers=bearer(second_dashboard))).status_code == 200
            assert (await http.get(path, headers=bearer(second_dashboard))).status_code == 200

            revoked = await http.post(f"/v1/tokens/{token_id(second_dashboard)}/revocation",
                                      headers=bearer(owner_token), json={})
            assert revoked.status_code == 204
            # Read your own write: the replica that revoked refuses the very next request.
            here = await http.get(path, headers=bearer(second_dashboard))
            assert here.status_code == 401 and here.json()["type"].endswith("revoked-token")

            async def refused_there() -> bool:
                response = await other.get(path, headers=bearer(second_dashboard))
                return response.status_code == 401 and response.json()["type"].endswith("revoked-token")

            await eventually(refused_there, timeout=2, interval=0.02)
            assert (await other.get(path, headers=bearer(owner_token))).status_code == 200
    finally:
        replica.stop()
    log = replica.log_path.read_text()
    assert "unhandled error" not in log, log[-3000:]


# ---- the triggers that notify ----

async def test_writes_to_what_the_figures_read_notify_in_their_transaction(pool: asyncpg.Pool,
                                                                           database_url: str) -> None:
    await migrate(pool, projections.MIGRATIONS)
    heard: list[tuple[str, str]] = []
    listener = await asyncpg.connect(database_url)
    try:
        await listener.add_listener(HEALTH_CHANNEL, lambda _c, _p, channel, payload: heard.append((channel, payload)))
        await listener.add_listener(REVOCATIONS_CHANNEL,
                                    lambda _c, _p, channel, payload: heard.append((channel, payload)))

        async def notified() -> list[tuple[str, str]]:
            await listener.execute("SELECT 1")  # a round trip, so notifications already sent have arrived
            await asyncio.sleep(0.05)
            await listener.execute("SELECT 1")
            got = sorted(heard)
            heard.clear()
            return got

        async with pool.acquire() as conn:
            async with conn.transaction():
                await conn.execute("INSERT INTO community_caps VALUES ('c1', 'One', 150), ('c2', 'Two', 150)")
                await conn.execute("INSERT INTO directory (community_id, member_id, role, active) "
                                   "VALUES ('c1', 'm1', 'owner', true), ('c1', 'm2', 'member', true)")
                assert await notified() == [], "nothing before the commit"
            assert await notified() == [(HEALTH_CHANNEL, "c1"), (HEALTH_CHANNEL, "c2")]  # one per community

            await conn.execute("UPDATE directory SET role = 'member' WHERE member_id = 'm2'")
            assert await notified() == [], "an update that changes nothing is silent"
            await conn.execute("UPDATE health_items SET status = 'x'")
            await conn.execute("INSERT INTO health_items VALUES ('job', 'j1', 'c2', 'open')")
            await conn.execute("UPDATE health_items SET status = 'completed' WHERE item_id = 'j1'")
            await conn.execute("INSERT INTO health_attendance VALUES ('s1', 'c1', '{m1,m2}')")
            await conn.execute("DELETE FROM directory WHERE member_id = 'm2'")
            assert await notified() == [(HEALTH_CHANNEL, "c1"), (HEALTH_CHANNEL, "c1"),
                                        (HEALTH_CHANNEL, "c2"), (HEALTH_CHANNEL, "c2")]
            await conn.execute("INSERT INTO revoked_tokens (token_id) VALUES ('t1') ON CONFLICT DO NOTHING")
            await conn.execute("INSERT INTO revoked_tokens (token_id) VALUES ('t1') ON CONFLICT DO NOTHING")
            assert await notified() == [(REVOCATIONS_CHANNEL, "t1")]
            await conn.execute("TRUNCATE directory, health_items")
            assert await notified() == [(HEALTH_CHANNEL, "*")]
    finally:
        await listener.close()


# ---- the single statement gives the same figures as the six queries it replaced ----

async def _six_queries(conn: asyncpg.Connection, community_id: str, few_ties: int) -> dict[str, Any] | None:
    """The health figures as they were computed before (one query per figure), kept as the reference."""
    cap_row = await conn.fetchrow("SELECT name, member_cap FROM community_caps WHERE community_id = $1",
                                  community_id)
    if cap_row is None:
        return None
    roles = {r["role"]: r["n"] for r in await conn.fetch(
        "SELECT role, count(*) AS n FROM directory WHERE community_id = $1 AND active GROUP BY role", community_id)}
    members = sum(roles.values())
    joined_30d = await conn.fetchval(
        "SELECT count(*) FROM directory WHERE community_id = $1 AND joined_at > now() - interval '30 days'",
        community_id)
    ties = await conn.fetch(
        """
        WITH pairs AS (
            SELECT DISTINCT a.m AS member_id, b.m AS other
              FROM health_attendance s, unnest(s.attendees) a(m), unnest(s.attendees) b(m)
             WHERE s.community_id = $1 AND a.m <> b.m)
        SELECT d.member_id, d.display_name, count(p.other) AS ties
          FROM directory d LEFT JOIN pairs p ON p.member_id = d.member_id
         WHERE d.community_id = $1 AND d.active
         GROUP BY d.member_id, d.display_name
        HAVING count(p.other) <= $2
         ORDER BY ties, d.display_name, d.member_id
        """, community_id, few_ties)
    items = {(r["kind"], r["status"]): r["n"] for r in await conn.fetch(
        "SELECT kind, status, count(*) AS n FROM health_items WHERE community_id = $1 GROUP BY kind, status",
        community_id)}
    attendance = await conn.fetchrow(
        "SELECT count(*) AS sessions, coalesce(avg(cardinality(attendees)), 0) AS average "
        "FROM health_attendance WHERE community_id = $1", community_id)
    worked, failed = items.get(("referral", "worked"), 0), items.get(("referral", "did-not-work"), 0)
    return {
        "community_id": community_id, "name": cap_row["name"], "members": members,
        "member_cap": cap_row["member_cap"],
        "fill_ratio": round(members / cap_row["member_cap"], 3) if cap_row["member_cap"] else None,
        "joined_last_30_days": joined_30d,
        "roles": {"owner": roles.get("owner", 0), "facilitator": roles.get("facilitator", 0),
                  "member": roles.get("member", 0)},
        "members_per_facilitator": round(members / max(roles.get("facilitator", 0) + roles.get("owner", 0), 1), 2),
        "members_with_few_ties": [{"member_id": r["member_id"], "display_name": r["display_name"],
                                   "ties": r["ties"]} for r in ties],
        "jobs": {"open": items.get(("job", "open"), 0), "completed": items.get(("job", "completed"), 0),
                 "cancelled": items.get(("job", "cancelled"), 0)},
        "referrals": {"worked": worked, "did_not_work": failed,
                      "success_rate": round(worked / (worked + failed), 3) if worked + failed else None},
        "sessions": {"held": attendance["sessions"], "average_attendance": round(float(attendance["average"]), 2)},
        "goals": {"active": items.get(("goal", "active"), 0), "achieved": items.get(("goal", "achieved"), 0),
                  "abandoned": items.get(("goal", "abandoned"), 0)},
    }


async def test_one_statement_gives_the_figures_the_six_queries_gave(pool: asyncpg.Pool) -> None:
    await migrate(pool, projections.MIGRATIONS)
    rng = random.Random(9)
    communities = [f"c{n}" for n in range(6)]
    async with pool.acquire() as conn:
        for n, cid in enumerate(communities[:-1]):  # the last one is unknown to the gateway
            await conn.execute("INSERT INTO community_caps VALUES ($1, $2, $3)", cid, f"Community {n}",
                               [150, 10, 0, 40, 150][n])
            size = [0, 1, 12, 40, 150][n]
            for m in range(size):
                await conn.execute(
                    "INSERT INTO directory VALUES ($1, $2, $3, $4, $5, now() - make_interval(days => $6))",
                    cid, f"m{m}", f"Name {rng.randrange(size)}", rng.choice(["owner", "facilitator", "member"]),
                    rng.random() > 0.1, rng.randrange(60))
            for i in range(rng.randrange(30)):
                kind, status = rng.choice([("job", "open"), ("job", "completed"), ("job", "cancelled"),
                                           ("referral", "worked"), ("referral", "did-not-work"), ("goal", "active"),
                                           ("goal", "achieved"), ("goal", "abandoned")])
                await conn.execute("INSERT INTO health_items VALUES ($1, $2, $3, $4)", kind, f"{cid}-{i}", cid, status)
            for s in range(rng.randrange(6) if size else 0):
                attendees = [f"m{rng.randrange(size)}" for _ in range(rng.randrange(1, 9))]
                await conn.execute("INSERT INTO health_attendance VALUES ($1, $2, $3)", f"{cid}-s{s}", cid, attendees)
        for cid in communities:
            for few_ties in (0, 1, 3, 150):
                assert await projections.health(conn, cid, few_ties) == await _six_queries(conn, cid, few_ties), \
                    (cid, few_ties)


# ---- the cache's own rules, without a server ----

async def test_an_answer_computed_across_a_change_is_not_kept() -> None:
    cache = HealthCache(max_age=60)
    cache.listening = True
    computed = 0
    release = asyncio.Event()

    async def compute() -> bytes:
        nonlocal computed
        computed += 1
        await release.wait()
        return b"%d" % computed

    slow = asyncio.create_task(cache.get("c1", 1, compute))
    await asyncio.sleep(0)
    cache.invalidate("c1")  # the read model changed while the answer was being computed
    release.set()
    assert await slow == b"1"
    assert await cache.get("c1", 1, compute) == b"2", "the answer from before the change was not kept"
    assert await cache.get("c1", 1, compute) == b"2" and computed == 2

    cache.invalidate("c1")
    assert await cache.get("c1", 1, compute) == b"3"
    assert await cache.get("c1", 0, compute) == b"4"  # each few_ties value is its own answer
    cache.invalidate("c2")
    assert await cache.get("c1", 1, compute) == b"3"


async def test_nothing_is_kept_or_served_while_the_listener_is_down_and_answers_age_out() -> None:
    cache = HealthCache(max_age=60)
    computed = 0

    async def compute() -> bytes:
        nonlocal computed
        computed += 1
        return b"%d" % computed

    assert await cache.get("c1", 1, compute) == b"1"
    assert await cache.get("c1", 1, compute) == b"2" and len(cache) == 0  # not listening: not kept
    cache.listening = True
    assert await cache.get("c1", 1, compute) == b"3"
    assert await cache.get("c1", 1, compute) == b"3"
    cache.listening = False
    assert await cache.get("c1", 1, compute) == b"4"  # kept, but not served while down
    cache.listening = True
    cache.clear()  # what the listener does when it is back
    assert await cache.get("c1", 1, compute) == b"5"

    aging = HealthCache(max_age=0.05)
    aging.listening = True
    assert await aging.get("c1", 1, compute) == b"6"
    assert await aging.get("c1", 1, compute) == b"6"
    await asyncio.sleep(0.06)
    assert await aging.get("c1", 1, compute) == b"7"

    off = HealthCache(max_age=0)
    off.listening = True
    assert await off.get("c1", 1, compute) == b"8"
    assert await off.get("c1", 1, compute) == b"9"


async def test_the_cache_keeps_the_most_recently_used_answers() -> None:
    cache = HealthCache(max_age=60, entries=3)
    cache.listening = True

    async def answer_for(cid: str) -> bytes:
        return await cache.get(cid, 1, lambda: _bytes(cid))

    for cid in ("a", "b", "c"):
        await answer_for(cid)
    await answer_for("a")  # used again: "b" is now the least recently used
    await answer_for("d")
    assert len(cache) == 3
    misses = cache.misses
    await answer_for("a")
    await answer_for("c")
    await answer_for("d")
    assert cache.misses == misses
    await answer_for("b")
    assert cache.misses == misses + 1


async def _bytes(text: str) -> bytes:
    return text.encode()


def test_revocations_answer_from_memory_only_while_listening() -> None:
    revocations = Revocations()
    revocations.add("t1")
    assert revocations.is_revoked("t1") is None  # down: the database decides
    revocations.listening = True
    assert revocations.is_revoked("t1") is True and revocations.is_revoked("t2") is False
    revocations.load({"t2": time.time()})
    assert revocations.is_revoked("t1") and revocations.is_revoked("t2")


def test_revocations_are_forgotten_once_every_token_they_refuse_has_expired() -> None:
    revocations = Revocations(keep_seconds=31 * 86400)
    revocations.listening = True
    now = time.time()
    revocations.load({"old": now - 32 * 86400, "recent": now - 86400})
    assert revocations.is_revoked("recent") and not revocations.is_revoked("old") and len(revocations) == 1


def test_the_cache_setting() -> None:
    assert ServiceSettings().health_cache_seconds == 30
    assert ServiceSettings(health_cache_seconds=0).health_cache_seconds == 0
    assert ServiceSettings(health_cache_seconds=45.5).health_cache_seconds == 45.5
    for wrong in ("-1", "soon", "nan", "inf"):
        with pytest.raises(ValidationError):
            ServiceSettings(health_cache_seconds=wrong)

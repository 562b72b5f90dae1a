"""Idempotency-Key through the gateway over real processes (security issue 17, item 4).

The holes: simultaneous requests with one key each applied (only settled answers were stored, after
forwarding), and a retry after a 5xx whose write had in fact committed applied again. Each test holds
the job stream's own advisory lock in the referrals database (the lock ``kizuna_append`` takes) to make
the service slow exactly where it matters: after reading the request, before its append commits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest

from kizuna import bus
from kizuna.handling import CommandContext
from tests.support import BusPublisher, Ecosystem, eventually, issue

JOB = {"title": "Logo for the kominka café", "description": "A hand-drawn logo", "deadline": "2031-03-01"}


class Community:
    def __init__(self, ecosystem: Ecosystem, http: httpx.AsyncClient, cid: str, member: str, token: str) -> None:
        self.ecosystem, self.http, self.cid, self.member, self.token = ecosystem, http, cid, member, token

    def headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Idempotency-Key": key}

    async def post_job(self, key: str, body: dict[str, Any] = JOB) -> httpx.Response:
        return await self.http.post(f"/v1/communities/{self.cid}/jobs", headers=self.headers(key), json=body)

    def job_id_for(self, key: str) -> str:
        """The id the referrals service derives for a job posted by our member under ``key``."""
        return CommandContext(actor=f"member:{self.member}", community_id=self.cid,
                              idempotency_key=key).new_id("job")

    async def jobs_in_read_model(self) -> list[str]:
        listed = await self.http.get(f"/v1/communities/{self.cid}/jobs",
                                     headers={"Authorization": f"Bearer {self.token}"})
        assert listed.status_code == 200, listed.text
        return [item["job_id"] for item in listed.json()["items"]]

    async def stored_posts(self) -> int:
        conn = await asyncpg.connect(self.ecosystem.database_url("referrals"))
        try:
            return int(await conn.fetchval(
                "SELECT count(*) FROM events WHERE event_type = 'JobRequestPosted' AND metadata->>'community_id' = $1",
                self.cid))
        finally:
            await conn.close()

    async def reserved_until(self, key: str) -> Any:
        """When the gateway's in-progress reservation of ``key`` expires (None: no reservation in progress)."""
        conn = await asyncpg.connect(self.ecosystem.database_url("gateway"))
        try:
            return await conn.fetchval("SELECT reserved_until FROM idempotency WHERE key = $1 AND status IS NULL", key)
        finally:
            await conn.close()

    @asynccontextmanager
    async def stream_held(self, job_id: str) -> AsyncIterator[None]:
        """Holds ``job-<id>``'s append lock: the service reads the request, then waits to append it."""
        conn = await asyncpg.connect(self.ecosystem.database_url("referrals"))
        try:
            await conn.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", f"job-{job_id}")
            yield
        finally:
            await conn.close()  # the session's lock goes with it


async def _community(ecosystem: Ecosystem, http: httpx.AsyncClient) -> Community:
    nc = await bus.connect(ecosystem.nats.url, "idempotency-test")
    try:
        js = nc.jetstream()
        await bus.ensure_streams(js, ecosystem.prefix.upper(), ecosystem.prefix)
        cid, _ = await BusPublisher(ecosystem, js).found({"aiko": "member"})
    finally:
        await nc.drain()
    token = await issue(http, ecosystem, cid, "aiko")

    async def roster_knows_aiko() -> bool:
        response = await http.get(f"/v1/communities/{cid}/reputation/aiko",
                                  headers={"Authorization": f"Bearer {token}"})
        return response.status_code == 200

    await eventually(roster_knows_aiko)
    return Community(ecosystem, http, cid, "aiko", token)


@asynccontextmanager
async def _running(ecosystem: Ecosystem, **gateway_settings: str) -> AsyncIterator[Community]:
    ecosystem.start("referrals")
    ecosystem.start("gateway", **gateway_settings)
    async with httpx.AsyncClient(base_url=ecosystem.url("gateway"), timeout=30) as http:
        yield await _community(ecosystem, http)
    for proc in ecosystem.processes.values():
        log = proc.log_path.read_text()
        assert "unhandled error" not in log, log[-3000:]


@pytest.fixture
async def community(ecosystem: Ecosystem) -> AsyncIterator[Community]:
    async with _running(ecosystem) as running:
        yield running


@pytest.fixture
async def impatient(ecosystem: Ecosystem) -> AsyncIterator[Community]:
    """A gateway that waits only 1 s for a service (its reservations then live 1 s + the margin)."""
    async with _running(ecosystem, KIZUNA_UPSTREAM_TIMEOUT_SECONDS="1") as running:
        yield running


async def test_twenty_simultaneous_requests_with_one_key_post_one_job(community: Community) -> None:
    answers = await asyncio.gather(*(community.post_job("post-the-logo-job") for _ in range(20)))

    first = next(a for a in answers if a.status_code == 201)
    job_id = first.json()["job_id"]
    assert job_id == community.job_id_for("post-the-logo-job")
    for answer in answers:
        if answer.status_code == 409:  # still in progress when its wait ran out: it says so, and how to go on
            assert answer.json()["type"].endswith("idempotency-key-in-progress") and answer.headers["retry-after"]
        else:
            assert (answer.status_code, answer.json()) == (201, first.json()), answer.text
    replayed = [a for a in answers if a.headers.get("idempotent-replayed") == "true"]
    assert len(replayed) >= 18, "at most the first request (and a 409's retry) reached the service"
    assert await community.jobs_in_read_model() == [job_id]
    assert await community.stored_posts() == 1

    again = await community.post_job("post-the-logo-job")
    assert (again.status_code, again.json()) == (201, first.json())
    different = await community.post_job("post-the-logo-job", {**JOB, "title": "Another job"})
    assert different.status_code == 422, different.text
    assert different.headers["content-type"].startswith("application/problem+json")
    assert different.json()["errors"][0]["field"] == "Idempotency-Key"


async def test_a_duplicate_of_a_request_still_running_waits_then_gets_409_and_later_the_answer(
    community: Community,
) -> None:
    key = "slow-logo-job"
    async with community.stream_held(community.job_id_for(key)):
        first = asyncio.create_task(community.post_job(key))
        # The first holds the key (reserved, then stuck at the held stream) before its duplicate is sent.
        await eventually(lambda: _reserved(community, key))
        started = time.monotonic()
        duplicate = await community.post_job(key)
        waited = time.monotonic() - started
        assert duplicate.status_code == 409, duplicate.text
        assert duplicate.json()["type"].endswith("idempotency-key-in-progress")
        assert duplicate.headers["retry-after"] == "1"
        assert 4 < waited < 9, f"a duplicate waits a bounded few seconds for the first answer ({waited:.1f}s)"
        different = await community.post_job(key, {**JOB, "title": "Another job"})
        assert different.status_code == 422 and different.json()["errors"][0]["field"] == "Idempotency-Key"
        assert not first.done()
    answered = await first
    assert answered.status_code == 201, answered.text
    retried = await community.post_job(key)
    assert (retried.status_code, retried.json()) == (201, answered.json())
    assert retried.headers["idempotent-replayed"] == "true"
    assert await community.stored_posts() == 1


async def test_a_retry_after_a_504_whose_write_committed_creates_nothing_new(
    impatient: Community, ecosystem: Ecosystem,
) -> None:
    key = "logo-job-after-a-timeout"
    job_id = impatient.job_id_for(key)
    async with impatient.stream_held(job_id):
        timed_out = await impatient.post_job(key)
        assert timed_out.status_code == 504, timed_out.text
        # The docs say: retry a 504 with the same key. This retry is sent while the first is still running.
        while_running = asyncio.create_task(impatient.post_job(key))
        await asyncio.sleep(0.3)
    # Both requests reach the append; the first commits, the second finds its own events stored.
    concurrent_retry = await while_running
    assert concurrent_retry.status_code in (201, 504), concurrent_retry.text
    if concurrent_retry.status_code == 201:
        assert concurrent_retry.json()["job_id"] == job_id
    await eventually(lambda: _stored(impatient, 1))

    # The service dies (kill -9) after the commit; a fresh process must recognise the write from the store alone.
    referrals = ecosystem.processes["referrals"]
    referrals.kill()
    referrals.start()
    referrals.wait_ready()
    retried = await impatient.post_job(key)
    assert retried.status_code == 201, retried.text
    assert retried.json()["job_id"] == job_id
    assert await impatient.jobs_in_read_model() == [job_id]
    assert await impatient.stored_posts() == 1


async def test_a_reservation_left_by_a_crashed_gateway_expires(impatient: Community, ecosystem: Ecosystem) -> None:
    key = "logo-job-through-a-crash"
    job_id = impatient.job_id_for(key)
    gateway_db = await asyncpg.connect(ecosystem.database_url("gateway"))
    try:
        async with impatient.stream_held(job_id):
            lost = asyncio.create_task(impatient.post_job(key))
            reserved_until = await eventually(lambda: impatient.reserved_until(key))
            gateway = ecosystem.processes["gateway"]
            gateway.kill()  # kill -9 while forwarding: the reservation is never settled nor released
            with pytest.raises(httpx.HTTPError):
                await lost
            gateway.start()
            gateway.wait_ready()
        # The service went on and committed the first request; nobody got its answer.
        await eventually(lambda: _stored(impatient, 1))
        assert await impatient.reserved_until(key) == reserved_until, "the crashed request's reservation is still there"

        retried = await impatient.post_job(key)
        while retried.status_code == 409:  # as a client would: the reservation is in progress until it expires
            await asyncio.sleep(float(retried.headers["retry-after"]))
            retried = await impatient.post_job(key)
        now = await gateway_db.fetchval("SELECT now()")
        assert now >= reserved_until, "the retry went through only once the reservation expired"
        assert retried.status_code == 201, retried.text
        assert retried.json()["job_id"] == job_id
        assert await impatient.jobs_in_read_model() == [job_id]
        assert await impatient.stored_posts() == 1
        settled = await gateway_db.fetchrow("SELECT status, reservation FROM idempotency WHERE key = $1", key)
        assert settled["status"] == 201 and settled["reservation"] is None
    finally:
        await gateway_db.close()


async def _stored(community: Community, count: int) -> bool:
    return await community.stored_posts() == count


async def _reserved(community: Community, key: str) -> bool:
    return await community.reserved_until(key) is not None

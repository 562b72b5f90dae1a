"""Delivering the federation outbox: ordered per partnership, retried with capped exponential backoff.

Each partnership side is one queue, delivered strictly in order: a message that fails holds back
the ones behind it (a status update must not overtake the job it is about). Transient failures
(network, 5xx, 408, 429) are retried after ``min(cap, base·2^attempts)`` seconds with jitter;
the cap is minutes, not days, so a partner that comes back is caught up within one cap (the
complaint Synapse's users make about backoff that cuts a returning server off). After
``give_up`` a message is ``dead``; a 4xx answer is ``rejected`` at once. Both stay visible to the
operator, who can send them again. One gateway replica delivers at a time: a session advisory lock
on a connection of the deliverer's own (never a pooled one, whose session the pool would hand on),
which must still answer before each round — a deliverer whose lock connection died stops before it
sends again, since another replica may hold the lock by then.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx

from kizuna.addresses import AddressGuard, UnsafeAddress
from kizuna.errors import Problem
from kizuna.single_runner import LostLock, SessionLock, holding
from kizuna.telemetry import tracer

from .identity import INBOX, Identity
from .signing import public_key_text, sign

log = logging.getLogger("kizuna.federation")
LOCK_KEY = 0x6B697A756E61_02  # "kizuna" + 2: one delivering replica per database
QUEUED_CHANNEL = "kizuna_federation"  # notified by the outbox projection in the queueing transaction
LOCK_HOLDER_NAME = "kizuna-federation-deliverer"  # the lock connection's application_name

LocalReceiver = Callable[[bytes], Awaitable[str]]


@dataclass
class RetryPolicy:
    base_seconds: float = 2.0
    cap_seconds: float = 300.0
    give_up_seconds: float = 72 * 3600.0

    def delay(self, attempts: int) -> float:
        return min(self.cap_seconds, self.base_seconds * 2 ** min(attempts, 30)) * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret


class Transient(Exception):
    pass


class Rejected(Exception):
    pass


class Deliverer:
    def __init__(self, pool: asyncpg.Pool, http: httpx.AsyncClient, identity: Identity, policy: RetryPolicy,
                 local: LocalReceiver, timeout: float = 10.0, guard: AddressGuard | None = None, *,
                 database_url: str) -> None:
        self.pool, self.http, self.identity, self.policy = pool, http, identity, policy
        self.local, self.timeout, self.guard = local, timeout, guard or AddressGuard()
        self.database_url = database_url
        self.rounds = 0  # rounds delivered while holding the lock (tests and logs)
        # The lock while delivering: checked before each round and each message, so a deliverer that lost it
        # sends at most the message in flight again (which the partner's inbox recognises by its id).
        self._lock: SessionLock | None = None

    async def run(self, idle_seconds: float = 0.5, lock_retry_seconds: float = 5.0) -> None:
        """Delivers whenever a message is queued (LISTEN) and at least every ``idle_seconds`` (retries)."""
        queued = asyncio.Event()

        def wake(*_: object) -> None:
            queued.set()

        while True:
            try:
                async with holding(self.database_url, LOCK_KEY, LOCK_HOLDER_NAME, lock_retry_seconds) as lock:
                    await lock.connection.add_listener(QUEUED_CHANNEL, wake)
                    self._lock = lock
                    try:
                        while True:
                            queued.clear()
                            await lock.check()
                            self.rounds += 1
                            if not await self.deliver_due():
                                with contextlib.suppress(TimeoutError):
                                    await asyncio.wait_for(queued.wait(), idle_seconds)
                    finally:
                        self._lock = None
            except asyncio.CancelledError:
                raise
            except LostLock as error:
                log.warning("federation deliverer lost its lock connection; delivery paused until it holds the "
                            "lock again", extra={"error": str(error)})
                await asyncio.sleep(0.5)

    async def deliver_due(self) -> int:
        """One round over every queue whose head is due; returns how many messages were settled."""
        async with self.pool.acquire() as conn:
            heads = await conn.fetch(
                "SELECT DISTINCT ON (partnership_id, community_id) * FROM federation_outbox WHERE status = 'pending' "
                "ORDER BY partnership_id, community_id, seq")
        due = [head for head in heads if head["next_attempt_at"] <= datetime.now(UTC)]
        settled = await asyncio.gather(*(self._drain(head["partnership_id"], head["community_id"]) for head in due))
        return sum(settled)

    async def _drain(self, partnership_id: str, community_id: str) -> int:
        settled = 0
        while True:
            async with self.pool.acquire() as conn:
                row = await conn.fetchrow(
                    "SELECT * FROM federation_outbox WHERE status = 'pending' AND partnership_id = $1 "
                    "AND community_id = $2 ORDER BY seq LIMIT 1", partnership_id, community_id)
            if row is None or row["next_attempt_at"] > datetime.now(UTC):
                return settled
            if self._lock is not None:
                await self._lock.check()
            if not await self._attempt(row):
                return settled
            settled += 1

    async def _attempt(self, row: asyncpg.Record) -> bool:
        """True when the message is settled (delivered, rejected or dead) and the queue may move on."""
        message = json.loads(row["body"]) if isinstance(row["body"], str) else dict(row["body"])
        message["from"]["origin"] = self.identity.origin
        if message["type"] == "partnership.proposed":
            # First contact: the receiver fetches nothing from us until its owner accepts, so the proposal
            # carries the key that signs it (checked against our document at acceptance).
            message["payload"]["proposer_key"] = {"key_id": self.identity.key_id, "alg": "ed25519",
                                                  "public_key": public_key_text(self.identity.key.public_key())}
        body = json.dumps(message).encode()
        with tracer().start_as_current_span("federation.deliver") as span:
            span.set_attribute("kizuna.message_id", str(row["message_id"]))
            span.set_attribute("kizuna.destination", row["destination"])
            try:
                await self._send(row["destination"], str(row["message_id"]), body)
            except Rejected as error:
                await self._settle(row, "rejected", str(error))
                return True
            except Transient as error:
                age = (datetime.now(UTC) - row["created_at"]).total_seconds()
                if age >= self.policy.give_up_seconds:
                    await self._settle(row, "dead", str(error))
                    return True
                delay = self.policy.delay(row["attempts"])
                async with self.pool.acquire() as conn:
                    await conn.execute(
                        "UPDATE federation_outbox SET attempts = attempts + 1, last_error = $2, "
                        "next_attempt_at = now() + $3::interval WHERE message_id = $1",
                        row["message_id"], str(error)[:500], timedelta(seconds=delay))
                log.info("federation delivery failed; will retry",
                         extra={"message_id": str(row["message_id"]), "retry_in": round(delay, 1),
                                "error": str(error)[:200]})
                return False
            await self._settle(row, "delivered", None)
            return True

    async def _settle(self, row: asyncpg.Record, status: str, error: str | None) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(
                "UPDATE federation_outbox SET status = $2, attempts = attempts + 1, last_error = $3, "
                "delivered_at = CASE WHEN $2 = 'delivered' THEN now() END WHERE message_id = $1",
                row["message_id"], status, error and error[:500])
        if status != "delivered":
            log.warning("federation message not delivered", extra={"message_id": str(row["message_id"]),
                                                                   "status": status, "error": error})

    async def _send(self, destination: str, message_id: str, body: bytes) -> None:
        if destination == self.identity.origin:  # a sister community on this deployment: no network hop
            try:
                await self.local(body)
            except Problem as problem:
                raise Rejected(f"{problem.status}: {problem.detail}") from problem
            return
        try:
            await self.guard.check(destination)
        except UnsafeAddress as error:
            raise Rejected(f"refused to deliver: {error}") from error
        url = f"{destination}{INBOX}"
        headers = sign(self.identity.key, method="POST", path=urlsplit(url).path or "/", body=body,
                       origin=self.identity.origin, message_id=message_id, created=int(time.time()),
                       nonce=secrets.token_urlsafe(16))
        headers["Content-Type"] = "application/json"
        try:
            response = await self.http.post(url, content=body, headers=headers, timeout=self.timeout)
        except httpx.HTTPError as error:
            raise Transient(f"{type(error).__name__}: {error}") from error
        if response.status_code < 300:
            return
        detail = _detail(response)
        if response.status_code >= 500 or response.status_code in (408, 425, 429):
            raise Transient(f"{response.status_code}: {detail}")
        raise Rejected(f"{response.status_code}: {detail}")


def _detail(response: httpx.Response) -> str:
    try:
        body: Any = response.json()
        return str(body.get("detail") or body)[:300]
    except ValueError:
        return response.text[:300]


async def retry_now(pool: asyncpg.Pool, message_id: str) -> bool:
    """The operator sends a rejected or dead message again, or hurries a pending one."""
    async with pool.acquire() as conn:
        status = await conn.fetchval(
            "UPDATE federation_outbox SET status = 'pending', next_attempt_at = now() WHERE message_id = $1::uuid "
            "AND status <> 'delivered' RETURNING status", message_id)
    return status is not None

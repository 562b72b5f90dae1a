"""``Idempotency-Key`` on writes through the gateway: one request per key applies, at most once.

1. **Reserve before forwarding.** One statement inserts an "in progress" row for (principal, key) with the
   request's fingerprint, or takes over one whose reservation has expired (a gateway that crashed while
   forwarding). Whoever inserted it forwards; no pool connection is held while the service works.
2. **A concurrent duplicate waits** (polling, bounded by ``DUPLICATE_WAIT_SECONDS``) for the first answer
   and replays it, or gets 409 ``idempotency-key-in-progress`` with ``Retry-After``. A different request
   under a key already used is a 422 naming ``Idempotency-Key``, in progress or settled.
3. **Settled answers (< 500) are kept and replayed**; a 5xx releases the reservation so the client's retry
   goes through. That retry is safe even if the failed write did commit (a 504 after the service wrote,
   a service killed before answering): the service derives the created aggregates' ids and its events'
   ids from the key (``CommandContext.new_id`` / ``event_ids``), the event store recognises events it
   already holds, and the service answers as the first attempt would have.

A reservation lives for the upstream timeout plus ``RESERVATION_MARGIN_SECONDS``: no forward holds it
longer, so an older one was abandoned.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
from fastapi import Request, Response

from kizuna.auth import Principal
from kizuna.errors import Invalid
from kizuna.problems import problem_response
from kizuna.service import Migration, runtime_of

from .proxy import principal_key, request_fingerprint

MAX_KEY_LENGTH = 200
RESERVATION_MARGIN_SECONDS = 5.0
DUPLICATE_WAIT_SECONDS = 5.0
REPLAYED_HEADER = "Idempotent-Replayed"

# A row with no status is a reservation: `reservation` names the request holding it until `reserved_until`.
MIGRATION = Migration("gateway_0003_idempotency_reservations", """
ALTER TABLE idempotency ALTER COLUMN status DROP NOT NULL, ALTER COLUMN body DROP NOT NULL,
    ADD COLUMN reservation uuid, ADD COLUMN reserved_until timestamptz;
""")

_RESERVE = """
INSERT INTO idempotency AS i (principal, key, request_hash, reservation, reserved_until)
VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))
ON CONFLICT (principal, key) DO UPDATE
   SET reservation = EXCLUDED.reservation, reserved_until = EXCLUDED.reserved_until, created_at = now()
 WHERE i.status IS NULL AND i.reserved_until < now() AND i.request_hash = EXCLUDED.request_hash
RETURNING i.reservation
"""
_SETTLE = """
UPDATE idempotency SET status = $4, body = $5, content_type = $6, reservation = NULL, reserved_until = NULL
 WHERE principal = $1 AND key = $2 AND reservation = $3
"""
_RELEASE = "DELETE FROM idempotency WHERE principal = $1 AND key = $2 AND reservation = $3"


async def idempotent(request: Request, who: Principal, key: str, body: bytes, upstream_timeout: float,
                     forward: Callable[[], Awaitable[Response]]) -> Response:
    """Forward at most once per (principal, key); replay the settled answer to every other request."""
    if len(key) > MAX_KEY_LENGTH:
        raise Invalid("Idempotency-Key", f"at most {MAX_KEY_LENGTH} characters")
    pool: asyncpg.Pool = runtime_of(request).pool
    owner, fingerprint = principal_key(who), request_fingerprint(request, body)
    reservation = uuid.uuid4()
    lifetime = upstream_timeout + RESERVATION_MARGIN_SECONDS
    deadline = time.monotonic() + min(DUPLICATE_WAIT_SECONDS, lifetime)
    pause = 0.02
    while True:
        async with pool.acquire() as conn:
            if await conn.fetchval(_RESERVE, owner, key, fingerprint, reservation, lifetime) is not None:
                break
            stored = await conn.fetchrow(
                "SELECT request_hash, status, body, content_type FROM idempotency WHERE principal = $1 AND key = $2",
                owner, key)
        if stored is None:  # released (a 5xx) between the two statements: reserve again
            continue
        if stored["request_hash"] != fingerprint:
            raise Invalid("Idempotency-Key", "already used for a different request")
        if stored["status"] is not None:
            return Response(stored["body"], status_code=stored["status"], headers={REPLAYED_HEADER: "true"},
                            media_type=stored["content_type"])
        if time.monotonic() >= deadline:
            return problem_response(409, "idempotency-key-in-progress", "Request in progress",
                                    "a request with this Idempotency-Key is still being processed; retry with the "
                                    "same key to get its answer", request.url.path, headers={"Retry-After": "1"})
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.25)
    try:
        response = await forward()
    except BaseException:
        await asyncio.shield(_release(pool, owner, key, reservation))
        raise
    if response.status_code >= 500:
        # Failures may be retried for real; the services make that retry safe if the write did happen.
        await _release(pool, owner, key, reservation)
        return response
    async with pool.acquire() as conn:
        await conn.execute(_SETTLE, owner, key, reservation, response.status_code, bytes(response.body),
                           response.headers.get("content-type"))
    return response


async def _release(pool: asyncpg.Pool, owner: str, key: str, reservation: uuid.UUID) -> None:
    async with pool.acquire() as conn:
        await conn.execute(_RELEASE, owner, key, reservation)

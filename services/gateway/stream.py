"""The live event stream of a community (Server-Sent Events), as the read policy lets each token see it.

Each event read from JetStream goes through ``kizuna.read_policy``: an event the token may not read over
REST is not sent, and fields withheld from it are removed. The stream stays up on its own: a
``: heartbeat`` comment goes out after ``KIZUNA_STREAM_HEARTBEAT_SECONDS`` (15 s) without data, measured
by the wall clock, and a fetch that times out (nats-py raises its own ``TimeoutError`` or asyncio's) is
an empty poll. It also ends on its own: every round checks that the token has not expired and is not
revoked and that its member is still in the community (with the role they have now, which the policy
then applies); when one no longer holds, a last ``stream-closed`` event says why and the stream ends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from kizuna.auth import Principal
from kizuna.errors import Forbidden, Invalid, Problem
from kizuna.personal import reveal
from kizuna.problems import PROBLEM_RESPONSES
from kizuna.read_policy import READING_SCOPES, Viewer, visible_event
from kizuna.service import runtime_of
from kizuna.upcasting import EventVersionTooNew, upcast
from kizuna.vault import KeyVault

from . import projections
from .api import gateway_principal
from .memory import GatewayMemory

log = logging.getLogger("kizuna.gateway.stream")

router = APIRouter(responses=PROBLEM_RESPONSES)
HEARTBEAT_SECONDS = 15.0  # the default of KIZUNA_STREAM_HEARTBEAT_SECONDS
FETCH_BATCH = 100
FETCH_SECONDS = 1.0  # one round: how late an expiry, a revocation or a heartbeat may be noticed
DATABASE_CHECK_SECONDS = 5.0  # while the read-model listener is down, the database is asked this often


@dataclasses.dataclass
class Authority:
    """What the stream's token may still see, checked each round: it ends the stream when the token
    expires, is revoked, or its member leaves or is removed; a role change changes the viewer."""

    request: Request
    who: Principal
    viewer: Viewer
    next_database_check: float = 0.0

    async def ended(self) -> str | None:
        who = self.who
        if who.is_operator or who.token_id is None:
            return None
        if who.expires_at is not None and time.time() >= who.expires_at:
            return "token-expired"
        memory: GatewayMemory = self.request.app.state.memory
        revoked = memory.revocations.is_revoked(who.token_id)
        listening = revoked is not None
        if not listening:
            if time.monotonic() < self.next_database_check:
                return None
            self.next_database_check = time.monotonic() + DATABASE_CHECK_SECONDS
            async with runtime_of(self.request).pool.acquire() as conn:
                revoked = await projections.is_revoked(conn, who.token_id)
        if revoked:
            return "token-revoked"
        if who.community_id is None or who.member_id is None:
            return None
        community_id, member_id = who.community_id, who.member_id

        async def lookup() -> str | None:
            async with runtime_of(self.request).pool.acquire() as conn:
                return await projections.standing(conn, community_id, member_id)

        role = await memory.standings.role_of(community_id, member_id, lookup)
        if role == projections.GONE:
            return "member-gone"
        if role is not None and role != self.viewer.role:
            self.viewer = dataclasses.replace(self.viewer, role=role)
        return None


@router.get("/v1/communities/{community_id}/events", tags=["dashboards"],
            summary="Live event stream (Server-Sent Events) of what the token may read, resumable with Last-Event-ID",
            responses={200: {"content": {"text/event-stream": {}}}})
async def community_events(community_id: str, request: Request, type: str | None = Query(None),
                           last_event_id: int | None = Query(None, ge=0),
                           who: Principal = Depends(gateway_principal)) -> StreamingResponse:
    who.require_community(community_id)
    if not who.is_operator and who.scope not in READING_SCOPES:
        raise Forbidden(f"a {who.scope} token cannot read the event stream")
    runtime = runtime_of(request)
    if runtime.js is None:
        raise Problem("the event bus is not connected yet", status=503, slug="service-unavailable",
                      title="Service unavailable")
    header_id = request.headers.get("last-event-id")
    if header_id is not None:
        if not header_id.isdigit():
            raise Invalid("Last-Event-ID", "must be the id of an event this stream sent")
        last_event_id = int(header_id)
    types = {t.strip() for t in type.split(",") if t.strip()} if type else None
    subject = f"{runtime.settings.subject_prefix}.{community_id}.>"
    config = ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                            opt_start_seq=(last_event_id or 0) + 1, inactive_threshold=60)
    subscription = await runtime.js.pull_subscribe(subject, stream=runtime.settings.stream_name, config=config)
    heartbeat = runtime.settings.stream_heartbeat_seconds
    authority = Authority(request, who, Viewer.of(who))
    return StreamingResponse(_events(request, subscription, authority, types, heartbeat,
                                     runtime_of(request).vault),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _events(request: Request, subscription: Any, authority: Authority, types: set[str] | None,
                  heartbeat: float, vault: KeyVault | None = None) -> AsyncIterator[bytes]:
    """The stream's body. Personal fields are opened with ``vault`` (placeholders without one)."""
    fetch_seconds = min(FETCH_SECONDS, heartbeat)
    last_sent = time.monotonic()
    try:
        yield b": kizuna event stream\n\n"
        while True:
            if await request.is_disconnected():
                return
            reason = await authority.ended()
            if reason is not None:
                yield f"event: stream-closed\ndata: {json.dumps({'reason': reason})}\n\n".encode()
                return
            try:
                messages = await subscription.fetch(FETCH_BATCH, timeout=fetch_seconds)
            except (NatsTimeout, TimeoutError):  # nats-py raises its own or asyncio's (the builtin) when nothing came
                messages = []
            except Exception as error:  # the bus went away: end cleanly; the client resumes with Last-Event-ID
                log.warning("event stream ended: the bus failed", extra={"error": repr(error)})
                yield f"event: stream-closed\ndata: {json.dumps({'reason': 'bus-unavailable'})}\n\n".encode()
                return
            for msg in messages:
                body = json.loads(msg.data)
                if types and body.get("type") not in types:
                    continue
                if isinstance(body.get("data"), dict):  # personal fields as every reader sees them (kizuna.personal)
                    body["data"] = (await vault.reveal_all([body["data"]]))[0] if vault \
                        else reveal(body["data"], {})
                    body = current_form(body)
                shown = visible_event(body, authority.viewer)
                if shown is None:
                    continue
                sequence = msg.metadata.sequence.stream
                yield f"id: {sequence}\nevent: {shown.get('type')}\ndata: {json.dumps(shown)}\n\n".encode()
                last_sent = time.monotonic()
            if time.monotonic() - last_sent >= heartbeat:
                yield b": heartbeat\n\n"
                last_sent = time.monotonic()
    finally:
        await asyncio.shield(_unsubscribe(subscription))


def current_form(body: dict[str, Any]) -> dict[str, Any]:
    """An event as dashboards read it: in the current version of its type, as every reader in Kizuna sees it
    (``kizuna.upcasting``), its ``dataversion`` saying which. One newer than this gateway knows (published by
    a newer replica during a rolling upgrade) goes as published: its ``dataversion`` says so."""
    try:
        version, data = upcast(str(body.get("type")), int(body.get("dataversion") or 1), body["data"])
    except EventVersionTooNew:
        return body
    return body if data is body["data"] else {**body, "data": data, "dataversion": version}


async def _unsubscribe(subscription: Any) -> None:
    try:
        await subscription.unsubscribe()
    except Exception:  # the consumer expires on its own after inactive_threshold
        return


__all__ = ["HEARTBEAT_SECONDS", "router"]

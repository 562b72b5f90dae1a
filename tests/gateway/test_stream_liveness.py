"""Security issue 17, item 9: the live stream broke. No heartbeat ever came (the loop counted fetch
timeouts, which did not come as assumed), a bare ``asyncio.TimeoutError`` from nats-py's fetch ended
the stream with "Exception in ASGI application", and a stream outlived its token's revocation and expiry.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import httpx
from nats.errors import TimeoutError as NatsTimeout

from kizuna.auth import Principal
from kizuna.read_policy import Viewer
from services.gateway import stream as stream_module
from tests.support import BusPublisher, Ecosystem, issue, sessions_behind_gateway


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token_id(token: str) -> str:
    return str(json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["jti"])


async def read_until(lines: AsyncIterator[str], wanted: str, seconds: float) -> tuple[list[str], float]:
    """The stream's next lines up to the first one containing ``wanted``, and how long that took."""
    began, seen = time.monotonic(), []
    async with asyncio.timeout(seconds):
        async for line in lines:
            seen.append(line)
            if wanted in line:
                return seen, time.monotonic() - began
    raise AssertionError(f"the stream ended before {wanted!r}: {seen}")


HEARTBEAT_SECONDS = 3.0  # the test's own setting (the default is stream_module.HEARTBEAT_SECONDS): a shorter wait


async def test_a_real_heartbeat_arrives_and_the_stream_stays_up_past_it(ecosystem: Ecosystem) -> None:
    async with sessions_behind_gateway(ecosystem, "liveness-test",
                                       KIZUNA_STREAM_HEARTBEAT_SECONDS=str(HEARTBEAT_SECONDS)) as (bus, http):
        cid, owner = await bus.found({"aiko": "member"})
        token = await issue(http, ecosystem, cid, owner)
        async with http.stream("GET", f"/v1/communities/{cid}/events", headers=bearer(token)) as response:
            assert response.status_code == 200
            lines = response.aiter_lines()
            await read_until(lines, "data: ", 15)  # the community's own events come first
            _, waited = await read_until(lines, ": heartbeat", HEARTBEAT_SECONDS + 10)
            assert waited <= HEARTBEAT_SECONDS + 3, f"the heartbeat took {waited:.1f} s"
            await bus.publish("members", f"community-{cid}", cid, "MemberJoined", {
                "member_id": "sora", "display_name": "Sora after the heartbeat", "role": "member",
                "joined_via": "invitation"})
            await read_until(lines, "Sora after the heartbeat", 15)  # the stream still delivers
    log = ecosystem.processes["gateway"].log_path.read_text()
    assert "Exception in ASGI application" not in log, log[-3000:]


async def test_a_revoked_token_closes_its_open_stream(
    stack: tuple[BusPublisher, httpx.AsyncClient], ecosystem: Ecosystem
) -> None:
    bus, http = stack
    cid, _ = await bus.found({"aiko": "member"})
    token = await issue(http, ecosystem, cid, "aiko")
    async with http.stream("GET", f"/v1/communities/{cid}/events", headers=bearer(token)) as response:
        assert response.status_code == 200
        lines = response.aiter_lines()
        await read_until(lines, "data: ", 15)
        revoked = await http.post(f"/v1/tokens/{token_id(token)}/revocation", headers=ecosystem.operator_headers(),
                                  json={"reason": "lost phone"})
        assert revoked.status_code == 204
        closing, took = await read_until(lines, 'data: {"reason"', 10)
        assert closing[-2:] == ["event: stream-closed", 'data: {"reason": "token-revoked"}'], closing
        assert took < 5
        rest = [line async for line in lines]
        assert not [line for line in rest if line.startswith("data: ")], "nothing after the close"
    again = await http.get(f"/v1/communities/{cid}/events", headers=bearer(token))
    assert again.status_code == 401 and again.json()["type"].endswith("revoked-token")


async def test_an_expiring_token_closes_its_open_stream_and_a_removed_member_too(
    stack: tuple[BusPublisher, httpx.AsyncClient], ecosystem: Ecosystem
) -> None:
    bus, http = stack
    cid, owner = await bus.found({"aiko": "member", "ken": "member"})
    await issue(http, ecosystem, cid, owner)  # the gateway's directory has caught up with the community
    short = ecosystem.token(cid, "aiko", "member", ttl=4)
    async with http.stream("GET", f"/v1/communities/{cid}/events", headers=bearer(short)) as response:
        assert response.status_code == 200
        lines = response.aiter_lines()
        closing, took = await read_until(lines, 'data: {"reason"', 12)
        assert closing[-1] == 'data: {"reason": "token-expired"}' and took < 8, (closing, took)

    kens = await issue(http, ecosystem, cid, "ken")
    async with http.stream("GET", f"/v1/communities/{cid}/events", headers=bearer(kens)) as response:
        assert response.status_code == 200
        lines = response.aiter_lines()
        await read_until(lines, "data: ", 15)
        await bus.publish("members", f"community-{cid}", cid, "MemberRemoved", {
            "member_id": "ken", "removed_by": f"member:{owner}", "reason": "asked to leave"})
        closing, _ = await read_until(lines, 'data: {"reason"', 15)
        assert closing[-1] == 'data: {"reason": "member-gone"}', closing


# ---- the loop itself, against a subscription that times out the two ways nats-py does ----

@dataclass
class _Request:
    """Only what the loop asks of the request: whether the client is gone (never, here)."""

    async def is_disconnected(self) -> bool:
        return False


class _TimingOutSubscription:
    """Raises asyncio's TimeoutError, then nats-py's, then hands over one event; then times out again."""

    def __init__(self) -> None:
        self.rounds = 0
        self.unsubscribed = False

    async def fetch(self, batch: int, timeout: float) -> list[Any]:
        self.rounds += 1
        await asyncio.sleep(0.01)
        if self.rounds == 1:
            raise TimeoutError  # what nats-py 2.16 raises from fetch's own deadline (asyncio.TimeoutError)
        if self.rounds == 3:
            body = {"type": "JobStarted", "data": {"community_id": "c", "job_id": "j"}}
            return [SimpleNamespace(data=json.dumps(body).encode(),
                                    metadata=SimpleNamespace(sequence=SimpleNamespace(stream=7)))]
        raise NatsTimeout

    async def unsubscribe(self) -> None:
        self.unsubscribed = True


async def test_fetch_timeouts_of_either_kind_are_empty_polls_and_heartbeats_go_by_the_clock() -> None:
    subscription = _TimingOutSubscription()
    operator = Principal(kind="operator")
    authority = stream_module.Authority(_Request(), operator, Viewer.of(operator))  # type: ignore[arg-type]
    events = stream_module._events(_Request(), subscription, authority, None, heartbeat=0.2)  # type: ignore[arg-type]
    assert isinstance(events, AsyncGenerator)  # an async generator: closed below as the server closes it
    received = []
    async with asyncio.timeout(5):
        async for chunk in events:
            received.append(chunk.decode())
            if sum(c == ": heartbeat\n\n" for c in received) == 2:
                break
    await events.aclose()
    assert received[0] == ": kizuna event stream\n\n"
    assert received[1].startswith("id: 7\nevent: JobStarted\n"), received
    assert received[2:] == [": heartbeat\n\n", ": heartbeat\n\n"]
    assert subscription.rounds > 3 and subscription.unsubscribed

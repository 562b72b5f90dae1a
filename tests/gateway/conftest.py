"""A gateway and the sessions service as real processes; members' events published onto the bus."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from kizuna import bus
from kizuna.envelope import subject_for, to_cloudevent
from kizuna.eventstore import RecordedEvent
from tests.support import Ecosystem, eventually


class BusPublisher:
    """Publishes events exactly as a service's relay would."""

    def __init__(self, eco: Ecosystem, js: Any) -> None:
        self.eco, self.js = eco, js
        self.versions: dict[str, int] = {}

    async def publish(self, service: str, stream_id: str, community_id: str, event_type: str,
                      data: dict[str, Any]) -> None:
        version = self.versions[stream_id] = self.versions.get(stream_id, 0) + 1
        event = RecordedEvent(
            global_position=version, transaction_id=1, stream_id=stream_id, stream_version=version,
            event_id=uuid.uuid4(), type=event_type, data={"community_id": community_id, **data},
            metadata={"community_id": community_id, "actor": "test"}, recorded_at=datetime.now(UTC))
        await self.js.publish(subject_for(self.eco.prefix, service, event),
                              json.dumps(to_cloudevent(service, event), default=str).encode(),
                              headers={"Nats-Msg-Id": str(event.event_id)})

    async def found(self, members: dict[str, str], name: str = "Hikari") -> tuple[str, str]:
        """A community with an owner and ``members`` (id → role); returns (community id, owner id)."""
        cid = str(uuid.uuid4())
        owner = "owner-" + cid[:8]
        stream = f"community-{cid}"
        await self.publish("members", stream, cid, "CommunityFounded", {
            "name": name, "purpose": "p", "values": [], "member_cap": 150, "owner_member_id": owner,
            "owner_display_name": "Owner"})
        for member_id, role in members.items():
            await self.publish("members", stream, cid, "MemberJoined", {
                "member_id": member_id, "display_name": member_id.title(), "role": role,
                "joined_via": "invitation"})
        return cid, owner


@pytest.fixture
async def stack(ecosystem: Ecosystem) -> AsyncIterator[tuple[BusPublisher, httpx.AsyncClient]]:
    ecosystem.start("sessions", "gateway")
    nc = await bus.connect(ecosystem.nats.url, "gateway-test")
    js = nc.jetstream()
    await bus.ensure_streams(js, ecosystem.prefix.upper(), ecosystem.prefix)
    async with httpx.AsyncClient(base_url=ecosystem.url("gateway"), timeout=30) as http:
        yield BusPublisher(ecosystem, js), http
    await nc.drain()
    log = ecosystem.processes["gateway"].log_path.read_text()
    assert "unhandled error" not in log, log[-3000:]


async def issue(http: httpx.AsyncClient, eco: Ecosystem, cid: str, member_id: str, scope: str = "member") -> str:
    """Issues a token through the gateway once its directory has learned the member."""

    async def attempt() -> str | None:
        response = await http.post("/v1/tokens", headers=eco.operator_headers(),
                                   json={"community_id": cid, "member_id": member_id, "scope": scope})
        return response.json()["token"] if response.status_code == 201 else None

    token: str = await eventually(attempt)
    return token

"""What the backbone's tests share: a JetStream context on the test's own stream (``S<unique>``, subjects
``p<unique>.>``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import pytest
from nats.js import JetStreamContext

from kizuna import bus
from kizuna.devstack import NatsServer


@pytest.fixture
async def js(nats_server: NatsServer, unique: str) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_server.url)
    context = nc.jetstream()
    await bus.ensure_streams(context, f"S{unique}", f"p{unique}")
    yield context
    await nc.close()  # not drain: a cancelled consumer's pull subscription would hold a drain for its 30 s timeout

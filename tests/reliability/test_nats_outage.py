"""NATS stopped for a while and restarted under a steady write load through the gateway.

The event store is the source of truth and the outbox relay catches up, so every write keeps being
accepted while the bus is away; afterwards each accepted write is stored once, is on the bus once,
and every other service's read model converges to what a replay of the members event store gives.
A dedicated NATS server is used, so the rest of the suite never sees the outage.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from kizuna import bus
from kizuna.devstack import NatsServer, PostgresServer
from tests.reliability.harness import (
    NATS_OUTAGE_SECONDS,
    WRITES,
    JoinLoad,
    assert_exactly_once,
    bus_messages,
    converge,
    figures,
    found,
    running_stack,
    stored_joins,
)
from tests.support import Ecosystem


@pytest.fixture
def own_nats(workdir: Path, unique: str) -> Iterator[NatsServer]:
    server = NatsServer(workdir / f"nats-outage-{unique}").start()
    yield server
    server.stop()


@pytest.fixture
async def full_stack(postgres: PostgresServer, own_nats: NatsServer, unique: str,
                     workdir: Path) -> AsyncIterator[tuple[Ecosystem, httpx.AsyncClient]]:
    async with running_stack(postgres, own_nats, f"t{unique}", workdir / unique) as stack:
        yield stack


async def test_nats_outage_under_gateway_load_accepts_every_write_and_read_models_converge(
    full_stack: tuple[Ecosystem, httpx.AsyncClient], own_nats: NatsServer
) -> None:
    eco, http = full_stack
    communities = [await found(http, eco, f"Outage {n}") for n in range(2)]
    cids = [cid for cid, _ in communities]
    load = JoinLoad(eco, communities)
    load.start()
    await load.until_accepted(WRITES // 3)
    own_nats.stop()
    stopped_at = time.monotonic()
    during_before = load.attempted
    await asyncio.sleep(NATS_OUTAGE_SECONDS)
    during = load.attempted - during_before
    own_nats.start()  # same port, same JetStream store
    restarted_at = time.monotonic()
    await load.until(max(WRITES, load.attempted + WRITES // 4))
    await load.stop()

    assert not load.unexpected, load.unexpected[:5]
    assert during > 0, "no write was attempted while NATS was away"
    # The bus is not on the write path: nothing may be refused because NATS is away.
    assert sum(load.refused.values()) == 0, load.refused
    assert load.total_accepted == load.attempted

    stored = await stored_joins(eco, cids)
    assert_exactly_once(load, stored)
    recovery = await converge(eco, http, stored)

    # Once on the bus, not more: the relay re-published nothing twice (Nats-Msg-Id) — or if it did,
    # the stream dropped it.
    nc = await bus.connect(own_nats.url, "outage-check")
    try:
        messages = await bus_messages(nc.jetstream(), eco.prefix.upper(), f"{eco.prefix}.*.members.>")
    finally:
        await nc.close()
    ours = [m for m in messages if m["communityid"] in cids]
    assert len(ours) == len({m["id"] for m in ours}) == sum(len(ids) for ids in stored.values())
    figures("nats_outage", outage_seconds=NATS_OUTAGE_SECONDS, writes_attempted=load.attempted,
            writes_accepted=load.total_accepted, writes_during_outage=during, writes_refused=0,
            writes_lost=0, duplicates=0, bus_messages=len(ours),
            outage_measured_seconds=round(restarted_at - stopped_at, 2),
            restart_to_converged_seconds=round(time.monotonic() - restarted_at, 2),
            converged_after_load_stopped_seconds=round(recovery, 2))

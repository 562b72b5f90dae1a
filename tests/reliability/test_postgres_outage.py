"""PostgreSQL crashes (immediate shutdown, as on power loss of the server process) and comes back,
under a steady write load through the gateway.

While it is away, writes get an honest 5xx problem — never a 2xx for something that is not durable;
afterwards no 2xx write is missing, none is stored twice, every service is ready again without a
restart and the read models converge. A dedicated, durable (fsync on) PostgreSQL cluster is used, so
the rest of the suite never sees the outage.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from kizuna import bus
from kizuna.devstack import NatsServer, PostgresServer
from tests.reliability.harness import (
    PG_OUTAGE_SECONDS,
    WRITES,
    JoinLoad,
    assert_exactly_once,
    bus_messages,
    converge,
    figures,
    found,
    logged_errors,
    running_stack,
    stored_joins,
)
from tests.support import Ecosystem, eventually


@pytest.fixture
def own_postgres(workdir: Path, unique: str) -> Iterator[PostgresServer]:
    server = PostgresServer(workdir / f"pg-outage-{unique}", durable=True).start()
    yield server
    server.stop()


@pytest.fixture
async def full_stack(own_postgres: PostgresServer, nats_server: NatsServer, unique: str,
                     workdir: Path) -> AsyncIterator[tuple[Ecosystem, httpx.AsyncClient]]:
    async with running_stack(own_postgres, nats_server, f"t{unique}", workdir / unique) as stack:
        yield stack


def crash(server: PostgresServer) -> None:
    """Immediate shutdown: no checkpoint, clients cut off; the restart runs crash recovery."""
    assert server.process is not None
    server.process.send_signal(signal.SIGQUIT)
    server.process.wait(30)
    server.process = None


async def all_ready(eco: Ecosystem) -> bool:
    async with httpx.AsyncClient(timeout=5) as client:
        for proc in eco.processes.values():  # every replica
            try:
                if (await client.get(f"{proc.url}/readyz")).status_code != 200:
                    return False
            except httpx.HTTPError:
                return False
    return True


async def none_ready(eco: Ecosystem) -> bool:
    async with httpx.AsyncClient(timeout=5) as client:
        for proc in eco.processes.values():
            response = await client.get(f"{proc.url}/readyz")
            if response.status_code != 503 or response.json()["checks"]["postgres"]:
                return False
    return True


async def test_postgres_crash_under_gateway_load_refuses_honestly_and_loses_no_accepted_write(
    full_stack: tuple[Ecosystem, httpx.AsyncClient], own_postgres: PostgresServer
) -> None:
    eco, http = full_stack
    # Short streams: each join folds its community's stream, so long runs spread over more communities.
    communities = [await found(http, eco, f"Crash {n}") for n in range(max(2, WRITES // 150))]
    cids = [cid for cid, _ in communities]
    load = JoinLoad(eco, communities)
    load.start()
    await load.until_accepted(WRITES // 3)
    accepted_before = load.total_accepted
    crash(own_postgres)
    crashed_at = time.monotonic()
    await asyncio.sleep(PG_OUTAGE_SECONDS / 2)
    readiness_during = await none_ready(eco)
    await asyncio.sleep(PG_OUTAGE_SECONDS / 2)
    own_postgres.start()  # same data directory and port: crash recovery, then the same cluster
    restarted_at = time.monotonic()
    await eventually(lambda: all_ready(eco), timeout=60)
    ready_after = time.monotonic() - restarted_at
    accepted_at_restart = load.total_accepted
    await load.until_accepted(accepted_at_restart + WRITES // 4)
    first_accepted_after = load.last_accepted_at - restarted_at
    await load.until(max(WRITES, load.attempted))
    await load.stop()

    assert not load.unexpected, (load.unexpected[:5], logged_errors(eco))
    assert readiness_during, "/readyz should report PostgreSQL away during the outage"
    refused = sum(load.refused.values())
    assert refused > 0, "the outage should have been visible to some writers"
    assert load.total_accepted + refused == load.attempted

    stored = await stored_joins(eco, cids)
    assert_exactly_once(load, stored)
    # A write answered with an error may still have committed (the connection died after COMMIT):
    # that is allowed — never the other way round.
    stored_total = sum(len(ids) - 1 for ids in stored.values())
    try:
        recovery = await converge(eco, http, stored)
    except AssertionError as error:
        raise AssertionError(f"{error}; dead letters: {await dead_letters(eco)}") from error
    assert not await dead_letters(eco), "a valid event was dead-lettered because the database was away"
    figures("postgres_crash", outage_seconds=PG_OUTAGE_SECONDS, writes_attempted=load.attempted,
            writes_accepted=load.total_accepted, accepted_before_crash=accepted_before,
            writes_refused=dict(load.refused), writes_stored=stored_total,
            refused_but_stored=stored_total - load.total_accepted, writes_lost=0, duplicates=0,
            outage_measured_seconds=round(restarted_at - crashed_at, 2),
            all_ready_after_restart_seconds=round(ready_after, 2),
            last_accepted_write_after_restart_seconds=round(first_accepted_after, 2),
            converged_after_load_stopped_seconds=round(recovery, 2))


async def dead_letters(eco: Ecosystem) -> list[tuple[str, str]]:
    nc = await bus.connect(eco.nats.url, "pg-outage-check")
    try:
        letters = await bus_messages(nc.jetstream(), f"{eco.prefix.upper()}_DLQ", f"{eco.prefix}_dlq.>")
    finally:
        await nc.close()
    return [(letter["consumer"], letter["error"][:200]) for letter in letters]



"""Rebuild a service's read models from scratch: ``python -m kizuna.rebuild <service>``.

Own events are replayed from the service's event store through its inline projections; events of
other services are replayed from the JetStream stream through its subscriptions (inbox and applied
versions cleared first, so each is applied exactly once, each source stream in version order by the same
rule as the live consumers). Projections are written to be replay-safe. Both replays upcast every event to
its current version; a rebuild by code older than the stored events refuses before it changes anything, and
one that meets such an event on the bus stops with its name (run the rebuild from the newest release).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
import zlib
from typing import cast

import asyncpg
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from . import bus
from .consumer import apply_new
from .envelope import Envelope
from .eventstore import PROJECTING, Checkpoint, EventStore, RecordedEvent
from .grouped import GroupedWrites
from .progress import Progress
from .relay import LOCK_HOLDER_NAME
from .service import ServiceSpec, migrate
from .settings import ServiceSettings
from .upcasting import EventVersionTooNew, current_version
from .vault import KeyVault

ANALYSE_FIRST = 10_000  # events replayed before the first ANALYZE of the read models; then at each doubling
REPLAY_WORKERS = 8  # connections applying a batch (with the one reading ahead, the pool's size)


def load_spec(service: str) -> ServiceSpec:
    spec: ServiceSpec = importlib.import_module(f"services.{service}.app").SPEC
    return spec


async def rebuild(spec: ServiceSpec, settings: ServiceSettings, *, batch: int = 5000,
                  include_bus: bool = True) -> dict[str, int]:
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=REPLAY_WORKERS + 1)
    vault = (await KeyVault.open(settings.keys_database_url, max_size=REPLAY_WORKERS + 1)
             if settings.keys_database_url else None)
    try:
        await migrate(pool, spec.migrations)
        await refuse_while_running(pool, spec.name)
        await refuse_events_newer_than_this_code(pool)
        async with pool.acquire() as conn, conn.transaction():
            if spec.read_model_tables:
                await conn.execute(f"TRUNCATE {', '.join(spec.read_model_tables)}")
            await conn.execute("DELETE FROM inbox WHERE consumer = ANY($1::text[])",
                               [s.name for s in spec.subscriptions])
            await conn.execute("DELETE FROM applied_versions WHERE projection = ANY($1::text[])",
                               [s.name for s in spec.subscriptions])
        counts = {"own_events": await replay_own(pool, spec, batch, vault=vault)}
        if include_bus and spec.subscriptions:
            counts["bus_events"] = await replay_bus(pool, spec, settings, vault=vault)
        return counts
    finally:
        if vault is not None:
            await vault.close()
        await pool.close()


class ServiceRunning(RuntimeError):
    pass


async def refuse_while_running(pool: asyncpg.Pool, service: str) -> None:
    """A rebuild truncates the read models and clears the inbox: a live consumer writing meanwhile would
    leave them wrong. Every running process of a service keeps a connection named for the relay lock
    (holding it, or waiting for it), so one such connection means the service is up."""
    async with pool.acquire() as conn:
        running = await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                      "AND application_name = $1", LOCK_HOLDER_NAME)
    if running:
        raise ServiceRunning(f"the {service} service is running ({running} process(es) connected to its "
                             f"database); stop every replica first (docs/operations.md, 'Rebuild')")


async def refuse_events_newer_than_this_code(pool: asyncpg.Pool) -> None:
    """The read models would be rebuilt without the events this code cannot read: refuse before truncating."""
    async with pool.acquire() as conn:
        stored = await conn.fetch("SELECT event_type, max(schema_version) AS version FROM events GROUP BY event_type")
    for row in stored:
        if row["version"] > current_version(row["event_type"]):
            raise EventVersionTooNew(row["event_type"], row["version"], current_version(row["event_type"]))


async def replay_own(pool: asyncpg.Pool, spec: ServiceSpec, batch: int, workers: int = REPLAY_WORKERS, *,
                     vault: KeyVault | None = None) -> int:
    """Own events in commit order, a transaction per batch; the next batch is read while this one is
    applied. A service whose read-model rows are keyed by community (``spec.replay_partition``) applies
    each batch on several connections, one per share of the communities: each community's events stay in
    order on one connection, while Python prepares one share's statements as PostgreSQL runs another's.
    Personal fields are opened with ``vault``: an erased subject's come back as placeholders, so a rebuild
    after an erasure shows "erased member" wherever the name was."""
    store = EventStore(pool, vault=vault)
    progress = Progress(f"replaying {spec.name} events", await store.count())
    applied, analysed = 0, 0
    partition = spec.replay_partition
    reading = asyncio.ensure_future(store.read_all(Checkpoint(), batch))
    while events := await reading:
        # The service is stopped during a rebuild, so reading ahead cannot race a commit.
        reading = asyncio.ensure_future(store.read_all(
            Checkpoint(events[-1].transaction_id, events[-1].global_position), batch))
        if partition is None:
            await _project(pool, spec, events, store)
        else:
            shares: list[list[RecordedEvent]] = [[] for _ in range(workers)]
            for event in events:
                shares[zlib.crc32(partition(event).encode()) % workers].append(event)
            await asyncio.gather(*(_project(pool, spec, share, store) for share in shares if share))
        applied += len(events)
        progress.advance(len(events))
        if spec.read_model_tables and applied >= analysed * 2 + ANALYSE_FIRST:
            await _analyse(pool, spec)
            analysed = applied
    progress.finish()
    return applied


async def _analyse(pool: asyncpg.Pool, spec: ServiceSpec) -> None:
    """Fresh planner statistics for read models that have grown since the last ones: the rebuild starts
    from truncated (empty) tables and autovacuum lags a replay, and plans made for an empty table (a
    sequential scan) would otherwise be kept while the table grows."""
    async with pool.acquire() as conn:
        await conn.execute(f"ANALYZE {', '.join(spec.read_model_tables)}")


async def _project(pool: asyncpg.Pool, spec: ServiceSpec, events: list[RecordedEvent], store: EventStore) -> None:
    PROJECTING.set(store)  # a projection that folds its stream opens it with the store's vault (this task only)
    async with pool.acquire() as conn, conn.transaction():
        grouped = GroupedWrites(conn)
        for event in events:
            for project in spec.inline_projections:
                await project(cast(asyncpg.Connection, grouped), event)
        await grouped.flush()


def _every_event(_: int) -> bool:
    return True


def _no_event(_: int) -> bool:
    return False


async def replay_bus(pool: asyncpg.Pool, spec: ServiceSpec, settings: ServiceSettings, *,
                     vault: KeyVault | None = None) -> int:
    nc = await bus.connect(settings.nats_url, f"kizuna-rebuild-{spec.name}", wait_seconds=10)
    applied = 0
    try:
        js = nc.jetstream()
        for subscription in spec.subscriptions:
            subjects = [f"{settings.subject_prefix}.{s}" for s in subscription.subjects]
            info = await js.stream_info(settings.stream_name)
            progress = Progress(f"replaying bus into {subscription.name}", info.state.messages)
            sub = await js.pull_subscribe(
                subjects[0], stream=settings.stream_name,
                config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL,
                                      filter_subjects=subjects if len(subjects) > 1 else None,
                                      inactive_threshold=30),
            )
            # The stream holds each source stream in version order (one relay publishes in commit order), so an
            # early event here means its predecessor was lost to the stream's limits: carried to the next batch
            # in case, and applied anyway (the gap logged) once the stream has nothing more.
            early: list[Msg] = []
            while True:
                try:
                    messages = await sub.fetch(500, timeout=1)
                except (NatsTimeout, TimeoutError):  # nats-py raises either when nothing arrived in time
                    messages = []
                last = not messages or messages[-1].metadata.num_pending == 0
                batch = [*early, *messages]
                if not batch:
                    break
                async with pool.acquire() as conn, conn.transaction():
                    outcome = await apply_new(conn, subscription, batch, overdue=_every_event if last else _no_event,
                                              vault=vault)
                if outcome.newer:
                    newer = Envelope.from_bytes(batch[outcome.newer[0]].data)
                    raise EventVersionTooNew(newer.type, newer.data_version, current_version(newer.type))
                applied += outcome.applied
                early = [batch[i] for i in outcome.early]
                progress.advance(len(messages))
                if last and not early:
                    break
            progress.finish()
            await sub.unsubscribe()
    finally:
        await nc.close()
    return applied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("service", help="members, referrals, sessions or gateway")
    parser.add_argument("--own-only", action="store_true", help="skip replaying other services' events")
    args = parser.parse_args()
    settings = ServiceSettings(service_name=args.service)
    try:
        counts = asyncio.run(rebuild(load_spec(args.service), settings, include_bus=not args.own_only))
    except (ServiceRunning, EventVersionTooNew) as error:
        print(f"kizuna.rebuild: refused: {error}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(counts), file=sys.stdout)


if __name__ == "__main__":
    main()

"""Rebuild a service's read models from scratch: ``python -m kizuna.rebuild <service>``.

Own events are replayed from the service's event store through its inline projections; events of
other services are replayed from the JetStream stream through its subscriptions (inbox cleared
first, so each is applied exactly once). Projections are written to be replay-safe.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys

import asyncpg
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from . import bus
from .envelope import Envelope
from .eventstore import Checkpoint, EventStore
from .progress import Progress
from .service import ServiceSpec, migrate
from .settings import ServiceSettings


def load_spec(service: str) -> ServiceSpec:
    spec: ServiceSpec = importlib.import_module(f"services.{service}.app").SPEC
    return spec


async def rebuild(spec: ServiceSpec, settings: ServiceSettings, *, batch: int = 2000,
                  include_bus: bool = True) -> dict[str, int]:
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=4)
    try:
        await migrate(pool, spec.migrations)
        async with pool.acquire() as conn, conn.transaction():
            if spec.read_model_tables:
                await conn.execute(f"TRUNCATE {', '.join(spec.read_model_tables)}")
            await conn.execute("DELETE FROM inbox WHERE consumer = ANY($1::text[])",
                               [s.name for s in spec.subscriptions])
        counts = {"own_events": await _replay_own(pool, spec, batch)}
        if include_bus and spec.subscriptions:
            counts["bus_events"] = await _replay_bus(pool, spec, settings)
        return counts
    finally:
        await pool.close()


async def _replay_own(pool: asyncpg.Pool, spec: ServiceSpec, batch: int) -> int:
    store = EventStore(pool)
    progress = Progress(f"replaying {spec.name} events", await store.count())
    checkpoint, applied = Checkpoint(), 0
    while events := await store.read_all(checkpoint, batch):
        async with pool.acquire() as conn, conn.transaction():
            for event in events:
                for project in spec.inline_projections:
                    await project(conn, event)
        applied += len(events)
        progress.advance(len(events))
        checkpoint = Checkpoint(events[-1].transaction_id, events[-1].global_position)
    progress.finish()
    return applied


async def _replay_bus(pool: asyncpg.Pool, spec: ServiceSpec, settings: ServiceSettings) -> int:
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
            while True:
                try:
                    messages = await sub.fetch(500, timeout=1)
                except NatsTimeout:
                    break
                async with pool.acquire() as conn, conn.transaction():
                    for msg in messages:
                        envelope = Envelope.from_cloudevent(json.loads(msg.data))
                        first = await conn.fetchval(
                            "INSERT INTO inbox (consumer, event_id) VALUES ($1, $2) "
                            "ON CONFLICT DO NOTHING RETURNING true", subscription.name, envelope.id)
                        if first:
                            await subscription.handle(conn, envelope)
                            applied += 1
                progress.advance(len(messages))
                if messages and messages[-1].metadata.num_pending == 0:
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
    counts = asyncio.run(rebuild(load_spec(args.service), settings, include_bus=not args.own_only))
    print(json.dumps(counts), file=sys.stdout)


if __name__ == "__main__":
    main()

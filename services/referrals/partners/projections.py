"""Read models of what crosses a partnership, fed by the gateway's federation events.

``partner_jobs`` holds the job requests partner communities shared with a community here, and the
offers its members sent to them; ``jobs.partner_offers`` holds the cards of partner members who
offered on this community's own jobs. Ending a partnership removes both kinds of copies.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from kizuna.envelope import Envelope
from kizuna.eventstore import RecordedEvent
from kizuna.service import Migration

SQL = """
ALTER TABLE jobs ADD COLUMN partner_offers jsonb NOT NULL DEFAULT '[]';
CREATE TABLE partner_jobs (
    community_id text NOT NULL, partnership_id text NOT NULL, job_id text NOT NULL,
    from_community_name text NOT NULL, job jsonb NOT NULL, state text NOT NULL DEFAULT 'posted',
    received_at timestamptz NOT NULL, seq bigint NOT NULL,
    PRIMARY KEY (community_id, partnership_id, job_id)
);
CREATE INDEX partner_jobs_by_community ON partner_jobs (community_id, seq);
CREATE TABLE partner_job_offers (
    offer_id text PRIMARY KEY, community_id text NOT NULL, partnership_id text NOT NULL, job_id text NOT NULL,
    member_id text NOT NULL, kind text NOT NULL, status text NOT NULL DEFAULT 'sent'
);
CREATE INDEX partner_job_offers_by_job ON partner_job_offers (community_id, partnership_id, job_id);
"""
OFFERINGS_SQL = """
CREATE TABLE partner_offerings (
    community_id text NOT NULL, partnership_id text NOT NULL, offering_id text NOT NULL,
    from_community_name text NOT NULL, offering jsonb NOT NULL, status text NOT NULL DEFAULT 'open',
    received_at timestamptz NOT NULL, seq bigint NOT NULL,
    PRIMARY KEY (community_id, partnership_id, offering_id)
);
CREATE TABLE partner_pledges (
    pledge_id text PRIMARY KEY, community_id text NOT NULL, partnership_id text NOT NULL, offering_id text NOT NULL,
    member_id text NOT NULL, shares int NOT NULL, status text NOT NULL DEFAULT 'sent', reason text NOT NULL DEFAULT ''
);
"""
INTRODUCTIONS_SQL = """
ALTER TABLE referrals ADD COLUMN to_partnership_id text;
CREATE TABLE partnerships (
    partnership_id text NOT NULL, community_id text NOT NULL, status text NOT NULL, sends text[] NOT NULL,
    PRIMARY KEY (partnership_id, community_id)
);
CREATE TABLE partner_introductions (
    community_id text NOT NULL, partnership_id text NOT NULL, referral_id text NOT NULL,
    from_community_name text NOT NULL, card jsonb NOT NULL, note text NOT NULL, introduced_by_name text NOT NULL,
    offering_id text, worked boolean, outcome_note text, received_at timestamptz NOT NULL,
    PRIMARY KEY (community_id, partnership_id, referral_id)
);
"""
# ``seq`` is the cursor of the partner job and offering lists, so a row must never become visible below a seq
# a reader has already passed. ``max(seq) + 1`` gave two replicas the same number, and any number drawn from a
# sequence can commit after a higher one. Drawing it by updating a counter row holds that row's lock until
# commit: the next writer waits, so seqs become visible in increasing order (gaps allowed, never a skip).
# Rows that the old race numbered twice are moved to the end (a reader may see one again, never miss one).
ARRIVAL_ORDER_SQL = """
CREATE TABLE partner_arrivals (list text PRIMARY KEY, last_seq bigint NOT NULL);
UPDATE partner_jobs p SET seq = top.seq + twice.n
  FROM (SELECT community_id, partnership_id, job_id, row_number() OVER (ORDER BY seq, received_at, job_id) AS n
          FROM (SELECT *, row_number() OVER (PARTITION BY seq ORDER BY received_at, job_id) AS k FROM partner_jobs) x
         WHERE k > 1) twice,
       (SELECT coalesce(max(seq), 0) AS seq FROM partner_jobs) top
 WHERE (p.community_id, p.partnership_id, p.job_id) = (twice.community_id, twice.partnership_id, twice.job_id);
INSERT INTO partner_arrivals SELECT 'partner_jobs', coalesce(max(seq), 0) FROM partner_jobs;
CREATE UNIQUE INDEX partner_jobs_seq ON partner_jobs (seq);
UPDATE partner_offerings p SET seq = top.seq + twice.n
  FROM (SELECT community_id, partnership_id, offering_id,
               row_number() OVER (ORDER BY seq, received_at, offering_id) AS n
          FROM (SELECT *, row_number() OVER (PARTITION BY seq ORDER BY received_at, offering_id) AS k
                  FROM partner_offerings) x
         WHERE k > 1) twice,
       (SELECT coalesce(max(seq), 0) AS seq FROM partner_offerings) top
 WHERE (p.community_id, p.partnership_id, p.offering_id)
     = (twice.community_id, twice.partnership_id, twice.offering_id);
INSERT INTO partner_arrivals SELECT 'partner_offerings', coalesce(max(seq), 0) FROM partner_offerings;
CREATE UNIQUE INDEX partner_offerings_seq ON partner_offerings (seq);
"""
# Whose card and words an introduction holds (``<origin>/<member ref>``), so a partner's erasure notice finds them.
INTRODUCTION_SUBJECTS_SQL = """
ALTER TABLE partner_introductions ADD COLUMN partner_member text NOT NULL DEFAULT '',
    ADD COLUMN partner_author text NOT NULL DEFAULT '';
"""
MIGRATIONS = [Migration("referrals_partners_0001", SQL), Migration("referrals_partners_0002_offerings", OFFERINGS_SQL),
              Migration("referrals_partners_0003_introductions", INTRODUCTIONS_SQL),
              Migration("referrals_partners_0004_arrival_order", ARRIVAL_ORDER_SQL),
              Migration("referrals_partners_0005_introduction_subjects", INTRODUCTION_SUBJECTS_SQL)]
READ_MODEL_TABLES = ["partner_jobs", "partner_job_offers", "partner_offerings", "partner_pledges",
                     "partner_introductions", "partnerships"]
_STATUS_AFTER = {"PartnershipProposed": "proposed", "PartnershipRequested": "requested",
                 "PartnershipEstablished": "active", "PartnershipAccepted": "active", "PartnershipDeclined": "declined",
                 "PartnershipSuspended": "suspended", "PartnershipResumed": "active", "PartnershipEnded": "ended"}


async def apply_job_event(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    """Inline: partner offers on this community's own jobs, and which of them were assigned."""
    d = event.data
    if event.type == "JobOfferedByPartner":
        offer = {k: d.get(k) for k in ("offer_id", "partnership_id", "from_community_name", "kind", "card", "note",
                                       "referred_by_name", "partner_member", "partner_author") if d.get(k) is not None}
        await conn.execute("UPDATE jobs SET partner_offers = partner_offers || $2::jsonb WHERE job_id = $1 "
                           "AND NOT partner_offers @> $3::jsonb", d["job_id"], json.dumps([{**offer,
                                                                                             "assigned": False}]),
                           json.dumps([{"offer_id": d["offer_id"]}]))
    elif event.type == "ReferralMade" and d.get("to_partnership_id"):
        await conn.execute("UPDATE referrals SET to_partnership_id = $2 WHERE referral_id = $1", d["referral_id"],
                           d["to_partnership_id"])
    elif event.type == "JobAssigned" and d.get("partner_offer_ids"):
        await conn.execute(
            "UPDATE jobs SET partner_offers = (SELECT coalesce(jsonb_agg(o || jsonb_build_object('assigned', "
            "o->>'offer_id' = ANY($2::text[]))), '[]') FROM jsonb_array_elements(partner_offers) o) WHERE job_id = $1",
            d["job_id"], d["partner_offer_ids"])


# Each list's next seq is drawn under its counter row's lock (held to commit; see ARRIVAL_ORDER_SQL).
_RECEIVE_JOB = (
    "WITH next AS (UPDATE partner_arrivals SET last_seq = last_seq + 1 WHERE list = 'partner_jobs' "
    "RETURNING last_seq AS seq) INSERT INTO partner_jobs (community_id, partnership_id, job_id, from_community_name, "
    "job, received_at, seq) SELECT $1, $2, $3, $4, $5, $6, next.seq FROM next ON CONFLICT DO NOTHING")
_RECEIVE_OFFERING = (
    "WITH next AS (UPDATE partner_arrivals SET last_seq = last_seq + 1 WHERE list = 'partner_offerings' "
    "RETURNING last_seq AS seq) INSERT INTO partner_offerings (community_id, partnership_id, offering_id, "
    "from_community_name, offering, received_at, seq) SELECT $1, $2, $3, $4, $5, $6, next.seq FROM next "
    "ON CONFLICT DO NOTHING")


async def apply_gateway_event(conn: asyncpg.Connection, envelope: Envelope) -> None:
    d, kind = envelope.data, envelope.type
    if kind in _STATUS_AFTER:  # so an introduction to a partner community can be checked when it is made
        await conn.execute("INSERT INTO partnerships VALUES ($1, $2, $3, $4) ON CONFLICT "
                           "(partnership_id, community_id) DO UPDATE SET status = EXCLUDED.status",
                           d["partnership_id"], d["community_id"], _STATUS_AFTER[kind], d.get("sends") or [])
    if kind == "PartnerJobReceived":
        await conn.execute(_RECEIVE_JOB, d["community_id"], d["partnership_id"], d["job_id"],
                           d["from_community_name"], json.dumps(d["job"]), envelope.time)
    elif kind == "PartnerJobStatusReceived":
        await conn.execute("UPDATE partner_jobs SET state = $4 WHERE community_id = $1 AND partnership_id = $2 "
                           "AND job_id = $3", d["community_id"], d["partnership_id"], d["job_id"], d["state"])
        if d["state"] == "assigned":
            await conn.execute(
                "UPDATE partner_job_offers SET status = CASE WHEN offer_id = ANY($4::text[]) THEN 'assigned' "
                "ELSE 'not-chosen' END WHERE community_id = $1 AND partnership_id = $2 AND job_id = $3",
                d["community_id"], d["partnership_id"], d["job_id"], d["assigned_offer_ids"])
    elif kind == "PartnerOfferSent":
        await conn.execute("INSERT INTO partner_job_offers (offer_id, community_id, partnership_id, job_id, member_id, "
                           "kind) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING", d["offer_id"],
                           d["community_id"], d["partnership_id"], d["job_id"], d["member_id"], d["kind"])
    elif kind == "PartnerOfferingReceived":
        await conn.execute(_RECEIVE_OFFERING, d["community_id"], d["partnership_id"], d["offering_id"],
                           d["from_community_name"], json.dumps(d["offering"]), envelope.time)
    elif kind == "PartnerOfferingStatusReceived":
        await conn.execute("UPDATE partner_offerings SET status = $4 WHERE community_id = $1 AND partnership_id = $2 "
                           "AND offering_id = $3", d["community_id"], d["partnership_id"], d["offering_id"],
                           d["status"])
    elif kind == "PartnerPledgeSent":
        await conn.execute("INSERT INTO partner_pledges (pledge_id, community_id, partnership_id, offering_id, "
                           "member_id, shares) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                           d["pledge_id"], d["community_id"], d["partnership_id"], d["offering_id"], d["member_id"],
                           d["shares"])
    elif kind == "PartnerPledgeResultReceived":
        await conn.execute("UPDATE partner_pledges SET status = $2, reason = $3 WHERE pledge_id = $1",
                           d["pledge_id"], "committed" if d["accepted"] else "refused", d["reason"])
    elif kind == "PartnerIntroductionReceived":
        await conn.execute(
            "INSERT INTO partner_introductions (community_id, partnership_id, referral_id, from_community_name, card, "
            "note, introduced_by_name, offering_id, received_at, partner_member, partner_author) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING", d["community_id"],
            d["partnership_id"], d["referral_id"], d["from_community_name"], json.dumps(d["card"]), d["note"],
            d["introduced_by_name"], d.get("offering_id"), envelope.time, d.get("partner_member", ""),
            d.get("partner_author", ""))
    elif kind == "IntroductionOutcomeSentToPartner":
        await conn.execute("UPDATE partner_introductions SET worked = $4, outcome_note = $5 WHERE community_id = $1 "
                           "AND partnership_id = $2 AND referral_id = $3", d["community_id"], d["partnership_id"],
                           d["referral_id"], d["worked"], d["note"])
    elif kind == "PartnershipEnded":
        cid, pid = d["community_id"], d["partnership_id"]
        await conn.execute("DELETE FROM partner_introductions WHERE community_id = $1 AND partnership_id = $2",
                           cid, pid)
        await conn.execute("DELETE FROM partner_offerings WHERE community_id = $1 AND partnership_id = $2", cid, pid)
        await conn.execute("DELETE FROM partner_pledges WHERE community_id = $1 AND partnership_id = $2", cid, pid)
        await conn.execute("DELETE FROM partner_jobs WHERE community_id = $1 AND partnership_id = $2", cid, pid)
        await conn.execute("DELETE FROM partner_job_offers WHERE community_id = $1 AND partnership_id = $2", cid, pid)
        await conn.execute(
            "UPDATE jobs SET partner_offers = (SELECT coalesce(jsonb_agg(o), '[]') FROM "
            "jsonb_array_elements(partner_offers) o WHERE o->>'partnership_id' <> $2) WHERE community_id = $1 "
            "AND partner_offers @> jsonb_build_array(jsonb_build_object('partnership_id', $2::text))", cid, pid)


async def partner_jobs(conn: asyncpg.Connection, community_id: str, member_id: str | None,
                       after: int, limit: int) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT j.*, coalesce((SELECT jsonb_agg(jsonb_build_object('offer_id', o.offer_id, 'kind', o.kind, "
        "'status', o.status)) FROM partner_job_offers o WHERE o.community_id = j.community_id AND "
        "o.partnership_id = j.partnership_id AND o.job_id = j.job_id AND o.member_id = $2), '[]') AS mine "
        "FROM partner_jobs j WHERE j.community_id = $1 AND j.seq > $3 ORDER BY j.seq LIMIT $4",
        community_id, member_id, after, limit)
    return [{"partnership_id": r["partnership_id"], "job_id": r["job_id"],
             "from_community_name": r["from_community_name"], "state": r["state"],
             "received_at": r["received_at"].isoformat(), "seq": r["seq"], **json.loads(r["job"]),
             "my_offers": json.loads(r["mine"])} for r in rows]


async def partner_offerings(conn: asyncpg.Connection, community_id: str, member_id: str | None,
                            after: int, limit: int) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT o.*, coalesce((SELECT jsonb_agg(jsonb_build_object('pledge_id', p.pledge_id, 'shares', p.shares, "
        "'status', p.status, 'reason', p.reason)) FROM partner_pledges p WHERE p.community_id = o.community_id AND "
        "p.partnership_id = o.partnership_id AND p.offering_id = o.offering_id AND p.member_id = $2), '[]') AS mine "
        "FROM partner_offerings o WHERE o.community_id = $1 AND o.seq > $3 ORDER BY o.seq LIMIT $4",
        community_id, member_id, after, limit)
    return [{"partnership_id": r["partnership_id"], "offering_id": r["offering_id"],
             "from_community_name": r["from_community_name"], "status": r["status"],
             "received_at": r["received_at"].isoformat(), "seq": r["seq"], "terms": json.loads(r["offering"]),
             "my_pledges": json.loads(r["mine"])} for r in rows]


async def partner_introductions(conn: asyncpg.Connection, community_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT * FROM partner_introductions WHERE community_id = $1 ORDER BY received_at",
                            community_id)
    return [{"partnership_id": r["partnership_id"], "referral_id": r["referral_id"],
             "from_community_name": r["from_community_name"], "card": json.loads(r["card"]), "note": r["note"],
             "introduced_by_name": r["introduced_by_name"], "offering_id": r["offering_id"], "worked": r["worked"],
             "outcome_note": r["outcome_note"], "received_at": r["received_at"].isoformat()} for r in rows]


async def partnership_sends(conn: asyncpg.Connection, community_id: str, partnership_id: str) -> list[str] | None:
    """What an active partnership of this community sends, or None when there is no such active partnership."""
    row = await conn.fetchrow("SELECT status, sends FROM partnerships WHERE partnership_id = $1 AND community_id = $2",
                              partnership_id, community_id)
    return list(row["sends"]) if row is not None and row["status"] == "active" else None

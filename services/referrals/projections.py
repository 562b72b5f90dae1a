"""Read models of the referrals service: jobs, feedback, reputation, the trust graph, and the roster."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import asyncpg

from kizuna.errors import Invalid
from kizuna.eventstore import RecordedEvent
from kizuna.personal_data import Section, roster_section
from kizuna.service import Migration

from .consumers import ROSTER
from .domain import DIMENSIONS, recency_weight
from .offerings.projections import lead_user_reputation

SQL = ROSTER.table_sql() + """
CREATE TABLE jobs (
    job_id text PRIMARY KEY, community_id text NOT NULL, requester_id text NOT NULL, title text NOT NULL,
    description text NOT NULL, skills text[] NOT NULL, compensation jsonb NOT NULL, deadline date NOT NULL,
    visibility text NOT NULL, state text NOT NULL, offers jsonb NOT NULL DEFAULT '[]',
    referred text[] NOT NULL DEFAULT '{}', workers text[] NOT NULL DEFAULT '{}', version int NOT NULL,
    seq bigint NOT NULL, posted_at timestamptz NOT NULL
);
CREATE INDEX jobs_by_community ON jobs (community_id, seq);
CREATE TABLE feedback (
    event_id uuid PRIMARY KEY, community_id text NOT NULL, job_id text NOT NULL, giver_id text NOT NULL,
    subject_id text NOT NULL, giver_relation text NOT NULL, quality int NOT NULL, reliability int NOT NULL,
    beyond int NOT NULL, collaboration int NOT NULL, comment text NOT NULL, given_at timestamptz NOT NULL
);
CREATE INDEX feedback_by_subject ON feedback (community_id, subject_id);
CREATE TABLE referrals (
    referral_id text PRIMARY KEY, community_id text NOT NULL, referrer_id text NOT NULL, referred_id text NOT NULL,
    to_member_id text, job_id text, note text NOT NULL, status text NOT NULL, worked boolean,
    version int NOT NULL, seq bigint NOT NULL
);
CREATE INDEX referrals_by_community ON referrals (community_id, seq);
"""
MIGRATIONS = [Migration("referrals_0001", SQL)]
READ_MODEL_TABLES = ["jobs", "feedback", "referrals"]


async def apply(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    d, kind = event.data, event.type
    if event.stream_id.startswith("job-") and kind != "JobRequestPosted":
        await conn.execute("UPDATE jobs SET version = $2 WHERE job_id = $1", d["job_id"], event.stream_version)
    if kind == "JobRequestPosted":
        await conn.execute(
            "INSERT INTO jobs (job_id, community_id, requester_id, title, description, skills, compensation, "
            "deadline, visibility, state, version, seq, posted_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8::text::date,$9,"
            "'posted',$10,$11,$12) ON CONFLICT (job_id) DO NOTHING",
            d["job_id"], d["community_id"], d["requester_id"], d["title"], d["description"], d["skills"],
            json.dumps(d["compensation"]), d["deadline"], d["visibility"], event.stream_version,
            event.global_position, event.recorded_at)
    elif kind == "JobOffered":
        offer = json.dumps([{"member_id": d["member_id"], "why_next_step": d["why_next_step"]}])
        await conn.execute("UPDATE jobs SET offers = offers || $2::jsonb WHERE job_id = $1 "
                           "AND NOT offers @> $2::jsonb", d["job_id"], offer)
    elif kind == "JobReferred":
        await conn.execute("UPDATE jobs SET referred = array_append(referred, $2) WHERE job_id = $1 "
                           "AND NOT $2 = ANY(referred)", d["job_id"], d["member_id"])
    elif kind == "JobAssigned":
        await conn.execute("UPDATE jobs SET workers = $2, state = 'assigned' WHERE job_id = $1",
                           d["job_id"], d["member_ids"])
    elif kind in ("JobStarted", "JobCompleted", "JobCancelled"):
        state = {"JobStarted": "in-progress", "JobCompleted": "completed", "JobCancelled": "cancelled"}[kind]
        await conn.execute("UPDATE jobs SET state = $2 WHERE job_id = $1", d["job_id"], state)
    elif kind == "FeedbackGiven":
        await conn.execute(
            "INSERT INTO feedback VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) ON CONFLICT DO NOTHING",
            event.event_id, d["community_id"], d["job_id"], d["giver_id"], d["subject_id"], d["giver_relation"],
            d["quality"], d["reliability"], d["beyond"], d["collaboration"], d["comment"], event.recorded_at)
    elif kind == "ReferralMade":
        await conn.execute(
            "INSERT INTO referrals VALUES ($1,$2,$3,$4,$5,$6,$7,'made',NULL,$8,$9) ON CONFLICT DO NOTHING",
            d["referral_id"], d["community_id"], d["referrer_id"], d["referred_id"], d.get("to_member_id"),
            d.get("job_id"), d["note"], event.stream_version, event.global_position)
    elif kind in ("ReferralAccepted", "ReferralDeclined"):
        await conn.execute("UPDATE referrals SET status = $2, version = $3 WHERE referral_id = $1", d["referral_id"],
                           "accepted" if kind == "ReferralAccepted" else "declined", event.stream_version)
    elif kind == "ReferralOutcomeRecorded":
        await conn.execute("UPDATE referrals SET worked = $2, version = $3 WHERE referral_id = $1",
                           d["referral_id"], d["worked"], event.stream_version)


INLINE_PROJECTIONS = [apply]


async def roster_member(conn: asyncpg.Connection, community_id: str, member_id: str | None) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM roster WHERE community_id = $1 AND member_id = $2",
                               community_id, member_id)


def job_view(row: asyncpg.Record) -> dict[str, Any]:
    return {"job_id": row["job_id"], "community_id": row["community_id"], "requester_id": row["requester_id"],
            "title": row["title"], "description": row["description"], "skills": list(row["skills"]),
            "compensation": json.loads(row["compensation"]), "deadline": row["deadline"],
            "visibility": row["visibility"], "state": row["state"], "offers": json.loads(row["offers"]),
            "partner_offers": json.loads(row["partner_offers"]),
            "referred": list(row["referred"]), "workers": list(row["workers"]), "version": row["version"]}


async def job(conn: asyncpg.Connection, community_id: str, job_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM jobs WHERE community_id = $1 AND job_id = $2", community_id, job_id)
    return job_view(row) if row else None


def _after(cursor: str | None) -> int:
    if cursor is None:
        return 0
    if not cursor.isdigit():
        raise Invalid("cursor", "not a cursor from an earlier page")
    return int(cursor)


async def jobs(conn: asyncpg.Connection, community_id: str, state: str | None, cursor: str | None,
               limit: int) -> dict[str, Any]:
    rows = await conn.fetch("SELECT * FROM jobs WHERE community_id = $1 AND seq > $2 AND ($3::text IS NULL OR "
                            "state = $3) ORDER BY seq LIMIT $4", community_id, _after(cursor), state, limit + 1)
    return {"items": [job_view(r) for r in rows[:limit]],
            "next_cursor": str(rows[limit - 1]["seq"]) if len(rows) > limit else None}


async def referrals(conn: asyncpg.Connection, community_id: str, cursor: str | None, limit: int) -> dict[str, Any]:
    rows = await conn.fetch("SELECT * FROM referrals WHERE community_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                            community_id, _after(cursor), limit + 1)
    items = [{k: r[k] for k in ("referral_id", "referrer_id", "referred_id", "to_member_id", "job_id", "note",
                                "status", "worked", "version")} | {"offering_id": r.get("offering_id"),
                                                                     "to_partnership_id": r.get("to_partnership_id")}
             for r in rows[:limit]]
    return {"items": items, "next_cursor": str(rows[limit - 1]["seq"]) if len(rows) > limit else None}


async def reputation(conn: asyncpg.Connection, community_id: str, member_id: str) -> dict[str, Any]:
    rows = await conn.fetch("SELECT * FROM feedback WHERE community_id = $1 AND subject_id = $2",
                            community_id, member_id)
    now = datetime.now(UTC)
    weights = [recency_weight(r["given_at"], now) for r in rows]
    total = sum(weights)
    averages = {dim: round(sum(r[dim] for r in rows) / len(rows), 2) if rows else None for dim in DIMENSIONS}
    weighted = {dim: round(sum(w * r[dim] for w, r in zip(weights, rows, strict=True)) / total, 2) if total else None
                for dim in DIMENSIONS}
    return {"member_id": member_id, "community_id": community_id, "feedback_count": len(rows),
            "distinct_givers": len({r["giver_id"] for r in rows}), "jobs": len({r["job_id"] for r in rows}),
            "averages": averages, "recency_weighted": weighted,
            "lead_user_feedback": await lead_user_reputation(conn, community_id, member_id)}


async def trust_graph(conn: asyncpg.Connection, community_id: str) -> dict[str, Any]:
    edges = await conn.fetch(
        "SELECT referrer_id, referred_id, to_member_id, job_id, status, worked FROM referrals "
        "WHERE community_id = $1 ORDER BY seq", community_id)
    stats = await conn.fetch(
        "SELECT referrer_id, count(*) AS made, count(*) FILTER (WHERE worked) AS worked, "
        "count(*) FILTER (WHERE worked IS NOT NULL) AS with_outcome FROM referrals WHERE community_id = $1 "
        "GROUP BY referrer_id ORDER BY referrer_id", community_id)
    return {"edges": [dict(e) for e in edges],
            "referrers": [{"member_id": s["referrer_id"], "referrals": s["made"], "worked": s["worked"],
                           "success_rate": round(s["worked"] / s["with_outcome"], 3) if s["with_outcome"] else None}
                          for s in stats]}


async def active_jobs_by_member(conn: asyncpg.Connection, community_id: str) -> dict[str, int]:
    rows = await conn.fetch("SELECT unnest(workers) AS m, count(*) AS n FROM jobs WHERE community_id = $1 AND "
                            "state IN ('assigned', 'in-progress') GROUP BY m", community_id)
    return {r["m"]: r["n"] for r in rows}


# What referrals holds about one member (kizuna.personal_data; docs/data-rights.md). Feedback they received
# comes without its giver, as the read policy shows it to them; jobs are those they asked for, offered on,
# were referred to or worked on (a job's row is what every member of the community reads).
PERSONAL_DATA = [
    Section("jobs", "SELECT to_jsonb(t) AS row FROM jobs t WHERE community_id = $1 AND (requester_id = $2 "
                    "OR $2 = ANY(workers) OR $2 = ANY(referred) OR offers @> jsonb_build_array("
                    "jsonb_build_object('member_id', $2::text))) ORDER BY seq"),
    Section("feedback_given", "SELECT to_jsonb(t) AS row FROM feedback t "
                              "WHERE community_id = $1 AND giver_id = $2 ORDER BY given_at"),
    Section("feedback_received", "SELECT to_jsonb(t) - 'giver_id' AS row FROM feedback t "
                                 "WHERE community_id = $1 AND subject_id = $2 ORDER BY given_at"),
    Section("introductions", "SELECT to_jsonb(t) AS row FROM referrals t WHERE community_id = $1 "
                             "AND $2 IN (referrer_id, referred_id, to_member_id) ORDER BY seq"),
    Section("offerings_published", "SELECT to_jsonb(t) AS row FROM offerings_view t "
                                   "WHERE community_id = $1 AND producer_id = $2 ORDER BY seq"),
    Section("commitments", "SELECT to_jsonb(t) AS row FROM offering_commitments t "
                           "WHERE community_id = $1 AND member_id = $2"),
    Section("offering_feedback", "SELECT to_jsonb(t) AS row FROM offering_feedback t "
                                 "WHERE community_id = $1 AND $2 IN (member_id, producer_id) ORDER BY given_at"),
    Section("partner_job_offers", "SELECT to_jsonb(t) AS row FROM partner_job_offers t "
                                  "WHERE community_id = $1 AND member_id = $2"),
    Section("partner_pledges", "SELECT to_jsonb(t) AS row FROM partner_pledges t "
                               "WHERE community_id = $1 AND member_id = $2"),
    roster_section(),
]

"""Who hears about what: each event of the bus that needs someone becomes notifications — a kind, the members
it is for and the facts its message tells. The few facts an event does not carry (a job's title and
requester, a session's title, a community's name, who runs it) come from small tables kept from earlier
events in the same ordered consumer (``remember``), so they are there before anything that needs them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import asyncpg

from kizuna.envelope import Envelope

from .reminders import ReminderSettings

LOOKUPS_SQL = """
CREATE TABLE known_communities (community_id text PRIMARY KEY, name text NOT NULL);
CREATE TABLE known_jobs (job_id text PRIMARY KEY, community_id text NOT NULL, requester_id text NOT NULL,
                         title text NOT NULL);
CREATE TABLE known_sessions (session_id text PRIMARY KEY, community_id text NOT NULL, title text NOT NULL,
                             starts_at timestamptz NOT NULL, ends_at timestamptz NOT NULL, time_zone text NOT NULL,
                             place text, sequence int NOT NULL DEFAULT 0);
"""
# What reminders need (the second migration: the first was already applied where the service runs).
REMINDER_LOOKUPS_SQL = """
ALTER TABLE known_sessions ADD COLUMN cancelled boolean NOT NULL DEFAULT false;
CREATE TABLE known_registrations (session_id text NOT NULL, member_id text NOT NULL,
                                  PRIMARY KEY (session_id, member_id));
CREATE TABLE known_offers (offer_id text PRIMARY KEY, community_id text NOT NULL, applicant_id text NOT NULL,
                           expires_at timestamptz NOT NULL, open boolean NOT NULL DEFAULT true);
"""

# What the second slice of kinds needs (issue 22): who offered on and was asked to do each job, who made each
# introduction, each active goal and when it last heard of progress, offerings with their commitments, help
# shifts and deliveries, members' skills, and each community's cap with whether it is near it.
MORE_LOOKUPS_SQL = """
CREATE TABLE known_job_people (job_id text NOT NULL, member_id text NOT NULL, offered boolean NOT NULL DEFAULT false,
                               assigned boolean NOT NULL DEFAULT false, PRIMARY KEY (job_id, member_id));
CREATE TABLE known_referrals (referral_id text PRIMARY KEY, community_id text NOT NULL, referrer_id text NOT NULL,
                              referred_id text NOT NULL, to_member_id text, to_partnership boolean NOT NULL);
CREATE TABLE known_goals (goal_id text PRIMARY KEY, community_id text NOT NULL, member_id text NOT NULL,
                          statement text NOT NULL, quiet_since timestamptz NOT NULL, checked_in boolean NOT NULL
                          DEFAULT false, active boolean NOT NULL DEFAULT true);
CREATE INDEX known_goals_active ON known_goals (quiet_since) WHERE active;
CREATE TABLE known_offerings (offering_id text PRIMARY KEY, community_id text NOT NULL, producer_id text NOT NULL,
                              title text NOT NULL, commitment_deadline timestamptz NOT NULL, minimum_shares int
                              NOT NULL, delivery_dates date[] NOT NULL, utc_offset interval NOT NULL,
                              status text NOT NULL DEFAULT 'open');
CREATE TABLE known_commitments (offering_id text NOT NULL, member_id text NOT NULL, shares int NOT NULL,
                                PRIMARY KEY (offering_id, member_id));
CREATE TABLE known_help_shifts (offering_id text NOT NULL, shift_id text NOT NULL, day date NOT NULL,
                                place text NOT NULL, what text NOT NULL, PRIMARY KEY (offering_id, shift_id));
CREATE TABLE known_shift_signups (offering_id text NOT NULL, shift_id text NOT NULL, member_id text NOT NULL,
                                  PRIMARY KEY (offering_id, shift_id, member_id));
CREATE TABLE known_deliveries (offering_id text NOT NULL, member_id text NOT NULL, day date NOT NULL,
                               PRIMARY KEY (offering_id, member_id, day));
CREATE TABLE known_member_skills (community_id text NOT NULL, member_id text NOT NULL, skills text[] NOT NULL,
                                  PRIMARY KEY (community_id, member_id));
CREATE INDEX known_member_skills_by_skill ON known_member_skills USING gin (skills);
CREATE TABLE known_caps (community_id text PRIMARY KEY, member_cap int NOT NULL,
                         near boolean NOT NULL DEFAULT false, crossed_by text);
"""
DEFAULT_CAP = 150  # the members service's default, for a community whose founding this service never saw
NEAR_CAP = 0.9  # owners and facilitators hear when the members reach this share of the cap


@dataclass(frozen=True)
class Cause:
    kind: str
    members: list[str]
    facts: dict[str, Any]
    # Raised only for members whose person asked for this kind (a kind that starts "off", DEFAULT_DELIVERY):
    # nobody hears of it in their inbox either until they opt in.
    opt_in: bool = False
    # Other members: named by id (their names put in when composed), and what is quoted of one of them — kept
    # apart from the recipient's facts so that erasing them reaches every notification (NotificationRaised).
    names: dict[str, str] = field(default_factory=dict)
    quoted: dict[str, str] = field(default_factory=dict)
    quoted_from: str | None = None


async def remember(conn: asyncpg.Connection, e: Envelope) -> None:
    """Keeps what later messages need to say (names and titles), in event order."""
    d = e.data
    if e.type in ("CommunityFounded", "SisterCommunityFounded") and d.get("name"):
        await conn.execute("INSERT INTO known_communities VALUES ($1, $2) ON CONFLICT (community_id) DO UPDATE "
                           "SET name = EXCLUDED.name", e.community_id, d["name"])
    elif e.type == "JobRequestPosted":
        await conn.execute("INSERT INTO known_jobs VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                           d["job_id"], e.community_id, d["requester_id"], d["title"])
    elif e.type == "SessionScheduled":
        await conn.execute("INSERT INTO known_sessions VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                           d["session_id"], e.community_id, d["title"], _moment(d["starts_at"]),
                           _moment(d["ends_at"]), d["time_zone"], d.get("place") or d.get("link"), e.stream_version)
    elif e.type == "SessionRescheduled":
        await conn.execute("UPDATE known_sessions SET starts_at = $2, ends_at = $3, time_zone = $4, place = $5, "
                           "sequence = $6 WHERE session_id = $1", d["session_id"], _moment(d["starts_at"]),
                           _moment(d["ends_at"]), d["time_zone"], d.get("place") or d.get("link"), e.stream_version)
    elif e.type == "SessionCancelled":
        await conn.execute("UPDATE known_sessions SET sequence = $2, cancelled = true WHERE session_id = $1",
                           d["session_id"], e.stream_version)
    elif e.type in ("MemberRegistered", "WaitlistPromoted"):
        await conn.execute("INSERT INTO known_registrations VALUES ($1, $2) ON CONFLICT DO NOTHING",
                           d["session_id"], d["member_id"])
    elif e.type == "RegistrationCancelled":
        await conn.execute("DELETE FROM known_registrations WHERE session_id = $1 AND member_id = $2",
                           d["session_id"], d["member_id"])
    elif e.type == "PlaceOffered":
        await conn.execute("INSERT INTO known_offers VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING", d["offer_id"],
                           e.community_id, d["applicant_id"], _moment(d["expires_at"]))
    elif e.type in ("PlaceOfferAccepted", "PlaceOfferDeclined", "PlaceOfferExpired"):
        await conn.execute("UPDATE known_offers SET open = false WHERE offer_id = $1", d["offer_id"])
    await _remember_more(conn, e)


async def _remember_more(conn: asyncpg.Connection, e: Envelope) -> None:
    """The second slice's facts: jobs' people, introductions, goals, offerings, skills and caps."""
    d = e.data
    if e.type in ("JobOffered", "JobAssigned"):
        assigned = e.type == "JobAssigned"
        for member_id in d["member_ids"] if assigned else [d["member_id"]]:
            await conn.execute(
                "INSERT INTO known_job_people VALUES ($1, $2, $3, $4) ON CONFLICT (job_id, member_id) DO UPDATE "
                "SET offered = known_job_people.offered OR EXCLUDED.offered, assigned = known_job_people.assigned "
                "OR EXCLUDED.assigned", d["job_id"], member_id, not assigned, assigned)
    elif e.type == "ReferralMade":
        await conn.execute("INSERT INTO known_referrals VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                           d["referral_id"], e.community_id, d["referrer_id"], d["referred_id"],
                           d.get("to_member_id"), d.get("to_partnership_id") is not None)
    elif e.type == "GoalSet":
        await conn.execute("INSERT INTO known_goals VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                           d["goal_id"], e.community_id, d["member_id"], d["statement"], _moment(d["set_at"]))
    elif e.type == "GoalRevised":
        await conn.execute("UPDATE known_goals SET statement = $2 WHERE goal_id = $1", d["goal_id"], d["statement"])
    elif e.type == "ProgressCheckedIn":
        await conn.execute("UPDATE known_goals SET quiet_since = greatest(quiet_since, $2), checked_in = true "
                           "WHERE goal_id = $1", d["goal_id"], _moment(d["checked_in_at"]))
    elif e.type in ("GoalAchieved", "GoalAbandoned"):
        await conn.execute("UPDATE known_goals SET active = false WHERE goal_id = $1", d["goal_id"])
    elif e.type in ("OfferingPublished", "OfferingTermsChanged"):
        await _remember_terms(conn, e.community_id, d.get("producer_id"), d["offering_id"], d["terms"])
    elif e.type == "SharesCommitted":
        await conn.execute("INSERT INTO known_commitments VALUES ($1, $2, $3) ON CONFLICT (offering_id, member_id) "
                           "DO UPDATE SET shares = EXCLUDED.shares", d["offering_id"], d["member_id"],
                           d["member_shares"])
    elif e.type in ("CommitmentWithdrawn", "CommitmentReleased"):
        await conn.execute("DELETE FROM known_commitments WHERE offering_id = $1 AND member_id = $2",
                           d["offering_id"], d["member_id"])
    elif e.type in ("OfferingConfirmed", "OfferingLapsed"):
        await conn.execute("UPDATE known_offerings SET status = $2 WHERE offering_id = $1", d["offering_id"],
                           "confirmed" if e.type == "OfferingConfirmed" else "lapsed")
    elif e.type == "HelpShiftSignedUp":
        await conn.execute("INSERT INTO known_shift_signups VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                           d["offering_id"], d["shift_id"], d["member_id"])
    elif e.type == "HelpShiftSignUpCancelled":
        await conn.execute("DELETE FROM known_shift_signups WHERE offering_id = $1 AND shift_id = $2 "
                           "AND member_id = $3", d["offering_id"], d["shift_id"], d["member_id"])
    elif e.type == "DeliveryRecorded":
        await conn.execute("INSERT INTO known_deliveries VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                           d["offering_id"], d["member_id"], date_of(d["delivery_date"]))
    elif e.type == "MemberProfileUpdated":
        await conn.execute("INSERT INTO known_member_skills VALUES ($1, $2, $3) ON CONFLICT (community_id, "
                           "member_id) DO UPDATE SET skills = EXCLUDED.skills", e.community_id, d["member_id"],
                           sorted({normalise_skill(s) for s in d.get("skills", [])} - {""}))
    elif e.type == "CommunityFounded":
        await conn.execute("INSERT INTO known_caps (community_id, member_cap) VALUES ($1, $2) ON CONFLICT "
                           "(community_id) DO UPDATE SET member_cap = EXCLUDED.member_cap", e.community_id,
                           d["member_cap"])
    elif e.type == "CommunityCapChanged":
        await conn.execute("INSERT INTO known_caps (community_id, member_cap) VALUES ($1, $2) ON CONFLICT "
                           "(community_id) DO UPDATE SET member_cap = EXCLUDED.member_cap", e.community_id,
                           d["new_cap"])
    if e.type in ("MemberJoined", "MemberLeft", "MemberRemoved", "CommunityCapChanged"):
        await _remember_nearness(conn, e)


async def _remember_terms(conn: asyncpg.Connection, cid: str, producer_id: str | None, offering_id: str,
                          terms: dict[str, Any]) -> None:
    """An offering's terms as reminders need them. Its dates have no time zone: a day is taken to begin at
    midnight at the offset its commitment deadline was given in (the producer's clock)."""
    deadline = _moment(terms["commitment_deadline"])
    offset = deadline.utcoffset() or timedelta(0)
    days = [date_of(day) for day in terms["delivery_dates"]]
    if producer_id is not None:
        await conn.execute("INSERT INTO known_offerings VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT "
                           "DO NOTHING", offering_id, cid, producer_id, terms["title"], deadline,
                           terms["minimum_shares"], days, offset)
    else:
        await conn.execute("UPDATE known_offerings SET title = $2, commitment_deadline = $3, minimum_shares = $4, "
                           "delivery_dates = $5, utc_offset = $6 WHERE offering_id = $1", offering_id,
                           terms["title"], deadline, terms["minimum_shares"], days, offset)
    await conn.execute("DELETE FROM known_help_shifts WHERE offering_id = $1", offering_id)
    for position, shift in enumerate(terms.get("help_shifts", [])):  # numbered from 1 (offerings' shift_id)
        await conn.execute("INSERT INTO known_help_shifts VALUES ($1, $2, $3, $4, $5)", offering_id,
                           str(position + 1), date_of(shift["date"]), shift["place"], shift.get("what", ""))


async def _remember_nearness(conn: asyncpg.Connection, e: Envelope) -> None:
    """Whether the community's active members have reached 90 % of its cap. A join that takes it there is
    remembered as the crossing (``crossed_by``), which ``causes`` tells the stewards of; a cap changed to
    reach it is the owner's own doing and tells no one; falling below it (a leave, a higher cap) ends the
    crossing, so the next join that reaches it again is told again — once per crossing, not on every join."""
    cid = e.community_id
    count = await conn.fetchval("SELECT count(*) FROM roster WHERE community_id = $1 AND active", cid)
    await conn.execute("INSERT INTO known_caps (community_id, member_cap) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                       cid, DEFAULT_CAP)
    near = await conn.fetchval("SELECT near FROM known_caps WHERE community_id = $1", cid)
    now_near = await conn.fetchval("SELECT $2::int8 >= member_cap * $3::float8 FROM known_caps "
                                   "WHERE community_id = $1", cid, count, NEAR_CAP)
    if now_near and not near:
        await conn.execute("UPDATE known_caps SET near = true, crossed_by = $2 WHERE community_id = $1", cid,
                           str(e.id) if e.type == "MemberJoined" else None)
    elif near and not now_near:
        await conn.execute("UPDATE known_caps SET near = false, crossed_by = NULL WHERE community_id = $1", cid)


async def causes(conn: asyncpg.Connection, e: Envelope) -> list[Cause]:
    """The notifications this event causes (none for most events)."""
    d, cid = e.data, e.community_id
    community = await conn.fetchval("SELECT name FROM known_communities WHERE community_id = $1", cid) or ""
    base = {"community": community, "community_id": cid}
    if e.type == "PlaceOffered":
        return [Cause("place-offered", [d["applicant_id"]],
                      {**base, "expires_at": d["expires_at"], "path": f"/waiting/{cid}"})]
    if e.type in ("ApplicationApproved", "ApplicationDeclined"):
        approved = e.type == "ApplicationApproved"
        return [Cause("application-decided", [d["applicant_id"]],
                      {**base, "approved": approved, "reason": d.get("reason", ""),
                       "path": f"/app/c/{cid}" if approved else f"/join/{cid}"})]
    if e.type == "ApplicationSubmitted":
        stewards = await conn.fetch("SELECT member_id FROM roster WHERE community_id = $1 AND active "
                                    "AND role IN ('owner', 'facilitator') ORDER BY member_id", cid)
        return [Cause("application-received", [r["member_id"] for r in stewards],
                      {**base, "path": f"/app/c/{cid}/stewarding"}, quoted={"name": d["display_name"]},
                      quoted_from=d["applicant_id"])]
    if e.type in ("JobOffered", "JobReferred"):
        job = await conn.fetchrow("SELECT requester_id, title FROM known_jobs WHERE job_id = $1", d["job_id"])
        if job is None or job["requester_id"] == d["member_id"]:
            return []
        return [Cause("job-offer", [job["requester_id"]],
                      {**base, "title": job["title"], "path": f"/app/c/{cid}/jobs/{d['job_id']}"},
                      names={"name": d["member_id"], **({"referred_by": d["referred_by"]}
                                                        if e.type == "JobReferred" else {})})]
    if e.type == "JobAssigned":
        job = await conn.fetchrow("SELECT title FROM known_jobs WHERE job_id = $1", d["job_id"])
        return [Cause("job-assigned", list(d["member_ids"]),
                      {**base, "title": job["title"] if job else "", "path": f"/app/c/{cid}/jobs/{d['job_id']}"})]
    if e.type == "ReferralMade" and d.get("to_member_id"):
        return [Cause("introduced", [d["referred_id"]], {**base, "path": f"/app/c/{cid}/introductions"},
                      names={"referrer": d["referrer_id"], "to": d["to_member_id"]},
                      quoted={"note": d.get("note", "")}, quoted_from=d["referrer_id"])]
    if e.type == "FeedbackGiven":
        job = await conn.fetchrow("SELECT title FROM known_jobs WHERE job_id = $1", d["job_id"])
        return [Cause("feedback-received", [d["subject_id"]],
                      {**base, "title": job["title"] if job else "", "path": f"/app/c/{cid}/profile"})]
    if e.type == "WaitlistPromoted":
        session = await _session(conn, d["session_id"])
        return [Cause("session-promoted", [d["member_id"]], {**base, **session, "path": f"/app/c/{cid}/sessions"})]
    if e.type in ("SessionRescheduled", "SessionCancelled"):
        session = await _session(conn, d["session_id"])
        return [Cause("session-changed", list(d["registrants"]),
                      {**base, **session, "cancelled": e.type == "SessionCancelled", "reason": d.get("reason", ""),
                       "path": f"/app/c/{cid}/sessions"})]
    return await _more_causes(conn, e, base)


async def _more_causes(conn: asyncpg.Connection, e: Envelope, base: dict[str, Any]) -> list[Cause]:
    """The second slice's kinds. None of them tells a member about what they did themselves (the actor of the
    event's command), except how full the community is, which is news to whoever added the member too."""
    d, cid, actor = e.data, e.community_id, _acting_member(e)
    if e.type in ("MemberRegistered", "RegistrationWaitlisted"):
        session = await _session(conn, d["session_id"])
        if d["member_id"] == actor or _starts_within_reminder(session):
            return []
        return [Cause("session-registered", [d["member_id"]],
                      {**base, **session, "position": d.get("position"), "path": f"/app/c/{cid}/sessions"})]
    if e.type in ("JobStarted", "JobCompleted", "JobCancelled"):
        cancelled = e.type == "JobCancelled"
        job = await conn.fetchrow("SELECT title FROM known_jobs WHERE job_id = $1", d["job_id"])
        people = await conn.fetch("SELECT member_id FROM known_job_people WHERE job_id = $1 AND (assigned OR "
                                  "($2 AND offered)) ORDER BY member_id", d["job_id"], cancelled)
        state = {"JobStarted": "started", "JobCompleted": "completed", "JobCancelled": "cancelled"}[e.type]
        return [Cause("job-status", [p["member_id"] for p in people if p["member_id"] != actor],
                      {**base, "title": job["title"] if job else "", "state": state,
                       "job_id": d["job_id"], "path": f"/app/c/{cid}/jobs/{d['job_id']}"},
                      quoted={"reason": d.get("reason", "")}, quoted_from=d.get("requester_id") or actor)]
    if e.type in ("ReferralAccepted", "ReferralDeclined", "ReferralOutcomeRecorded"):
        referral = await conn.fetchrow("SELECT * FROM known_referrals WHERE referral_id = $1", d["referral_id"])
        if referral is None or referral["referrer_id"] == actor:
            return []
        if e.type == "ReferralOutcomeRecorded" and d["recorded_by"] == referral["referrer_id"]:
            return []
        if e.type == "ReferralAccepted" and referral["to_partnership"] and actor != referral["referred_id"]:
            return []  # a partner community's outcome, recorded with it: the outcome tells the referrer
        outcome = {"ReferralAccepted": "accepted", "ReferralDeclined": "declined"}.get(
            e.type, "worked" if d.get("worked") else "did-not-work")
        return [Cause("introduction-outcome", [referral["referrer_id"]],
                      {**base, "outcome": outcome, "path": f"/app/c/{cid}/introductions"},
                      names={"name": referral["referred_id"], "to": referral["to_member_id"] or ""},
                      quoted={"note": d.get("reason") or d.get("note") or ""},
                      quoted_from=d.get("recorded_by") or actor or referral["referred_id"])]
    if e.type in ("OfferingConfirmed", "OfferingLapsed"):
        offering = await conn.fetchrow("SELECT title, producer_id FROM known_offerings WHERE offering_id = $1",
                                       d["offering_id"])
        if offering is None:
            return []
        committed = await _committed_members(conn, d["offering_id"])
        return [Cause("offering-decided", [m for m in [*committed, offering["producer_id"]] if m != actor],
                      {**base, "title": offering["title"], "confirmed": e.type == "OfferingConfirmed",
                       "committed": d["committed"], "minimum_shares": d["minimum_shares"],
                       "offering_id": d["offering_id"], "path": f"/app/c/{cid}/offerings/{d['offering_id']}"})]
    if e.type == "PartnerJobReceived":
        skills = sorted({normalise_skill(s) for s in d["job"].get("skills", []) if isinstance(s, str)} - {""})
        matching = await conn.fetch(
            "SELECT s.member_id, array(SELECT unnest(s.skills) INTERSECT SELECT unnest($2::text[])) AS shared "
            "FROM known_member_skills s JOIN roster r USING (community_id, member_id) WHERE s.community_id = $1 "
            "AND r.active AND s.skills && $2::text[] ORDER BY s.member_id", cid, skills) if skills else []
        return [Cause("partner-job-match", [m["member_id"]],
                      {**base, "title": d["job"].get("title", ""), "partner": d["from_community_name"],
                       "skills": sorted(m["shared"]), "job_id": d["job_id"],
                       "path": f"/app/c/{cid}/partner-jobs#job-{d['job_id']}"}, opt_in=True) for m in matching]
    if e.type == "MemberJoined":
        cap = await conn.fetchrow("SELECT member_cap, crossed_by FROM known_caps WHERE community_id = $1", cid)
        if cap is None or cap["crossed_by"] != str(e.id):
            return []
        count = await conn.fetchval("SELECT count(*) FROM roster WHERE community_id = $1 AND active", cid)
        # Everyone who runs the community, the one who added this member too: the news is the community's size.
        return [Cause("community-near-cap", await _stewards(conn, cid, ("owner", "facilitator"), None),
                      {**base, "members": count, "cap": cap["member_cap"], "path": f"/app/c/{cid}/stewarding#cap"})]
    if e.type in ("PartnershipRequested", "PartnershipProposed"):
        return [Cause("partnership-proposed", await _stewards(conn, cid, ("owner",), actor),
                      {**base, "partner": d["partner_community_name"], "note": d.get("note", ""),
                       "by_us": e.type == "PartnershipProposed", "path": f"/app/c/{cid}/partners"})]
    return []


async def _stewards(conn: asyncpg.Connection, cid: str, roles: tuple[str, ...], actor: str | None) -> list[str]:
    rows = await conn.fetch("SELECT member_id FROM roster WHERE community_id = $1 AND active AND role = ANY($2) "
                            "ORDER BY member_id", cid, list(roles))
    return [r["member_id"] for r in rows if r["member_id"] != actor]


async def _committed_members(conn: asyncpg.Connection, offering_id: str) -> list[str]:
    """Members here who hold shares (a partner community's member, ``partner:<pledge>``, is told by their own)."""
    rows = await conn.fetch("SELECT member_id FROM known_commitments WHERE offering_id = $1 AND member_id NOT LIKE "
                            "'partner:%' ORDER BY member_id", offering_id)
    return [r["member_id"] for r in rows]


def _acting_member(e: Envelope) -> str | None:
    """The member whose command this event records (``member:<id>`` in its metadata), if a member's."""
    return e.actor.removeprefix("member:") if e.actor and e.actor.startswith("member:") else None


@cache
def _reminder_ahead() -> timedelta:
    return timedelta(hours=ReminderSettings().ahead_hours)


def _starts_within_reminder(session: dict[str, Any]) -> bool:
    """A place taken in a session about to start is told by its reminder, raised at once: one message, not two."""
    starts = session.get("starts_at")
    return starts is not None and datetime.fromisoformat(starts) <= datetime.now(UTC) + _reminder_ahead()


async def _session(conn: asyncpg.Connection, session_id: str) -> dict[str, Any]:
    row = await conn.fetchrow("SELECT * FROM known_sessions WHERE session_id = $1", session_id)
    if row is None:
        return {"session_id": session_id, "title": ""}
    return {"session_id": session_id, "title": row["title"], "starts_at": row["starts_at"].isoformat(),
            "ends_at": row["ends_at"].isoformat(), "time_zone": row["time_zone"], "place": row["place"],
            "sequence": row["sequence"]}


def _moment(value: Any) -> Any:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def date_of(value: Any) -> Any:
    return datetime.fromisoformat(value).date() if isinstance(value, str) else value


def normalise_skill(skill: str) -> str:
    """As the members and referrals services write a skill, so a partner's "Web Design" meets our "web-design"."""
    return re.sub(r"[^\w]+", "-", skill.strip().lower()).strip("-")


__all__ = ["LOOKUPS_SQL", "MORE_LOOKUPS_SQL", "REMINDER_LOOKUPS_SQL", "Cause", "causes", "remember"]

"""What the gateway learns from the other services' events: the directory (roles for tokens) and the
community health figures."""

from __future__ import annotations

import asyncpg

from kizuna.consumer import Subscription
from kizuna.envelope import Envelope
from kizuna.roster import RosterFollower

_ITEM = ("INSERT INTO health_items (kind, item_id, community_id, status) VALUES ($1, $2, $3, $4) "
         "ON CONFLICT (kind, item_id) DO UPDATE SET status = EXCLUDED.status")


_DIRECTORY = RosterFollower("directory", profile=True, joined_at=True)  # profiles make partner cards
ERASURE = [_DIRECTORY.erasure()]  # an erased member's name and profile leave the directory (kizuna.erasure)


async def apply_member_event(conn: asyncpg.Connection, envelope: Envelope) -> None:
    """The directory (roles for tokens) plus each community's name and cap (for health)."""
    data, kind = envelope.data, envelope.type
    cid = str(data.get("community_id") or envelope.community_id)
    if kind == "CommunityFounded":
        await conn.execute("INSERT INTO community_caps VALUES ($1, $2, $3) ON CONFLICT (community_id) DO UPDATE "
                           "SET name = EXCLUDED.name", cid, data["name"], data["member_cap"])
    elif kind == "CommunityCapChanged":
        await conn.execute("UPDATE community_caps SET member_cap = $2 WHERE community_id = $1", cid, data["new_cap"])
    await _DIRECTORY(conn, envelope)


_STATUS = {
    "JobRequestPosted": ("job", "open"), "JobCompleted": ("job", "completed"), "JobCancelled": ("job", "cancelled"),
    "GoalSet": ("goal", "active"), "GoalAchieved": ("goal", "achieved"), "GoalAbandoned": ("goal", "abandoned"),
}


async def apply_activity_event(conn: asyncpg.Connection, envelope: Envelope) -> None:
    """Jobs, referrals, sessions and goals, keyed by their stream so field names may evolve."""
    data, kind, cid = envelope.data, envelope.type, envelope.community_id
    if kind in _STATUS:
        item_kind, status = _STATUS[kind]
        await conn.execute(_ITEM, item_kind, envelope.subject, cid, status)
    elif kind == "ReferralOutcomeRecorded":
        worked = bool(data.get("worked", data.get("outcome") in ("worked", True)))
        await conn.execute(_ITEM, "referral", envelope.subject, cid, "worked" if worked else "did-not-work")
    elif kind == "AttendanceRecorded":
        # Recording attendance again replaces the earlier list (sessions' rule), so store it whole.
        await conn.execute(
            "INSERT INTO health_attendance VALUES ($1, $2, $3) ON CONFLICT (session_id) DO UPDATE "
            "SET attendees = EXCLUDED.attendees", envelope.subject, cid, [str(m) for m in data.get("attendees", [])])


SUBSCRIPTIONS = [
    Subscription("gateway-directory", ["*.members.>"], apply_member_event),
    Subscription("gateway-health", ["*.referrals.>", "*.sessions.>"], apply_activity_event),
]

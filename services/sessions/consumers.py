"""The roster: who belongs to which community, with which role, learned from the members service's events."""

from __future__ import annotations

import asyncpg

from kizuna.consumer import Subscription
from kizuna.envelope import Envelope

_UPSERT = ("INSERT INTO roster (community_id, member_id, display_name, role, active) VALUES ($1, $2, $3, $4, $5) "
           "ON CONFLICT (community_id, member_id) DO UPDATE SET display_name = EXCLUDED.display_name, "
           "role = EXCLUDED.role, active = EXCLUDED.active")


async def apply_member_event(conn: asyncpg.Connection, envelope: Envelope) -> None:
    data, kind = envelope.data, envelope.type
    cid = str(data.get("community_id") or envelope.community_id)
    if kind == "CommunityFounded":
        await conn.execute(_UPSERT, cid, data["owner_member_id"], data["owner_display_name"], "owner", True)
    elif kind == "MemberJoined":
        await conn.execute(_UPSERT, cid, data["member_id"], data["display_name"], data["role"], True)
    elif kind in ("MemberLeft", "MemberRemoved"):
        await conn.execute("UPDATE roster SET active = false WHERE community_id = $1 AND member_id = $2",
                           cid, data["member_id"])
    elif kind == "MemberRoleChanged":
        await conn.execute("UPDATE roster SET role = $3 WHERE community_id = $1 AND member_id = $2",
                           cid, data["member_id"], data["new_role"])
    elif kind == "OwnershipTransferred":
        # The previous owner stays on as a facilitator, the usual hand-over in a small community.
        await conn.execute("UPDATE roster SET role = 'facilitator' WHERE community_id = $1 AND member_id = $2",
                           cid, data["from_member_id"])
        await conn.execute("UPDATE roster SET role = 'owner' WHERE community_id = $1 AND member_id = $2",
                           cid, data["to_member_id"])
    elif kind == "MemberProfileUpdated":
        await conn.execute("UPDATE roster SET display_name = $3 WHERE community_id = $1 AND member_id = $2",
                           cid, data["member_id"], data["display_name"])


SUBSCRIPTIONS = [Subscription("sessions-roster", ["*.members.>"], apply_member_event)]

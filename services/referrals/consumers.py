"""The roster: who belongs to which community, with which skills and vector, from the members service's events."""

from __future__ import annotations

import asyncpg

from kizuna.consumer import Subscription
from kizuna.envelope import Envelope

_UPSERT = ("INSERT INTO roster (community_id, member_id, display_name, role, active) VALUES ($1, $2, $3, $4, true) "
           "ON CONFLICT (community_id, member_id) DO UPDATE SET display_name = EXCLUDED.display_name, "
           "role = EXCLUDED.role, active = true")


async def apply_member_event(conn: asyncpg.Connection, envelope: Envelope) -> None:
    data, kind = envelope.data, envelope.type
    cid = str(data.get("community_id") or envelope.community_id)
    if kind == "CommunityFounded":
        await conn.execute(_UPSERT, cid, data["owner_member_id"], data["owner_display_name"], "owner")
    elif kind == "MemberJoined":
        await conn.execute(_UPSERT, cid, data["member_id"], data["display_name"], data["role"])
    elif kind in ("MemberLeft", "MemberRemoved"):
        await conn.execute("UPDATE roster SET active = false WHERE community_id = $1 AND member_id = $2",
                           cid, data["member_id"])
    elif kind == "MemberRoleChanged":
        await conn.execute("UPDATE roster SET role = $3 WHERE community_id = $1 AND member_id = $2",
                           cid, data["member_id"], data["new_role"])
    elif kind == "OwnershipTransferred":
        await conn.execute("UPDATE roster SET role = 'facilitator' WHERE community_id = $1 AND member_id = $2",
                           cid, data["from_member_id"])
        await conn.execute("UPDATE roster SET role = 'owner' WHERE community_id = $1 AND member_id = $2",
                           cid, data["to_member_id"])
    elif kind == "MemberProfileUpdated":
        await conn.execute(
            "UPDATE roster SET display_name = $3, skills = $4, vector = $5 WHERE community_id = $1 AND member_id = $2",
            cid, data["member_id"], data["display_name"], data.get("skills", []), data.get("vector", ""))
    elif kind == "SharingConsentChanged":
        await conn.execute("UPDATE roster SET shared_fields = $3 WHERE community_id = $1 AND member_id = $2",
                           cid, data["member_id"], data.get("shared_fields", ["display_name"]))


SUBSCRIPTIONS = [Subscription("referrals-roster", ["*.members.>"], apply_member_event)]

"""Following the members service's events into a service's own roster table.

Every service that needs to know who belongs where keeps a roster in its own database (no service
reads another's); this is the one place that knows how member events change it. The table needs
``community_id, member_id, display_name, role, active``; ``profile`` adds ``skills, vector,
shared_fields``; ``joined_at`` records when each member arrived.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from .envelope import Envelope
from .erasure import Scrub
from .ordering import NotYetApplicable
from .personal import ERASED_NAME


@dataclass(frozen=True)
class RosterFollower:
    table: str = "roster"
    profile: bool = False
    joined_at: bool = False

    def __post_init__(self) -> None:
        if not self.table.isidentifier():
            raise ValueError(f"not a table name: {self.table!r}")

    def erasure(self) -> Scrub:
        """What erasing a member sets in this roster (kizuna.erasure): the row stays, the name and profile go."""
        columns: dict[str, object] = {"display_name": ERASED_NAME}
        if self.profile:
            columns |= {"skills": [], "vector": ""}
        return Scrub(self.table, "member_id", columns)

    def table_sql(self) -> str:
        """The roster table this follower writes, for a service's first migration (one definition for all)."""
        columns = ["community_id text NOT NULL", "member_id text NOT NULL", "display_name text NOT NULL",
                   "role text NOT NULL", "active boolean NOT NULL"]
        if self.profile:
            columns += ["skills text[] NOT NULL DEFAULT '{}'", "vector text NOT NULL DEFAULT ''",
                        "shared_fields text[] NOT NULL DEFAULT '{display_name}'"]
        if self.joined_at:
            columns.append("joined_at timestamptz NOT NULL DEFAULT now()")
        body = ",\n    ".join([*columns, "PRIMARY KEY (community_id, member_id)"])
        return f"CREATE TABLE {self.table} (\n    {body}\n);\n"

    def _on_table(self, statement: str) -> str:
        """The statement with ``{table}`` naming this roster's table (an identifier, checked above)."""
        return statement.format(table=self.table)

    async def __call__(self, conn: asyncpg.Connection, envelope: Envelope) -> None:
        data, kind, t = envelope.data, envelope.type, self._on_table
        cid = str(data.get("community_id") or envelope.community_id)
        if kind == "CommunityFounded":
            await self._upsert(conn, envelope, cid, data["owner_member_id"], data["owner_display_name"], "owner")
        elif kind == "MemberJoined":
            await self._upsert(conn, envelope, cid, data["member_id"], data["display_name"], data["role"])
        elif kind in ("MemberLeft", "MemberRemoved"):
            await conn.execute(t("UPDATE {table} SET active = false WHERE community_id = $1 AND member_id = $2"),
                               cid, data["member_id"])
        elif kind == "MemberRoleChanged":
            await conn.execute(t("UPDATE {table} SET role = $3 WHERE community_id = $1 AND member_id = $2"),
                               cid, data["member_id"], data["new_role"])
        elif kind == "OwnershipTransferred":
            # The previous owner stays on as a facilitator (the members service's rule).
            await conn.execute(t("UPDATE {table} SET role = 'facilitator' WHERE community_id = $1 AND member_id = $2"),
                               cid, data["from_member_id"])
            await conn.execute(t("UPDATE {table} SET role = 'owner' WHERE community_id = $1 AND member_id = $2"),
                               cid, data["to_member_id"])
        elif kind == "MemberProfileUpdated" and self.profile:
            await self._update_profile(
                conn, envelope, t("UPDATE {table} SET display_name = $3, skills = $4, vector = $5 "
                                  "WHERE community_id = $1 AND member_id = $2 RETURNING true"),
                cid, data["member_id"], data["display_name"], data.get("skills", []), data.get("vector", ""))
        elif kind == "MemberProfileUpdated":
            await self._update_profile(
                conn, envelope, t("UPDATE {table} SET display_name = $3 WHERE community_id = $1 AND member_id = $2 "
                                  "RETURNING true"), cid, data["member_id"], data["display_name"])
        elif kind == "SharingConsentChanged" and self.profile:
            await self._update_profile(
                conn, envelope, t("UPDATE {table} SET shared_fields = $3 WHERE community_id = $1 AND member_id = $2 "
                                  "RETURNING true"), cid, data["member_id"],
                data.get("shared_fields", ["display_name"]))

    async def _update_profile(self, conn: asyncpg.Connection, envelope: Envelope, sql: str, *args: object) -> None:
        if not await conn.fetchval(sql, *args):
            raise NotYetApplicable(f"{envelope.type} for a member {self.table} has not seen join yet")

    async def _upsert(self, conn: asyncpg.Connection, envelope: Envelope, cid: str, member_id: str,
                      display_name: str, role: str) -> None:
        if self.joined_at:
            await conn.execute(self._on_table(
                "INSERT INTO {table} (community_id, member_id, display_name, role, active, joined_at) "
                "VALUES ($1, $2, $3, $4, true, $5) ON CONFLICT (community_id, member_id) "
                "DO UPDATE SET display_name = EXCLUDED.display_name, role = EXCLUDED.role, active = true"),
                cid, member_id, display_name, role, envelope.time)
        else:
            await conn.execute(self._on_table(
                "INSERT INTO {table} (community_id, member_id, display_name, role, active) "
                "VALUES ($1, $2, $3, $4, true) ON CONFLICT (community_id, member_id) "
                "DO UPDATE SET display_name = EXCLUDED.display_name, role = EXCLUDED.role, active = true"),
                cid, member_id, display_name, role)

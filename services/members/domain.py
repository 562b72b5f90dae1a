"""Members: communities, roles, profiles and the member cap. Pure — no I/O.

Streams: ``community-<community_id>`` holds the community and its membership (so the cap is
checked against every concurrent join); ``profile-<member_id>`` holds one member's profile.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kizuna.domain import Aggregate, DomainEvent
from kizuna.errors import Conflict, Forbidden, Invalid, NotFound

Role = Literal["owner", "facilitator", "member"]
JoinedVia = Literal["founder", "invitation", "referral", "application", "open", "operator", "sister-community"]
SHAREABLE_FIELDS = ("display_name", "vector", "skills", "values", "reputation")


# ---- events (the public contract: other services read these payloads from the bus) ----

class CommunityFounded(DomainEvent):
    community_id: str
    name: str
    purpose: str
    values: list[str]
    member_cap: int
    owner_member_id: str
    owner_display_name: str


class CommunityCapChanged(DomainEvent):
    community_id: str
    old_cap: int
    new_cap: int
    reason: str
    changed_by: str


class MemberJoined(DomainEvent):
    community_id: str
    member_id: str
    display_name: str
    role: Role
    joined_via: JoinedVia
    vouched_by: str | None = None


class MemberWaitlisted(DomainEvent):
    community_id: str
    applicant_id: str
    display_name: str
    position: int
    joined_via: JoinedVia
    vouched_by: str | None = None


class MemberLeft(DomainEvent):
    community_id: str
    member_id: str
    reason: str = ""


class MemberRemoved(DomainEvent):
    community_id: str
    member_id: str
    removed_by: str
    reason: str


class MemberRoleChanged(DomainEvent):
    community_id: str
    member_id: str
    old_role: Role
    new_role: Role
    changed_by: str
    reason: str


class OwnershipTransferred(DomainEvent):
    community_id: str
    from_member_id: str
    to_member_id: str
    reason: str


class MemberProfileUpdated(DomainEvent):
    community_id: str
    member_id: str
    display_name: str
    vector: str
    skills: list[str]
    values: list[str]


class SharingConsentChanged(DomainEvent):
    community_id: str
    member_id: str
    shared_fields: list[str]


# ---- commands ----

class FoundCommunity(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "name": "Hikari Makers", "purpose": "Makers in Kamakura helping each other grow",
        "values": ["share first", "equality"], "member_cap": 150, "owner_display_name": "Yui Sato"}]})
    name: str = Field(min_length=1, max_length=120)
    purpose: str = Field("", max_length=2000)
    values: list[str] = Field(default_factory=list, max_length=20)
    member_cap: int | None = Field(None, ge=2, le=10_000, description="Defaults to the deployment's cap (150)")
    owner_display_name: str = Field(min_length=1, max_length=120)

    @field_validator("name", "owner_display_name")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()


class ChangeCap(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"member_cap": 120, "reason": "keep it warm"}]})
    member_cap: int = Field(ge=2, le=10_000)
    reason: str = Field("", max_length=500)


class JoinCommunity(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "display_name": "Ken Mori", "joined_via": "invitation", "waitlist_if_full": True}]})
    display_name: str = Field(min_length=1, max_length=120)
    joined_via: JoinedVia = "invitation"
    vouched_by: str | None = Field(None, max_length=64, description="Defaults to the inviting member")
    waitlist_if_full: bool = False


class LeaveCommunity(BaseModel):
    reason: str = Field("", max_length=500)


class RemoveMember(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


class ChangeRole(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"role": "facilitator", "reason": "runs cohort B"}]})
    role: Literal["facilitator", "member"]
    reason: str = Field("", max_length=500)


class TransferOwnership(BaseModel):
    to_member_id: str = Field(min_length=1, max_length=64)
    reason: str = Field("", max_length=500)


class UpdateProfile(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "display_name": "Ken Mori", "vector": "Publish my first picture book by next spring",
        "skills": ["Illustration", "video editing"], "values": ["craft", "kindness"]}]})
    display_name: str = Field(min_length=1, max_length=120)
    vector: str = Field("", max_length=2000, description="Where the member is heading, in their own words")
    skills: list[str] = Field(default_factory=list, max_length=50)
    values: list[str] = Field(default_factory=list, max_length=20)


class ChangeConsent(BaseModel):
    shared_fields: list[Literal["display_name", "vector", "skills", "values", "reputation"]] = Field(
        default=["display_name"], description="What partner communities may see")


def normalise_skill(skill: str) -> str:
    return re.sub(r"[^\w]+", "-", skill.strip().lower()).strip("-")


# ---- aggregates ----

class Community(Aggregate):
    """A community and its membership: every join, leave and role change goes through this stream,
    so the cap and the single owner hold under any concurrency."""

    def __init__(self) -> None:
        self.community_id = ""
        self.name = ""
        self.cap = 0
        self.roles: dict[str, Role] = {}
        self.waitlist: list[str] = []

    @property
    def size(self) -> int:
        return len(self.roles)

    @property
    def owner(self) -> str | None:
        return next((m for m, r in self.roles.items() if r == "owner"), None)

    def _on_CommunityFounded(self, e: CommunityFounded) -> None:
        self.community_id, self.name, self.cap = e.community_id, e.name, e.member_cap
        self.roles[e.owner_member_id] = "owner"

    def _on_CommunityCapChanged(self, e: CommunityCapChanged) -> None:
        self.cap = e.new_cap

    def _on_MemberJoined(self, e: MemberJoined) -> None:
        self.roles[e.member_id] = e.role
        if e.member_id in self.waitlist:
            self.waitlist.remove(e.member_id)

    def _on_MemberWaitlisted(self, e: MemberWaitlisted) -> None:
        self.waitlist.append(e.applicant_id)

    def _on_MemberLeft(self, e: MemberLeft) -> None:
        self.roles.pop(e.member_id, None)

    def _on_MemberRemoved(self, e: MemberRemoved) -> None:
        self.roles.pop(e.member_id, None)

    def _on_MemberRoleChanged(self, e: MemberRoleChanged) -> None:
        self.roles[e.member_id] = e.new_role

    def _on_OwnershipTransferred(self, e: OwnershipTransferred) -> None:
        self.roles[e.from_member_id] = "facilitator"
        self.roles[e.to_member_id] = "owner"

    # -- decisions --

    def found(self, community_id: str, owner_id: str, cmd: FoundCommunity, default_cap: int) -> list[DomainEvent]:
        if self.version:
            raise Conflict("this community already exists")
        return [CommunityFounded(community_id=community_id, name=cmd.name, purpose=cmd.purpose,
                                 values=[v.strip() for v in cmd.values if v.strip()],
                                 member_cap=cmd.member_cap or default_cap, owner_member_id=owner_id,
                                 owner_display_name=cmd.owner_display_name)]

    def change_cap(self, cmd: ChangeCap, actor: str) -> list[DomainEvent]:
        if cmd.member_cap < self.size:
            raise Invalid("member_cap", f"cannot be below the current size of {self.size} members")
        if cmd.member_cap > self.cap and not cmd.reason.strip():
            raise Invalid("reason", "raising the cap needs a reason (past ~150 a community loses its warmth)")
        if cmd.member_cap == self.cap:
            return []
        return [CommunityCapChanged(community_id=self.community_id, old_cap=self.cap, new_cap=cmd.member_cap,
                                    reason=cmd.reason, changed_by=actor)]

    def join(self, member_id: str, cmd: JoinCommunity, vouched_by: str | None) -> list[DomainEvent]:
        if self.size >= self.cap:
            if cmd.waitlist_if_full:
                return [MemberWaitlisted(community_id=self.community_id, applicant_id=member_id,
                                         display_name=cmd.display_name, position=len(self.waitlist) + 1,
                                         joined_via=cmd.joined_via, vouched_by=vouched_by)]
            raise Conflict(f"the community is full: {self.size} of {self.cap} places taken",
                           slug="community-full", title="Community full", member_cap=self.cap, size=self.size)
        return [MemberJoined(community_id=self.community_id, member_id=member_id, display_name=cmd.display_name,
                             role="member", joined_via=cmd.joined_via, vouched_by=vouched_by)]

    def require_member(self, member_id: str) -> Role:
        if member_id not in self.roles:
            raise NotFound("member not found")
        return self.roles[member_id]

    def leave(self, member_id: str, cmd: LeaveCommunity) -> list[DomainEvent]:
        if self.require_member(member_id) == "owner":
            raise Conflict("the owner must hand ownership over before leaving", slug="owner-cannot-leave")
        return [MemberLeft(community_id=self.community_id, member_id=member_id, reason=cmd.reason)]

    def remove(self, member_id: str, cmd: RemoveMember, actor: str) -> list[DomainEvent]:
        if self.require_member(member_id) == "owner":
            raise Forbidden("the owner cannot be removed")
        return [MemberRemoved(community_id=self.community_id, member_id=member_id, removed_by=actor,
                              reason=cmd.reason)]

    def change_role(self, member_id: str, cmd: ChangeRole, actor: str) -> list[DomainEvent]:
        current = self.require_member(member_id)
        if current == "owner":
            raise Conflict("the owner's role changes only by handing ownership over", slug="owner-role")
        if current == cmd.role:
            return []
        return [MemberRoleChanged(community_id=self.community_id, member_id=member_id, old_role=current,
                                  new_role=cmd.role, changed_by=actor, reason=cmd.reason)]

    def transfer_ownership(self, cmd: TransferOwnership) -> list[DomainEvent]:
        self.require_member(cmd.to_member_id)
        owner = self.owner
        assert owner is not None
        if cmd.to_member_id == owner:
            return []
        return [OwnershipTransferred(community_id=self.community_id, from_member_id=owner,
                                     to_member_id=cmd.to_member_id, reason=cmd.reason)]


class Profile(Aggregate):
    def __init__(self) -> None:
        self.shared_fields: list[str] = ["display_name"]

    def _on_SharingConsentChanged(self, e: SharingConsentChanged) -> None:
        self.shared_fields = list(e.shared_fields)

    def update(self, community_id: str, member_id: str, cmd: UpdateProfile) -> list[DomainEvent]:
        skills = sorted({s for s in (normalise_skill(skill) for skill in cmd.skills) if s})
        return [MemberProfileUpdated(community_id=community_id, member_id=member_id,
                                     display_name=cmd.display_name.strip(), vector=cmd.vector.strip(),
                                     skills=skills, values=[v.strip() for v in cmd.values if v.strip()])]

    def change_consent(self, community_id: str, member_id: str, cmd: ChangeConsent) -> list[DomainEvent]:
        fields = sorted(set(cmd.shared_fields) | {"display_name"})
        if fields == sorted(self.shared_fields):
            return []
        return [SharingConsentChanged(community_id=community_id, member_id=member_id, shared_fields=fields)]

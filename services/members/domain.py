"""Members: communities, roles, profiles and the member cap. Pure — no I/O.

Streams: ``community-<community_id>`` holds the community and its membership (so the cap is
checked against every concurrent join); ``profile-<member_id>`` holds one member's profile.
"""

from __future__ import annotations

from typing import Literal

from kizuna.domain import DomainEvent

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

"""Members: communities, roles, profiles, the member cap, admission and the waitlist. Pure — no I/O.

Streams: ``community-<community_id>`` holds the community, its membership, its admission
(policy, applications, invitations) and its waitlist with place offers — so the cap, counted as
members plus open offers, is checked against every concurrent join, acceptance and offer;
``profile-<member_id>`` holds one member's profile. Time is passed in (``now``), never read; so is
randomness (``ClaimCodes``: place offer ids and claim codes).

Authority is decided here too: every owner-only and facilitator-only decision checks the role the
acting member holds in this community *now* (``require_authority``), not the role a token was issued
with — a former owner's token still says "owner" until it expires.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar, Literal

from pydantic import ConfigDict, Field, field_validator

from kizuna.domain import Aggregate, DomainEvent, StrictModel
from kizuna.errors import Conflict, Forbidden, Gone, Invalid, NotFound, reason
from kizuna.personal import ERASED_NAME, Erases, Personal, member_data

Role = Literal["owner", "facilitator", "member"]
JoinedVia = Literal["founder", "invitation", "referral", "application", "open", "operator", "sister-community"]
SHAREABLE_FIELDS = ("display_name", "vector", "skills", "values", "reputation")
Policy = Literal["open", "application", "invitation"]
DEFAULT_OFFER_TTL_SECONDS = 72 * 3600
DEFAULT_INVITATION_TTL_SECONDS = 14 * 24 * 3600
MAX_TTL_SECONDS = 30 * 24 * 3600
OPERATOR = "operator"  # the deployment's operator as an actor: always allowed
_RANK: dict[str, int] = {"member": 1, "facilitator": 2, "owner": 3}


def code_hash(code: str) -> str:
    """Invitation and claim codes are secrets: only their hash is recorded (events travel on the bus)."""
    return hashlib.sha256(code.encode()).hexdigest()


class ClaimCodes:
    """Where place offers get their ids and claim codes: random (uuid4, 192-bit codes), so nothing on
    the bus or in a counter predicts them. The plaintext codes minted are remembered here — never in an
    event, which holds only the SHA-256 — so the command that minted them can hand them on once."""

    def __init__(self) -> None:
        self.minted: dict[str, str] = {}  # offer id -> the last code minted for it

    def new_offer_id(self) -> str:
        return str(uuid.uuid4())

    def new_code(self, offer_id: str) -> str:
        code = secrets.token_urlsafe(24)
        self.minted[offer_id] = code
        return code


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AdmissionQuestion(StrictModel):
    id: str = Field(min_length=1, max_length=40, pattern=r"^[a-z0-9][a-z0-9_-]*$",
                    description="Stable key the answers use, e.g. `why`")
    text: str = Field(min_length=1, max_length=500)
    required: bool = True


# ---- events (the public contract: other services read these payloads from the bus) ----

class CommunityFounded(DomainEvent):
    personal: ClassVar[Personal] = member_data("owner_member_id", names=["owner_display_name"])
    community_id: str
    name: str
    purpose: str
    values: list[str]
    member_cap: int
    owner_member_id: str
    owner_display_name: str
    sister_of: str | None = None


class CommunityCapChanged(DomainEvent):
    community_id: str
    old_cap: int
    new_cap: int
    reason: str
    changed_by: str


class MemberJoined(DomainEvent):
    personal: ClassVar[Personal] = member_data("member_id", names=["display_name"])
    community_id: str
    member_id: str
    display_name: str
    role: Role
    joined_via: JoinedVia
    vouched_by: str | None = None


class MemberAccountLinked(DomainEvent):
    """A signed-in person's account now belongs to this member (or applicant, whose id becomes the member
    id on joining): how the person finds their membership again. The account is a reference the identity
    service gives the person for this community alone, so no two communities see the same one."""

    community_id: str
    member_id: str
    account: str


class AccountClaimCodeIssued(DomainEvent):
    """The owner (or the operator) gave an existing member — a founder, someone added directly — a single-use
    code to tie their member to the account they sign in with. Only its SHA-256 is recorded."""

    community_id: str
    member_id: str
    code_sha256: str
    issued_by: str
    expires_at: datetime


class MemberWaitlisted(DomainEvent):
    personal: ClassVar[Personal] = member_data("applicant_id", names=["display_name"])
    community_id: str
    applicant_id: str
    display_name: str
    position: int
    joined_via: JoinedVia
    vouched_by: str | None = None


class MemberLeft(DomainEvent):
    personal: ClassVar[Personal] = member_data("member_id", texts=["reason"])
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


class AdmissionPolicyChanged(DomainEvent):
    """How people come into the community: open, by application (with questions) or by invitation."""

    community_id: str
    policy: Policy
    questions: list[AdmissionQuestion]
    max_open_invitations: int | None
    offer_ttl_seconds: int
    changed_by: str
    reason: str


class ApplicationSubmitted(DomainEvent):
    personal: ClassVar[Personal] = member_data("applicant_id", names=["display_name"], maps=["answers"])
    community_id: str
    application_id: str
    applicant_id: str
    display_name: str
    answers: dict[str, str]
    referred_by: str | None = None


class ApplicationApproved(DomainEvent):
    community_id: str
    application_id: str
    applicant_id: str
    decided_by: str
    reason: str


class ApplicationDeclined(DomainEvent):
    community_id: str
    application_id: str
    applicant_id: str
    decided_by: str
    reason: str


class InvitationIssued(DomainEvent):
    """A single-use invitation; the code itself is never recorded, only its SHA-256. The note is the issuer's."""

    personal: ClassVar[Personal] = member_data("issued_by", texts=["note"])
    community_id: str
    invitation_id: str
    code_sha256: str
    issued_by: str
    note: str
    expires_at: datetime


class InvitationAccepted(DomainEvent):
    community_id: str
    invitation_id: str
    member_id: str
    issued_by: str


class PlaceOffered(DomainEvent):
    """A place freed up and the first person waiting is offered it until ``expires_at``. Only the
    person offered answers it, with the claim code whose SHA-256 this records (the code itself is never
    recorded). Offers recorded before claim codes existed have none: see ``Community.accept_offer``."""

    personal: ClassVar[Personal] = member_data("applicant_id", names=["display_name"])
    community_id: str
    offer_id: str
    applicant_id: str
    display_name: str
    joined_via: JoinedVia
    vouched_by: str | None = None
    expires_at: datetime
    claim_code_sha256: str | None = None


class PlaceOfferClaimCodeIssued(DomainEvent):
    """The owner or a facilitator issued the person offered a (new) claim code, to pass on to them; it
    replaces any earlier code of the offer. Only its SHA-256 is recorded."""

    community_id: str
    offer_id: str
    applicant_id: str
    claim_code_sha256: str
    issued_by: str


class PlaceOfferAccepted(DomainEvent):
    community_id: str
    offer_id: str
    member_id: str


class PlaceOfferDeclined(DomainEvent):
    personal: ClassVar[Personal] = member_data("applicant_id", texts=["reason"])
    community_id: str
    offer_id: str
    applicant_id: str
    reason: str


class PlaceOfferExpired(DomainEvent):
    community_id: str
    offer_id: str
    applicant_id: str
    expired_at: datetime


class SisterCommunityFounded(DomainEvent):
    """The full community founded a sister: the two are partners from now on (on this deployment)."""

    community_id: str
    sister_community_id: str
    sister_name: str
    founded_by: str
    new_owner_member_id: str
    purpose: str
    values: list[str]
    member_cap: int
    waitlist_offered: list[str] = Field(description="Waitlisted people, in order, offered places in the sister")
    reason: str = ""


class MemberProfileUpdated(DomainEvent):
    personal: ClassVar[Personal] = member_data("member_id", names=["display_name"], texts=["vector"],
                                               lists=["skills", "values"])
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


class MemberErased(DomainEvent):
    """A former member's (or applicant's) personal data in this community was erased, at their request or the
    operator's on their behalf: their key is deleted, so every name, profile and free text of theirs reads as
    "erased member" or empty from now on, and every service scrubs its copies (docs/data-rights.md). That
    they were a member stays: the community's figures and history do not change."""

    erases: ClassVar[Erases] = Erases("member", "member_id")
    community_id: str
    member_id: str
    erased_by: str = Field(description="`operator`, or `member:<id>` for the member themselves")


# ---- commands ----

class FoundCommunity(StrictModel):
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


class ChangeCap(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"member_cap": 120, "reason": "keep it warm"}]})
    member_cap: int = Field(ge=2, le=10_000)
    reason: str = Field("", max_length=500)


class JoinCommunity(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "display_name": "Ken Mori", "joined_via": "invitation", "waitlist_if_full": True}]})
    display_name: str = Field(min_length=1, max_length=120)
    joined_via: JoinedVia = "invitation"
    vouched_by: str | None = Field(None, max_length=64, description="Defaults to the inviting member")
    waitlist_if_full: bool = False


class ChangeAdmission(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "policy": "application", "questions": [
            {"id": "why", "text": "Why do you want to join?", "required": True},
            {"id": "skills", "text": "What could you share with us?", "required": False}],
        "max_open_invitations": 3, "offer_ttl_seconds": 259200, "reason": "we are getting known; screen newcomers"}]})
    policy: Policy
    questions: list[AdmissionQuestion] = Field(default_factory=list, max_length=20)
    max_open_invitations: int | None = Field(None, ge=1, le=1000, description="Per member; none = no limit")
    offer_ttl_seconds: int = Field(DEFAULT_OFFER_TTL_SECONDS, ge=1, le=MAX_TTL_SECONDS,
                                   description="How long a place offer stays open (default 72 hours)")
    reason: str = Field(min_length=1, max_length=500)


class SubmitApplication(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "display_name": "Mika Ito", "answers": {"why": "I make picture books and want to learn video"}}]})
    display_name: str = Field(min_length=1, max_length=120)
    answers: dict[str, str] = Field(default_factory=dict, max_length=20)
    referred_by: str | None = Field(None, max_length=64, description="Operator only: the member who referred")

    @field_validator("answers")
    @classmethod
    def _short_answers(cls, answers: dict[str, str]) -> dict[str, str]:
        for key, value in answers.items():
            if len(key) > 40 or len(value) > 4000:
                raise ValueError("question ids are at most 40 characters and answers at most 4,000")
        return answers


class DecideApplication(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"decision": "approve", "reason": "Ken knows her work"}]})
    decision: Literal["approve", "decline"]
    reason: str = Field(min_length=1, max_length=500)


class IssueInvitation(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"note": "for Mika", "ttl_seconds": 604800}]})
    note: str = Field("", max_length=200)
    ttl_seconds: int = Field(DEFAULT_INVITATION_TTL_SECONDS, ge=1, le=MAX_TTL_SECONDS)


class IssueAccountClaim(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"ttl_seconds": 604800}]})
    ttl_seconds: int = Field(DEFAULT_INVITATION_TTL_SECONDS, ge=60, le=MAX_TTL_SECONDS)


class ClaimAccount(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"code": "k3Jd…"}]})
    code: str = Field(min_length=1, max_length=200)


class AcceptInvitation(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"code": "k3Jd…", "display_name": "Mika Ito"}]})
    code: str = Field(min_length=1, max_length=200)
    display_name: str = Field(min_length=1, max_length=120)


_CLAIM_CODE = Field(None, min_length=1, max_length=200,
                    description="The claim code the person offered was given (their claim link carries it)")


class AcceptOffer(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"claim_code": "q3Vx…"}]})
    claim_code: str | None = _CLAIM_CODE


class DeclineOffer(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"claim_code": "q3Vx…", "reason": "moving abroad"}]})
    claim_code: str | None = _CLAIM_CODE
    reason: str = Field("", max_length=500)


class FoundSisterCommunity(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "name": "Hikari Makers West", "new_owner_member_id": "6a1f…", "reason": "we are full; Aiko starts a sister"}]})
    name: str = Field(min_length=1, max_length=120)
    new_owner_member_id: str = Field(min_length=1, max_length=64, description="A facilitator of this community")
    purpose: str | None = Field(None, max_length=2000, description="Defaults to this community's purpose")
    values: list[str] | None = Field(None, max_length=20, description="Default to this community's values")
    member_cap: int | None = Field(None, ge=2, le=10_000, description="Defaults to this community's cap")
    reason: str = Field("", max_length=500)

    @field_validator("name")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()


class LeaveCommunity(StrictModel):
    reason: str = Field("", max_length=500)
    erase: bool = Field(False, description="Also erase my personal data from this community (and only this one): "
                        "my name, profile and what I wrote read as \"erased member\" or empty everywhere, for good")


class RemoveMember(StrictModel):
    reason: str = Field(min_length=1, max_length=500)


class ChangeRole(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"role": "facilitator", "reason": "runs cohort B"}]})
    role: Literal["facilitator", "member"]
    reason: str = Field("", max_length=500)


class TransferOwnership(StrictModel):
    to_member_id: str = Field(min_length=1, max_length=64)
    reason: str = Field("", max_length=500)


class UpdateProfile(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "display_name": "Ken Mori", "vector": "Publish my first picture book by next spring",
        "skills": ["Illustration", "video editing"], "values": ["craft", "kindness"]}]})
    display_name: str = Field(min_length=1, max_length=120)
    vector: str = Field("", max_length=2000, description="Where the member is heading, in their own words")
    skills: list[str] = Field(default_factory=list, max_length=50)
    values: list[str] = Field(default_factory=list, max_length=20)


class ChangeConsent(StrictModel):
    shared_fields: list[Literal["display_name", "vector", "skills", "values", "reputation"]] = Field(
        default=["display_name"], description="What partner communities may see")


def normalise_skill(skill: str) -> str:
    return re.sub(r"[^\w]+", "-", skill.strip().lower()).strip("-")


# ---- aggregates ----

@dataclass
class Waiting:
    display_name: str
    joined_via: JoinedVia
    vouched_by: str | None


@dataclass
class Offer:
    applicant_id: str
    expires_at: datetime
    claim_code_sha256: str | None  # None: recorded before claim codes existed
    status: Literal["open", "accepted", "declined", "expired"] = "open"


@dataclass
class Application:
    applicant_id: str
    display_name: str
    referred_by: str | None
    status: Literal["pending", "approved", "declined"] = "pending"


@dataclass
class Invitation:
    invitation_id: str
    issued_by: str
    expires_at: datetime
    used: bool = False


class Community(Aggregate):
    """A community, its membership, admission and waitlist: every join, leave, acceptance and offer
    goes through this stream, so the cap (members + open offers) and the single owner hold under any
    concurrency."""

    def __init__(self) -> None:
        self.community_id = ""
        self.name = ""
        self.purpose = ""
        self.values: list[str] = []
        self.cap = 0
        self.roles: dict[str, Role] = {}
        self.waitlist: list[str] = []  # waiting without an offer, in order
        self.waiting: dict[str, Waiting] = {}  # everyone waiting, with or without an offer
        self.waitlisted_total = 0
        self.offers: dict[str, Offer] = {}
        self.policy: Policy = "open"
        self.questions: list[AdmissionQuestion] = []
        self.max_open_invitations: int | None = None
        self.offer_ttl_seconds = DEFAULT_OFFER_TTL_SECONDS
        self.applications: dict[str, Application] = {}
        self.invitations: dict[str, Invitation] = {}  # by code hash
        self.sisters: list[str] = []
        self.accounts: dict[str, str] = {}  # a person's account → their member (or applicant) id
        self.former: set[str] = set()  # members who left or were removed
        self.erased: set[str] = set()
        self.account_claims: dict[str, tuple[str, datetime]] = {}  # code hash → (member id, expiry)

    @property
    def size(self) -> int:
        return len(self.roles)

    @property
    def owner(self) -> str | None:
        return next((m for m, r in self.roles.items() if r == "owner"), None)

    @property
    def open_offers(self) -> int:
        return sum(1 for offer in self.offers.values() if offer.status == "open")

    @property
    def places_free(self) -> int:
        """Places nobody holds or has been offered: the cap counts members and open offers."""
        return self.cap - self.size - self.open_offers

    def _on_CommunityFounded(self, e: CommunityFounded) -> None:
        self.community_id, self.name, self.cap = e.community_id, e.name, e.member_cap
        self.purpose, self.values = e.purpose, list(e.values)
        self.roles[e.owner_member_id] = "owner"

    def _on_CommunityCapChanged(self, e: CommunityCapChanged) -> None:
        self.cap = e.new_cap

    def _on_MemberJoined(self, e: MemberJoined) -> None:
        self.roles[e.member_id] = e.role
        self._stop_waiting(e.member_id)

    def _on_MemberAccountLinked(self, e: MemberAccountLinked) -> None:
        self.accounts[e.account] = e.member_id

    def _on_AccountClaimCodeIssued(self, e: AccountClaimCodeIssued) -> None:
        self.account_claims[e.code_sha256] = (e.member_id, e.expires_at)

    def _on_MemberWaitlisted(self, e: MemberWaitlisted) -> None:
        self.waitlist.append(e.applicant_id)
        self.waiting[e.applicant_id] = Waiting(e.display_name, e.joined_via, e.vouched_by)
        self.waitlisted_total += 1

    def _on_MemberLeft(self, e: MemberLeft) -> None:
        self.roles.pop(e.member_id, None)
        self.former.add(e.member_id)

    def _on_MemberRemoved(self, e: MemberRemoved) -> None:
        self.roles.pop(e.member_id, None)
        self.former.add(e.member_id)

    def _on_MemberErased(self, e: MemberErased) -> None:
        # A state folded before the erasure (kept in memory between commands) must not keep the name either.
        self.erased.add(e.member_id)
        if e.member_id in self.waiting:
            self.waiting[e.member_id].display_name = ERASED_NAME
        for application in self.applications.values():
            if application.applicant_id == e.member_id:
                application.display_name = ERASED_NAME

    def _on_MemberRoleChanged(self, e: MemberRoleChanged) -> None:
        self.roles[e.member_id] = e.new_role

    def _on_OwnershipTransferred(self, e: OwnershipTransferred) -> None:
        self.roles[e.from_member_id] = "facilitator"
        self.roles[e.to_member_id] = "owner"

    def _on_AdmissionPolicyChanged(self, e: AdmissionPolicyChanged) -> None:
        self.policy, self.questions = e.policy, list(e.questions)
        self.max_open_invitations, self.offer_ttl_seconds = e.max_open_invitations, e.offer_ttl_seconds

    def _on_ApplicationSubmitted(self, e: ApplicationSubmitted) -> None:
        self.applications[e.application_id] = Application(e.applicant_id, e.display_name, e.referred_by)

    def _on_ApplicationApproved(self, e: ApplicationApproved) -> None:
        self.applications[e.application_id].status = "approved"

    def _on_ApplicationDeclined(self, e: ApplicationDeclined) -> None:
        self.applications[e.application_id].status = "declined"

    def _on_InvitationIssued(self, e: InvitationIssued) -> None:
        self.invitations[e.code_sha256] = Invitation(e.invitation_id, e.issued_by, e.expires_at)

    def _on_InvitationAccepted(self, e: InvitationAccepted) -> None:
        for invitation in self.invitations.values():
            if invitation.invitation_id == e.invitation_id:
                invitation.used = True

    def _on_PlaceOffered(self, e: PlaceOffered) -> None:
        self.offers[e.offer_id] = Offer(e.applicant_id, e.expires_at, e.claim_code_sha256)
        if e.applicant_id in self.waitlist:
            self.waitlist.remove(e.applicant_id)

    def _on_PlaceOfferClaimCodeIssued(self, e: PlaceOfferClaimCodeIssued) -> None:
        self.offers[e.offer_id].claim_code_sha256 = e.claim_code_sha256

    def _on_PlaceOfferAccepted(self, e: PlaceOfferAccepted) -> None:
        self.offers[e.offer_id].status = "accepted"

    def _on_PlaceOfferDeclined(self, e: PlaceOfferDeclined) -> None:
        self.offers[e.offer_id].status = "declined"
        self._stop_waiting(e.applicant_id)

    def _on_PlaceOfferExpired(self, e: PlaceOfferExpired) -> None:
        self.offers[e.offer_id].status = "expired"
        self._stop_waiting(e.applicant_id)

    def _on_SisterCommunityFounded(self, e: SisterCommunityFounded) -> None:
        self.sisters.append(e.sister_community_id)

    def _stop_waiting(self, applicant_id: str) -> None:
        if applicant_id in self.waitlist:
            self.waitlist.remove(applicant_id)
        self.waiting.pop(applicant_id, None)

    # -- authority --

    def require_authority(self, actor: str, role: Role) -> None:
        """The acting member must hold ``role`` (or a higher one) in this community now; the operator
        always may. ``actor`` is the command context's: ``operator`` or ``member:<id>``."""
        if actor == OPERATOR:
            return
        member_id = actor.removeprefix("member:") if actor.startswith("member:") else None
        held = self.roles.get(member_id) if member_id else None
        if held is None or _RANK[held] < _RANK[role]:
            raise Forbidden(reason("only the owner of this community may do this") if role == "owner"
                            else reason("only the owner or a facilitator of this community may do this"),
                            required_role=role)

    # -- the moving waitlist --

    def _then_offer(self, events: list[DomainEvent], now: datetime, codes: ClaimCodes | None) -> list[DomainEvent]:
        """``events`` followed by one place offer per place they leave free, to the first waiting."""
        preview = copy.deepcopy(self)
        for event in events:
            preview.apply(event)
        return [*events, *preview._offers(now, codes or ClaimCodes())]

    def _offers(self, now: datetime, codes: ClaimCodes) -> list[DomainEvent]:
        offers: list[DomainEvent] = []
        expires_at = now + timedelta(seconds=self.offer_ttl_seconds)
        for applicant_id in self.waitlist[:max(self.places_free, 0)]:
            entry = self.waiting[applicant_id]
            offer_id = codes.new_offer_id()
            offers.append(PlaceOffered(community_id=self.community_id, offer_id=offer_id, applicant_id=applicant_id,
                                       display_name=entry.display_name, joined_via=entry.joined_via,
                                       vouched_by=entry.vouched_by, expires_at=expires_at,
                                       claim_code_sha256=code_hash(codes.new_code(offer_id))))
        return offers

    def _admit(self, person_id: str, display_name: str, joined_via: JoinedVia, vouched_by: str | None,
               *, waitlist_if_full: bool) -> DomainEvent:
        """A join when a place is free; otherwise the waitlist (or a 409 when not wanted)."""
        if self.places_free <= 0:
            if waitlist_if_full:
                return MemberWaitlisted(community_id=self.community_id, applicant_id=person_id,
                                        display_name=display_name, position=self.waitlisted_total + 1,
                                        joined_via=joined_via, vouched_by=vouched_by)
            raise Conflict(reason("the community is full: {size} of {member_cap} places taken and {open_offers} "
                                  "offered") if self.open_offers
                           else reason("the community is full: {size} of {member_cap} places taken"),
                           slug="community-full", title="Community full", member_cap=self.cap, size=self.size,
                           open_offers=self.open_offers)
        return MemberJoined(community_id=self.community_id, member_id=person_id, display_name=display_name,
                            role="member", joined_via=joined_via, vouched_by=vouched_by)

    def _may_answer(self, offer: Offer, claim_code: str | None, actor: str, account: str | None = None) -> bool:
        """The person offered proves it with the offer's claim code, or by being signed in as the person
        waiting (their account is linked to the applicant). An offer recorded before claim codes existed has
        no code: only the operator or the owner may answer it (for the person), or the person signed in."""
        if account is not None and self.accounts.get(account) == offer.applicant_id:
            return True
        if offer.claim_code_sha256 is None:
            return actor == OPERATOR or (actor.startswith("member:") and self.owner == actor.removeprefix("member:"))
        return claim_code is not None and hmac.compare_digest(code_hash(claim_code), offer.claim_code_sha256)

    def _answerable_offer(self, offer_id: str, claim_code: str | None, actor: str, now: datetime,
                          account: str | None = None) -> Offer:
        """An offer the caller may answer. Without the right code the answer is the same 404 as for an
        offer that does not exist — whatever state the offer is in — so an offer id leaks nothing."""
        offer = self.offers.get(offer_id)
        if offer is None or not self._may_answer(offer, claim_code, actor, account):
            raise NotFound("offer not found")
        return self._still_open(offer, now)

    def _still_open(self, offer: Offer, now: datetime) -> Offer:
        if offer.status == "accepted":
            raise Conflict("this offer has already been accepted", slug="offer-used")
        if offer.status == "declined":
            raise Conflict("this offer was declined", slug="offer-declined")
        if offer.status == "expired" or offer.expires_at <= now:
            raise Gone("this offer expired at {expires_at}", slug="offer-expired",
                       title="Offer expired", expires_at=offer.expires_at.isoformat())
        return offer

    def accept_offer(self, offer_id: str, cmd: AcceptOffer, actor: str, now: datetime,
                     account: str | None = None) -> list[DomainEvent]:
        offer = self._answerable_offer(offer_id, cmd.claim_code, actor, now, account)
        entry = self.waiting[offer.applicant_id]
        # The offer holds the place, so accepting it never goes past the cap.
        return [PlaceOfferAccepted(community_id=self.community_id, offer_id=offer_id, member_id=offer.applicant_id),
                MemberJoined(community_id=self.community_id, member_id=offer.applicant_id,
                             display_name=entry.display_name, role="member", joined_via=entry.joined_via,
                             vouched_by=entry.vouched_by)]

    def decline_offer(self, offer_id: str, cmd: DeclineOffer, actor: str, now: datetime,
                      codes: ClaimCodes | None = None, account: str | None = None) -> list[DomainEvent]:
        offer = self._answerable_offer(offer_id, cmd.claim_code, actor, now, account)
        return self._then_offer([PlaceOfferDeclined(community_id=self.community_id, offer_id=offer_id,
                                                    applicant_id=offer.applicant_id, reason=cmd.reason)], now, codes)

    def place_of(self, account: str, now: datetime) -> dict[str, object]:
        """Where the person signed in with ``account`` stands: their place in the queue, or the place offered
        to them and until when. Only the person sees this (their account names them)."""
        applicant = self.accounts.get(account)
        if applicant is None:
            raise NotFound("you are not waiting for a place in this community")
        applied = next((application_id for application_id, a in reversed(self.applications.items())
                        if a.applicant_id == applicant), None)
        application = self.applications[applied] if applied is not None else None
        if application is not None and application.status != "approved":  # still to be decided, or declined
            return {"community_id": self.community_id, "applicant_id": applicant,
                    "status": "declined" if application.status == "declined" else "applied",
                    "application_id": applied, "display_name": application.display_name, "position": None,
                    "waiting": len(self.waitlist), "offer_id": None, "offer_expires_at": None}
        if applicant not in self.waiting and applicant not in self.roles:
            raise NotFound("you are not waiting for a place in this community")
        offer = next(((offer_id, o) for offer_id, o in self.offers.items()
                      if o.applicant_id == applicant and o.status == "open" and o.expires_at > now), None)
        if applicant in self.roles:
            status = "member"
        elif offer is not None:
            status = "offered"
        else:
            status = "waiting"
        position = self.waitlist.index(applicant) + 1 if applicant in self.waitlist else None
        return {"community_id": self.community_id, "applicant_id": applicant, "status": status,
                "application_id": applied,
                "display_name": self.waiting[applicant].display_name if applicant in self.waiting else None,
                "position": position, "waiting": len(self.waitlist),
                "offer_id": offer[0] if offer else None, "offer_expires_at": offer[1].expires_at if offer else None}

    def issue_claim_code(self, offer_id: str, actor: str, now: datetime, codes: ClaimCodes) -> list[DomainEvent]:
        """A new claim code for an open offer, for the owner or a facilitator to pass on to the person
        (until notifications carry it); it replaces the offer's earlier code."""
        self.require_authority(actor, "facilitator")
        offer = self.offers.get(offer_id)
        if offer is None:
            raise NotFound("offer not found")
        self._still_open(offer, now)
        return [PlaceOfferClaimCodeIssued(community_id=self.community_id, offer_id=offer_id,
                                          applicant_id=offer.applicant_id,
                                          claim_code_sha256=code_hash(codes.new_code(offer_id)), issued_by=actor)]

    def expire_offers(self, now: datetime, codes: ClaimCodes | None = None) -> list[DomainEvent]:
        """Every open offer past its time expires, and its place passes to the next person waiting."""
        due: list[DomainEvent] = [
            PlaceOfferExpired(community_id=self.community_id, offer_id=offer_id, applicant_id=offer.applicant_id,
                              expired_at=now)
            for offer_id, offer in self.offers.items() if offer.status == "open" and offer.expires_at <= now]
        if not due and not (self.places_free > 0 and self.waitlist):
            return []
        return self._then_offer(due, now, codes)

    # -- decisions --

    def link_account(self, member_id: str, account: str) -> list[DomainEvent]:
        """Links a signed-in person's account to the member or applicant they are becoming; a person already
        in the community, waiting for a place or with an application pending cannot come in twice."""
        held = self.accounts.get(account)
        pending = any(a.applicant_id == held and a.status == "pending" for a in self.applications.values())
        if held is not None and (held in self.roles or held in self.waiting or pending):
            raise Conflict("you already belong to this community, wait for a place in it or have applied to it",
                           slug="already-in-community", title="Already here", member_id=held)
        return [MemberAccountLinked(community_id=self.community_id, member_id=member_id, account=account)]

    def issue_account_claim(self, member_id: str, code: str, actor: str, now: datetime,
                            ttl_seconds: int) -> list[DomainEvent]:
        self.require_authority(actor, "owner")
        self.require_member(member_id)
        if member_id in self.accounts.values():
            raise Conflict("this member already signs in with an account", slug="account-already-linked")
        return [AccountClaimCodeIssued(community_id=self.community_id, member_id=member_id, code_sha256=code_hash(code),
                                       issued_by=actor, expires_at=now + timedelta(seconds=ttl_seconds))]

    def claim_account(self, code: str, account: str, now: datetime) -> list[DomainEvent]:
        """The person signed in with ``account`` presents the code they were given: their account now signs
        in as that member. A code works once (the member is linked after it), until it expires."""
        held = self.account_claims.get(code_hash(code))
        if held is None or held[0] not in self.roles:
            raise NotFound("sign-in code not found")
        member_id, expires_at = held
        if member_id in self.accounts.values():
            raise Conflict("this member already signs in with an account", slug="account-already-linked")
        if expires_at <= now:
            raise Gone("this sign-in code expired at {expires_at}", slug="code-expired",
                       title="Code expired", expires_at=expires_at.isoformat())
        return self.link_account(member_id, account)

    def found(self, community_id: str, owner_id: str, cmd: FoundCommunity, default_cap: int) -> list[DomainEvent]:
        if self.version:
            raise Conflict("this community already exists")
        return [CommunityFounded(community_id=community_id, name=cmd.name, purpose=cmd.purpose,
                                 values=[v.strip() for v in cmd.values if v.strip()],
                                 member_cap=cmd.member_cap or default_cap, owner_member_id=owner_id,
                                 owner_display_name=cmd.owner_display_name)]

    def change_cap(self, cmd: ChangeCap, actor: str, now: datetime | None = None,
                   codes: ClaimCodes | None = None) -> list[DomainEvent]:
        self.require_authority(actor, "owner")
        if cmd.member_cap < self.size + self.open_offers:
            raise Invalid("member_cap", reason("cannot be below the current size of {size} members plus "
                                               "{open_offers} open place offers") if self.open_offers
                          else reason("cannot be below the current size of {size} members"),
                          size=self.size, open_offers=self.open_offers)
        if cmd.member_cap > self.cap and not cmd.reason.strip():
            raise Invalid("reason", "raising the cap needs a reason (past ~150 a community loses its warmth)")
        if cmd.member_cap == self.cap:
            return []
        return self._then_offer([CommunityCapChanged(community_id=self.community_id, old_cap=self.cap,
                                                     new_cap=cmd.member_cap, reason=cmd.reason, changed_by=actor)],
                                now or _utcnow(), codes)

    def join(self, member_id: str, cmd: JoinCommunity, vouched_by: str | None,
             actor_role: Role | None = None) -> list[DomainEvent]:
        """A direct add. ``actor_role`` is the adding member's role, None for the operator: under the
        application and invitation policies only the operator and the owner add people directly."""
        if self.policy != "open" and actor_role not in (None, "owner"):
            raise Conflict(reason("this community admits people by application; members cannot add people directly")
                           if self.policy == "application" else
                           reason("this community admits people by invitation; members cannot add people directly"),
                           slug="admission-policy", title="Not how this community admits people",
                           policy=self.policy)
        return [self._admit(member_id, cmd.display_name, cmd.joined_via, vouched_by,
                            waitlist_if_full=cmd.waitlist_if_full)]

    def require_member(self, member_id: str) -> Role:
        if member_id not in self.roles:
            raise NotFound("member not found")
        return self.roles[member_id]

    def erase(self, member_id: str, actor: str) -> list[DomainEvent]:
        """The member themselves or the operator erases a former member's (or applicant's) data from this
        community. An active member leaves first (``LeaveCommunity.erase`` does both): erasing someone who stays
        would leave a nameless member whose every later word is stored erased."""
        if actor != OPERATOR and actor != f"member:{member_id}":
            raise Forbidden("only the member themselves or the operator may erase a member's data")
        if member_id in self.erased:
            return []
        if member_id in self.roles:
            raise Conflict("an active member is erased on leaving (or after being removed)", slug="erase-after-leaving")
        known = (member_id in self.former or member_id in self.waiting
                 or any(a.applicant_id == member_id for a in self.applications.values())
                 or any(o.applicant_id == member_id for o in self.offers.values()))
        if not known:
            raise NotFound("member not found")
        return [MemberErased(community_id=self.community_id, member_id=member_id, erased_by=actor)]

    def leave(self, member_id: str, cmd: LeaveCommunity, now: datetime | None = None,
              codes: ClaimCodes | None = None) -> list[DomainEvent]:
        if self.require_member(member_id) == "owner":
            raise Conflict("the owner must hand ownership over before leaving", slug="owner-cannot-leave")
        return self._then_offer([MemberLeft(community_id=self.community_id, member_id=member_id, reason=cmd.reason)],
                                now or _utcnow(), codes)

    def remove(self, member_id: str, cmd: RemoveMember, actor: str, now: datetime | None = None,
               codes: ClaimCodes | None = None) -> list[DomainEvent]:
        self.require_authority(actor, "facilitator")
        if self.require_member(member_id) == "owner":
            raise Forbidden("the owner cannot be removed")
        return self._then_offer([MemberRemoved(community_id=self.community_id, member_id=member_id, removed_by=actor,
                                               reason=cmd.reason)], now or _utcnow(), codes)

    def change_role(self, member_id: str, cmd: ChangeRole, actor: str) -> list[DomainEvent]:
        self.require_authority(actor, "owner")
        current = self.require_member(member_id)
        if current == "owner":
            raise Conflict("the owner's role changes only by handing ownership over", slug="owner-role")
        if current == cmd.role:
            return []
        return [MemberRoleChanged(community_id=self.community_id, member_id=member_id, old_role=current,
                                  new_role=cmd.role, changed_by=actor, reason=cmd.reason)]

    def transfer_ownership(self, cmd: TransferOwnership, actor: str) -> list[DomainEvent]:
        """Only the current owner (or the operator) hands ownership over: a former owner's token still
        names the owner role until it expires, so the role is taken from this stream, not the token."""
        self.require_authority(actor, "owner")
        self.require_member(cmd.to_member_id)
        owner = self.owner
        if owner is None:  # an invariant, kept under python -O too
            raise RuntimeError("owner is missing: an invariant of this code was broken")
        if cmd.to_member_id == owner:
            return []
        return [OwnershipTransferred(community_id=self.community_id, from_member_id=owner,
                                     to_member_id=cmd.to_member_id, reason=cmd.reason)]

    # -- admission --

    def change_admission(self, cmd: ChangeAdmission, actor: str) -> list[DomainEvent]:
        self.require_authority(actor, "owner")
        if not cmd.reason.strip():
            raise Invalid("reason", "say why the admission rules change")
        ids = [q.id for q in cmd.questions]
        duplicate = next((i for i in ids if ids.count(i) > 1), None)
        if duplicate:
            raise Invalid(f"questions.{duplicate}", "asked twice; question ids must be unique")
        if (cmd.policy, cmd.questions, cmd.max_open_invitations, cmd.offer_ttl_seconds) == (
                self.policy, self.questions, self.max_open_invitations, self.offer_ttl_seconds):
            return []
        return [AdmissionPolicyChanged(community_id=self.community_id, policy=cmd.policy, questions=cmd.questions,
                                       max_open_invitations=cmd.max_open_invitations,
                                       offer_ttl_seconds=cmd.offer_ttl_seconds, changed_by=actor,
                                       reason=cmd.reason.strip())]

    def submit_application(self, application_id: str, applicant_id: str, cmd: SubmitApplication,
                           referred_by: str | None) -> list[DomainEvent]:
        if self.policy != "application":
            raise Conflict(reason("this community admits everyone with its link, not by application")
                           if self.policy == "open" else
                           reason("this community admits people by invitation, not by application"),
                           slug="admission-policy", title="Not how this community admits people", policy=self.policy)
        if referred_by is not None and referred_by not in self.roles:
            raise Invalid("referred_by", "not a member of this community")
        asked = {q.id: q for q in self.questions}
        for key in cmd.answers:
            if key not in asked:
                raise Invalid(f"answers.{key}", "the community does not ask this question")
        for question in self.questions:
            if question.required and not cmd.answers.get(question.id, "").strip():
                raise Invalid(f"answers.{question.id}", "a required answer is missing")
        return [ApplicationSubmitted(community_id=self.community_id, application_id=application_id,
                                     applicant_id=applicant_id, display_name=cmd.display_name.strip(),
                                     answers={k: v.strip() for k, v in cmd.answers.items()}, referred_by=referred_by)]

    def decide_application(self, application_id: str, cmd: DecideApplication, actor: str,
                           decider_member_id: str | None) -> list[DomainEvent]:
        """Owners and facilitators decide (``decider_member_id`` None is the operator). The member
        who referred the applicant vouches for them; otherwise the approver does."""
        self.require_authority(actor, "facilitator")
        application = self.applications.get(application_id)
        if application is None:
            raise NotFound("application not found")
        if application.status != "pending":
            raise Conflict(reason("this application was already approved") if application.status == "approved"
                           else reason("this application was already declined"), slug="application-decided",
                           application_status=application.status)
        base = {"community_id": self.community_id, "application_id": application_id,
                "applicant_id": application.applicant_id, "decided_by": actor, "reason": cmd.reason.strip()}
        if cmd.decision == "decline":
            return [ApplicationDeclined(**base)]
        vouched_by = application.referred_by or decider_member_id
        return [ApplicationApproved(**base),
                self._admit(application.applicant_id, application.display_name, "application", vouched_by,
                            waitlist_if_full=True)]

    def issue_invitation(self, invitation_id: str, code: str, issuer_id: str, cmd: IssueInvitation,
                         now: datetime) -> list[DomainEvent]:
        self.require_member(issuer_id)
        if self.max_open_invitations is not None:
            held = sum(1 for i in self.invitations.values()
                       if i.issued_by == issuer_id and not i.used and i.expires_at > now)
            if held >= self.max_open_invitations:
                raise Conflict("you already hold {open_invitations} open invitations; the limit is {limit}",
                               slug="invitation-limit", title="Too many open invitations",
                               limit=self.max_open_invitations, open_invitations=held)
        return [InvitationIssued(community_id=self.community_id, invitation_id=invitation_id,
                                 code_sha256=code_hash(code), issued_by=issuer_id, note=cmd.note.strip(),
                                 expires_at=now + timedelta(seconds=cmd.ttl_seconds))]

    def accept_invitation(self, cmd: AcceptInvitation, member_id: str, now: datetime) -> list[DomainEvent]:
        invitation = self.invitations.get(code_hash(cmd.code))
        if invitation is None:
            raise NotFound("invitation not found")
        if invitation.used:
            raise Conflict("this invitation has already been used", slug="invitation-used")
        if invitation.expires_at <= now:
            raise Gone("this invitation expired at {expires_at}", slug="invitation-expired",
                       title="Invitation expired", expires_at=invitation.expires_at.isoformat())
        return [InvitationAccepted(community_id=self.community_id, invitation_id=invitation.invitation_id,
                                   member_id=member_id, issued_by=invitation.issued_by),
                self._admit(member_id, cmd.display_name.strip(), "invitation", invitation.issued_by,
                            waitlist_if_full=True)]

    # -- growth by linking --

    def found_sister(self, sister_id: str, cmd: FoundSisterCommunity, actor: str) -> list[DomainEvent]:
        self.require_authority(actor, "owner")
        if self.places_free > 0:
            raise Conflict("a sister community is founded when this one is full; {places_free} places are free",
                           slug="not-at-cap", title="Community not full", places_free=self.places_free)
        role = self.roles.get(cmd.new_owner_member_id)
        if role is None:
            raise Invalid("new_owner_member_id", "not a member of this community")
        if role != "facilitator":
            raise Invalid("new_owner_member_id", "the sister community's owner must be one of our facilitators")
        return [SisterCommunityFounded(
            community_id=self.community_id, sister_community_id=sister_id, sister_name=cmd.name, founded_by=actor,
            new_owner_member_id=cmd.new_owner_member_id,
            purpose=self.purpose if cmd.purpose is None else cmd.purpose.strip(),
            values=list(self.values) if cmd.values is None else [v.strip() for v in cmd.values if v.strip()],
            member_cap=cmd.member_cap or self.cap, waitlist_offered=list(self.waitlist), reason=cmd.reason)]

    def begin_as_sister(self, origin: Community, founded: SisterCommunityFounded, owner_display_name: str,
                        now: datetime, codes: ClaimCodes | None = None) -> list[DomainEvent]:
        """The first events of the sister's own stream: founded with the new owner, the origin's
        admission rules as a starting point, and the origin's waitlist, in order, offered places."""
        if self.version:
            raise Conflict("this community already exists")
        sid = founded.sister_community_id
        events: list[DomainEvent] = [CommunityFounded(
            community_id=sid, name=founded.sister_name, purpose=founded.purpose, values=founded.values,
            member_cap=founded.member_cap, owner_member_id=founded.new_owner_member_id,
            owner_display_name=owner_display_name, sister_of=origin.community_id)]
        if (origin.policy, origin.questions, origin.max_open_invitations, origin.offer_ttl_seconds) != (
                "open", [], None, DEFAULT_OFFER_TTL_SECONDS):
            events.append(AdmissionPolicyChanged(
                community_id=sid, policy=origin.policy, questions=origin.questions,
                max_open_invitations=origin.max_open_invitations, offer_ttl_seconds=origin.offer_ttl_seconds,
                changed_by=founded.founded_by, reason=f"carried over from {origin.name}"))
        for position, applicant_id in enumerate(founded.waitlist_offered, start=1):
            entry = origin.waiting[applicant_id]
            events.append(MemberWaitlisted(community_id=sid, applicant_id=applicant_id, display_name=entry.display_name,
                                           position=position, joined_via="sister-community",
                                           vouched_by=entry.vouched_by))
        return self._then_offer(events, now, codes)


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

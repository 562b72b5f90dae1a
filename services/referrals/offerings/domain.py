"""Pre-commitment offerings (community-supported production). Pure — no I/O.

A producer the community trusts publishes an offering — a farm share, a batch of goods, a coaching
programme — and members commit to shares *before* production at a price that holds whatever the
yield. Stream ``offering-<id>``: every commitment, withdrawal, terms change and settlement of one
offering goes through its one stream, so the shares can never be over-committed under concurrency.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, time
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field, field_validator

from kizuna.domain import Aggregate, DomainEvent, StrictModel
from kizuna.errors import Conflict, Forbidden, Invalid, NotFound
from kizuna.personal import Personal, member_data, partner_member_data

Visibility = Literal["community", "partners"]
OfferingStatus = Literal["open", "confirmed", "lapsed"]
ShortHarvest = Literal["reduced-delivery", "pro-rata-refund"]
CommitmentStatus = Literal["committed", "withdrawn", "released"]


# ---- terms (shared by commands and events) ----

class Price(StrictModel):
    """The price of one share: money at a family price, barter, or none (gratitude)."""

    kind: Literal["money", "barter", "none"] = "none"
    amount: float | None = Field(None, description="Money only: the price of one share, above zero")
    currency: str | None = Field(None, description="Money only: ISO 4217 code, e.g. JPY")
    barter: str | None = Field(None, max_length=300, description="Barter only: what a share is exchanged for")


class HelpShift(StrictModel):
    """Help wanted at a busy time (the harvest): a day, a place and how many hands."""

    date: date
    place: str = Field(min_length=1, max_length=200)
    hands: int = Field(ge=1, le=1000, description="How many members are needed")
    what: str = Field("", max_length=500, description="What the help is for")


class OfferingTerms(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "title": "Summer vegetable share", "description": "A box of whatever the field gives, every other week",
        "season": "Summer 2031", "shares": 30, "minimum_shares": 20,
        "price": {"kind": "money", "amount": 12000, "currency": "JPY"},
        "commitment_deadline": "2031-05-01T00:00:00+09:00",
        "delivery_dates": ["2031-07-05", "2031-07-19", "2031-08-02"],
        "help_shifts": [{"date": "2031-07-12", "place": "Sato farm, Kamakura", "hands": 4,
                         "what": "tomato harvest"}],
        "visibility": "community", "short_harvest": "reduced-delivery"}]})

    title: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=5000)
    season: str = Field(min_length=1, max_length=100, description="The season or batch, e.g. 'Summer 2031'")
    shares: int = Field(ge=1, le=100_000, description="How many shares exist")
    minimum_shares: int = Field(ge=1, le=100_000, description="Shares that must be committed for it to go ahead")
    price: Price = Field(default_factory=Price, description="Price per share; it holds whatever the yield")
    commitment_deadline: datetime = Field(description="Commitments close here; a time without zone is UTC")
    delivery_dates: list[date] = Field(min_length=1, max_length=366)
    help_shifts: list[HelpShift] = Field(default_factory=list, max_length=200)
    visibility: Visibility = Field("community", description="This community only, or also partner communities")
    short_harvest: ShortHarvest = Field(
        "reduced-delivery", description="A short harvest is a reduced delivery per share (the default), or a "
                                        "pro-rata refund of the share price if the terms say so")

    @field_validator("commitment_deadline")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    @field_validator("delivery_dates")
    @classmethod
    def _sorted_unique(cls, value: list[date]) -> list[date]:
        return sorted(set(value))


def check_terms(terms: OfferingTerms, now: datetime) -> None:
    """The rules between fields that a schema cannot express; each refusal names its field."""
    if terms.commitment_deadline <= now:
        raise Invalid("commitment_deadline", "must be in the future")
    first = terms.delivery_dates[0]
    if terms.commitment_deadline >= datetime.combine(first, time.min, UTC):  # (compared without overflow)
        raise Invalid("commitment_deadline", "must be before the first delivery ({first_delivery})",
                      first_delivery=first.isoformat())
    if terms.minimum_shares > terms.shares:
        raise Invalid("minimum_shares", "cannot exceed the {shares} shares that exist", shares=terms.shares)
    price = terms.price
    if price.kind == "money":
        if price.amount is None or not math.isfinite(price.amount) or price.amount <= 0:
            raise Invalid("price.amount", "a money price needs an amount above zero")
        if not price.currency:
            raise Invalid("price.currency", "a money price needs a currency, e.g. JPY")
        if not re.fullmatch(r"[A-Z]{3}", price.currency):
            raise Invalid("price.currency", "must be a three-letter ISO 4217 code, e.g. JPY")
    elif price.kind == "barter" and not (price.barter or "").strip():
        raise Invalid("price.barter", "say what a share is exchanged for")
    for i, shift in enumerate(terms.help_shifts):
        if shift.date < now.astimezone(UTC).date():
            raise Invalid(f"help_shifts.{i}.date", "must not be in the past")


def shift_id(position: int) -> str:
    """Help shifts are numbered from 1 in the order the terms list them."""
    return str(position + 1)


# ---- events ----

class OfferingPublished(DomainEvent):
    """A producer published an offering; its terms are fixed once anyone commits."""

    community_id: str
    offering_id: str
    producer_id: str
    terms: OfferingTerms
    published_at: datetime


class TermsChangeProposed(DomainEvent):
    """The producer asks the members who committed to consent to new terms."""

    community_id: str
    offering_id: str
    proposal_id: str
    terms: OfferingTerms
    reason: str
    awaiting: list[str]


class TermsChangeConsented(DomainEvent):
    community_id: str
    offering_id: str
    proposal_id: str
    member_id: str


class TermsChangeDeclined(DomainEvent):
    personal: ClassVar[Personal] = member_data("member_id", texts=["reason"])
    community_id: str
    offering_id: str
    proposal_id: str
    member_id: str
    reason: str


class CommitmentReleased(DomainEvent):
    """A commitment ended without the member withdrawing it, with the reason."""

    community_id: str
    offering_id: str
    member_id: str
    shares: int
    cause: Literal["terms-change-not-consented", "offering-lapsed"]
    reason: str


class OfferingTermsChanged(DomainEvent):
    """New terms apply: before any commitment, or with every remaining committed member's consent."""

    community_id: str
    offering_id: str
    terms: OfferingTerms
    proposal_id: str | None
    consented_by: list[str]
    released: list[str]


class SharesCommitted(DomainEvent):
    community_id: str
    offering_id: str
    member_id: str
    shares: int
    member_shares: int = Field(description="The member's shares in this offering after this commitment")
    committed: int = Field(description="Shares committed in the whole offering after this commitment")
    shares_left: int
    committed_at: datetime


class PartnerPledgeRecorded(DomainEvent):
    """A member of a partner community pledged shares (through the partnership); their commitment follows as
    SharesCommitted with member id ``partner:<pledge id>``. Only the card they consented to share is kept, sealed
    with the key of ``partner_member`` (``<origin>/<member ref>``, docs/federation.md §8)."""

    personal: ClassVar[Personal] = partner_member_data("partner_member", cards=["card"])
    community_id: str
    offering_id: str
    pledge_id: str
    partnership_id: str
    from_community_name: str
    card: dict[str, Any]
    shares: int
    partner_member: str = ""


class PartnerPledgeRefused(DomainEvent):
    """A partner member's pledge could not be taken (sold out, closed, not shared with partners)."""

    community_id: str
    offering_id: str
    pledge_id: str
    partnership_id: str
    reason: str
    shares_left: int


class CommitmentWithdrawn(DomainEvent):
    personal: ClassVar[Personal] = member_data("member_id", texts=["reason"])
    community_id: str
    offering_id: str
    member_id: str
    shares: int
    reason: str


class OfferingConfirmed(DomainEvent):
    """The deadline passed with the minimum reached: the offering goes ahead."""

    community_id: str
    offering_id: str
    committed: int
    minimum_shares: int
    reason: str
    settled_at: datetime


class OfferingLapsed(DomainEvent):
    """The deadline passed short of the minimum: every commitment is released (CommitmentReleased)."""

    community_id: str
    offering_id: str
    committed: int
    minimum_shares: int
    reason: str
    settled_at: datetime


class ProgressShared(DomainEvent):
    """The producer shares the process with the people waiting."""

    community_id: str
    offering_id: str
    update_id: str
    stage: str
    note: str
    shared_at: datetime


class HelpShiftSignedUp(DomainEvent):
    community_id: str
    offering_id: str
    shift_id: str
    member_id: str


class HelpShiftSignUpCancelled(DomainEvent):
    community_id: str
    offering_id: str
    shift_id: str
    member_id: str


class DeliveryRecorded(DomainEvent):
    """What one member received on one delivery date; a short harvest is a portion below 1 per share."""

    community_id: str
    offering_id: str
    member_id: str
    delivery_date: date
    shares: int
    portion_per_share: float
    note: str
    refund_owed: float | None = Field(None, description="Only when the terms promise a pro-rata refund")
    currency: str | None = None


class LeadUserFeedbackGiven(DomainEvent):
    """A committed member, as a lead user, says what was good, what to improve and whether they would
    commit again; it counts toward the producer's reputation."""

    personal: ClassVar[Personal] = member_data("member_id", texts=["good", "improve"])
    community_id: str
    offering_id: str
    producer_id: str
    member_id: str
    good: str
    improve: str
    would_commit_again: bool
    given_at: datetime


# ---- commands ----

class PublishOffering(OfferingTerms):
    """The terms of a new offering."""


class ChangeTerms(StrictModel):
    terms: OfferingTerms
    reason: str = Field("", max_length=1000)


class AnswerTermsChange(StrictModel):
    consent: bool
    reason: str = Field("", max_length=1000)


class ApplyTermsChange(StrictModel):
    release_non_consenting: bool = Field(
        False, description="Release the commitments of members who have not consented and apply the change")


class CommitShares(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"shares": 2}]})
    shares: int = Field(ge=1, le=100_000, description="How many shares to commit to (above zero)")


class WithdrawCommitment(StrictModel):
    reason: str = Field("", max_length=1000)


class ShareProgress(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "stage": "planting", "note": "The tomato seedlings went out today; 40 rows."}]})
    stage: str = Field("", max_length=100, description="e.g. sowing, growing, harvest")
    note: str = Field(min_length=1, max_length=5000)


class RecordDelivery(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "member_id": "…", "delivery_date": "2031-07-05", "portion_per_share": 0.7,
        "note": "A dry June: 70% of a usual box, the price holds"}]})
    member_id: str = Field(min_length=1, max_length=64)
    delivery_date: date
    portion_per_share: float = Field(1.0, ge=0, le=10, description="1 is a full share; less is a short harvest")
    note: str = Field("", max_length=2000)


class GiveLeadUserFeedback(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "good": "The tomatoes tasted of summer", "improve": "Tell us a day earlier when the box comes",
        "would_commit_again": True}]})
    good: str = Field("", max_length=2000, description="What was good")
    improve: str = Field("", max_length=2000, description="What to improve")
    would_commit_again: bool


# ---- the aggregate ----

def partner_key(pledge_id: str) -> str:
    """A partner member has no member id here: their commitment is keyed by the pledge."""
    return f"partner:{pledge_id}"


def _closed(detail: str, slug: str, **extensions: Any) -> Conflict:
    return Conflict(detail, slug=slug, title="Not allowed in this state", **extensions)


class Offering(Aggregate):
    def __init__(self) -> None:
        self.offering_id = ""
        self.community_id = ""
        self.producer = ""
        self.terms: OfferingTerms | None = None
        self.published_at: datetime | None = None
        self.status: OfferingStatus = "open"
        self.commitments: dict[str, int] = {}
        self.ledger: dict[str, dict[str, Any]] = {}  # every member who ever committed: shares, status, reason
        self.proposal: TermsChangeProposed | None = None
        self.answers: dict[str, bool] = {}
        self.terms_changes = 0
        self.settlement: dict[str, Any] | None = None
        self.progress: list[dict[str, Any]] = []
        self.signups: dict[str, list[str]] = {}
        self.deliveries: dict[tuple[str, date], DeliveryRecorded] = {}
        self.feedback: dict[str, LeadUserFeedbackGiven] = {}
        self.partner_pledges: dict[str, PartnerPledgeRecorded] = {}  # by member key partner:<pledge id>
        self.refused_pledges: set[str] = set()

    # -- folding --

    def _on_OfferingPublished(self, e: OfferingPublished) -> None:
        self.offering_id, self.community_id, self.producer = e.offering_id, e.community_id, e.producer_id
        self.terms, self.published_at = e.terms, e.published_at

    def _on_TermsChangeProposed(self, e: TermsChangeProposed) -> None:
        self.proposal, self.answers = e, {}

    def _on_TermsChangeConsented(self, e: TermsChangeConsented) -> None:
        self.answers[e.member_id] = True

    def _on_TermsChangeDeclined(self, e: TermsChangeDeclined) -> None:
        self.answers[e.member_id] = False

    def _on_CommitmentReleased(self, e: CommitmentReleased) -> None:
        self.commitments.pop(e.member_id, None)
        self.ledger[e.member_id] = {"shares": e.shares, "status": "released", "reason": e.reason}

    def _on_OfferingTermsChanged(self, e: OfferingTermsChanged) -> None:
        self.terms, self.proposal, self.answers = e.terms, None, {}
        self.terms_changes += 1

    def _on_SharesCommitted(self, e: SharesCommitted) -> None:
        self.commitments[e.member_id] = e.member_shares
        self.ledger[e.member_id] = {"shares": e.member_shares, "status": "committed", "reason": ""}

    def _on_PartnerPledgeRecorded(self, e: PartnerPledgeRecorded) -> None:
        self.partner_pledges[partner_key(e.pledge_id)] = e

    def _on_PartnerPledgeRefused(self, e: PartnerPledgeRefused) -> None:
        self.refused_pledges.add(e.pledge_id)

    def _on_CommitmentWithdrawn(self, e: CommitmentWithdrawn) -> None:
        self.commitments.pop(e.member_id, None)
        self.answers.pop(e.member_id, None)
        self.ledger[e.member_id] = {"shares": e.shares, "status": "withdrawn", "reason": e.reason}

    def _on_OfferingConfirmed(self, e: OfferingConfirmed) -> None:
        self.status, self.proposal = "confirmed", None
        self.settlement = {"outcome": "confirmed", "reason": e.reason, "settled_at": e.settled_at}

    def _on_OfferingLapsed(self, e: OfferingLapsed) -> None:
        self.status, self.proposal = "lapsed", None
        self.settlement = {"outcome": "lapsed", "reason": e.reason, "settled_at": e.settled_at}

    def _on_ProgressShared(self, e: ProgressShared) -> None:
        self.progress.append({"update_id": e.update_id, "stage": e.stage, "note": e.note, "shared_at": e.shared_at})

    def _on_HelpShiftSignedUp(self, e: HelpShiftSignedUp) -> None:
        self.signups.setdefault(e.shift_id, []).append(e.member_id)

    def _on_HelpShiftSignUpCancelled(self, e: HelpShiftSignUpCancelled) -> None:
        if e.member_id in self.signups.get(e.shift_id, []):
            self.signups[e.shift_id].remove(e.member_id)

    def _on_DeliveryRecorded(self, e: DeliveryRecorded) -> None:
        self.deliveries[(e.member_id, e.delivery_date)] = e

    def _on_LeadUserFeedbackGiven(self, e: LeadUserFeedbackGiven) -> None:
        self.feedback[e.member_id] = e

    # -- derived --

    @property
    def current(self) -> OfferingTerms:
        if self.terms is None:  # an invariant, kept under python -O too
            raise RuntimeError("the offering was not published")
        return self.terms

    @property
    def committed(self) -> int:
        return sum(self.commitments.values())

    @property
    def shares_left(self) -> int:
        return max(self.current.shares - self.committed, 0)

    def _require_producer(self, actor: str, what: str) -> None:
        if actor != self.producer:
            raise Forbidden(f"only the producer {what}")

    def _require_open(self, now: datetime) -> None:
        if self.status != "open":
            raise _closed(f"the offering is {self.status}; commitments and terms are settled", "offering-settled",
                          current_state=self.status, shares_left=self.shares_left)
        if now >= self.current.commitment_deadline:
            raise _closed(
                f"commitments closed at {self.current.commitment_deadline.isoformat()}; "
                f"{self.shares_left} of {self.current.shares} shares were left", "commitment-deadline-passed",
                shares_left=self.shares_left, commitment_deadline=self.current.commitment_deadline.isoformat())

    def _event(self) -> dict[str, str]:
        return {"community_id": self.community_id, "offering_id": self.offering_id}

    def _check_new_terms(self, terms: OfferingTerms, now: datetime, committed: int) -> None:
        check_terms(terms, now)
        if terms.shares < committed:
            raise Invalid("shares", "cannot be fewer than the {committed} shares already committed",
                          committed=committed)
        for sid, members in self.signups.items():
            position = int(sid) - 1
            if not members:
                continue
            if position >= len(terms.help_shifts):
                raise Invalid("help_shifts", "shift {shift} has {signed_up} member(s) signed up; keep it",
                              shift=sid, signed_up=len(members))
            if terms.help_shifts[position].hands < len(members):
                raise Invalid(f"help_shifts.{position}.hands",
                              "{signed_up} member(s) are already signed up for this shift", signed_up=len(members))

    # -- decisions --

    def publish(self, offering_id: str, community_id: str, producer: str, cmd: OfferingTerms,
                now: datetime) -> list[DomainEvent]:
        if self.terms is not None:
            raise Conflict("the offering already exists", slug="offering-exists")
        check_terms(cmd, now)
        terms = OfferingTerms.model_validate(cmd.model_dump())
        return [OfferingPublished(community_id=community_id, offering_id=offering_id, producer_id=producer,
                                  terms=terms, published_at=now)]

    def change_terms(self, actor: str, cmd: ChangeTerms, now: datetime) -> list[DomainEvent]:
        """A change without asking anyone: only while nobody has committed."""
        self._require_producer(actor, "changes the terms")
        self._require_open(now)
        if self.commitments:
            raise Conflict(
                f"{len(self.commitments)} member(s) have committed {self.committed} share(s): the terms are fixed; "
                "propose the change for their consent", slug="consent-required",
                committed_members=sorted(self.commitments), committed=self.committed)
        self._check_new_terms(cmd.terms, now, 0)
        return [OfferingTermsChanged(**self._event(), terms=cmd.terms, proposal_id=None, consented_by=[],
                                     released=[])]

    def propose_terms_change(self, actor: str, proposal_id: str, cmd: ChangeTerms,
                             now: datetime) -> list[DomainEvent]:
        if not self.commitments:
            return self.change_terms(actor, cmd, now)
        self._require_producer(actor, "proposes new terms")
        self._require_open(now)
        self._check_new_terms(cmd.terms, now, 0)
        return [TermsChangeProposed(**self._event(), proposal_id=proposal_id, terms=cmd.terms, reason=cmd.reason,
                                    awaiting=sorted(self.commitments))]

    def _require_proposal(self, proposal_id: str) -> TermsChangeProposed:
        if self.proposal is None or self.proposal.proposal_id != proposal_id:
            raise NotFound("no such pending terms change (it may have been applied or replaced)")
        return self.proposal

    def answer_terms_change(self, member: str, proposal_id: str, cmd: AnswerTermsChange,
                            now: datetime) -> list[DomainEvent]:
        self._require_proposal(proposal_id)
        self._require_open(now)
        if member not in self.commitments:
            raise Forbidden("only members who committed answer a terms change")
        if self.answers.get(member) is cmd.consent:
            return []
        if cmd.consent:
            return [TermsChangeConsented(**self._event(), proposal_id=proposal_id, member_id=member)]
        return [TermsChangeDeclined(**self._event(), proposal_id=proposal_id, member_id=member, reason=cmd.reason)]

    def apply_terms_change(self, actor: str, proposal_id: str, cmd: ApplyTermsChange,
                           now: datetime) -> list[DomainEvent]:
        self._require_producer(actor, "applies a terms change")
        proposal = self._require_proposal(proposal_id)
        self._require_open(now)
        missing = sorted(m for m in self.commitments if not self.answers.get(m))
        if missing and not cmd.release_non_consenting:
            raise Conflict("{missing} committed member(s) have not consented to the new terms",
                           missing=len(missing),
                           slug="consent-missing", not_consented=missing, consented=sorted(
                               m for m in self.commitments if self.answers.get(m)))
        staying = sum(shares for m, shares in self.commitments.items() if m not in missing)
        self._check_new_terms(proposal.terms, now, staying)
        reason = "did not consent to the new terms" + (f" ({proposal.reason})" if proposal.reason else "")
        events: list[DomainEvent] = [
            CommitmentReleased(**self._event(), member_id=m, shares=self.commitments[m],
                               cause="terms-change-not-consented", reason=reason) for m in missing]
        events.append(OfferingTermsChanged(**self._event(), terms=proposal.terms, proposal_id=proposal_id,
                                           consented_by=sorted(m for m in self.commitments if m not in missing),
                                           released=missing))
        return events

    def commit(self, member: str, cmd: CommitShares, now: datetime) -> list[DomainEvent]:
        if member == self.producer:
            raise Invalid("shares", "the producer does not commit to their own offering")
        self._require_open(now)
        left = self.shares_left
        if cmd.shares > left:
            raise _closed(f"only {left} of {self.current.shares} shares are left", "not-enough-shares",
                          shares_left=left, shares_requested=cmd.shares)
        mine = self.commitments.get(member, 0) + cmd.shares
        return [SharesCommitted(**self._event(), member_id=member, shares=cmd.shares, member_shares=mine,
                                committed=self.committed + cmd.shares, shares_left=left - cmd.shares,
                                committed_at=now)]

    def pledge_from_partner(self, pledge: PartnerPledgeRecorded, now: datetime) -> list[DomainEvent]:
        """A partner member's pledge becomes a commitment like any other — or a recorded refusal, because the
        answer has to travel back to them either way."""
        if partner_key(pledge.pledge_id) in self.partner_pledges or pledge.pledge_id in self.refused_pledges:
            return []
        try:
            if self.current.visibility != "partners":
                raise Forbidden("this offering is not shared with partner communities")
            committed = self.commit(partner_key(pledge.pledge_id), CommitShares(shares=pledge.shares), now)
        except (Conflict, Forbidden, Invalid) as refusal:
            return [PartnerPledgeRefused(**self._event(), pledge_id=pledge.pledge_id,
                                         partnership_id=pledge.partnership_id, reason=refusal.detail,
                                         shares_left=self.shares_left)]
        return [pledge, *committed]

    def withdraw(self, member: str, cmd: WithdrawCommitment, now: datetime) -> list[DomainEvent]:
        if member not in self.commitments:
            raise Conflict("you have no commitment to this offering", slug="no-commitment")
        self._require_open(now)
        return [CommitmentWithdrawn(**self._event(), member_id=member, shares=self.commitments[member],
                                    reason=cmd.reason)]

    def settle(self, now: datetime) -> list[DomainEvent]:
        """At the deadline: confirmed if the minimum is reached, otherwise lapsed with every commitment
        released. Settling a settled offering changes nothing."""
        if self.status != "open":
            return []
        terms = self.current
        if now < terms.commitment_deadline:
            raise _closed(f"the commitment deadline {terms.commitment_deadline.isoformat()} has not passed",
                          "deadline-not-reached", commitment_deadline=terms.commitment_deadline.isoformat(),
                          committed=self.committed, minimum_shares=terms.minimum_shares)
        committed, minimum = self.committed, terms.minimum_shares
        if committed >= minimum:
            return [OfferingConfirmed(**self._event(), committed=committed, minimum_shares=minimum, settled_at=now,
                                      reason=f"{committed} of {terms.shares} shares committed by the deadline; "
                                             f"the minimum was {minimum}")]
        reason = f"only {committed} of the minimum {minimum} shares were committed by the deadline"
        events: list[DomainEvent] = [OfferingLapsed(**self._event(), committed=committed, minimum_shares=minimum,
                                                    settled_at=now, reason=reason)]
        events += [CommitmentReleased(**self._event(), member_id=m, shares=shares, cause="offering-lapsed",
                                      reason=f"the offering lapsed: {reason}")
                   for m, shares in sorted(self.commitments.items())]
        return events

    def share_progress(self, actor: str, update_id: str, cmd: ShareProgress, now: datetime) -> list[DomainEvent]:
        self._require_producer(actor, "shares progress")
        if self.status == "lapsed":
            raise _closed("the offering lapsed", "offering-lapsed", current_state=self.status)
        return [ProgressShared(**self._event(), update_id=update_id, stage=cmd.stage.strip(), note=cmd.note,
                               shared_at=now)]

    def _shift(self, sid: str) -> HelpShift:
        shifts = self.current.help_shifts
        if sid not in {shift_id(i) for i in range(len(shifts))}:
            raise NotFound("help shift not found")
        return shifts[int(sid) - 1]

    def sign_up(self, member: str, sid: str, now: datetime) -> list[DomainEvent]:
        shift = self._shift(sid)
        if self.status == "lapsed":
            raise _closed("the offering lapsed; no help is needed", "offering-lapsed", current_state=self.status)
        if member == self.producer:
            raise Invalid("member_id", "the producer is the one being helped")
        if shift.date < now.astimezone(UTC).date():
            raise _closed(f"the shift on {shift.date.isoformat()} has passed", "shift-passed")
        signed = self.signups.get(sid, [])
        if member in signed:
            raise Conflict("you are already signed up for this shift", slug="already-signed-up")
        if len(signed) >= shift.hands:
            raise _closed(f"all {shift.hands} hands for this shift are signed up", "shift-full",
                          hands=shift.hands, signed_up=len(signed))
        return [HelpShiftSignedUp(**self._event(), shift_id=sid, member_id=member)]

    def cancel_sign_up(self, member: str, sid: str) -> list[DomainEvent]:
        self._shift(sid)
        if member not in self.signups.get(sid, []):
            raise Conflict("you are not signed up for this shift", slug="not-signed-up")
        return [HelpShiftSignUpCancelled(**self._event(), shift_id=sid, member_id=member)]

    def record_delivery(self, actor: str, cmd: RecordDelivery) -> list[DomainEvent]:
        self._require_producer(actor, "records deliveries")
        if self.status != "confirmed":
            raise _closed(f"deliveries follow a confirmed offering; this one is {self.status}",
                          "invalid-transition", current_state=self.status)
        terms = self.current
        if cmd.member_id not in self.commitments:
            raise Invalid("member_id", "has no commitment to this offering")
        if cmd.delivery_date not in terms.delivery_dates:
            raise Invalid("delivery_date", "is not one of the offering's delivery dates: "
                          + ", ".join(d.isoformat() for d in terms.delivery_dates))
        if (cmd.member_id, cmd.delivery_date) in self.deliveries:
            raise Conflict("this delivery is already recorded", slug="delivery-recorded")
        shares = self.commitments[cmd.member_id]
        refund: float | None = None
        if terms.short_harvest == "pro-rata-refund" and terms.price.kind == "money" and cmd.portion_per_share < 1:
            per_delivery = (terms.price.amount or 0) * shares / len(terms.delivery_dates)
            refund = round(per_delivery * (1 - cmd.portion_per_share), 2)
        return [DeliveryRecorded(**self._event(), member_id=cmd.member_id, delivery_date=cmd.delivery_date,
                                 shares=shares, portion_per_share=cmd.portion_per_share, note=cmd.note,
                                 refund_owed=refund, currency=terms.price.currency if refund is not None else None)]

    def give_feedback(self, member: str, cmd: GiveLeadUserFeedback, now: datetime) -> list[DomainEvent]:
        if member not in self.commitments:
            raise Forbidden("only members who committed give lead-user feedback")
        if self.status != "confirmed":
            raise _closed(f"the offering is {self.status}", "invalid-transition", current_state=self.status)
        if not any(m == member for m, _ in self.deliveries):
            raise _closed("lead-user feedback follows your first delivery", "no-delivery-yet")
        if member in self.feedback:
            raise Conflict("you have already given feedback on this offering", slug="feedback-exists")
        return [LeadUserFeedbackGiven(**self._event(), producer_id=self.producer, member_id=member,
                                      good=cmd.good, improve=cmd.improve, would_commit_again=cmd.would_commit_again,
                                      given_at=now)]

    # -- the read model's shape --

    def _partner_of(self, member: str) -> dict[str, Any]:
        pledge = self.partner_pledges.get(member)
        if pledge is None:
            return {}
        return {"display_name": str(pledge.card.get("display_name", "")), "from_community": pledge.from_community_name,
                "partner_member": pledge.partner_member}

    def snapshot(self) -> dict[str, Any]:
        terms = self.current
        shifts = []
        for i, shift in enumerate(terms.help_shifts):
            sid = shift_id(i)
            signed = self.signups.get(sid, [])
            shifts.append({"shift_id": sid, **shift.model_dump(mode="json"), "signed_up": list(signed),
                           "hands_missing": max(shift.hands - len(signed), 0)})
        deliveries = [{**d.model_dump(mode="json", exclude={"community_id", "offering_id"})}
                      for d in sorted(self.deliveries.values(), key=lambda d: (d.delivery_date, d.member_id))]
        outstanding = [{"member_id": m, "delivery_date": day.isoformat(), "shares": shares}
                       for day in terms.delivery_dates for m, shares in sorted(self.commitments.items())
                       if (m, day) not in self.deliveries] if self.status == "confirmed" else []
        proposal = None
        if self.proposal is not None:
            proposal = {"proposal_id": self.proposal.proposal_id, "reason": self.proposal.reason,
                        "terms": self.proposal.terms.model_dump(mode="json"),
                        "consented": sorted(m for m, yes in self.answers.items() if yes),
                        "declined": sorted(m for m, yes in self.answers.items() if not yes),
                        "awaiting": sorted(m for m in self.commitments if m not in self.answers)}
        return {
            "offering_id": self.offering_id, "community_id": self.community_id, "producer_id": self.producer,
            "status": self.status, "terms": terms.model_dump(mode="json"),
            "published_at": self.published_at.isoformat() if self.published_at else None,
            "committed": self.committed, "minimum_shares": terms.minimum_shares, "shares": terms.shares,
            "available": self.shares_left, "committed_members": len(self.commitments),
            "commitments": [{"member_id": m, **entry, **self._partner_of(m)}
                            for m, entry in sorted(self.ledger.items())],
            "pending_terms_change": proposal, "terms_changes": self.terms_changes,
            "settlement": None if self.settlement is None else {
                **self.settlement, "settled_at": self.settlement["settled_at"].isoformat()},
            "progress": [{**p, "shared_at": p["shared_at"].isoformat()} for p in self.progress],
            "help_shifts": shifts,
            "helpers": sorted({m for members in self.signups.values() for m in members}),
            "deliveries": deliveries, "deliveries_outstanding": outstanding,
            "feedback": [f.model_dump(mode="json", exclude={"community_id", "offering_id", "producer_id"})
                         for f in sorted(self.feedback.values(), key=lambda f: f.given_at)],
            "version": self.version,
        }

"""Referrals: introductions between trusted members, community-sourced job requests and 360° feedback.
Pure — no I/O.

Streams: ``job-<id>`` (a job request's whole life, so conflicting assignments cannot both win),
``referral-<id>`` (one introduction and its outcome).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime
from typing import Any, ClassVar, Literal, Self

from pydantic import ConfigDict, Field, model_validator

from kizuna.domain import Aggregate, DomainEvent, StrictModel
from kizuna.errors import Conflict, Forbidden, Invalid
from kizuna.personal import Personal, member_data, partner_member_data

JobState = Literal["posted", "assigned", "in-progress", "completed", "cancelled"]
Visibility = Literal["community", "partners"]
DIMENSIONS = ("quality", "reliability", "beyond", "collaboration")


def normalise_skill(skill: str) -> str:
    return re.sub(r"[^\w]+", "-", skill.strip().lower()).strip("-")


# ---- events ----

class JobRequestPosted(DomainEvent):
    personal: ClassVar[Personal] = member_data("requester_id", texts=["description"])
    community_id: str
    job_id: str
    requester_id: str
    title: str
    description: str
    skills: list[str]
    compensation: dict[str, object]
    deadline: str
    visibility: Visibility


class JobOffered(DomainEvent):
    personal: ClassVar[Personal] = member_data("member_id", texts=["why_next_step"])
    community_id: str
    job_id: str
    member_id: str
    why_next_step: str


class JobReferred(DomainEvent):
    personal: ClassVar[Personal] = member_data("referred_by", texts=["note"])
    community_id: str
    job_id: str
    member_id: str
    referred_by: str
    note: str


class JobOfferedByPartner(DomainEvent):
    """A member of a partner community offered (or was referred); only the card they consented to share.
    ``partner_member`` (whose card) and ``partner_author`` (who wrote the note) are ``<origin>/<member ref>``:
    the partner's erasure notice deletes their keys here (docs/federation.md §8)."""

    personal: ClassVar[Personal] = partner_member_data(
        "partner_member", cards=["card"], texts=["note"], names=["referred_by_name"],
        field_subjects={"note": "partner_author", "referred_by_name": "partner_author"})
    community_id: str
    job_id: str
    offer_id: str
    partnership_id: str
    from_community_name: str
    kind: Literal["offer", "referral"]
    card: dict[str, Any]
    note: str
    referred_by_name: str | None = None
    partner_member: str = ""
    partner_author: str = ""


class JobAssigned(DomainEvent):
    community_id: str
    job_id: str
    member_ids: list[str]
    partner_offer_ids: list[str] = []


class JobStarted(DomainEvent):
    community_id: str
    job_id: str


class JobCompleted(DomainEvent):
    community_id: str
    job_id: str


class JobCancelled(DomainEvent):
    """``reason`` is the requester's words (``requester_id``; events from before it was recorded have none)."""

    personal: ClassVar[Personal] = member_data("requester_id", texts=["reason"])
    community_id: str
    job_id: str
    reason: str
    requester_id: str = ""


class FeedbackGiven(DomainEvent):
    personal: ClassVar[Personal] = member_data("giver_id", texts=["comment"])
    community_id: str
    job_id: str
    giver_id: str
    subject_id: str
    giver_relation: Literal["requester", "co-worker", "peer", "worker"]
    quality: int
    reliability: int
    beyond: int
    collaboration: int
    comment: str


class ReferralMade(DomainEvent):
    personal: ClassVar[Personal] = member_data("referrer_id", texts=["note"])
    community_id: str
    referral_id: str
    referrer_id: str
    referred_id: str
    to_member_id: str | None
    job_id: str | None
    note: str
    offering_id: str | None = None
    to_partnership_id: str | None = None


class ReferralAccepted(DomainEvent):
    community_id: str
    referral_id: str


class ReferralDeclined(DomainEvent):
    community_id: str
    referral_id: str
    reason: str


class ReferralOutcomeRecorded(DomainEvent):
    personal: ClassVar[Personal] = member_data("referrer_id", texts=["note"])
    community_id: str
    referral_id: str
    referrer_id: str
    worked: bool
    note: str
    recorded_by: str


# ---- commands ----

class Compensation(StrictModel):
    kind: Literal["money", "barter", "none"] = "none"
    amount: float | None = Field(None, description="Money only: a family price, above zero")
    currency: str | None = Field(None, description="Money only: ISO 4217 code, e.g. JPY")
    barter: str | None = Field(None, max_length=300, description="Barter only: what is offered in return")

    @model_validator(mode="after")
    def _money_needs_amount_and_currency(self) -> Self:
        if self.kind == "money":
            if self.amount is None or not self.amount > 0 or not math.isfinite(self.amount):
                raise ValueError("money compensation needs an amount above zero")
            if not self.currency or not re.fullmatch(r"[A-Z]{3}", self.currency):
                raise ValueError("money compensation needs a three-letter currency code, e.g. JPY")
        return self


class PostJobRequest(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "title": "Illustrations for a picture book", "description": "Six watercolour spreads",
        "skills": ["illustration"], "compensation": {"kind": "money", "amount": 30000, "currency": "JPY"},
        "deadline": "2031-03-01", "visibility": "community"}]})
    title: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=5000)
    skills: list[str] = Field(default_factory=list, max_length=30)
    compensation: Compensation = Field(default_factory=Compensation)
    deadline: date
    visibility: Visibility = "community"


class OfferToTake(StrictModel):
    why_next_step: str = Field("", max_length=1000, description="Why this job is the member's next step")


class ReferToJob(StrictModel):
    member_id: str = Field(min_length=1, max_length=64)
    note: str = Field("", max_length=1000)


class AssignJob(StrictModel):
    member_ids: list[str] = Field(default_factory=list, max_length=20)
    partner_offer_ids: list[str] = Field(default_factory=list, max_length=20, description=(
        "Offers from partner communities' members (their offer_id), for a job shared with partners"))

    @model_validator(mode="after")
    def _someone(self) -> Self:
        if not self.member_ids and not self.partner_offer_ids:
            raise ValueError("assign at least one member or partner offer")
        return self


class CancelJob(StrictModel):
    reason: str = Field("", max_length=500)


class GiveFeedback(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "subject_id": "…", "quality": 5, "reliability": 4, "beyond": 5, "collaboration": 4,
        "comment": "Delivered early and helped the others"}]})
    subject_id: str = Field(min_length=1, max_length=64)
    quality: int = Field(ge=1, le=5)
    reliability: int = Field(ge=1, le=5)
    beyond: int = Field(ge=1, le=5, description="Going beyond what was asked (\"120%\")")
    collaboration: int = Field(ge=1, le=5)
    comment: str = Field("", max_length=2000)


class MakeReferral(StrictModel):
    referred_id: str = Field(min_length=1, max_length=64, description="The trusted member being introduced")
    to_member_id: str | None = Field(None, max_length=64)
    job_id: str | None = Field(None, max_length=64)
    note: str = Field("", max_length=1000)
    offering_id: str | None = Field(None, max_length=64, description=(
        "Introduce a trusted producer: the offering is the subject, referred_id its producer, "
        "to_member_id the member (or to_partnership_id the partner community) introduced to them"))
    to_partnership_id: str | None = Field(None, max_length=64, description=(
        "Introduce the person to a partner community (through that partnership): only their consented "
        "card crosses, and the partner's owner records whether it worked"))

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if [self.to_member_id, self.job_id, self.to_partnership_id].count(None) != 2:
            raise ValueError("refer to exactly one of to_member_id, job_id or to_partnership_id")
        if self.offering_id is not None and self.job_id is not None:
            raise ValueError("a producer's offering is introduced to a member or a partner community")
        return self


class RecordOutcome(StrictModel):
    worked: bool
    note: str = Field("", max_length=1000)


# ---- aggregates ----

class Job(Aggregate):
    def __init__(self) -> None:
        self.job_id = ""
        self.community_id = ""
        self.requester = ""
        self.visibility: Visibility = "community"
        self.state: JobState = "posted"
        self.offers: dict[str, str] = {}
        self.referred: set[str] = set()
        self.workers: list[str] = []
        self.partner_offers: dict[str, str] = {}
        self.partner_workers: list[str] = []
        self.feedback: set[tuple[str, str]] = set()

    def _on_JobRequestPosted(self, e: JobRequestPosted) -> None:
        self.job_id, self.community_id, self.requester = e.job_id, e.community_id, e.requester_id
        self.visibility = e.visibility

    def _on_JobOffered(self, e: JobOffered) -> None:
        self.offers[e.member_id] = e.why_next_step

    def _on_JobReferred(self, e: JobReferred) -> None:
        self.referred.add(e.member_id)

    def _on_JobOfferedByPartner(self, e: JobOfferedByPartner) -> None:
        self.partner_offers[e.offer_id] = e.partnership_id

    def _on_JobAssigned(self, e: JobAssigned) -> None:
        self.workers, self.state = list(e.member_ids), "assigned"
        self.partner_workers = list(e.partner_offer_ids)

    def _on_JobStarted(self, e: JobStarted) -> None:
        self.state = "in-progress"

    def _on_JobCompleted(self, e: JobCompleted) -> None:
        self.state = "completed"

    def _on_JobCancelled(self, e: JobCancelled) -> None:
        self.state = "cancelled"

    def _on_FeedbackGiven(self, e: FeedbackGiven) -> None:
        self.feedback.add((e.giver_id, e.subject_id))

    @property
    def participants(self) -> set[str]:
        return {self.requester, *self.offers, *self.referred, *self.workers}

    def _require(self, *states: JobState) -> None:
        if self.state not in states:
            raise Conflict(f"the job request is {self.state}", slug="invalid-transition",
                           title="Not allowed in this state", current_state=self.state)

    def post(self, job_id: str, community_id: str, requester: str, cmd: PostJobRequest,
             today: date) -> list[DomainEvent]:
        if cmd.deadline <= today:
            raise Invalid("deadline", "must be in the future")
        skills = sorted({s for s in map(normalise_skill, cmd.skills) if s})
        return [JobRequestPosted(community_id=community_id, job_id=job_id, requester_id=requester,
                                 title=cmd.title.strip(), description=cmd.description, skills=skills,
                                 compensation=cmd.compensation.model_dump(exclude_none=True),
                                 deadline=cmd.deadline.isoformat(), visibility=cmd.visibility)]

    def offer(self, member_id: str, cmd: OfferToTake) -> list[DomainEvent]:
        self._require("posted")
        if member_id == self.requester:
            raise Invalid("member_id", "the requester cannot take their own job")
        if member_id in self.offers:
            raise Conflict("this member has already offered", slug="already-offered")
        return [JobOffered(community_id=self.community_id, job_id=self.job_id, member_id=member_id,
                           why_next_step=cmd.why_next_step)]

    def refer(self, referrer: str, cmd: ReferToJob) -> list[DomainEvent]:
        self._require("posted")
        if cmd.member_id in (self.requester, referrer):
            raise Invalid("member_id", "refer someone other than yourself or the requester")
        return [JobReferred(community_id=self.community_id, job_id=self.job_id, member_id=cmd.member_id,
                            referred_by=referrer, note=cmd.note)]

    def assign(self, actor: str, cmd: AssignJob) -> list[DomainEvent]:
        if actor != self.requester:
            raise Forbidden("only the requester assigns the job")
        self._require("posted")
        candidates = set(self.offers) | self.referred
        strangers = [m for m in cmd.member_ids if m not in candidates]
        if strangers:
            raise Invalid("member_ids", f"only members who offered or were referred can be assigned: {strangers}")
        unknown = [o for o in cmd.partner_offer_ids if o not in self.partner_offers]
        if unknown:
            raise Invalid("partner_offer_ids", f"no such offer from a partner community on this job: {unknown}")
        return [JobAssigned(community_id=self.community_id, job_id=self.job_id,
                            member_ids=list(dict.fromkeys(cmd.member_ids)),
                            partner_offer_ids=list(dict.fromkeys(cmd.partner_offer_ids)))]

    def receive_partner_offer(self, offer: JobOfferedByPartner) -> list[DomainEvent]:
        """Offers that arrive after the job left ``posted`` are recorded anyway: the requester sees them."""
        if offer.offer_id in self.partner_offers:
            return []
        if self.visibility != "partners":
            raise Forbidden("this job request was not shared with partner communities")
        return [offer]

    def start(self, actor: str) -> list[DomainEvent]:
        if actor not in (self.requester, *self.workers):
            raise Forbidden("only the requester or an assigned member starts the job")
        self._require("assigned")
        return [JobStarted(community_id=self.community_id, job_id=self.job_id)]

    def complete(self, actor: str) -> list[DomainEvent]:
        if actor != self.requester:
            raise Forbidden("only the requester marks the job completed")
        self._require("in-progress")
        return [JobCompleted(community_id=self.community_id, job_id=self.job_id)]

    def cancel(self, actor: str, cmd: CancelJob) -> list[DomainEvent]:
        if actor != self.requester:
            raise Forbidden("only the requester cancels the job")
        self._require("posted", "assigned", "in-progress")
        return [JobCancelled(community_id=self.community_id, job_id=self.job_id, reason=cmd.reason,
                             requester_id=self.requester)]

    def give_feedback(self, giver: str, cmd: GiveFeedback) -> list[DomainEvent]:
        self._require("completed")
        if giver == cmd.subject_id:
            raise Invalid("subject_id", "feedback on oneself is not 360° feedback")
        if giver not in self.participants:
            raise Forbidden("only people who took part in the job may give feedback")
        if cmd.subject_id not in self.workers and cmd.subject_id != self.requester:
            raise Invalid("subject_id", "feedback is about an assigned worker or, from a worker, the requester")
        if cmd.subject_id == self.requester and giver not in self.workers:
            raise Forbidden("only the workers give feedback on the requester")
        if (giver, cmd.subject_id) in self.feedback:
            raise Conflict("feedback already given on this person for this job", slug="feedback-exists")
        relation: Literal["requester", "co-worker", "peer", "worker"] = (
            "requester" if giver == self.requester else
            ("worker" if cmd.subject_id == self.requester else "co-worker") if giver in self.workers else "peer")
        return [FeedbackGiven(community_id=self.community_id, job_id=self.job_id, giver_id=giver,
                              subject_id=cmd.subject_id, giver_relation=relation, quality=cmd.quality,
                              reliability=cmd.reliability, beyond=cmd.beyond, collaboration=cmd.collaboration,
                              comment=cmd.comment)]


class Referral(Aggregate):
    def __init__(self) -> None:
        self.referral_id = ""
        self.community_id = ""
        self.referrer = ""
        self.referred = ""
        self.to_member: str | None = None
        self.to_partnership: str | None = None
        self.status: Literal["made", "accepted", "declined"] = "made"
        self.outcome: bool | None = None

    def _on_ReferralMade(self, e: ReferralMade) -> None:
        self.referral_id, self.community_id = e.referral_id, e.community_id
        self.referrer, self.referred, self.to_member = e.referrer_id, e.referred_id, e.to_member_id
        self.to_partnership = e.to_partnership_id

    def _on_ReferralAccepted(self, e: ReferralAccepted) -> None:
        self.status = "accepted"

    def _on_ReferralDeclined(self, e: ReferralDeclined) -> None:
        self.status = "declined"

    def _on_ReferralOutcomeRecorded(self, e: ReferralOutcomeRecorded) -> None:
        self.outcome = e.worked

    def make(self, referral_id: str, community_id: str, referrer: str, cmd: MakeReferral) -> list[DomainEvent]:
        if cmd.referred_id == referrer:
            raise Invalid("referred_id", "introduce someone else, not yourself")
        if cmd.to_member_id in (referrer, cmd.referred_id):
            raise Invalid("to_member_id", "introduce the person to someone else")
        return [ReferralMade(community_id=community_id, referral_id=referral_id, referrer_id=referrer,
                             referred_id=cmd.referred_id, to_member_id=cmd.to_member_id, job_id=cmd.job_id,
                             note=cmd.note, offering_id=cmd.offering_id, to_partnership_id=cmd.to_partnership_id)]

    def answer(self, actor: str, accept: bool, reason: str = "") -> list[DomainEvent]:
        if actor != self.referred:
            raise Forbidden("only the person referred answers the introduction")
        if self.status != "made":
            raise Conflict(f"the referral is already {self.status}", slug="invalid-transition",
                           current_state=self.status)
        if accept:
            return [ReferralAccepted(community_id=self.community_id, referral_id=self.referral_id)]
        return [ReferralDeclined(community_id=self.community_id, referral_id=self.referral_id, reason=reason)]

    def record_outcome(self, actor: str, cmd: RecordOutcome) -> list[DomainEvent]:
        if actor not in (self.referrer, self.referred, self.to_member):
            raise Forbidden("only the people in the introduction record how it went")
        if self.status != "accepted":
            raise Conflict("an outcome is recorded only for an accepted introduction", slug="invalid-transition",
                           current_state=self.status)
        if self.outcome is not None:
            raise Conflict("the outcome is already recorded", slug="outcome-exists")
        return [ReferralOutcomeRecorded(community_id=self.community_id, referral_id=self.referral_id,
                                        referrer_id=self.referrer, worked=cmd.worked, note=cmd.note,
                                        recorded_by=actor)]


    def record_partner_outcome(self, partner: str, worked: bool, note: str) -> list[DomainEvent]:
        """The partner community's owner says how an introduction to their community went: that it reached
        them is its acceptance, and the outcome counts for the referrer like any other."""
        if self.to_partnership is None:
            raise Forbidden("this introduction was not made to a partner community")
        if self.outcome is not None:
            return []
        events: list[DomainEvent] = []
        if self.status == "made":
            events.append(ReferralAccepted(community_id=self.community_id, referral_id=self.referral_id))
        events.append(ReferralOutcomeRecorded(community_id=self.community_id, referral_id=self.referral_id,
                                              referrer_id=self.referrer, worked=worked, note=note,
                                              recorded_by=partner))
        return events


HALF_LIFE_DAYS = 180.0


def recency_weight(given_at: datetime, now: datetime | None = None) -> float:
    """Feedback counts half as much every 180 days: recent behaviour says more."""
    age = ((now or datetime.now(UTC)) - given_at).total_seconds() / 86400
    return float(0.5 ** (max(age, 0) / HALF_LIFE_DAYS))


def match_score(job_skills: list[str], job_text: str, member_skills: list[str], vector: str,
                active_jobs: int) -> tuple[float, list[str]]:
    """Rank a member for a job: skill overlap first, their vector's words second, busy people lower."""
    reasons: list[str] = []
    overlap = sorted(set(job_skills) & set(member_skills))
    score = 2.0 * len(overlap)
    if overlap:
        reasons.append(f"has the skills {', '.join(overlap)}")
    words = {w for w in re.findall(r"\w{4,}", job_text.lower())}
    shared = sorted(words & set(re.findall(r"\w{4,}", vector.lower())))
    if shared:
        score += 0.5 * len(shared)
        reasons.append(f"their vector mentions {', '.join(shared[:5])}")
    if active_jobs:
        score -= 1.0 * active_jobs
        reasons.append(f"already has {active_jobs} active job(s)")
    return score, reasons

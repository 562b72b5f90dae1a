"""Partnerships between communities, one side's view of each. Pure: no I/O.

Each side keeps its own stream ``partnership-<id>-<local community>``: the proposer's side
starts with ``PartnershipProposed``, the other side with ``PartnershipRequested``. What each
side says to the other is an event here too (``JobSharedWithPartner``, ``PartnerOfferSent``…);
the gateway's federation outbox is a projection of those events, so a message is queued in the
same transaction that decided to send it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field, HttpUrl

from kizuna.domain import Aggregate, DomainEvent, StrictModel
from kizuna.errors import Conflict, Forbidden, Invalid, NotFound
from kizuna.personal import Erases, Personal, member_data, partner_member, partner_member_data

Shared = Literal["job_requests", "referrals", "offerings"]
Side = Literal["local", "partner"]
EVERYTHING: tuple[Shared, ...] = ("job_requests", "referrals", "offerings")
Status = Literal["proposed", "requested", "active", "suspended", "declined", "ended"]


# ---- events ----

class PartnershipProposed(DomainEvent):
    """This community proposed a link; ``sends``/``receives`` are from this community's side."""

    partnership_id: str
    community_id: str
    partner_origin: str
    partner_community_id: str
    partner_community_name: str
    community_name: str
    sends: list[Shared]
    receives: list[Shared]
    proposed_by: str
    note: str


class PartnershipRequested(DomainEvent):
    """A partner proposed a link to this community; waits for the owner's answer.

    ``proposer_key_id``/``proposer_public_key`` are the key the proposal was signed with, as the proposal
    carried it: trusted for nothing but this proposal until the owner accepts and the proposer's own
    published document confirms it."""

    partnership_id: str
    community_id: str
    partner_origin: str
    partner_community_id: str
    partner_community_name: str
    sends: list[Shared]
    receives: list[Shared]
    note: str
    proposer_key_id: str = ""
    proposer_public_key: str = ""


class PartnershipEstablished(DomainEvent):
    """Two communities on this deployment were linked at once (a sister community): no proposal, no hop."""

    partnership_id: str
    community_id: str
    partner_origin: str
    partner_community_id: str
    partner_community_name: str
    sends: list[Shared]
    receives: list[Shared]
    note: str


class PartnershipAccepted(DomainEvent):
    """``community_name`` is the accepting community's name, told to the proposer (communities need not be
    listed in the federation document, so the proposer may not have known it)."""

    partnership_id: str
    community_id: str
    by: Side
    actor: str
    community_name: str = ""


class PartnershipDeclined(DomainEvent):
    partnership_id: str
    community_id: str
    by: Side
    actor: str
    reason: str


class PartnershipSuspended(DomainEvent):
    partnership_id: str
    community_id: str
    by: Side
    actor: str
    reason: str


class PartnershipResumed(DomainEvent):
    partnership_id: str
    community_id: str
    by: Side
    actor: str


class PartnershipEnded(DomainEvent):
    """Nothing crosses any more; both sides drop the partner's shared copies from their read models."""

    partnership_id: str
    community_id: str
    by: Side
    actor: str
    reason: str


class FederationListingChanged(DomainEvent):
    """The owner chose whether the community is named in this deployment's public federation document."""

    community_id: str
    listed: bool
    actor: str


class JobSharedWithPartner(DomainEvent):
    """A job request marked for partners was sent: only what the requesting community chose to publish."""

    partnership_id: str
    community_id: str
    job_id: str
    job: dict[str, Any]


class JobStatusSentToPartner(DomainEvent):
    partnership_id: str
    community_id: str
    job_id: str
    state: str
    assigned_offer_ids: list[str]


class PartnerJobReceived(DomainEvent):
    partnership_id: str
    community_id: str
    job_id: str
    job: dict[str, Any]
    from_community_name: str


class PartnerJobStatusReceived(DomainEvent):
    partnership_id: str
    community_id: str
    job_id: str
    state: str
    assigned_offer_ids: list[str]


class PartnerOfferSent(DomainEvent):
    """A member here offered (or was referred) to a partner's job; only their consented card leaves.

    ``note_by`` wrote the note (the member offering, or the fellow member referring them); ``member_ref`` and
    ``author_ref`` are how the partner knows the two (``member_ref``), never their ids."""

    personal: ClassVar[Personal] = member_data("member_id", cards=["card"], texts=["note"],
                                               names=["referred_by_name"],
                                               field_subjects={"note": "note_by", "referred_by_name": "note_by"})
    partnership_id: str
    community_id: str
    job_id: str
    offer_id: str
    member_id: str
    kind: Literal["offer", "referral"]
    card: dict[str, Any]
    note: str
    referred_by_name: str | None = None
    note_by: str = ""
    member_ref: str = ""
    author_ref: str = ""


class PartnerOfferReceived(DomainEvent):
    """``partner_member`` (whose card) and ``partner_author`` (who wrote the note and referred them) are
    ``<origin>/<member ref>``: their fields are sealed with a key per partner member, deleted by an erasure notice."""

    personal: ClassVar[Personal] = partner_member_data(
        "partner_member", cards=["card"], texts=["note"], names=["referred_by_name"],
        field_subjects={"note": "partner_author", "referred_by_name": "partner_author"})
    partnership_id: str
    community_id: str
    job_id: str
    offer_id: str
    kind: Literal["offer", "referral"]
    card: dict[str, Any]
    note: str
    referred_by_name: str | None = None
    from_community_name: str
    partner_member: str = ""
    partner_author: str = ""


class OfferingSharedWithPartner(DomainEvent):
    """A pre-commitment offering marked for partners was sent: its public terms and the community's name."""

    partnership_id: str
    community_id: str
    offering_id: str
    offering: dict[str, Any]


class OfferingStatusSentToPartner(DomainEvent):
    partnership_id: str
    community_id: str
    offering_id: str
    status: str


class PartnerOfferingReceived(DomainEvent):
    partnership_id: str
    community_id: str
    offering_id: str
    offering: dict[str, Any]
    from_community_name: str


class PartnerOfferingStatusReceived(DomainEvent):
    partnership_id: str
    community_id: str
    offering_id: str
    status: str


class PartnerPledgeSent(DomainEvent):
    """A member here pledged shares of a partner's offering; only their consented card leaves."""

    personal: ClassVar[Personal] = member_data("member_id", cards=["card"])
    partnership_id: str
    community_id: str
    offering_id: str
    pledge_id: str
    member_id: str
    shares: int
    card: dict[str, Any]
    member_ref: str = ""


class PartnerPledgeReceived(DomainEvent):
    personal: ClassVar[Personal] = partner_member_data("partner_member", cards=["card"])
    partnership_id: str
    community_id: str
    offering_id: str
    pledge_id: str
    shares: int
    card: dict[str, Any]
    from_community_name: str
    partner_member: str = ""


class PledgeResultSentToPartner(DomainEvent):
    partnership_id: str
    community_id: str
    pledge_id: str
    accepted: bool
    reason: str
    shares_left: int


class PartnerPledgeResultReceived(DomainEvent):
    partnership_id: str
    community_id: str
    pledge_id: str
    accepted: bool
    reason: str
    shares_left: int


class IntroductionSentToPartner(DomainEvent):
    """A member (``referrer_id``) introduced a fellow member (``member_id``; or a producer's offering) to the
    partner community."""

    personal: ClassVar[Personal] = member_data(
        "member_id", cards=["card"], texts=["note"], names=["introduced_by_name"],
        field_subjects={"note": "referrer_id", "introduced_by_name": "referrer_id"})
    partnership_id: str
    community_id: str
    referral_id: str
    card: dict[str, Any]
    note: str
    introduced_by_name: str
    offering_id: str | None = None
    member_id: str = ""
    referrer_id: str = ""
    member_ref: str = ""
    author_ref: str = ""


class PartnerIntroductionReceived(DomainEvent):
    personal: ClassVar[Personal] = partner_member_data(
        "partner_member", cards=["card"], texts=["note"], names=["introduced_by_name"],
        field_subjects={"note": "partner_author", "introduced_by_name": "partner_author"})
    partnership_id: str
    community_id: str
    referral_id: str
    card: dict[str, Any]
    note: str
    introduced_by_name: str
    offering_id: str | None = None
    from_community_name: str
    partner_member: str = ""
    partner_author: str = ""


class MemberErasureSentToPartner(DomainEvent):
    """A member here whose data crossed this partnership (a card, a note) was erased: the partner is told to
    erase its copies (message ``member.erased``), whatever the partnership's state. Ids only."""

    partnership_id: str
    community_id: str
    member_ref: str


class PartnerMemberErased(DomainEvent):
    """The partner erased one of its members whose data crossed to this community: the key of
    ``partner-member:<partner_member>`` is deleted, and every service here scrubs its copies. Ids only."""

    erases: ClassVar[Erases] = Erases("partner-member", "partner_member")
    partnership_id: str
    community_id: str
    partner_member: str


class IntroductionOutcomeSentToPartner(DomainEvent):
    partnership_id: str
    community_id: str
    referral_id: str
    worked: bool
    note: str
    actor: str


class PartnerIntroductionOutcomeReceived(DomainEvent):
    partnership_id: str
    community_id: str
    referral_id: str
    worked: bool
    note: str
    from_community_name: str


# ---- commands ----

class ProposePartnership(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "partner_origin": "https://kizuna.nagano.example", "partner_community_id": "b2c…",
        "sends": ["job_requests", "referrals"], "receives": ["job_requests", "referrals"],
        "note": "We share farmers and makers; let us share work too."}]})
    partner_origin: HttpUrl
    partner_community_id: str = Field(min_length=1, max_length=64)
    sends: list[Shared] = Field(default_factory=lambda: list(EVERYTHING))
    receives: list[Shared] = Field(default_factory=lambda: list(EVERYTHING))
    note: str = Field("", max_length=2000)


class Decision(StrictModel):
    reason: str = Field("", max_length=1000)


class OfferToPartnerJob(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"note": "I ran the same workshop last spring."}]})
    note: str = Field("", max_length=2000)


class PledgeToPartnerOffering(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"shares": 2}]})
    shares: int = Field(ge=1, le=1000)


class IntroductionOutcome(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"worked": True, "note": "She runs our dye workshop"}]})
    worked: bool
    note: str = Field("", max_length=1000)


class SetFederationListing(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"listed": True}]})
    listed: bool


class ReferToPartnerJob(StrictModel):
    member_id: str = Field(min_length=1, max_length=64)
    note: str = Field("", max_length=2000)


# ---- the aggregate ----

_STATUS_AFTER: dict[type[DomainEvent], Status] = {
    PartnershipAccepted: "active", PartnershipDeclined: "declined", PartnershipSuspended: "suspended",
    PartnershipResumed: "active", PartnershipEnded: "ended"}


class Partnership(Aggregate):
    def __init__(self) -> None:
        self.partnership_id = ""
        self.community_id = ""
        self.partner_origin = ""
        self.partner_community_id = ""
        self.partner_community_name = ""
        self.status: Status = "proposed"
        self.sends: set[str] = set()
        self.receives: set[str] = set()
        self.shared_jobs: set[str] = set()
        self.received_jobs: dict[str, str] = {}
        self.offers_sent: dict[str, str] = {}
        self.shared_offerings: set[str] = set()
        self.received_offerings: dict[str, str] = {}
        self.pledges_sent: set[str] = set()
        self.pledges_received: set[str] = set()
        self.introductions_sent: set[str] = set()
        self.introductions_received: dict[str, bool | None] = {}
        self.proposer_key_id = ""
        self.proposer_public_key = ""
        self.members_sent: set[str] = set()  # members here whose card or words crossed (for erasure notices)
        self.erasures_sent: set[str] = set()
        self.partner_members_erased: set[str] = set()

    def _on_PartnershipProposed(self, e: PartnershipProposed) -> None:
        self._link(e.partnership_id, e.community_id, e.partner_origin, e.partner_community_id,
                   e.partner_community_name, e.sends, e.receives)
        self.status = "proposed"

    def _on_PartnershipRequested(self, e: PartnershipRequested) -> None:
        self._link(e.partnership_id, e.community_id, e.partner_origin, e.partner_community_id,
                   e.partner_community_name, e.sends, e.receives)
        self.proposer_key_id, self.proposer_public_key = e.proposer_key_id, e.proposer_public_key
        self.status = "requested"

    def _on_PartnershipAccepted(self, e: PartnershipAccepted) -> None:
        if e.by == "partner" and e.community_name:
            self.partner_community_name = e.community_name

    def _link(self, pid: str, cid: str, origin: str, partner_cid: str, name: str, sends: list[Shared],
              receives: list[Shared]) -> None:
        self.partnership_id, self.community_id, self.partner_origin = pid, cid, origin
        self.partner_community_id, self.partner_community_name = partner_cid, name
        self.sends, self.receives = set(sends), set(receives)

    def _on_PartnershipEstablished(self, e: PartnershipEstablished) -> None:
        self._link(e.partnership_id, e.community_id, e.partner_origin, e.partner_community_id,
                   e.partner_community_name, e.sends, e.receives)
        self.status = "active"

    def apply(self, event: DomainEvent) -> None:
        self.status = _STATUS_AFTER.get(type(event), self.status)
        super().apply(event)

    def _on_JobSharedWithPartner(self, e: JobSharedWithPartner) -> None:
        self.shared_jobs.add(e.job_id)

    def _on_PartnerJobReceived(self, e: PartnerJobReceived) -> None:
        self.received_jobs[e.job_id] = "posted"

    def _on_PartnerJobStatusReceived(self, e: PartnerJobStatusReceived) -> None:
        self.received_jobs[e.job_id] = e.state

    def _on_PartnerOfferSent(self, e: PartnerOfferSent) -> None:
        self.offers_sent[e.offer_id] = e.member_id
        self.members_sent.update(m for m in (e.member_id, e.note_by) if m)

    def _on_OfferingSharedWithPartner(self, e: OfferingSharedWithPartner) -> None:
        self.shared_offerings.add(e.offering_id)

    def _on_PartnerOfferingReceived(self, e: PartnerOfferingReceived) -> None:
        self.received_offerings[e.offering_id] = "open"

    def _on_PartnerOfferingStatusReceived(self, e: PartnerOfferingStatusReceived) -> None:
        self.received_offerings[e.offering_id] = e.status

    def _on_PartnerPledgeSent(self, e: PartnerPledgeSent) -> None:
        self.pledges_sent.add(e.pledge_id)
        self.members_sent.add(e.member_id)

    def _on_PartnerPledgeReceived(self, e: PartnerPledgeReceived) -> None:
        self.pledges_received.add(e.pledge_id)

    def _on_IntroductionSentToPartner(self, e: IntroductionSentToPartner) -> None:
        self.introductions_sent.add(e.referral_id)
        self.members_sent.update(m for m in (e.member_id, e.referrer_id) if m)

    def _on_MemberErasureSentToPartner(self, e: MemberErasureSentToPartner) -> None:
        self.erasures_sent.add(e.member_ref)

    def _on_PartnerMemberErased(self, e: PartnerMemberErased) -> None:
        self.partner_members_erased.add(e.partner_member)

    def _on_PartnerIntroductionReceived(self, e: PartnerIntroductionReceived) -> None:
        self.introductions_received[e.referral_id] = None

    def _on_IntroductionOutcomeSentToPartner(self, e: IntroductionOutcomeSentToPartner) -> None:
        self.introductions_received[e.referral_id] = e.worked

    @property
    def active(self) -> bool:
        return self.status == "active"

    def _conflict(self, what: str) -> Conflict:
        return Conflict(f"cannot {what}: the partnership is {self.status}", slug="partnership-state",
                        title="Not allowed in this state", current_state=self.status)

    # -- the local owner's decisions --

    @staticmethod
    def propose(pid: str, cid: str, community_name: str, partner_name: str, cmd: ProposePartnership,
                actor: str) -> list[DomainEvent]:
        if not cmd.sends and not cmd.receives:
            raise Invalid("sends", "a partnership shares something: job_requests, referrals or both")
        return [PartnershipProposed(
            partnership_id=pid, community_id=cid, partner_origin=str(cmd.partner_origin).rstrip("/"),
            partner_community_id=cmd.partner_community_id, partner_community_name=partner_name,
            community_name=community_name, sends=sorted(set(cmd.sends)), receives=sorted(set(cmd.receives)),
            proposed_by=actor, note=cmd.note)]

    @staticmethod
    def establish(pid: str, cid: str, origin: str, partner_cid: str, partner_name: str,
                  note: str) -> list[DomainEvent]:
        return [PartnershipEstablished(partnership_id=pid, community_id=cid, partner_origin=origin,
                                       partner_community_id=partner_cid, partner_community_name=partner_name,
                                       sends=list(EVERYTHING), receives=list(EVERYTHING), note=note)]

    def accept(self, actor: str, by: Side = "local", community_name: str = "") -> list[DomainEvent]:
        if self.status == "active":
            return []
        expected = "requested" if by == "local" else "proposed"
        if self.status != expected:
            raise self._conflict("accept")
        return [PartnershipAccepted(partnership_id=self.partnership_id, community_id=self.community_id, by=by,
                                    actor=actor, community_name=community_name[:200])]

    def decline(self, actor: str, reason: str, by: Side = "local") -> list[DomainEvent]:
        expected = "requested" if by == "local" else "proposed"
        if self.status != expected:
            raise self._conflict("decline")
        return [PartnershipDeclined(partnership_id=self.partnership_id, community_id=self.community_id, by=by,
                                    actor=actor, reason=reason)]

    def suspend(self, actor: str, reason: str, by: Side = "local") -> list[DomainEvent]:
        if self.status == "suspended":
            return []
        if self.status != "active":
            raise self._conflict("suspend")
        return [PartnershipSuspended(partnership_id=self.partnership_id, community_id=self.community_id, by=by,
                                     actor=actor, reason=reason)]

    def resume(self, actor: str, by: Side = "local") -> list[DomainEvent]:
        if self.status != "suspended":
            raise self._conflict("resume")
        return [PartnershipResumed(partnership_id=self.partnership_id, community_id=self.community_id, by=by,
                                   actor=actor)]

    def end(self, actor: str, reason: str, by: Side = "local") -> list[DomainEvent]:
        if self.status == "ended":
            return []
        if self.status == "declined":
            raise self._conflict("end")
        return [PartnershipEnded(partnership_id=self.partnership_id, community_id=self.community_id, by=by,
                                 actor=actor, reason=reason)]

    # -- what crosses --

    def share_job(self, job_id: str, job: dict[str, Any]) -> list[DomainEvent]:
        if not self.active or "job_requests" not in self.sends or job_id in self.shared_jobs:
            return []
        return [JobSharedWithPartner(partnership_id=self.partnership_id, community_id=self.community_id,
                                     job_id=job_id, job=job)]

    def send_job_status(self, job_id: str, state: str, assigned_offer_ids: list[str]) -> list[DomainEvent]:
        # Status of a job already shared still reaches a suspended partner: it closes what they hold.
        if job_id not in self.shared_jobs or self.status not in ("active", "suspended"):
            return []
        return [JobStatusSentToPartner(partnership_id=self.partnership_id, community_id=self.community_id,
                                       job_id=job_id, state=state, assigned_offer_ids=assigned_offer_ids)]

    def receive_job(self, job_id: str, job: dict[str, Any] | Callable[[], dict[str, Any]]) -> list[DomainEvent]:
        """``job`` may be a callable that checks the message's job: it is called only once the partnership
        is known to take job requests, so a stranger learns nothing from which check refused them."""
        self._require_inbound("job_requests")
        if callable(job):
            job = job()
        if job_id in self.received_jobs:
            return []
        return [PartnerJobReceived(partnership_id=self.partnership_id, community_id=self.community_id,
                                   job_id=job_id, job=job, from_community_name=self.partner_community_name)]

    def receive_job_status(self, job_id: str, state: str, assigned: list[str]) -> list[DomainEvent]:
        if self.status not in ("active", "suspended"):
            raise Forbidden("no active partnership covers this message", slug="no-partnership")
        if job_id not in self.received_jobs:
            raise Invalid("job_id", "this job request was never shared with this community")
        mine = [offer for offer in assigned if offer in self.offers_sent]
        return [PartnerJobStatusReceived(partnership_id=self.partnership_id, community_id=self.community_id,
                                         job_id=job_id, state=state, assigned_offer_ids=mine)]

    def send_offer(self, job_id: str, offer_id: str, member_id: str, card: dict[str, Any], note: str,
                   kind: Literal["offer", "referral"], referred_by_name: str | None,
                   note_by: str = "") -> list[DomainEvent]:
        if not self.active:
            raise self._conflict("offer to a partner's job")
        if "referrals" not in self.sends and kind == "referral":
            raise Forbidden("this partnership does not share referrals", slug="not-shared")
        state = self.received_jobs.get(job_id)
        if state is None:
            raise Invalid("job_id", "this job request was not shared with this community")
        if state != "posted":
            raise Conflict(f"the partner's job request is {state}", slug="invalid-transition",
                           title="Not allowed in this state", current_state=state)
        if member_id in self.offers_sent.values() and kind == "offer":
            raise Conflict("this member has already offered", slug="already-offered")
        return [PartnerOfferSent(partnership_id=self.partnership_id, community_id=self.community_id,
                                 job_id=job_id, offer_id=offer_id, member_id=member_id, kind=kind, card=card,
                                 note=note, referred_by_name=referred_by_name, note_by=note_by or member_id,
                                 member_ref=self.ref(member_id), author_ref=self.ref(note_by or member_id))]

    def receive_offer(self, job_id: str, offer_id: str, kind: Literal["offer", "referral"], card: dict[str, Any],
                      note: str, referred_by_name: str | None, member_ref: str = "",
                      author_ref: str = "") -> list[DomainEvent]:
        self._require_inbound("referrals" if kind == "referral" else "job_requests", outbound_job=job_id)
        return [PartnerOfferReceived(partnership_id=self.partnership_id, community_id=self.community_id,
                                     job_id=job_id, offer_id=offer_id, kind=kind, card=card, note=note,
                                     referred_by_name=referred_by_name,
                                     from_community_name=self.partner_community_name,
                                     partner_member=self.partner_ref(member_ref),
                                     partner_author=self.partner_ref(author_ref or member_ref))]

    # -- offerings --

    def share_offering(self, offering_id: str, offering: dict[str, Any]) -> list[DomainEvent]:
        if not self.active or "offerings" not in self.sends or offering_id in self.shared_offerings:
            return []
        return [OfferingSharedWithPartner(partnership_id=self.partnership_id, community_id=self.community_id,
                                          offering_id=offering_id, offering=offering)]

    def send_offering_status(self, offering_id: str, status: str) -> list[DomainEvent]:
        if offering_id not in self.shared_offerings or self.status not in ("active", "suspended"):
            return []
        return [OfferingStatusSentToPartner(partnership_id=self.partnership_id, community_id=self.community_id,
                                            offering_id=offering_id, status=status)]

    def receive_offering(self, offering_id: str, offering: dict[str, Any]) -> list[DomainEvent]:
        self._require_inbound("offerings")
        if offering_id in self.received_offerings:
            return []
        return [PartnerOfferingReceived(partnership_id=self.partnership_id, community_id=self.community_id,
                                        offering_id=offering_id, offering=offering,
                                        from_community_name=self.partner_community_name)]

    def receive_offering_status(self, offering_id: str, status: str) -> list[DomainEvent]:
        if self.status not in ("active", "suspended"):
            raise Forbidden("no active partnership covers this message", slug="no-partnership")
        if offering_id not in self.received_offerings:
            raise Invalid("offering_id", "this offering was never shared with this community")
        return [PartnerOfferingStatusReceived(partnership_id=self.partnership_id, community_id=self.community_id,
                                              offering_id=offering_id, status=status)]

    def send_pledge(self, offering_id: str, pledge_id: str, member_id: str, shares: int,
                    card: dict[str, Any]) -> list[DomainEvent]:
        if not self.active:
            raise self._conflict("pledge to a partner's offering")
        status = self.received_offerings.get(offering_id)
        if status is None:
            raise Invalid("offering_id", "this offering was not shared with this community")
        if status != "open":
            raise Conflict(f"the partner's offering is {status}", slug="offering-settled", current_state=status)
        return [PartnerPledgeSent(partnership_id=self.partnership_id, community_id=self.community_id,
                                  offering_id=offering_id, pledge_id=pledge_id, member_id=member_id, shares=shares,
                                  card=card, member_ref=self.ref(member_id))]

    def receive_pledge(self, offering_id: str, pledge_id: str, shares: int,
                       card: dict[str, Any], member_ref: str = "") -> list[DomainEvent]:
        if not self.active:
            raise Forbidden(f"no active partnership covers this message (it is {self.status})", slug="no-partnership")
        if offering_id not in self.shared_offerings:
            raise Invalid("offering_id", "this offering was never shared with your community")
        if pledge_id in self.pledges_received:
            return []
        return [PartnerPledgeReceived(partnership_id=self.partnership_id, community_id=self.community_id,
                                      offering_id=offering_id, pledge_id=pledge_id, shares=shares, card=card,
                                      from_community_name=self.partner_community_name,
                                      partner_member=self.partner_ref(member_ref))]

    def send_pledge_result(self, pledge_id: str, accepted: bool, reason: str, shares_left: int) -> list[DomainEvent]:
        if pledge_id not in self.pledges_received or self.status in ("declined",):
            return []
        return [PledgeResultSentToPartner(partnership_id=self.partnership_id, community_id=self.community_id,
                                          pledge_id=pledge_id, accepted=accepted, reason=reason,
                                          shares_left=shares_left)]

    def receive_pledge_result(self, pledge_id: str, accepted: bool, reason: str,
                              shares_left: int) -> list[DomainEvent]:
        if pledge_id not in self.pledges_sent:
            raise Invalid("pledge_id", "no such pledge was sent from this community")
        return [PartnerPledgeResultReceived(partnership_id=self.partnership_id, community_id=self.community_id,
                                            pledge_id=pledge_id, accepted=accepted, reason=reason,
                                            shares_left=shares_left)]

    # -- introductions to the partner community --

    def send_introduction(self, referral_id: str, card: dict[str, Any], note: str, introduced_by_name: str,
                          offering_id: str | None, member_id: str = "", referrer_id: str = "") -> list[DomainEvent]:
        if not self.active or "referrals" not in self.sends or referral_id in self.introductions_sent:
            return []
        return [IntroductionSentToPartner(partnership_id=self.partnership_id, community_id=self.community_id,
                                          referral_id=referral_id, card=card, note=note,
                                          introduced_by_name=introduced_by_name, offering_id=offering_id,
                                          member_id=member_id, referrer_id=referrer_id,
                                          member_ref=self.ref(member_id) if member_id else "",
                                          author_ref=self.ref(referrer_id) if referrer_id else "")]

    def receive_introduction(self, referral_id: str, card: dict[str, Any], note: str, introduced_by_name: str,
                             offering_id: str | None, member_ref: str = "",
                             author_ref: str = "") -> list[DomainEvent]:
        self._require_inbound("referrals")
        if referral_id in self.introductions_received:
            return []
        return [PartnerIntroductionReceived(partnership_id=self.partnership_id, community_id=self.community_id,
                                            referral_id=referral_id, card=card, note=note,
                                            introduced_by_name=introduced_by_name, offering_id=offering_id,
                                            from_community_name=self.partner_community_name,
                                            partner_member=self.partner_ref(member_ref),
                                            partner_author=self.partner_ref(author_ref))]

    # -- erasure (docs/federation.md §8) --

    def ref(self, member_id: str) -> str:
        """How the partner knows a member of this side: a reference per partnership, not their id (which
        never crosses). The same on every call, so the erasure notice names what the card was sent with."""
        return member_ref(self.partnership_id, member_id)

    def partner_ref(self, ref: str) -> str:
        """A partner's member reference as the subject of their fields here: ``<partner origin>/<ref>``."""
        return partner_member(self.partner_origin, ref) if ref else ""

    def send_erasure_notice(self, member_id: str) -> list[DomainEvent]:
        """Sent whatever the partnership's state, ended included: what crossed is still held there, and
        data protection outlives the partnership."""
        ref = self.ref(member_id)
        if member_id not in self.members_sent or ref in self.erasures_sent:
            return []
        return [MemberErasureSentToPartner(partnership_id=self.partnership_id, community_id=self.community_id,
                                           member_ref=ref)]

    def receive_erasure_notice(self, ref: str) -> list[DomainEvent]:
        """Accepted in any state (an ended partnership's copies are erased too); a repeat changes nothing."""
        try:
            uuid.UUID(ref)
        except ValueError as error:
            raise Invalid("payload.member_ref", "is a member reference this deployment was sent") from error
        subject = self.partner_ref(ref)
        if subject in self.partner_members_erased:
            return []
        return [PartnerMemberErased(partnership_id=self.partnership_id, community_id=self.community_id,
                                    partner_member=subject)]

    def record_introduction_outcome(self, referral_id: str, cmd: IntroductionOutcome,
                                    actor: str) -> list[DomainEvent]:
        if referral_id not in self.introductions_received:
            raise NotFound("introduction not found")
        if self.introductions_received[referral_id] is not None:
            raise Conflict("the outcome is already recorded", slug="outcome-exists")
        if self.status not in ("active", "suspended"):
            raise self._conflict("record an outcome")
        return [IntroductionOutcomeSentToPartner(partnership_id=self.partnership_id, community_id=self.community_id,
                                                 referral_id=referral_id, worked=cmd.worked, note=cmd.note,
                                                 actor=actor)]

    def receive_introduction_outcome(self, referral_id: str, worked: bool, note: str) -> list[DomainEvent]:
        if referral_id not in self.introductions_sent:
            raise Invalid("referral_id", "no such introduction was sent from this community")
        return [PartnerIntroductionOutcomeReceived(partnership_id=self.partnership_id, community_id=self.community_id,
                                                   referral_id=referral_id, worked=worked, note=note,
                                                   from_community_name=self.partner_community_name)]

    def _require_inbound(self, what: str, outbound_job: str | None = None) -> None:
        if not self.active:
            raise Forbidden(f"no active partnership covers this message (it is {self.status})",
                            slug="no-partnership")
        if outbound_job is not None:
            if outbound_job not in self.shared_jobs:
                raise Invalid("job_id", "this job request was never shared with your community")
            if what == "referrals" and "referrals" not in self.receives:
                raise Forbidden("this partnership does not share referrals", slug="not-shared")
            return
        if what not in self.receives:
            raise Forbidden(f"this partnership does not share {what} in this direction", slug="not-shared")


MEMBER_REFS = uuid.UUID("6b1d0c9e-3f5a-5d2b-9c41-7e8f0a2b4c6d")


def member_ref(partnership_id: str, member_id: str) -> str:
    """A member's reference on one partnership (a name-based UUID of the partnership and the member): stable, so
    the erasure notice names the member as every card did; different on each partnership, so partners cannot
    link one member across links; and no member id crosses (docs/federation.md §8)."""
    return str(uuid.uuid5(MEMBER_REFS, f"{partnership_id}/{member_id}"))


def member_card(display_name: str, shared_fields: list[str], profile: dict[str, Any]) -> dict[str, Any]:
    """What a member lets partner communities see: their display name and the fields they consented to."""
    card: dict[str, Any] = {"display_name": display_name}
    for name in shared_fields:
        if name in ("skills", "vector", "values") and profile.get(name):
            card[name] = profile[name]
    return card


class FederationListing(Aggregate):
    """Whether a community is named in the deployment's public federation document (stream
    ``federation-listing-<community>``). Not listed until its owner says so: partners are proposed to a
    community id the owners exchanged, and the public document does not enumerate who is hosted here."""

    def __init__(self) -> None:
        self.listed = False

    def _on_FederationListingChanged(self, e: FederationListingChanged) -> None:
        self.listed = e.listed

    def set_listed(self, community_id: str, listed: bool, actor: str) -> list[DomainEvent]:
        if listed == self.listed:
            return []
        return [FederationListingChanged(community_id=community_id, listed=listed, actor=actor)]

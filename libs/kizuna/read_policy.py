"""One read policy: who may see each catalogued event, and which of its fields, on the event stream.

The REST routes of the services decide what a token may read; the gateway's event stream carries the
same facts as events, so it must not show more. Every rule below is derived from the REST read that
shows the same facts (named in ``Rule.rest``): a fact that REST shows to facilitators only is streamed
to facilitators only, a member's own commitments to that member (and facilitators), and so on.

Audiences (what ``Rule.audience`` and a field's audience may say), from the REST checks they mirror:

- ``member``      — any token of the community: ``who.require_community`` (a read-only ``dashboard`` token
                    included, whatever its member's role).
- ``reader``      — the gateway's ``require_reader``: owners and facilitators, and any ``dashboard`` token.
- ``facilitator`` — ``who.require_reader(cid, "facilitator")``: owners and facilitators, with a member or a
                    dashboard token issued for them.
- ``operator``    — the deployment's operator only.

The operator sees everything. Besides its audience, an event is shown to its *subjects*: the members
named by the fields in ``Rule.subjects`` (the member whose own commitment, feedback or goal it is). A
field may be withheld from part of an event's audience (``Rule.fields``); it is then removed from the
``data`` the viewer receives. Tokens of other scopes (``visitor``, ``partner``) see nothing, and an event
type with no rule here is shown to nobody but the operator (fail closed): a new event type must be given
a rule, and a test fails until it is.

Consent: a member's ``shared_fields`` choose what *partner communities* see of them; the community's own
REST reads (directory, job views) show members' cards to fellow members regardless, so no rule here
filters by consent inside the community. What crosses to partners is decided by the federation code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .auth import ROLE_RANK, Principal

Audience = Literal["member", "reader", "facilitator", "operator"]
READING_SCOPES = ("member", "dashboard")  # the token scopes that may read a community's events at all


@dataclass(frozen=True)
class Viewer:
    """Who is looking: the operator, or a member's token (its scope and the member's current role)."""

    is_operator: bool = False
    member_id: str | None = None
    role: str | None = None
    scope: str = "member"

    @classmethod
    def of(cls, who: Principal) -> Viewer:
        return cls(is_operator=who.is_operator, member_id=who.member_id, role=who.role, scope=who.scope)

    def within(self, audience: Audience) -> bool:
        if self.is_operator:
            return True
        if self.scope not in READING_SCOPES:
            return False
        rank = ROLE_RANK.get(self.role or "", 0)
        if audience == "member":
            return rank >= ROLE_RANK["member"]
        if audience == "reader":
            return self.scope == "dashboard" or rank >= ROLE_RANK["facilitator"]
        if audience == "facilitator":
            return rank >= ROLE_RANK["facilitator"]
        return False  # operator

    def is_named_by(self, data: Mapping[str, Any], fields: Iterable[str]) -> bool:
        """Whether one of ``fields`` of the event names this viewer (a member id, ``member:<id>``, or a list)."""
        if self.member_id is None or self.scope not in READING_SCOPES:
            return False
        mine = {self.member_id, f"member:{self.member_id}"}
        for name in fields:
            value = data.get(name)
            values = value if isinstance(value, list) else [value]
            if any(isinstance(v, str) and v in mine for v in values):
                return True
        return False


@dataclass(frozen=True)
class Shown:
    """Who sees a field: an audience, plus the members the event's ``subjects`` fields name."""

    audience: Audience
    subjects: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rule:
    audience: Audience
    rest: str  # the REST read(s) that show the same facts, and so decide this rule
    subjects: tuple[str, ...] = ()
    fields: Mapping[str, Shown] = field(default_factory=dict)  # fields withheld from part of the audience

    def admits(self, viewer: Viewer, data: Mapping[str, Any]) -> bool:
        return viewer.within(self.audience) or viewer.is_named_by(data, self.subjects)

    def shown_fields(self, viewer: Viewer, data: Mapping[str, Any]) -> dict[str, Any]:
        return {name: value for name, value in data.items()
                if (shown := self.fields.get(name)) is None
                or viewer.within(shown.audience) or viewer.is_named_by(data, shown.subjects)}


def _rule(audience: Audience, rest: str, subjects: tuple[str, ...] = (), **fields: Shown) -> Rule:
    return Rule(audience, rest, subjects, fields)


FACILITATORS = Shown("facilitator")
# Reasons written for a decision (a removal, a role change, a declined referral) are not shown by any
# member-readable REST view; they stay with those who run the community and the member concerned.
def _private_to(*subjects: str) -> Shown:
    return Shown("facilitator", subjects)


RULES: dict[str, Rule] = {
    # ---- members ----
    "CommunityFounded": _rule("member", "GET /communities/{cid}, GET …/members"),
    "CommunityCapChanged": _rule("member", "GET /communities/{cid} (member_cap)", reason=FACILITATORS),
    "MemberJoined": _rule("member", "GET …/members (directory: name, role, joined_via, vouched_by)"),
    "MemberWaitlisted": _rule("facilitator", "GET …/waitlist (require_reader facilitator)"),
    "MemberLeft": _rule("member", "GET …/members/{id} (status)", reason=_private_to("member_id")),
    "MemberRemoved": _rule("member", "GET …/members/{id} (status)", reason=_private_to("member_id")),
    "MemberRoleChanged": _rule("member", "GET …/members/{id} (role)", reason=_private_to("member_id")),
    "OwnershipTransferred": _rule("member", "GET …/members (roles)",
                                  reason=_private_to("from_member_id", "to_member_id")),
    "AdmissionPolicyChanged": _rule("member", "GET …/admission (policy, questions, limits)",
                                    changed_by=FACILITATORS, reason=FACILITATORS),
    "ApplicationSubmitted": _rule("facilitator", "GET …/applications (facilitator); …/applications/{id} (referrer)",
                                  subjects=("referred_by",)),
    "ApplicationApproved": _rule("facilitator", "GET …/applications (facilitator)"),
    "ApplicationDeclined": _rule("facilitator", "GET …/applications (facilitator)"),
    # The code's hash is in no REST view: an invitation's code is shown once, to its issuer.
    "InvitationIssued": _rule("facilitator", "GET …/invitations (one's own; facilitators all)",
                              subjects=("issued_by",), code_sha256=Shown("operator")),
    "InvitationAccepted": _rule("facilitator", "GET …/invitations (one's own; facilitators all)",
                                subjects=("issued_by",)),
    # An offer id is the front door's link to take the place: only those who run the waitlist see it.
    "PlaceOffered": _rule("facilitator", "GET …/waitlist (offer_id), GET …/offers (facilitator)",
                          claim_code_sha256=Shown("operator")),
    "PlaceOfferClaimCodeIssued": _rule("facilitator", "GET …/offers (facilitator); the code is shown once, "
                                       "to its issuer", claim_code_sha256=Shown("operator")),
    "PlaceOfferAccepted": _rule("facilitator", "GET …/offers (facilitator)"),
    "PlaceOfferDeclined": _rule("facilitator", "GET …/offers (facilitator)"),
    "PlaceOfferExpired": _rule("facilitator", "GET …/offers (facilitator)"),
    "SisterCommunityFounded": _rule("member", "GET …/sisters (members)", reason=FACILITATORS),
    "MemberProfileUpdated": _rule("member", "GET …/members/{id} (name, vector, skills, values)"),
    "SharingConsentChanged": _rule("member", "GET …/members/{id} (shared_fields)"),
    "MemberErased": _rule("member", "GET …/members/{id} (\"erased member\" where the name was)"),
    # ---- referrals: jobs, feedback, introductions ----
    "JobRequestPosted": _rule("member", "GET …/jobs"),
    "JobOffered": _rule("member", "GET …/jobs/{id} (offers with why_next_step)"),
    "JobReferred": _rule("member", "GET …/jobs/{id} (referred)", note=_private_to("member_id", "referred_by")),
    "JobOfferedByPartner": _rule("member", "GET …/jobs/{id} (partner_offers with card and note)"),
    "JobAssigned": _rule("member", "GET …/jobs/{id} (workers)"),
    "JobStarted": _rule("member", "GET …/jobs/{id} (state)"),
    "JobCompleted": _rule("member", "GET …/jobs/{id} (state)"),
    "JobCancelled": _rule("member", "GET …/jobs/{id} (state)"),
    # REST shows feedback only as aggregates (GET …/reputation/{id}); one person's feedback is seen by
    # those who run the community, its giver and its subject, who is not told who gave it.
    "FeedbackGiven": _rule("facilitator", "GET …/reputation/{id} (aggregates only)",
                           subjects=("giver_id", "subject_id"), giver_id=Shown("facilitator", ("giver_id",))),
    "ReferralMade": _rule("member", "GET …/referrals (every introduction, with its note)"),
    "ReferralAccepted": _rule("member", "GET …/referrals (status)"),
    "ReferralDeclined": _rule("member", "GET …/referrals (status)", reason=FACILITATORS),
    "ReferralOutcomeRecorded": _rule("member", "GET …/referrals (worked), GET …/trust-graph",
                                     note=_private_to("referrer_id", "recorded_by")),
    # ---- referrals: offerings (a member's commitments are theirs and their facilitators') ----
    "OfferingPublished": _rule("member", "GET …/offerings"),
    "TermsChangeProposed": _rule("member", "GET …/offerings/{id} (pending_terms_change)"),
    "TermsChangeConsented": _rule("member", "GET …/offerings/{id} (pending_terms_change.consented)"),
    "TermsChangeDeclined": _rule("member", "GET …/offerings/{id} (pending_terms_change.declined)",
                                 reason=_private_to("member_id")),
    "CommitmentReleased": _rule("facilitator", "GET …/offerings/commitments/{member} (self, facilitators)",
                                subjects=("member_id",)),
    "OfferingTermsChanged": _rule("member", "GET …/offerings/{id} (terms)", released=FACILITATORS),
    "SharesCommitted": _rule("member", "GET …/offerings/{id} (committed, available); "
                             "…/commitments/{member} (self, facilitators)",
                             member_id=_private_to("member_id"), shares=_private_to("member_id"),
                             member_shares=_private_to("member_id"), committed_at=_private_to("member_id")),
    "PartnerPledgeRecorded": _rule("facilitator", "GET …/offerings/{id}/producer-view (commitments)"),
    "PartnerPledgeRefused": _rule("facilitator", "GET …/offerings/{id}/producer-view (commitments)"),
    "CommitmentWithdrawn": _rule("facilitator", "GET …/offerings/commitments/{member} (self, facilitators)",
                                 subjects=("member_id",)),
    "OfferingConfirmed": _rule("member", "GET …/offerings/{id} (settlement)"),
    "OfferingLapsed": _rule("member", "GET …/offerings/{id} (settlement)"),
    "ProgressShared": _rule("member", "GET …/offerings/{id} (progress)"),
    "HelpShiftSignedUp": _rule("facilitator", "GET …/offerings/{id}/producer-view (help_coverage); "
                               "…/commitments/{member}", subjects=("member_id",)),
    "HelpShiftSignUpCancelled": _rule("facilitator", "GET …/offerings/{id}/producer-view (help_coverage); "
                                      "…/commitments/{member}", subjects=("member_id",)),
    "DeliveryRecorded": _rule("facilitator", "GET …/offerings/commitments/{member} (deliveries)",
                              subjects=("member_id",)),
    "LeadUserFeedbackGiven": _rule("facilitator", "GET …/offerings/{id}/producer-view (feedback)",
                                   subjects=("producer_id", "member_id")),
    # ---- sessions: a session's registrations and attendance are on its member-readable view ----
    "SessionScheduled": _rule("member", "GET …/sessions"),
    "SessionRescheduled": _rule("member", "GET …/sessions/{id}"),
    "SessionCancelled": _rule("member", "GET …/sessions/{id} (status)"),
    "MemberRegistered": _rule("member", "GET …/sessions/{id} (registered)"),
    "RegistrationWaitlisted": _rule("member", "GET …/sessions/{id} (waitlist)"),
    "WaitlistPromoted": _rule("member", "GET …/sessions/{id} (registered)"),
    "RegistrationCancelled": _rule("member", "GET …/sessions/{id} (late_cancellations)"),
    "AttendanceRecorded": _rule("member", "GET …/sessions/{id} (attendees)"),
    # The hash of a member's calendar secret is in no REST view; that a link was made is the member's own.
    "CalendarLinkIssued": _rule("operator", "no REST view (the member is shown the secret once)",
                                subjects=("member_id",), key_sha256=Shown("operator")),
    # Goals: their member, their facilitator, and facilitators. Follow-ups carry only the goal id, so the
    # member sees those they made themselves; the rest of their goal's story is over REST (GET …/goals).
    "GoalSet": _rule("facilitator", "GET …/goals/{id} (member, its facilitator, facilitators)",
                     subjects=("member_id", "facilitator_id", "set_by")),
    "GoalRevised": _rule("facilitator", "GET …/goals/{id}", subjects=("revised_by",)),
    "ProgressCheckedIn": _rule("facilitator", "GET …/goals/{id} (check_ins)", subjects=("checked_in_by",)),
    "GoalAchieved": _rule("facilitator", "GET …/goals/{id} (status)", subjects=("achieved_by",)),
    "GoalAbandoned": _rule("facilitator", "GET …/goals/{id} (status)", subjects=("abandoned_by",)),
    # ---- notifications: a member's own inbox; delivery and preferences are the deployment's audit ----
    "NotificationRaised": _rule("operator", "GET …/notifications (the member's own)", subjects=("member_id",)),
    "NotificationRead": _rule("operator", "GET …/notifications (read_at; the member's own)", subjects=("member_id",)),
    "NotificationEmailed": _rule("operator", "GET …/notifications (email: sent; the member's own)"),
    "NotificationEmailFailed": _rule("operator", "GET …/notifications (email: failed; the member's own)"),
    "NotificationEmailSkipped": _rule("operator", "GET …/notifications (email: skipped; the member's own)"),
    "NotificationEmailDeferred": _rule("operator", "GET …/notifications (email: quiet hours; the member's own)"),
    "NotificationHeldForDigest": _rule("operator", "GET …/notifications (email: digest; the member's own)"),
    "DigestEmailed": _rule("operator", "GET …/notifications (email: sent in digest; the member's own)"),
    "DigestEmailFailed": _rule("operator", "GET …/notifications (email: digest; the person only)"),
    "NotificationPreferencesChanged": _rule("operator", "GET …/notification-preferences (the person only)"),
    # Webhook endpoints are the owner's (GET …/webhooks, owner): no stream audience is the owner alone.
    "WebhookEndpointRegistered": _rule("operator", "GET …/webhooks (owner)"),
    "WebhookSecretRotated": _rule("operator", "POST …/webhooks/{id}/secret-rotation (owner)"),
    "WebhookEndpointDisabled": _rule("operator", "GET …/webhooks (status; owner)"),
    "WebhookEndpointEnabled": _rule("operator", "GET …/webhooks (status; owner)"),
    "WebhookEndpointRemoved": _rule("operator", "GET …/webhooks (owner)"),
    # ---- gateway: tokens (no REST read lists them; the owner issues and revokes them) ----
    "TokenIssued": _rule("facilitator", "POST /v1/tokens (owner); POST …/revocation (owner, holder)",
                         subjects=("member_id",)),
    "TokenRevoked": _rule("facilitator", "POST /v1/tokens/{id}/revocation (owner, holder)"),
    # ---- gateway: federation (partnerships are read with the gateway's require_reader) ----
    "PartnershipProposed": _rule("reader", "GET /v1/communities/{cid}/partnerships"),
    "PartnershipRequested": _rule("reader", "GET …/partnerships"),
    "PartnershipEstablished": _rule("reader", "GET …/partnerships"),
    "PartnershipAccepted": _rule("reader", "GET …/partnerships"),
    "PartnershipDeclined": _rule("reader", "GET …/partnerships"),
    "PartnershipSuspended": _rule("reader", "GET …/partnerships"),
    "PartnershipResumed": _rule("reader", "GET …/partnerships"),
    "PartnershipEnded": _rule("reader", "GET …/partnerships"),
    "FederationListingChanged": _rule("reader", "GET /v1/communities/{cid}/federation-listing"),
    "JobSharedWithPartner": _rule("reader", "GET …/partnerships (what is shared through each)"),
    "JobStatusSentToPartner": _rule("reader", "GET …/partnerships"),
    "PartnerJobReceived": _rule("member", "GET …/partner-jobs (members)"),
    "PartnerJobStatusReceived": _rule("member", "GET …/partner-jobs (state)"),
    "PartnerOfferSent": _rule("reader", "GET …/partner-jobs (my_offers: one's own)", subjects=("member_id",)),
    "PartnerOfferReceived": _rule("member", "GET …/jobs/{id} (partner_offers)"),
    "OfferingSharedWithPartner": _rule("reader", "GET …/partnerships"),
    "OfferingStatusSentToPartner": _rule("reader", "GET …/partnerships"),
    "PartnerOfferingReceived": _rule("member", "GET …/partner-offerings (members)"),
    "PartnerOfferingStatusReceived": _rule("member", "GET …/partner-offerings (status)"),
    "PartnerPledgeSent": _rule("reader", "GET …/partner-offerings (my_pledges: one's own)", subjects=("member_id",)),
    "PartnerPledgeReceived": _rule("facilitator", "GET …/offerings/{id}/producer-view (commitments)"),
    "PledgeResultSentToPartner": _rule("reader", "GET …/partnerships"),
    "PartnerPledgeResultReceived": _rule("reader", "GET …/partner-offerings (my_pledges status)"),
    "IntroductionSentToPartner": _rule("reader", "GET …/partnerships"),
    "PartnerIntroductionReceived": _rule("facilitator", "GET …/partner-introductions (facilitator)"),
    "IntroductionOutcomeSentToPartner": _rule("reader", "GET …/partnerships"),
    "PartnerIntroductionOutcomeReceived": _rule("facilitator", "GET …/partner-introductions (facilitator)"),
    "MemberErasureSentToPartner": _rule("reader", "GET /v1/federation/deliveries (operator: member.erased)"),
    "PartnerMemberErased": _rule("reader", "GET …/jobs/{id}, …/partner-introductions (\"erased member\" cards)"),
    # ---- identity: a person's own; no community sees who its members are elsewhere ----
    "AccountClaimCodeIssued": _rule("operator", "no REST view: the owner is given the code once"),
    "MemberAccountLinked": _rule("operator", "no REST view: the account is the person's, read through GET /v1/me"),
    "PersonRegistered": _rule("operator", "GET /v1/me (the person only)"),
    "EmailAddressVerified": _rule("operator", "GET /v1/me (the person only)"),
    "OpenIdIdentityLinked": _rule("operator", "GET /v1/me (the person only)"),
    "CommunityAccountOpened": _rule("operator", "GET /v1/me (the person only)"),
    "PasskeyRegistered": _rule("operator", "GET /v1/me (the person only)"),
    "PasskeyRemoved": _rule("operator", "GET /v1/me (the person only)"),
    "PersonSignedIn": _rule("operator", "GET /v1/me (sessions: the person only)"),
    "BrowserSessionEnded": _rule("operator", "GET /v1/me (sessions: the person only)"),
    "SignInRefused": _rule("operator", "no REST view (the deployment's audit)"),
    "InvitationEmailed": _rule("operator", "no REST view (the deployment's audit; the inviter sees their "
                                           "invitations in GET /v1/communities/{cid}/invitations)"),
    "OperatorRightsGranted": _rule("operator", "GET /v1/me (operator: the person only)"),
    "OperatorRightsWithdrawn": _rule("operator", "GET /v1/me (operator: the person only)"),
    "PersonErased": _rule("operator", "no REST view (ids only; the person is gone from GET /v1/me)"),
    "SessionTokensRevoked": _rule("operator", "no REST view (tokens of an ended sign-in are refused)"),
    # ---- gateway: a person's exports (ids only; the document itself is never an event) ----
    "ExportRequested": _rule("operator", "GET /v1/me/exports/{id} (the person only)"),
    "ExportCompleted": _rule("operator", "GET /v1/me/exports/{id} (the person only)"),
    "ExportDeleted": _rule("operator", "GET /v1/me/exports (the person only; gone after 7 days)"),
}

HIDDEN = Rule("operator", "no rule: an event type nobody has decided on is shown to no community token")


def rule_for(event_type: str) -> Rule:
    return RULES.get(event_type, HIDDEN)


def visible_data(event_type: str, data: Mapping[str, Any], viewer: Viewer) -> dict[str, Any] | None:
    """The event's data as ``viewer`` may see it (withheld fields removed), or None if they may not see it."""
    rule = rule_for(event_type)
    if not rule.admits(viewer, data):
        return None
    return rule.shown_fields(viewer, data)


def visible_event(event: Mapping[str, Any], viewer: Viewer) -> dict[str, Any] | None:
    """A CloudEvent as ``viewer`` may see it, or None. The envelope's ``actor`` names who acted, which is as
    telling as a withheld ``*_by`` field, so it goes with the first withheld field."""
    event_type = str(event.get("type", ""))
    data = event.get("data")
    if not isinstance(data, Mapping):
        data = {}
    shown = visible_data(event_type, data, viewer)
    if shown is None:
        return None
    envelope = dict(event)
    if len(shown) < len(data):
        envelope.pop("actor", None)
    envelope["data"] = shown
    return envelope


def may_see(event_type: str, viewer: Viewer, data: Mapping[str, Any] | None = None) -> bool:
    return visible_data(event_type, data or {}, viewer) is not None


__all__ = ["HIDDEN", "RULES", "Audience", "Rule", "Shown", "Viewer", "may_see", "rule_for", "visible_data",
           "visible_event"]

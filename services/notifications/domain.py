"""Notifications: what a person hears about, how, and whether they have read it.

A notification is raised once per person per cause (the event that caused it and the kind) — its stream is
named by both, so a redelivered or replayed cause finds it there and raises nothing. It is addressed to a
member of a community; who the member is as a person (their address, language and wishes) is looked up
only when it is sent, so a link made late still reaches them and a person who left is not written to.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, time, timedelta
from typing import Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from kizuna.domain import Aggregate, DomainEvent, StrictModel
from kizuna.errors import Invalid, NotFound
from kizuna.personal import Personal, member_data
from kizuna.read_policy import RULES

# Every kind of notification, with who hears it (docs/notifications.md). The member app's words for them are
# in messages.py; a person may turn each off (preferences), except none: every kind may be turned off.
KINDS: dict[str, str] = {
    "place-offered": "a place in a community is offered to me from its waitlist",
    "application-decided": "my application to a community was decided",
    "application-received": "someone applied to a community I run (owners and facilitators)",
    "job-offer": "someone offered to help with my job request, or referred someone to it",
    "job-assigned": "I was asked to do a job",
    "introduced": "someone introduced me to another member",
    "feedback-received": "someone gave me feedback after a job",
    "session-promoted": "I have a place in a session I was waiting for",
    "session-changed": "a session I registered for was moved or called off",
    "webhook-disabled": "a webhook of a community I own kept failing and was disabled (owners)",
    "session-reminder": "a session I have a place in starts within a day",
    "offer-reminder": "a place offered to me lapses within a day and I have not answered",
    "session-registered": "someone gave me a place in a session, or put me on its waitlist",
    "job-status": "a job I was asked to do (or offered on, if called off) was started, completed or called off",
    "introduction-outcome": "someone I introduced accepted or declined, or how it went was recorded",
    "goal-checkin-due": "a goal of mine has had no check-in for a while",
    "offering-deadline": "commitments to an offering I committed to (or produce) close within a day",
    "offering-decided": "an offering I committed to (or produce) went ahead or lapsed",
    "offering-coming": "a delivery day or a help shift of mine is tomorrow",
    "partner-job-match": "a partner community shared a job request that needs my skills (I ask for it)",
    "community-near-cap": "a community I run is at 90 % of its member cap (owners and facilitators)",
    "partnership-proposed": "a link with another community was proposed to, or by, a community I own (owners)",
}
Kind = Literal["place-offered", "application-decided", "application-received", "job-offer", "job-assigned",
               "introduced", "feedback-received", "session-promoted", "session-changed", "webhook-disabled",
               "session-reminder", "offer-reminder", "session-registered", "job-status", "introduction-outcome",
               "goal-checkin-due", "offering-deadline", "offering-decided", "offering-coming", "partner-job-match",
               "community-near-cap", "partnership-proposed"]
Delivery = Literal["immediately", "digest", "off"]
Language = Literal["ja", "en"]
# How a kind is heard about until the person says otherwise (kinds not named here: immediately). A kind that
# writes to many people about something they did not ask for starts off (opt-in).
DEFAULT_DELIVERY: dict[str, Delivery] = {
    # Every partner's job request matching someone's skills would be a stream of mail nobody asked for: only
    # those who turn it on hear of it — and only they get it in their inbox too (causes.Cause.opt_in).
    "partner-job-match": "off",
}


def notification_stream(community_id: str, member_id: str, kind: str, cause_id: str) -> str:
    """One stream per person per cause: the same cause twice finds the stream and raises nothing more."""
    digest = hashlib.sha256(f"{community_id}|{member_id}|{kind}|{cause_id}".encode()).hexdigest()[:32]
    return f"notification-{digest}"


def preferences_stream(person_id: str) -> str:
    return f"notification-preferences-{person_id}"


class QuietHours(StrictModel):
    """Hours of the person's day when no email is sent: what falls due then waits until they end. ``start``
    after ``end`` spans midnight (22:00 to 07:00)."""

    model_config = {"json_schema_extra": {"examples": [{"start": "22:00", "end": "07:00"}]}}
    start: time
    end: time

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("start and end are the same time: no quiet hours would be left, or all of them")
        return self

    def holds(self, local: time) -> bool:
        local = local.replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def ends_after(self, local: datetime) -> datetime:
        """The first moment after ``local`` (an aware local time inside the quiet hours) when they are over."""
        end = datetime.combine(local.date(), self.end, tzinfo=local.tzinfo)
        return end if end > local else end + timedelta(days=1)


# ---- events ----

class NotificationRaised(DomainEvent):
    """Something needs a member: it is in their inbox, and goes out by email unless they said otherwise.

    Whose data is in it decides where it is kept: ``facts`` (titles, times, the link; the recipient's own goal
    words) are the recipient's, sealed with their key; what the message quotes of another member (a note or a
    reason they wrote, the name they applied with) is in ``quoted``, sealed with the key of ``quoted_from``;
    and other members are named only by id (``names``: fact → member id), their names put in from the roster
    when the message is composed. Erasing any of them takes
    their part out of every notification (docs/data-rights.md)."""

    personal: ClassVar[Personal] = member_data("member_id", maps=["facts", "quoted"],
                                                  field_subjects={"quoted": "quoted_from"})
    notification_id: str
    community_id: str
    member_id: str
    kind: Kind
    cause_id: str = Field(description="The id of the event that caused it")
    facts: dict[str, Any] = Field(description="What the message says: titles, times, the link's path")
    names: dict[str, str] = Field(default_factory=dict, description="Fact → the member id whose name it is (put "
                                                                    "in when composed)")
    quoted: dict[str, str] = Field(default_factory=dict, description="Fact → what the message quotes of another "
                                                                     "member (a note, a reason)")
    quoted_from: str | None = Field(None, description="The member ``quoted`` is from")
    raised_at: datetime


class NotificationRead(DomainEvent):
    notification_id: str
    community_id: str
    member_id: str
    read_at: datetime


class NotificationEmailed(DomainEvent):
    """The SMTP server accepted the message for the person (their address is not recorded here)."""

    notification_id: str
    community_id: str
    member_id: str
    person_id: str
    attempt: int
    message_id: str


class NotificationEmailFailed(DomainEvent):
    """The SMTP server could not take it; it is tried again at ``retry_at`` (or given up on, ``retry_at`` null)."""

    notification_id: str
    community_id: str
    member_id: str
    attempt: int
    error: str
    retry_at: datetime | None


class NotificationEmailSkipped(DomainEvent):
    """No email for this one: the person turned the kind off, has no verified address or no account here, is
    no longer in the community, or its cause is old news (a service added to a running deployment reads the
    bus from its start: nobody wants a year of email at once). It stays in their inbox."""

    notification_id: str
    community_id: str
    member_id: str
    reason: Literal["turned-off", "no-address", "no-account", "not-a-member", "stale"]


class NotificationEmailDeferred(DomainEvent):
    """The email waits until ``until``: it fell due in the person's quiet hours (until they end), or the member's
    account link or verified address has not reached this service over the bus yet (a moment later)."""

    notification_id: str
    community_id: str
    member_id: str
    until: datetime
    reason: Literal["quiet-hours", "not-known-yet"] = "quiet-hours"


class NotificationHeldForDigest(DomainEvent):
    """The person hears about this kind in their daily digest: no email of its own; the next digest lists it."""

    notification_id: str
    community_id: str
    member_id: str
    person_id: str


class DigestEmailed(DomainEvent):
    """One person's daily digest (``day`` in their time zone) went out, listing these notifications."""

    person_id: str
    day: str
    notification_ids: list[str]
    left_out: list[str] = Field(default_factory=list, description="No longer wanted when it went: the kind "
                                                                  "turned off, the member left, no address")
    message_id: str


class DigestEmailFailed(DomainEvent):
    """The SMTP server could not take a digest; it is tried again at ``retry_at``."""

    person_id: str
    day: str
    attempt: int
    error: str
    retry_at: datetime


class NotificationPreferencesChanged(DomainEvent):
    """How a person wants to hear about each kind, in which language and time zone (for every community), when
    their email stays quiet and when their daily digest goes out (fields added later read as their defaults)."""

    person_id: str
    kinds: dict[str, Delivery]
    language: Language
    time_zone: str
    quiet_hours: QuietHours | None = None
    digest_at: time = time(8, 0)


# ---- commands ----

class ChangePreferences(StrictModel):
    model_config = {"json_schema_extra": {"examples": [{
        "kinds": {"job-offer": "immediately", "feedback-received": "digest", "session-reminder": "off"},
        "language": "ja", "time_zone": "Asia/Tokyo", "quiet_hours": {"start": "22:00", "end": "07:00"},
        "digest_at": "08:00"}]}}
    kinds: dict[str, Delivery] = Field(default_factory=dict, description="Kind → immediately, digest or off; kinds "
                                                                         "left out keep what they were")
    language: Language | None = None
    time_zone: str | None = Field(None, max_length=64)
    quiet_hours: QuietHours | None = Field(None, description="Hours without email, in the person's time zone; "
                                                             "null turns them off, left out keeps them")
    digest_at: time | None = Field(None, description="When the daily digest goes out, in the person's time zone")

    @field_validator("kinds")
    @classmethod
    def _known(cls, kinds: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(kinds) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown kinds: {', '.join(unknown)}; known: {', '.join(KINDS)}")
        return kinds

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, zone: str | None) -> str | None:
        if zone is not None:
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError) as error:
                raise ValueError("not an IANA time zone, e.g. Asia/Tokyo") from error
        return zone


# ---- aggregates ----

class Notification(Aggregate):
    def __init__(self) -> None:
        self.raised: NotificationRaised | None = None
        self.read = False
        self.emailed = False
        self.attempts = 0
        self.done = False  # emailed, skipped or given up

    def _on_NotificationRaised(self, e: NotificationRaised) -> None:
        self.raised = e

    def _on_NotificationRead(self, e: NotificationRead) -> None:
        self.read = True

    def _on_NotificationEmailed(self, e: NotificationEmailed) -> None:
        self.emailed = self.done = True

    def _on_NotificationEmailFailed(self, e: NotificationEmailFailed) -> None:
        self.attempts = e.attempt
        self.done = e.retry_at is None

    def _on_NotificationEmailSkipped(self, e: NotificationEmailSkipped) -> None:
        self.done = True

    def _on_NotificationEmailDeferred(self, e: NotificationEmailDeferred) -> None:
        pass  # still to send, later

    def _on_NotificationHeldForDigest(self, e: NotificationHeldForDigest) -> None:
        self.done = True  # no email of its own: the digest's stream records its sending

    def raise_once(self, event: NotificationRaised) -> list[DomainEvent]:
        return [] if self.raised is not None else [event]

    def mark_read(self, member_id: str, now: datetime) -> list[DomainEvent]:
        if self.raised is None or self.raised.member_id != member_id:
            raise NotFound("notification not found")
        if self.read:
            return []
        return [NotificationRead(notification_id=self.raised.notification_id, community_id=self.raised.community_id,
                                 member_id=member_id, read_at=now)]


class Preferences(Aggregate):
    def __init__(self) -> None:
        self.kinds: dict[str, Delivery] = {}
        self.language: Language = "ja"
        self.time_zone = "Asia/Tokyo"
        self.quiet_hours: QuietHours | None = None
        self.digest_at = time(8, 0)

    def _on_NotificationPreferencesChanged(self, e: NotificationPreferencesChanged) -> None:
        self.kinds, self.language, self.time_zone = dict(e.kinds), e.language, e.time_zone
        self.quiet_hours, self.digest_at = e.quiet_hours, e.digest_at

    def change(self, person_id: str, cmd: ChangePreferences) -> list[DomainEvent]:
        kinds = {**self.kinds, **cmd.kinds}
        language, zone = cmd.language or self.language, cmd.time_zone or self.time_zone
        quiet = cmd.quiet_hours if "quiet_hours" in cmd.model_fields_set else self.quiet_hours
        digest_at = cmd.digest_at or self.digest_at
        if quiet is not None and quiet.holds(digest_at):
            raise Invalid("digest_at", "{digest_at} is within the quiet hours ({quiet_from} to {quiet_until}): "
                                       "choose a time outside them, or change them", digest_at=f"{digest_at:%H:%M}",
                          quiet_from=f"{quiet.start:%H:%M}", quiet_until=f"{quiet.end:%H:%M}")
        if (kinds, language, zone, quiet, digest_at) == (self.kinds, self.language, self.time_zone,
                                                          self.quiet_hours, self.digest_at):
            return []
        return [NotificationPreferencesChanged(person_id=person_id, kinds=kinds, language=language, time_zone=zone,
                                               quiet_hours=quiet, digest_at=digest_at)]

    def delivery(self, kind: str) -> Delivery:
        return self.kinds.get(kind, DEFAULT_DELIVERY.get(kind, "immediately"))

    def wants(self, kind: str) -> bool:
        return self.delivery(kind) != "off"

    def quiet_until(self, now: datetime) -> datetime | None:
        """When an email due ``now`` may go: None when now is not within the person's quiet hours."""
        local = now.astimezone(ZoneInfo(self.time_zone))
        if self.quiet_hours is None or not self.quiet_hours.holds(local.time()):
            return None
        return self.quiet_hours.ends_after(local)


def digest_stream(person_id: str, day: str) -> str:
    """One digest per person per day: a second look on the same day finds it sent."""
    return f"notification-digest-{person_id}-{day}"


class Digest(Aggregate):
    def __init__(self) -> None:
        self.sent = False

    def _on_DigestEmailed(self, e: DigestEmailed) -> None:
        self.sent = True

    def _on_DigestEmailFailed(self, e: DigestEmailFailed) -> None:
        pass


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise Invalid("kind", f"unknown kind {kind!r}")


# ---- webhooks: systems that want to hear about a community's events ----

def webhook_stream(endpoint_id: str) -> str:
    return f"webhook-{endpoint_id}"


# The community of the operator's own endpoints: they hear every community's events (and those of none, such
# as identity's), as the operator sees them. Their events are stored without a community (the ecosystem's).
EVERY_COMMUNITY = "*"


def stored_community(community_id: str) -> str | None:
    return None if community_id == EVERY_COMMUNITY else community_id


class WebhookEndpointRegistered(DomainEvent):
    """An owner (or the operator) asked for a community's events of these types at this URL. The endpoint
    sees what the read policy shows its registrant's role on the event stream (``viewer_role``); its signing
    secret is never recorded in an event."""

    endpoint_id: str
    community_id: str
    url: str
    event_types: list[str]
    description: str
    viewer_role: Literal["owner", "operator"]
    registered_by: str


class WebhookSecretRotated(DomainEvent):
    """A new signing secret; the previous one still signs until ``previous_valid_until``."""

    endpoint_id: str
    community_id: str
    previous_valid_until: datetime
    rotated_by: str


class WebhookEndpointDisabled(DomainEvent):
    """Deliveries stop: it failed for too long (``reason``), or its owner paused it."""

    endpoint_id: str
    community_id: str
    reason: str


class WebhookEndpointEnabled(DomainEvent):
    endpoint_id: str
    community_id: str
    enabled_by: str


class WebhookEndpointRemoved(DomainEvent):
    endpoint_id: str
    community_id: str
    removed_by: str


class RegisterWebhook(StrictModel):
    model_config = {"json_schema_extra": {"examples": [{
        "url": "https://dashboard.example.org/kizuna", "event_types": ["MemberJoined", "JobRequestPosted"],
        "description": "our wall screen"}]}}
    url: str = Field(min_length=8, max_length=2000, description="https:// (http:// only where the operator allows "
                                                                  "private addresses)")
    event_types: list[str] = Field(min_length=1, max_length=200, description="Event types, or [\"*\"] for all "
                                                                              "the registrant may see")
    description: str = Field("", max_length=500)

    @field_validator("event_types")
    @classmethod
    def _catalogued(cls, types: list[str]) -> list[str]:
        unknown = sorted(t for t in set(types) if t != "*" and t not in RULES)
        if unknown:
            raise ValueError(f"not event types of the catalogue (docs/asyncapi.yaml): {', '.join(unknown)}")
        return sorted(set(types))


class WebhookEndpoint(Aggregate):
    def __init__(self) -> None:
        self.registered: WebhookEndpointRegistered | None = None
        self.status: Literal["active", "disabled", "removed"] = "active"

    def _on_WebhookEndpointRegistered(self, e: WebhookEndpointRegistered) -> None:
        self.registered = e

    def _on_WebhookEndpointDisabled(self, e: WebhookEndpointDisabled) -> None:
        self.status = "disabled"

    def _on_WebhookEndpointEnabled(self, e: WebhookEndpointEnabled) -> None:
        self.status = "active"

    def _on_WebhookEndpointRemoved(self, e: WebhookEndpointRemoved) -> None:
        self.status = "removed"

    def existing(self, community_id: str) -> WebhookEndpointRegistered:
        if self.registered is None or self.registered.community_id != community_id or self.status == "removed":
            raise NotFound("webhook endpoint not found")
        return self.registered

    def disable(self, community_id: str, reason: str) -> list[DomainEvent]:
        e = self.existing(community_id)
        return [] if self.status == "disabled" else [
            WebhookEndpointDisabled(endpoint_id=e.endpoint_id, community_id=community_id, reason=reason)]

    def enable(self, community_id: str, by: str) -> list[DomainEvent]:
        e = self.existing(community_id)
        return [] if self.status == "active" else [
            WebhookEndpointEnabled(endpoint_id=e.endpoint_id, community_id=community_id, enabled_by=by)]

    def remove(self, community_id: str, by: str) -> list[DomainEvent]:
        e = self.existing(community_id)
        return [WebhookEndpointRemoved(endpoint_id=e.endpoint_id, community_id=community_id, removed_by=by)]

"""Identity: people, the ways they sign in, and the per-community accounts that tie them to members. Pure.

A **person** is one human on this deployment (stream ``person-{id}``): verified email addresses and
linked OpenID Connect identities say who they are. A person is a member of a community through a
**community account**: a random reference, one per person and community, that the members service
records on the member (``MemberAccountLinked``). Communities only ever see that reference, which differs
from community to community, so two communities cannot tell that their members are the same person —
only the person (and this service) can. Identity events carry no community in their metadata, so no
community token ever receives them on the event stream.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import ClassVar, Literal
from urllib.parse import urlsplit

from kizuna.domain import Aggregate, DomainEvent
from kizuna.errors import Conflict, Invalid, NotFound
from kizuna.personal import Erases, Personal, person_data

SignInMethod = Literal["email", "oidc", "passkey"]
EMAIL_PATTERN = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{1,63}$")
DEFAULT_NEXT = "/me"
MAX_PASSKEYS = 20


class PersonRegistered(DomainEvent):
    """Someone signed in for the first time."""

    person_id: str
    registered_with: SignInMethod


class EmailAddressVerified(DomainEvent):
    """The person proved they read this address (they followed a link sent to it, or a provider vouched)."""

    personal: ClassVar[Personal] = person_data("person_id", texts=["email"])
    person_id: str
    email: str
    verified_by: SignInMethod


class OpenIdIdentityLinked(DomainEvent):
    """An OpenID Provider's account (issuer + subject) signs this person in from now on."""

    # The subject names the person at the provider (the issuer is the deployment's configuration, not theirs).
    personal: ClassVar[Personal] = person_data("person_id", texts=["subject"])
    person_id: str
    issuer: str
    subject: str


class CommunityAccountOpened(DomainEvent):
    """The person's own reference in one community: what that community records on their member."""

    person_id: str
    community_id: str
    account: str


class PasskeyRegistered(DomainEvent):
    """The person added a passkey (a WebAuthn credential): it signs them in from now on."""

    # Its name is the person's words ("Hana's iPhone"); the credential id and public key identify a key, not them.
    personal: ClassVar[Personal] = person_data("person_id", texts=["name"])
    person_id: str
    credential_id: str  # base64url
    public_key: str  # base64url COSE key
    sign_count: int
    transports: list[str]
    name: str


class PasskeyRemoved(DomainEvent):
    person_id: str
    credential_id: str


class OperatorRightsGranted(DomainEvent):
    """The person may act as the deployment's operator once signed in (granted with the bootstrap command)."""

    person_id: str
    granted_by: str


class OperatorRightsWithdrawn(DomainEvent):
    person_id: str
    withdrawn_by: str


class PersonSignedIn(DomainEvent):
    """Audit: a browser session began (its public id, never its secret)."""

    person_id: str
    method: SignInMethod
    session_id: str


class BrowserSessionEnded(DomainEvent):
    """Audit: a session was signed out or revoked from the person's list."""

    person_id: str
    session_id: str
    reason: str


class InvitationEmailed(DomainEvent):
    """Audit: a member sent an invitation of their community by email (which invitation, never the code or
    the address: the person invited is nobody's business until they accept)."""

    person_id: str
    community_id: str
    invitation_id: str


class SignInRefused(DomainEvent):
    """Audit: an attempt to sign in failed (a spent or expired link, a provider's refusal, a passkey that did
    not verify). Recorded per day; it names the method and the reason, never a link, code or address."""

    method: SignInMethod
    reason: str


class PersonErased(DomainEvent):
    """The person's data was erased, at their request or by the operator on their behalf: their key is gone, so
    their addresses, provider subjects and passkey names read as empty everywhere, and every service forgets
    what it kept under the person (docs/data-rights.md). Ids only. Their memberships were erased before it."""

    erases: ClassVar[Erases] = Erases("person", "person_id")
    person_id: str
    erased_by: str  # "operator", or "person" (themselves, signed in)


def refusals_stream(day: str) -> str:
    return f"sign-in-refusals-{day}"


class Person(Aggregate):
    def __init__(self) -> None:
        self.person_id = ""
        self.emails: list[str] = []
        self.identities: list[tuple[str, str]] = []
        self.accounts: dict[str, str] = {}  # community id → account
        self.passkeys: set[str] = set()
        self.operator = False
        self.operator_granted_by = ""
        self.erased = False

    def _on_PersonRegistered(self, e: PersonRegistered) -> None:
        self.person_id = e.person_id

    def _on_EmailAddressVerified(self, e: EmailAddressVerified) -> None:
        self.emails.append(e.email)

    def _on_OpenIdIdentityLinked(self, e: OpenIdIdentityLinked) -> None:
        self.identities.append((e.issuer, e.subject))

    def _on_CommunityAccountOpened(self, e: CommunityAccountOpened) -> None:
        self.accounts[e.community_id] = e.account

    def _on_PasskeyRegistered(self, e: PasskeyRegistered) -> None:
        self.passkeys.add(e.credential_id)

    def _on_PasskeyRemoved(self, e: PasskeyRemoved) -> None:
        self.passkeys.discard(e.credential_id)

    def _on_OperatorRightsGranted(self, e: OperatorRightsGranted) -> None:
        self.operator, self.operator_granted_by = True, e.granted_by

    def _on_OperatorRightsWithdrawn(self, _: OperatorRightsWithdrawn) -> None:
        self.operator = False

    def _on_PersonErased(self, _: PersonErased) -> None:
        self.erased, self.operator = True, False
        self.emails, self.identities, self.passkeys, self.accounts = [], [], set(), {}

    def erase(self, by: str) -> list[DomainEvent]:
        """Erases the person (once; a repeat records nothing). Someone identity never knew is not found."""
        if not self.version:
            raise NotFound("person not found")
        return [] if self.erased else [PersonErased(person_id=self.person_id, erased_by=by)]

    def grant_operator(self, by: str) -> list[DomainEvent]:
        return [] if self.operator else [OperatorRightsGranted(person_id=self.person_id, granted_by=by)]

    def withdraw_operator(self, by: str) -> list[DomainEvent]:
        return [OperatorRightsWithdrawn(person_id=self.person_id, withdrawn_by=by)] if self.operator else []

    def sign_in(self, method: SignInMethod, session_id: str) -> list[DomainEvent]:
        return [PersonSignedIn(person_id=self.person_id, method=method, session_id=session_id)]

    def end_session(self, session_id: str, reason: str) -> list[DomainEvent]:
        return [BrowserSessionEnded(person_id=self.person_id, session_id=session_id, reason=reason)]

    def email_invitation(self, community_id: str, invitation_id: str) -> list[DomainEvent]:
        return [InvitationEmailed(person_id=self.person_id, community_id=community_id, invitation_id=invitation_id)]

    def follow_operator_claim(self, provider: str, holds_claim: bool) -> list[DomainEvent]:
        """Rights from a provider's claim last while the claim does: granted when the person signs in with it,
        withdrawn when they sign in there without it — unless the rights came from the command."""
        source = f"oidc:{provider}"
        if holds_claim:
            return self.grant_operator(source)
        return self.withdraw_operator(source) if self.operator_granted_by == source else []

    # -- decisions --

    def register_passkey(self, credential_id: str, public_key: str, sign_count: int, transports: list[str],
                         name: str) -> list[DomainEvent]:
        if credential_id in self.passkeys:
            raise Conflict("this passkey is already registered", slug="passkey-registered")
        if len(self.passkeys) >= MAX_PASSKEYS:
            raise Conflict("at most {limit} passkeys; remove one first", slug="too-many-passkeys", limit=MAX_PASSKEYS)
        return [PasskeyRegistered(person_id=self.person_id, credential_id=credential_id, public_key=public_key,
                                  sign_count=sign_count, transports=transports, name=name)]

    def remove_passkey(self, credential_id: str) -> list[DomainEvent]:
        if credential_id not in self.passkeys:
            raise NotFound("passkey not found")
        return [PasskeyRemoved(person_id=self.person_id, credential_id=credential_id)]

    def register(self, person_id: str, method: SignInMethod) -> list[DomainEvent]:
        if self.version:
            raise Conflict("this person is already registered")
        return [PersonRegistered(person_id=person_id, registered_with=method)]

    def verify_email(self, email: str, method: SignInMethod) -> list[DomainEvent]:
        if email in self.emails:
            return []
        return [EmailAddressVerified(person_id=self.person_id, email=email, verified_by=method)]

    def link_identity(self, issuer: str, subject: str) -> list[DomainEvent]:
        if (issuer, subject) in self.identities:
            return []
        return [OpenIdIdentityLinked(person_id=self.person_id, issuer=issuer, subject=subject)]

    def open_account(self, community_id: str, account: str) -> list[DomainEvent]:
        if community_id in self.accounts:
            return []
        return [CommunityAccountOpened(person_id=self.person_id, community_id=community_id, account=account)]


def normalise_email(raw: str) -> str:
    """The address as one account knows it: trimmed, the domain lower-cased (the local part is the mail
    server's to interpret, but no provider people use in practice treats case as meaningful, so the whole
    address is lower-cased: two spellings of one inbox must not become two people)."""
    email = raw.strip().lower()
    if not EMAIL_PATTERN.fullmatch(email):
        raise Invalid("email", "not an email address")
    return email


def new_account_reference() -> str:
    return f"acct-{secrets.token_urlsafe(18)}"


def safe_next(raw: str | None) -> str:
    """Where to go after signing in: a path on this site only. Anything else (another origin, a
    scheme-relative ``//host``, a backslash trick, a control character) becomes the account page, so
    a crafted link cannot send a freshly signed-in person elsewhere (an open redirect)."""
    if not raw:
        return DEFAULT_NEXT
    if not raw.startswith("/") or raw.startswith(("//", "/\\")) or any(c in raw for c in "\\\r\n\t") \
            or any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw) or len(raw) > 512:
        return DEFAULT_NEXT
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc:
        return DEFAULT_NEXT
    return raw


@dataclass(frozen=True)
class SessionTimeouts:
    idle_seconds: float
    absolute_seconds: float


@dataclass
class BrowserSession:
    """A signed-in browser, as the server keeps it (the browser holds only the secret that names it)."""

    session_id: str
    person_id: str
    created_at: float
    last_seen_at: float
    ended_at: float | None = None
    user_agent: str = ""
    method: SignInMethod = "email"
    extra: dict[str, str] = field(default_factory=dict)

    def ends_at(self, timeouts: SessionTimeouts) -> float:
        return min(self.last_seen_at + timeouts.idle_seconds, self.created_at + timeouts.absolute_seconds)

    def alive(self, now: float, timeouts: SessionTimeouts) -> bool:
        return self.ended_at is None and now < self.ends_at(timeouts)

"""Gateway domain: community tokens and their revocation, and where each public path is served. Pure."""

from __future__ import annotations

from typing import Literal

from kizuna.domain import Aggregate, DomainEvent
from kizuna.errors import Conflict, Forbidden

Scope = Literal["member", "dashboard"]

# First path segment after /v1/communities/{cid}/ → the internal service that owns it.
ROUTES: dict[str, str] = {
    **dict.fromkeys(("members", "waitlist", "cap", "ownership", "applications", "invitations", "offers",
                     "sisters", "admission", "ecosystem", "account-claims"), "members"),
    **dict.fromkeys(("referrals", "jobs", "feedback", "reputation", "trust-graph", "offerings", "partner-jobs",
                     "partner-offerings", "partner-introductions"),
                    "referrals"),
    **dict.fromkeys(("sessions", "goals", "ties", "calendar"), "sessions"),
    **dict.fromkeys(("notifications", "notification-preferences", "webhooks"), "notifications"),
}


def service_for(path: str) -> str | None:
    """The service for a path below /v1 (``communities/…``, or the operator's ``webhooks…``), or None when no
    service serves it."""
    parts = [part for part in path.split("/") if part]
    if parts and parts[0] == "webhooks":  # the operator's endpoints, for every community
        return "notifications"
    if not parts or parts[0] != "communities":
        return None
    if len(parts) <= 2:
        return "members"
    return ROUTES.get(parts[2])


class TokenIssued(DomainEvent):
    """A community token was issued; the token itself is never stored or published."""

    token_id: str
    community_id: str
    member_id: str
    role: str
    scope: Scope
    expires_at: str
    issued_by: str


class TokenRevoked(DomainEvent):
    token_id: str
    community_id: str
    revoked_by: str
    reason: str


class SessionTokensRevoked(DomainEvent):
    """A browser session ended (signed out, or revoked from the person's list): every community token it was
    exchanged for is refused from now on. Carries no community, so no community's stream shows it."""

    session_id: str
    reason: str


def session_revocation_id(session_id: str) -> str:
    """The entry in the revoked-tokens registry that refuses every token naming this session."""
    return f"session:{session_id}"


class IssuedToken(Aggregate):
    def __init__(self) -> None:
        self.community_id: str | None = None
        self.member_id: str | None = None
        self.revoked = False

    def _on_TokenIssued(self, event: TokenIssued) -> None:
        self.community_id, self.member_id = event.community_id, event.member_id

    def _on_TokenRevoked(self, event: TokenRevoked) -> None:
        self.revoked = True


def revoke(token: IssuedToken, token_id: str, *, actor: str, actor_community: str | None, is_operator: bool,
           actor_is_owner: bool, actor_member: str | None, reason: str) -> list[DomainEvent]:
    if token.revoked:
        raise Conflict("the token is already revoked", slug="already-revoked")
    allowed = is_operator or (actor_community == token.community_id and (actor_is_owner or
                                                                           actor_member == token.member_id))
    if not allowed:
        raise Forbidden("only the operator, the community's owner or the holder may revoke a token")
    if token.community_id is None:  # an invariant, kept under python -O too
        raise RuntimeError("token.community_id is missing: an invariant of this code was broken")
    return [TokenRevoked(token_id=token_id, community_id=token.community_id, revoked_by=actor, reason=reason)]

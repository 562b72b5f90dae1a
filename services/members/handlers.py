"""Members commands: load the community (or profile), decide, append."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from kizuna.auth import Principal
from kizuna.domain import DomainEvent
from kizuna.errors import Conflict, Forbidden, NotFound, Problem
from kizuna.eventstore import NO_STREAM, EventStore, RecordedEvent
from kizuna.handling import CommandContext, execute, load_existing

from .domain import (
    AcceptInvitation,
    AcceptOffer,
    ChangeAdmission,
    ChangeCap,
    ChangeConsent,
    ChangeRole,
    ClaimAccount,
    ClaimCodes,
    Community,
    DecideApplication,
    DeclineOffer,
    FoundCommunity,
    FoundSisterCommunity,
    IssueAccountClaim,
    IssueInvitation,
    JoinCommunity,
    LeaveCommunity,
    Profile,
    RemoveMember,
    Role,
    SisterCommunityFounded,
    SubmitApplication,
    TransferOwnership,
    UpdateProfile,
    code_hash,
)


def now() -> datetime:
    return datetime.now(UTC)


def _admitted(recorded: list[RecordedEvent]) -> str | None:
    """"joined" or "waitlisted" from what a command recorded, or None when it admitted nobody."""
    kinds = {event.type for event in recorded}
    return "joined" if "MemberJoined" in kinds else "waitlisted" if "MemberWaitlisted" in kinds else None


def community_stream(community_id: str) -> str:
    return f"community-{community_id}"


def profile_stream(member_id: str) -> str:
    return f"profile-{member_id}"


async def found(store: EventStore, cmd: FoundCommunity, ctx: CommandContext, default_cap: int) -> tuple[str, str]:
    community_id, owner_id = ctx.new_id("community"), ctx.new_id("owner")
    await execute(store, community_stream(community_id), Community,
                  lambda c: c.found(community_id, owner_id, cmd, default_cap), ctx, community_id=community_id)
    return community_id, owner_id


async def community(store: EventStore, community_id: str) -> Community:
    return await load_existing(store, community_stream(community_id), Community, "community")


async def change_cap(store: EventStore, community_id: str, cmd: ChangeCap, ctx: CommandContext) -> Community:
    await community(store, community_id)
    state, _ = await execute(store, community_stream(community_id), Community,
                             lambda c: c.change_cap(cmd, ctx.actor, now(), ClaimCodes()), ctx,
                             community_id=community_id)
    return state


async def join(store: EventStore, community_id: str, cmd: JoinCommunity, who: Principal,
               ctx: CommandContext) -> tuple[str, str]:
    """Returns (member id, "joined" | "waitlisted")."""
    await community(store, community_id)
    member_id = ctx.new_id("member")
    if who.scope == "visitor":  # someone with the join link: nobody vouches, and only an open community admits
        cmd = cmd.model_copy(update={"joined_via": "open", "vouched_by": None})
    vouched_by = cmd.vouched_by if who.is_operator or who.scope == "visitor" else who.member_id

    def decide(c: Community) -> list[DomainEvent]:
        actor_role = None if who.is_operator else c.roles.get(who.member_id or "", "member")
        return c.join(member_id, cmd, vouched_by, actor_role)

    _, recorded = await execute(store, community_stream(community_id), Community,
                                linking_account(who, member_id, decide), ctx, community_id=community_id)
    return member_id, _admitted(recorded) or "joined"


def linking_account(who: Principal, member_id: str,
                    decide: Callable[[Community], list[DomainEvent]]) -> Callable[[Community], list[DomainEvent]]:
    """A signed-in visitor (the gateway put their account for this community in the token) is linked to
    the member or applicant the command creates, in the same append: the person finds the membership
    again on their account, and cannot come in a second time."""
    account = who.account if who.scope == "visitor" else None
    if account is None:
        return decide

    def decide_and_link(c: Community) -> list[DomainEvent]:
        link = c.link_account(member_id, account)
        return [*decide(c), *link]

    return decide_and_link


async def leave(store: EventStore, community_id: str, member_id: str, cmd: LeaveCommunity,
                ctx: CommandContext) -> None:
    await community(store, community_id)
    await execute(store, community_stream(community_id), Community,
                  lambda c: c.leave(member_id, cmd, now(), ClaimCodes()), ctx, community_id=community_id)


async def erase(store: EventStore, community_id: str, member_id: str, ctx: CommandContext) -> None:
    """Erases a former member's personal data from this community: decided first (who may, and whom), then
    their key is deleted — from that moment nothing of theirs opens anywhere — and ``MemberErased`` recorded so
    that every service scrubs its copies. A retry after a failure in between finds the key gone and records
    the event; an erasure already recorded is not recorded twice."""
    if not (await community(store, community_id)).erase(member_id, ctx.actor):
        return
    if store.vault is None:
        raise Problem("erasure needs the deployment's key vault (KIZUNA_KEYS_DATABASE_URL), which is not set",
                      status=503, slug="no-key-vault", title="Erasure unavailable")
    await store.vault.erase([f"member:{member_id}"])
    await execute(store, community_stream(community_id), Community, lambda c: c.erase(member_id, ctx.actor), ctx,
                  community_id=community_id)


async def remove(store: EventStore, community_id: str, member_id: str, cmd: RemoveMember,
                 ctx: CommandContext) -> None:
    await community(store, community_id)
    await execute(store, community_stream(community_id), Community,
                  lambda c: c.remove(member_id, cmd, ctx.actor, now(), ClaimCodes()), ctx, community_id=community_id)


async def change_role(store: EventStore, community_id: str, member_id: str, cmd: ChangeRole,
                      ctx: CommandContext) -> None:
    await community(store, community_id)
    await execute(store, community_stream(community_id), Community,
                  lambda c: c.change_role(member_id, cmd, ctx.actor), ctx, community_id=community_id)


async def transfer_ownership(store: EventStore, community_id: str, cmd: TransferOwnership,
                             ctx: CommandContext) -> None:
    await community(store, community_id)
    await execute(store, community_stream(community_id), Community,
                  lambda c: c.transfer_ownership(cmd, ctx.actor), ctx, community_id=community_id)


async def _require_active_member(store: EventStore, community_id: str, member_id: str) -> None:
    state = await community(store, community_id)
    if member_id not in state.roles:
        raise NotFound("member not found")


async def update_profile(store: EventStore, community_id: str, member_id: str, cmd: UpdateProfile,
                         ctx: CommandContext) -> None:
    await _require_active_member(store, community_id, member_id)
    await execute(store, profile_stream(member_id), Profile, lambda p: p.update(community_id, member_id, cmd), ctx,
                  community_id=community_id)


async def change_consent(store: EventStore, community_id: str, member_id: str, cmd: ChangeConsent,
                         ctx: CommandContext) -> None:
    await _require_active_member(store, community_id, member_id)
    await execute(store, profile_stream(member_id), Profile,
                  lambda p: p.change_consent(community_id, member_id, cmd), ctx, community_id=community_id)


def require_self_or_operator(who: Principal, member_id: str) -> None:
    if not (who.is_operator or who.is_self(member_id)):
        raise Forbidden("only the member themselves may do this")


async def require_authority(store: EventStore, community_id: str, who: Principal, role: Role) -> None:
    """For reads limited to a role: the role the caller holds now, decided by the community aggregate
    (as for commands), not the role their token was issued with."""
    state = await community(store, community_id)
    state.require_authority(who.actor, role)


# ---- admission ----

async def change_admission(store: EventStore, community_id: str, cmd: ChangeAdmission, ctx: CommandContext) -> None:
    await community(store, community_id)
    await execute(store, community_stream(community_id), Community, lambda c: c.change_admission(cmd, ctx.actor), ctx,
                  community_id=community_id)


async def submit_application(store: EventStore, community_id: str, cmd: SubmitApplication, who: Principal,
                             ctx: CommandContext) -> tuple[str, str]:
    """Returns (application id, applicant id); the applicant id becomes the member id on joining."""
    await community(store, community_id)
    application_id, applicant_id = ctx.new_id("application"), ctx.new_id("applicant")
    # A visitor's claim of a referrer is not a vouch: the referrer submits on their behalf instead.
    referred_by = cmd.referred_by if who.is_operator else None if who.scope == "visitor" else who.member_id
    await execute(store, community_stream(community_id), Community,
                  linking_account(who, applicant_id,
                                  lambda c: c.submit_application(application_id, applicant_id, cmd, referred_by)),
                  ctx, community_id=community_id)
    return application_id, applicant_id


async def decide_application(store: EventStore, community_id: str, application_id: str, cmd: DecideApplication,
                             who: Principal, ctx: CommandContext) -> str | None:
    """Returns "joined" or "waitlisted" for an approval, None for a decline."""
    await community(store, community_id)
    _, recorded = await execute(store, community_stream(community_id), Community,
                                lambda c: c.decide_application(application_id, cmd, ctx.actor, who.member_id), ctx,
                                community_id=community_id)
    return _admitted(recorded)


async def issue_invitation(store: EventStore, community_id: str, cmd: IssueInvitation, who: Principal,
                           ctx: CommandContext) -> tuple[str, str, datetime]:
    """Returns (invitation id, code, expiry); the code is shown once and only its hash is stored."""
    await community(store, community_id)
    if who.member_id is None:
        raise Forbidden("invitations are issued by members, who vouch for the person they invite")
    invitation_id, code, issued_at = ctx.new_id("invitation"), secrets.token_urlsafe(18), now()
    issuer = who.member_id
    await execute(store, community_stream(community_id), Community,
                  lambda c: c.issue_invitation(invitation_id, code, issuer, cmd, issued_at), ctx,
                  community_id=community_id)
    return invitation_id, code, issued_at


async def accept_invitation(store: EventStore, community_id: str, cmd: AcceptInvitation, who: Principal,
                            ctx: CommandContext) -> tuple[str, str]:
    """Returns (member id, "joined" | "waitlisted")."""
    await community(store, community_id)
    member_id = ctx.new_id("member")
    _, recorded = await execute(store, community_stream(community_id), Community,
                                linking_account(who, member_id, lambda c: c.accept_invitation(cmd, member_id, now())),
                                ctx, community_id=community_id)
    return member_id, _admitted(recorded) or "joined"


async def issue_account_claim(store: EventStore, community_id: str, member_id: str, cmd: IssueAccountClaim,
                              ctx: CommandContext) -> tuple[str, datetime]:
    """Returns (code, expiry); the code is shown once and only its hash is stored."""
    await community(store, community_id)
    code, issued_at = secrets.token_urlsafe(18), now()
    await execute(store, community_stream(community_id), Community,
                  lambda c: c.issue_account_claim(member_id, code, ctx.actor, issued_at, cmd.ttl_seconds), ctx,
                  community_id=community_id)
    return code, issued_at + timedelta(seconds=cmd.ttl_seconds)


async def claim_account(store: EventStore, community_id: str, cmd: ClaimAccount, who: Principal,
                        ctx: CommandContext) -> str:
    """Returns the member id the signed-in person's account now signs in as."""
    await community(store, community_id)
    if who.scope != "visitor" or who.account is None:
        raise Forbidden("sign in first: the code ties a member to the account you are signed in with")
    account = who.account
    state, _ = await execute(store, community_stream(community_id), Community,
                             lambda c: c.claim_account(cmd.code, account, now()), ctx, community_id=community_id)
    return state.accounts[account]


# ---- the moving waitlist ----
# Offers made here get claim codes that nobody sees yet: the notification that will carry each code to
# its person does not exist, so the owner or a facilitator issues the person's claim link instead
# (``issue_claim_code``). Only hashes are ever recorded.

async def accept_offer(store: EventStore, community_id: str, offer_id: str, cmd: AcceptOffer,
                       ctx: CommandContext, who: Principal | None = None) -> str:
    """Returns the new member's id (the waitlisted person's id). A signed-in visitor taking the place is
    linked to it, unless their account already is."""
    await community(store, community_id)
    account = who.account if who is not None and who.scope == "visitor" else None

    def decide(c: Community) -> list[DomainEvent]:
        events = c.accept_offer(offer_id, cmd, ctx.actor, now(), account)
        applicant = c.offers[offer_id].applicant_id
        if account is None or c.accounts.get(account) == applicant:
            return events
        return [*events, *c.link_account(applicant, account)]

    state, _ = await execute(store, community_stream(community_id), Community, decide, ctx,
                             community_id=community_id)
    return state.offers[offer_id].applicant_id


async def decline_offer(store: EventStore, community_id: str, offer_id: str, cmd: DeclineOffer,
                        ctx: CommandContext, who: Principal | None = None) -> None:
    await community(store, community_id)
    account = who.account if who is not None and who.scope == "visitor" else None
    await execute(store, community_stream(community_id), Community,
                  lambda c: c.decline_offer(offer_id, cmd, ctx.actor, now(), ClaimCodes(), account), ctx,
                  community_id=community_id)


async def place_of(store: EventStore, community_id: str, who: Principal) -> dict[str, object]:
    """The signed-in person's place in the queue (a visitor whose token names their account)."""
    state = await community(store, community_id)
    if who.scope != "visitor" or who.account is None:
        raise Forbidden("sign in first: your place is found by the account you are signed in with")
    return state.place_of(who.account, now())


async def issue_claim_code(store: EventStore, community_id: str, offer_id: str,
                           ctx: CommandContext) -> tuple[str, str, datetime]:
    """Returns (claim code, applicant id, offer expiry): the code is shown once, only its hash is kept."""
    await community(store, community_id)
    codes = ClaimCodes()
    state, recorded = await execute(store, community_stream(community_id), Community,
                                    lambda c: c.issue_claim_code(offer_id, ctx.actor, now(), codes), ctx,
                                    community_id=community_id)
    offer = state.offers[offer_id]
    # A decision retried on a concurrent append minted again: the last code minted is the one recorded.
    # A retry of the request (same Idempotency-Key) is answered with the event an earlier attempt stored,
    # whose code was never kept: it cannot be shown again, so it says so rather than show a wrong one.
    code = codes.minted.get(offer_id)
    if code is None or code_hash(code) != recorded[-1].data["claim_code_sha256"]:
        raise Conflict("this request already issued a claim code, which is shown only once; "
                       "issue a new one (without reusing the Idempotency-Key) to replace it",
                       slug="claim-code-shown-once", title="Claim code already shown")
    return code, offer.applicant_id, offer.expires_at


async def expire_offers(store: EventStore, community_id: str, ctx: CommandContext, at: datetime | None = None) -> int:
    """Expires the community's due offers and passes their places on; returns how many expired."""
    _, recorded = await execute(store, community_stream(community_id), Community,
                                lambda c: c.expire_offers(at or now(), ClaimCodes()), ctx, community_id=community_id)
    return sum(1 for event in recorded if event.type == "PlaceOfferExpired")


# ---- growth by linking ----

async def found_sister(store: EventStore, community_id: str, cmd: FoundSisterCommunity, owner_display_name: str,
                       ctx: CommandContext) -> str:
    """Records SisterCommunityFounded on this community's stream and founds the sister's stream, in
    one transaction: both happen or neither. Returns the sister community's id."""
    await community(store, community_id)
    sister_id = ctx.new_id("sister-community")
    at = now()
    async with store.unit_of_work() as conn:
        origin, recorded = await execute(store, community_stream(community_id), Community,
                                         lambda c: c.found_sister(sister_id, cmd, ctx.actor), ctx,
                                         community_id=community_id, connection=conn)
        founded = SisterCommunityFounded.model_validate(recorded[-1].data)
        sister_events = Community().begin_as_sister(origin, founded, owner_display_name, at, ClaimCodes())
        sister_stream = community_stream(sister_id)
        await store.append(sister_stream, ctx.new_events(sister_stream, sister_events, sister_id), NO_STREAM,
                           connection=conn)
    return sister_id

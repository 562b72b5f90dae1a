"""Identity commands: send a sign-in link, sign in (by link or provider), keep and end browser sessions,
open a person's account in a community."""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from kizuna.domain import DomainEvent
from kizuna.errors import Conflict, Forbidden, Gone, Problem
from kizuna.eventstore import ANY_VERSION, EventStore
from kizuna.handling import CommandContext, execute, load, run_again_if_refused, to_new_events

from . import projections
from .domain import (
    BrowserSession,
    Person,
    SessionTimeouts,
    SignInMethod,
    SignInRefused,
    new_account_reference,
    refusals_stream,
    safe_next,
)
from .mail import Mailer

log = logging.getLogger("kizuna.identity")
SYSTEM = CommandContext(actor="system:identity")


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class LinkLimits:
    ttl_seconds: float
    per_address_per_hour: int
    per_client_per_hour: int


# ---- email links ----

async def send_email_link(pool: asyncpg.Pool, mailer: Mailer, limits: LinkLimits, *, email: str, next_path: str,
                          client: str, public_url: str, language: str) -> None:
    """Sends a single-use sign-in link to ``email`` (whether or not anyone has signed in with it before: the
    answer is the same either way, so the form tells nobody which addresses have accounts). Rate-limited per
    address and per client, counted from the links themselves."""
    token = secrets.token_urlsafe(32)
    async with pool.acquire() as conn, conn.transaction():
        # One request at a time per address and per client, so concurrent requests cannot all pass the count.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1)), pg_advisory_xact_lock(hashtext($2))",
                           f"link-email:{email}", f"link-client:{client}")
        by_address, by_client = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM email_links WHERE email = $1 AND created_at > now() - interval '1 hour'), "
            "(SELECT count(*) FROM email_links WHERE client = $2 AND created_at > now() - interval '1 hour')",
            email, client)
        if by_address >= limits.per_address_per_hour or by_client >= limits.per_client_per_hour:
            raise Problem("too many sign-in links were asked for; wait a while and try again", status=429,
                          slug="rate-limited", title="Too many requests", retry_after_seconds=900)
        await conn.execute(
            "INSERT INTO email_links (token_sha256, email, next_path, client, expires_at) VALUES ($1, $2, $3, $4, $5)",
            digest(token), email, safe_next(next_path), client, now() + timedelta(seconds=limits.ttl_seconds))
    link = f"{public_url.rstrip('/')}/sign-in/email/{token}"
    minutes = max(1, round(limits.ttl_seconds / 60))
    if language == "ja":
        subject = "Kizuna へのサインイン"
        text = (f"Kizuna にサインインするには、{minutes} 分以内に次のリンクを開いてください。"
                "リンクは一度だけ使えます。\n\n"
                f"{link}\n\nお心当たりがない場合は、このメールを無視してください。\n")
    else:
        subject = "Sign in to Kizuna"
        text = (f"To sign in to Kizuna, open this link within {minutes} minutes (it works once):\n\n{link}\n\n"
                "If you did not ask to sign in, ignore this email.\n")
    await mailer.send(email, subject, text)


async def use_email_link(pool: asyncpg.Pool, token: str) -> tuple[str, str]:
    """Spends a link: its address and where to go next. A link works once, and only until it expires."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "UPDATE email_links SET used_at = now() WHERE token_sha256 = $1 AND used_at IS NULL "
            "AND expires_at > now() RETURNING email, next_path", digest(token))
    if row is None:
        raise Gone("this sign-in link has been used or has expired; ask for a new one", slug="link-used-or-expired",
                   title="Sign-in link no longer valid")
    return str(row["email"]), str(row["next_path"])


# ---- invitations by email ----

INVITATIONS_PER_SENDER_PER_DAY = 20
INVITATIONS_PER_ADDRESS_PER_DAY = 3


@dataclass(frozen=True)
class EmailedInvitation:
    person_id: str
    community_id: str
    invitation_id: str
    code: str
    email: str
    expires_at: datetime


async def email_invitation(store: EventStore, mailer: Mailer, invitation: EmailedInvitation, *, public_url: str,
                           language: str) -> None:
    """Sends an invitation a member issued (``POST …/invitations``) to the address they give: the link opens
    the invitation page, where the person signs in (with that address or any other way) and accepts. Only an
    active member of the community sends; at most 20 a day each, 3 a day to one address; one mail per
    invitation. The address is kept only hashed, for the limits."""
    async with store.pool.acquire() as conn:
        memberships = await projections.memberships(conn, invitation.person_id)
    inviter = next((m for m in memberships if m["community_id"] == invitation.community_id
                    and m["status"] == "active"), None)
    if inviter is None:
        raise Forbidden("only a member of this community sends its invitations", slug="not-a-member")
    address = digest(invitation.email)
    async with store.pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1)), pg_advisory_xact_lock(hashtext($2))",
                           f"invite-sender:{invitation.person_id}", f"invite-address:{address}")
        by_sender, by_address = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM emailed_invitations WHERE person_id = $1 "
            "AND created_at > now() - interval '1 day'), (SELECT count(*) FROM emailed_invitations "
            "WHERE email_sha256 = $2 AND created_at > now() - interval '1 day')", invitation.person_id, address)
        if by_sender >= INVITATIONS_PER_SENDER_PER_DAY or by_address >= INVITATIONS_PER_ADDRESS_PER_DAY:
            raise Problem("too many invitations were emailed today; try again tomorrow", status=429,
                          slug="rate-limited", title="Too many requests", retry_after_seconds=3600)
        inserted = await conn.execute(
            "INSERT INTO emailed_invitations (invitation_id, person_id, community_id, email_sha256) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (invitation_id) DO NOTHING",
            invitation.invitation_id, invitation.person_id, invitation.community_id, address)
        if inserted.endswith(" 0"):
            raise Conflict("this invitation was emailed already; issue a new one for someone else",
                           slug="invitation-already-emailed")
        await send_invitation_mail(mailer, invitation, inviter_name=str(inviter["display_name"] or ""),
                                   community_name=str(inviter["community_name"] or ""), public_url=public_url,
                                   language=language)
    await execute(store, f"person-{invitation.person_id}", Person,
                  lambda p: p.email_invitation(invitation.community_id, invitation.invitation_id), SYSTEM)


async def send_invitation_mail(mailer: Mailer, invitation: EmailedInvitation, *, inviter_name: str,
                               community_name: str, public_url: str, language: str) -> None:
    """Sent inside the row's transaction: a mail server that refuses leaves no row, so the member may retry."""
    link = f"{public_url.rstrip('/')}/invite/{invitation.community_id}?code={invitation.code}"
    until = invitation.expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if language == "ja":
        subject = f"{inviter_name} さんから「{community_name}」への招待"
        text = (f"{inviter_name} さんが、あなたをコミュニティ「{community_name}」に招待しています。\n\n"
                f"参加するには次のリンクを開き、サインインしてください。{until} まで有効で、一度だけ使えます。\n\n"
                f"{link}\n\nお心当たりがない場合は、このメールを無視してください。\n")
    else:
        subject = f"{inviter_name} invites you to {community_name}"
        text = (f"{inviter_name} invites you to join the community {community_name}.\n\n"
                f"To join, open this link and sign in (it works once, until {until}):\n\n{link}\n\n"
                "If this means nothing to you, ignore this email.\n")
    await mailer.send(invitation.email, subject, text)


# ---- people ----

async def person_for_email(store: EventStore, email: str, method: SignInMethod) -> str:
    """The person who verified ``email``, registering one if nobody has."""
    async with store.pool.acquire() as conn:
        existing = await projections.person_by_email(conn, email)
    if existing is not None:
        return existing
    person_id = str(uuid.uuid4())
    try:
        await execute(store, f"person-{person_id}", Person,
                      lambda p: [*p.register(person_id, method), *_verified(person_id, email, method)], SYSTEM)
    except asyncpg.UniqueViolationError:  # someone else registered this address at the same moment
        async with store.pool.acquire() as conn:
            winner = await projections.person_by_email(conn, email)
        if winner is None:
            raise
        return winner
    return person_id


def _verified(person_id: str, email: str, method: SignInMethod) -> list[DomainEvent]:
    person = Person()
    person.person_id = person_id
    return person.verify_email(email, method)


async def person_for_identity(store: EventStore, *, issuer: str, subject: str, email: str | None,
                              email_verified: bool) -> str:
    """The person a provider's account signs in: already linked, else the person with the same verified
    address (the provider vouched for it), else a new person."""
    async with store.pool.acquire() as conn:
        linked = await projections.person_by_identity(conn, issuer, subject)
    if linked is not None:
        return linked
    if email and email_verified:
        person_id = await person_for_email(store, email, "oidc")
    else:
        person_id = str(uuid.uuid4())
        await execute(store, f"person-{person_id}", Person, lambda p: p.register(person_id, "oidc"), SYSTEM)
    try:
        await execute(store, f"person-{person_id}", Person, lambda p: p.link_identity(issuer, subject), SYSTEM)
    except asyncpg.UniqueViolationError:
        async with store.pool.acquire() as conn:
            winner = await projections.person_by_identity(conn, issuer, subject)
        if winner is None:
            raise
        return winner
    return person_id


async def account_in(store: EventStore, person_id: str, community_id: str) -> str:
    """The person's account reference in ``community_id``, opened on first use."""
    async with store.pool.acquire() as conn:
        existing = await projections.account_of(conn, person_id, community_id)
    if existing is not None:
        return existing
    reference = new_account_reference()
    state, _ = await execute(store, f"person-{person_id}", Person, lambda p: p.open_account(community_id, reference),
                             SYSTEM)
    return state.accounts[community_id]


# ---- browser sessions ----

async def start_session(pool: asyncpg.Pool, person_id: str, method: SignInMethod, user_agent: str,
                        replacing_secret: str | None) -> tuple[str, str]:
    """A new session (its secret for the cookie, and its public id). Any session the browser held before
    ends: the id always changes at sign-in, so a session id planted before sign-in is worth nothing."""
    secret = secrets.token_urlsafe(32)
    session_id = f"ses-{secrets.token_urlsafe(12)}"
    async with pool.acquire() as conn, conn.transaction():
        if replacing_secret:
            await conn.execute("UPDATE browser_sessions SET ended_at = now(), end_reason = 'replaced' "
                               "WHERE secret_sha256 = $1 AND ended_at IS NULL", digest(replacing_secret))
        await conn.execute(
            "INSERT INTO browser_sessions (secret_sha256, session_id, person_id, method, user_agent) "
            "VALUES ($1, $2, $3, $4, $5)", digest(secret), session_id, person_id, method, user_agent[:300])
    return secret, session_id


async def current_session(pool: asyncpg.Pool, secret: str | None, timeouts: SessionTimeouts) -> BrowserSession | None:
    """The live session a cookie names (and it is seen now: the idle timeout restarts), or None."""
    if not secret:
        return None
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT session_id, person_id, method, user_agent, created_at, last_seen_at, ended_at "
            "FROM browser_sessions WHERE secret_sha256 = $1", digest(secret))
        if row is None:
            return None
        session = _session(row)
        at = time.time()
        if not session.alive(at, timeouts):
            if session.ended_at is None:
                await conn.execute("UPDATE browser_sessions SET ended_at = now(), end_reason = 'timed out' "
                                   "WHERE session_id = $1 AND ended_at IS NULL", session.session_id)
            return None
        if at - session.last_seen_at > 60:  # a write per minute at most, not per request
            await conn.execute("UPDATE browser_sessions SET last_seen_at = now() WHERE session_id = $1",
                               session.session_id)
    return session


def _session(row: asyncpg.Record) -> BrowserSession:
    return BrowserSession(session_id=row["session_id"], person_id=row["person_id"], method=row["method"],
                          user_agent=row["user_agent"], created_at=row["created_at"].timestamp(),
                          last_seen_at=row["last_seen_at"].timestamp(),
                          ended_at=row["ended_at"].timestamp() if row["ended_at"] else None)


async def sessions_of(pool: asyncpg.Pool, person_id: str, timeouts: SessionTimeouts) -> list[dict[str, Any]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT session_id, person_id, method, user_agent, created_at, last_seen_at, ended_at "
            "FROM browser_sessions WHERE person_id = $1 AND ended_at IS NULL ORDER BY last_seen_at DESC", person_id)
    at = time.time()
    return [{"session_id": s.session_id, "method": s.method, "user_agent": s.user_agent,
             "signed_in_at": datetime.fromtimestamp(s.created_at, UTC).isoformat(),
             "last_seen_at": datetime.fromtimestamp(s.last_seen_at, UTC).isoformat(),
             "ends_at": datetime.fromtimestamp(s.ends_at(timeouts), UTC).isoformat()}
            for s in map(_session, rows) if s.alive(at, timeouts)]


async def end_session(pool: asyncpg.Pool, person_id: str, session_id: str, reason: str) -> bool:
    """Ends one of the person's own sessions; False if they have no such live session."""
    async with pool.acquire() as conn:
        ended = await conn.fetchval(
            "UPDATE browser_sessions SET ended_at = now(), end_reason = $3 WHERE session_id = $1 AND person_id = $2 "
            "AND ended_at IS NULL RETURNING session_id", session_id, person_id, reason)
    return ended is not None



# ---- erasure (docs/data-rights.md) ----

async def erase_person(store: EventStore, person_id: str, by: str) -> list[str]:
    """Erases a person: decided first (someone identity knows; once), then their key deleted — from that moment
    their addresses, provider subjects and passkey names open nowhere — and ``PersonErased`` recorded, whose
    projection forgets everything identity keeps under them, browser sessions included (projections.forget),
    and which every service follows to scrub its own copies. Returns the sessions that were live, whose
    community tokens the gateway then refuses. A retry after a failure in between finds the key gone and records
    the event; a repeat records nothing."""
    person = await load(store, f"person-{person_id}", Person)
    if not person.erase(by):
        return []
    if store.vault is None:
        raise Problem("erasure needs the deployment's key vault (KIZUNA_KEYS_DATABASE_URL), which is not set",
                      status=503, slug="no-key-vault", title="Erasure unavailable")
    async with store.pool.acquire() as conn:
        live = [str(r["session_id"]) for r in await conn.fetch(
            "SELECT session_id FROM browser_sessions WHERE person_id = $1 AND ended_at IS NULL", person_id)]
    await store.vault.erase([f"person:{person_id}"])
    actor = "operator" if by == "operator" else f"person:{person_id}"
    await execute(store, f"person-{person_id}", Person, lambda p: p.erase(by), CommandContext(actor=actor))
    return live


# ---- audit ----

async def record_sign_in(store: EventStore, person_id: str, method: SignInMethod, session_id: str) -> None:
    await execute(store, f"person-{person_id}", Person, lambda p: p.sign_in(method, session_id), SYSTEM)


async def record_session_end(store: EventStore, person_id: str, session_id: str, reason: str) -> None:
    await execute(store, f"person-{person_id}", Person, lambda p: p.end_session(session_id, reason), SYSTEM)


async def record_refusal(store: EventStore, method: SignInMethod, reason: str) -> None:
    event = SignInRefused(method=method, reason=reason[:200])
    stream = refusals_stream(now().date().isoformat())
    # Refusals of a day share one stream: concurrent ones may be refused to keep its order, and run again.
    await run_again_if_refused(lambda: store.append(stream, to_new_events([event], SYSTEM.metadata()), ANY_VERSION))

"""Identity's tables: who a person is (kept in the append's transaction), the short-lived security state
of signing in (links, browser sessions, pending provider sign-ins — state, not history, like the
gateway's idempotency records), and what the members service says about each community account.

The security state is deliberately not event-sourced: a link or a session secret is worth nothing once
used or ended, and keeping its hash forever in an append-only log would only widen what a backup leaks.
Each table holds hashes of secrets, never the secrets.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from kizuna.consumer import Subscription
from kizuna.envelope import Envelope
from kizuna.eventstore import RecordedEvent
from kizuna.retention import Retention
from kizuna.roster import RosterFollower
from kizuna.service import Migration

SQL = """
CREATE TABLE person_emails (
    email      text PRIMARY KEY,
    person_id  text NOT NULL
);
CREATE INDEX person_emails_by_person ON person_emails (person_id);
CREATE TABLE person_identities (
    issuer     text NOT NULL,
    subject    text NOT NULL,
    person_id  text NOT NULL,
    PRIMARY KEY (issuer, subject)
);
CREATE TABLE community_accounts (
    person_id    text NOT NULL,
    community_id text NOT NULL,
    account      text NOT NULL UNIQUE,
    PRIMARY KEY (person_id, community_id)
);

CREATE TABLE email_links (
    token_sha256 text PRIMARY KEY,
    email        text NOT NULL,
    next_path    text NOT NULL,
    client       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz
);
CREATE INDEX email_links_by_email ON email_links (email, created_at);
CREATE INDEX email_links_by_client ON email_links (client, created_at);
CREATE INDEX email_links_by_age ON email_links (created_at);
CREATE TABLE browser_sessions (
    secret_sha256 text PRIMARY KEY,
    session_id    text NOT NULL UNIQUE,
    person_id     text NOT NULL,
    method        text NOT NULL,
    user_agent    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    ended_at      timestamptz,
    end_reason    text
);
CREATE INDEX browser_sessions_by_person ON browser_sessions (person_id, created_at);
CREATE INDEX browser_sessions_by_age ON browser_sessions (created_at);
CREATE TABLE oidc_pending (
    state_sha256    text PRIMARY KEY,
    binding_sha256  text NOT NULL,
    provider        text NOT NULL,
    nonce           text NOT NULL,
    code_verifier   text NOT NULL,
    redirect_uri    text NOT NULL,
    next_path       text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX oidc_pending_by_age ON oidc_pending (created_at);

""" + RosterFollower("roster").table_sql() + """
CREATE TABLE account_links (
    account      text PRIMARY KEY,
    community_id text NOT NULL,
    member_id    text NOT NULL
);
CREATE INDEX account_links_by_member ON account_links (community_id, member_id);
CREATE TABLE community_names (
    community_id text PRIMARY KEY,
    name         text NOT NULL
);
"""
PASSKEYS_SQL = """
CREATE TABLE passkeys (
    credential_id text PRIMARY KEY,
    person_id     text NOT NULL,
    public_key    text NOT NULL,
    sign_count    bigint NOT NULL,
    transports    jsonb NOT NULL,
    name          text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz
);
CREATE INDEX passkeys_by_person ON passkeys (person_id);
CREATE TABLE passkey_challenges (
    binding_sha256 text PRIMARY KEY,
    purpose        text NOT NULL,
    challenge      text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX passkey_challenges_by_age ON passkey_challenges (created_at);
"""
# Invitations a member sent by email: counted for the per-sender and per-address limits, then swept. The
# address is kept only as its hash — enough to count, nothing to leak.
INVITATIONS_SQL = """
CREATE TABLE emailed_invitations (
    invitation_id text PRIMARY KEY,
    person_id     text NOT NULL,
    community_id  text NOT NULL,
    email_sha256  text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX emailed_invitations_by_sender ON emailed_invitations (person_id, created_at);
CREATE INDEX emailed_invitations_by_address ON emailed_invitations (email_sha256, created_at);
CREATE INDEX emailed_invitations_by_age ON emailed_invitations (created_at);
"""
MIGRATIONS = [Migration("identity_0001", SQL), Migration("identity_0002_passkeys", PASSKEYS_SQL),
              Migration("identity_0003_operators", "CREATE TABLE operators (person_id text PRIMARY KEY);"),
              Migration("identity_0004_emailed_invitations", INVITATIONS_SQL)]
READ_MODEL_TABLES = ["person_emails", "person_identities", "community_accounts", "passkeys", "operators", "roster",
                     "account_links", "community_names"]
RETENTION = [
    Retention("email_links", "created_at", lambda _settings: 7 * 86400),
    Retention("oidc_pending", "created_at", lambda _settings: 86400),
    Retention("passkey_challenges", "created_at", lambda _settings: 86400),
    Retention("emailed_invitations", "created_at", lambda _settings: 7 * 86400),
]


async def apply(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    """Inline: the lookups sign-in needs, unique where one person must own a thing (an address, a
    provider account), so two people can never both claim it — the append fails instead."""
    data = event.data
    if event.type == "EmailAddressVerified":
        if data["email"]:  # empty once the person is erased (a rebuild after erasure): nobody's address
            await conn.execute("INSERT INTO person_emails (email, person_id) VALUES ($1, $2)", data["email"],
                               data["person_id"])
    elif event.type == "OpenIdIdentityLinked":
        if not data["subject"]:
            return
        await conn.execute("INSERT INTO person_identities (issuer, subject, person_id) VALUES ($1, $2, $3)",
                           data["issuer"], data["subject"], data["person_id"])
    elif event.type == "PasskeyRegistered":
        # The signature counter moves on with each use outside the log (passkeys.py); a rebuild starts it again
        # from the registration's, which only relaxes the clone check until the next sign-in.
        await conn.execute(
            "INSERT INTO passkeys (credential_id, person_id, public_key, sign_count, transports, name, created_at) "
            "VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)", data["credential_id"], data["person_id"], data["public_key"],
            data["sign_count"], json.dumps(data["transports"]), data["name"], event.recorded_at)
    elif event.type == "PasskeyRemoved":
        await conn.execute("DELETE FROM passkeys WHERE credential_id = $1", data["credential_id"])
    elif event.type == "OperatorRightsGranted":
        await conn.execute("INSERT INTO operators (person_id) VALUES ($1) ON CONFLICT DO NOTHING", data["person_id"])
    elif event.type == "OperatorRightsWithdrawn":
        await conn.execute("DELETE FROM operators WHERE person_id = $1", data["person_id"])
    elif event.type == "CommunityAccountOpened":
        await conn.execute("INSERT INTO community_accounts (person_id, community_id, account) VALUES ($1, $2, $3)",
                           data["person_id"], data["community_id"], data["account"])
    elif event.type == "PersonErased":
        await forget(conn, data["person_id"])


async def forget(conn: asyncpg.Connection, person_id: str) -> None:
    """What identity keeps under an erased person, gone (in PersonErased's own append, and again in a rebuild):
    their addresses (and sign-in links still held for them), provider accounts, passkeys, operator rights,
    community accounts (and what the members service linked to them), invitations they emailed, browser
    sessions. Nothing is kept to refuse the address later: signing in with it again makes a new person."""
    await conn.execute("DELETE FROM email_links WHERE email IN (SELECT email FROM person_emails WHERE person_id = $1)",
                       person_id)
    await conn.execute("DELETE FROM account_links WHERE account IN "
                       "(SELECT account FROM community_accounts WHERE person_id = $1)", person_id)
    for table in ("person_emails", "person_identities", "passkeys", "operators", "community_accounts",
                  "emailed_invitations", "browser_sessions"):
        await conn.execute(f"DELETE FROM {table} WHERE person_id = $1", person_id)  # noqa: S608 - fixed names


INLINE_PROJECTIONS = [apply]
_roster = RosterFollower("roster")


async def follow_members(conn: asyncpg.Connection, envelope: Envelope) -> None:
    """Who each community account is in its community, and that member's standing, from the members
    service's events (ordered per community stream by the consumer)."""
    data = envelope.data
    if envelope.type == "MemberAccountLinked":
        # The latest link wins: someone who left and came back is their new member (events of one community
        # arrive here in stream order).
        await conn.execute("INSERT INTO account_links (account, community_id, member_id) VALUES ($1, $2, $3) "
                           "ON CONFLICT (account) DO UPDATE SET member_id = excluded.member_id",
                           data["account"], data["community_id"], data["member_id"])
        return
    if envelope.type in ("CommunityFounded", "SisterCommunityFounded"):
        sister = envelope.type == "SisterCommunityFounded"
        community_id = data["sister_community_id"] if sister else data["community_id"]
        name = data["sister_name"] if sister else data["name"]
        await conn.execute("INSERT INTO community_names (community_id, name) VALUES ($1, $2) "
                           "ON CONFLICT (community_id) DO UPDATE SET name = excluded.name", community_id, name)
    await _roster(conn, envelope)


SUBSCRIPTIONS = [Subscription("identity-members", ["*.members.>"], follow_members)]


# ---- queries ----

async def person_by_email(conn: asyncpg.Connection, email: str) -> str | None:
    value = await conn.fetchval("SELECT person_id FROM person_emails WHERE email = $1", email)
    return str(value) if value is not None else None


async def person_by_identity(conn: asyncpg.Connection, issuer: str, subject: str) -> str | None:
    value = await conn.fetchval("SELECT person_id FROM person_identities WHERE issuer = $1 AND subject = $2",
                                issuer, subject)
    return str(value) if value is not None else None


async def account_of(conn: asyncpg.Connection, person_id: str, community_id: str) -> str | None:
    value = await conn.fetchval("SELECT account FROM community_accounts WHERE person_id = $1 AND community_id = $2",
                                person_id, community_id)
    return str(value) if value is not None else None


async def memberships(conn: asyncpg.Connection, person_id: str) -> list[dict[str, Any]]:
    """The person's communities: every account the members service has linked to a member (or to someone
    waiting for a place), with that member's standing now."""
    rows = await conn.fetch(
        "SELECT a.community_id, l.member_id, n.name, r.role, r.active, r.display_name "
        "FROM community_accounts a JOIN account_links l ON l.account = a.account "
        "LEFT JOIN community_names n ON n.community_id = a.community_id "
        "LEFT JOIN roster r ON r.community_id = l.community_id AND r.member_id = l.member_id "
        "WHERE a.person_id = $1 ORDER BY n.name NULLS LAST, a.community_id", person_id)
    return [{"community_id": row["community_id"], "community_name": row["name"], "member_id": row["member_id"],
             "display_name": row["display_name"], "role": row["role"] if row["active"] else None,
             "status": "active" if row["active"] else "left" if row["active"] is not None else "waiting"}
            for row in rows]


async def emails_of(conn: asyncpg.Connection, person_id: str) -> list[str]:
    return [str(r["email"]) for r in await conn.fetch(
        "SELECT email FROM person_emails WHERE person_id = $1 ORDER BY email", person_id)]


async def identities_of(conn: asyncpg.Connection, person_id: str) -> list[dict[str, str]]:
    return [{"issuer": str(r["issuer"]), "subject": str(r["subject"])} for r in await conn.fetch(
        "SELECT issuer, subject FROM person_identities WHERE person_id = $1 ORDER BY issuer, subject", person_id)]


async def passkeys_of(conn: asyncpg.Connection, person_id: str) -> list[dict[str, Any]]:
    return [{"credential_id": str(r["credential_id"]), "name": str(r["name"]),
             "created_at": r["created_at"].isoformat(),
             "last_used_at": r["last_used_at"].isoformat() if r["last_used_at"] else None}
            for r in await conn.fetch("SELECT credential_id, name, created_at, last_used_at FROM passkeys "
                                      "WHERE person_id = $1 ORDER BY created_at", person_id)]


async def is_operator(conn: asyncpg.Connection, person_id: str) -> bool:
    return bool(await conn.fetchval("SELECT true FROM operators WHERE person_id = $1", person_id))

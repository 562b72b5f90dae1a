"""Passkeys (WebAuthn) with the ``webauthn`` library: a signed-in person adds one, and signs in with it later.

The relying party is the deployment's public origin (``KIZUNA_PUBLIC_URL``): its host is the RP ID, its
origin the only one accepted. Each ceremony's challenge is kept server-side for five minutes, bound to
the session (adding) or to a cookie of the browser that asked (signing in), and spent by the first
answer: a replayed answer finds no challenge. Sign-in asks for a discoverable credential (no list of
allowed credentials, so the page reveals nothing about who has passkeys); the credential's user handle
is the person's id.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import InvalidAuthenticationResponse, InvalidRegistrationResponse
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from kizuna.errors import Problem
from kizuna.eventstore import EventStore
from kizuna.handling import execute

from .domain import Person
from .handlers import SYSTEM, digest

CHALLENGE_SECONDS = 300
RP_NAME = "Kizuna"


class PasskeyError(Problem):
    def __init__(self, detail: str, slug: str = "passkey-invalid") -> None:
        super().__init__(detail, status=400, slug=slug, title="Passkey not accepted")


def relying_party(public_url: str) -> tuple[str, str]:
    """(RP ID, origin) of the deployment."""
    parts = urlsplit(public_url)
    return str(parts.hostname), f"{parts.scheme}://{parts.netloc}"


def possible(public_url: str) -> bool:
    """WebAuthn needs a domain name for its relying party: a deployment at an IP address (``make up`` on
    127.0.0.1) offers no passkeys; at ``localhost`` or any real domain it does."""
    host = str(urlsplit(public_url).hostname or "")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(host)
    return False


async def _keep_challenge(pool: asyncpg.Pool, binding: str, purpose: str, challenge: bytes) -> None:
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO passkey_challenges (binding_sha256, purpose, challenge) VALUES ($1, $2, $3) "
            "ON CONFLICT (binding_sha256) DO UPDATE SET purpose = excluded.purpose, challenge = excluded.challenge, "
            "created_at = now()", digest(binding), purpose, bytes_to_base64url(challenge))


async def _spend_challenge(pool: asyncpg.Pool, binding: str, purpose: str) -> bytes:
    async with pool.acquire() as conn:
        challenge = await conn.fetchval(
            "DELETE FROM passkey_challenges WHERE binding_sha256 = $1 AND purpose = $2 "
            "AND created_at > now() - make_interval(secs => $3) RETURNING challenge",
            digest(binding), purpose, CHALLENGE_SECONDS)
    if challenge is None:
        raise PasskeyError("this passkey request has expired or was already answered; try again",
                           slug="passkey-challenge-missing")
    return base64url_to_bytes(str(challenge))


async def registration_options(store: EventStore, public_url: str, person_id: str, session_id: str,
                               user_name: str) -> dict[str, Any]:
    rp_id, _ = relying_party(public_url)
    async with store.pool.acquire() as conn:
        existing = [str(r["credential_id"]) for r in await conn.fetch(
            "SELECT credential_id FROM passkeys WHERE person_id = $1", person_id)]
    options = generate_registration_options(
        rp_id=rp_id, rp_name=RP_NAME, user_id=person_id.encode(), user_name=user_name, user_display_name=user_name,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED, user_verification=UserVerificationRequirement.PREFERRED),
        exclude_credentials=[PublicKeyCredentialDescriptor(id=base64url_to_bytes(c)) for c in existing])
    await _keep_challenge(store.pool, f"register:{session_id}", "register", options.challenge)
    result: dict[str, Any] = json.loads(options_to_json(options))
    return result


async def register(store: EventStore, public_url: str, person_id: str, session_id: str, credential: dict[str, Any],
                   name: str) -> str:
    rp_id, origin = relying_party(public_url)
    challenge = await _spend_challenge(store.pool, f"register:{session_id}", "register")
    try:
        verified = verify_registration_response(credential=credential, expected_challenge=challenge,
                                                expected_rp_id=rp_id, expected_origin=origin)
    except (InvalidRegistrationResponse, ValueError, KeyError, TypeError) as error:
        raise PasskeyError(f"the passkey could not be verified: {error}") from error
    credential_id = bytes_to_base64url(verified.credential_id)
    transports = [str(t) for t in (credential.get("response", {}).get("transports") or [])][:8]
    await execute(store, f"person-{person_id}", Person,
                  lambda p: p.register_passkey(credential_id, bytes_to_base64url(verified.credential_public_key),
                                               verified.sign_count, transports, name), SYSTEM)
    return credential_id


async def authentication_options(pool: asyncpg.Pool, public_url: str) -> tuple[dict[str, Any], str]:
    """Options for the browser, and the binding secret for its cookie."""
    rp_id, _ = relying_party(public_url)
    options = generate_authentication_options(rp_id=rp_id, user_verification=UserVerificationRequirement.PREFERRED)
    binding = secrets.token_urlsafe(24)
    await _keep_challenge(pool, f"sign-in:{binding}", "sign-in", options.challenge)
    result: dict[str, Any] = json.loads(options_to_json(options))
    return result, binding


async def authenticate(pool: asyncpg.Pool, public_url: str, binding: str, credential: dict[str, Any]) -> str:
    """The person the passkey signs in (its counter moved on), or a 400."""
    rp_id, origin = relying_party(public_url)
    challenge = await _spend_challenge(pool, f"sign-in:{binding}", "sign-in")
    credential_id = str(credential.get("id") or "")
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT person_id, public_key, sign_count FROM passkeys WHERE credential_id = $1",
                                  credential_id)
    if row is None:
        raise PasskeyError("this passkey is not registered here (it may have been removed)", slug="passkey-unknown")
    user_handle = (credential.get("response") or {}).get("userHandle")
    if user_handle and base64url_to_bytes(str(user_handle)) != str(row["person_id"]).encode():
        raise PasskeyError("this passkey belongs to someone else")
    try:
        verified = verify_authentication_response(
            credential=credential, expected_challenge=challenge, expected_rp_id=rp_id, expected_origin=origin,
            credential_public_key=base64url_to_bytes(row["public_key"]),
            credential_current_sign_count=row["sign_count"])
    except (InvalidAuthenticationResponse, ValueError, KeyError, TypeError) as error:
        raise PasskeyError(f"the passkey could not be verified: {error}") from error
    async with pool.acquire() as conn:
        await conn.execute("UPDATE passkeys SET sign_count = $2, last_used_at = now() WHERE credential_id = $1",
                           credential_id, verified.new_sign_count)
    return str(row["person_id"])

"""This deployment's federation identity, and the published keys of the deployments it talks to."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from kizuna.auth import load_private_key

from .signing import SignatureRejected, key_id_of, public_key_from_text, public_key_text

WELL_KNOWN = "/.well-known/kizuna-federation"
INBOX = "/federation/inbox"
log = logging.getLogger("kizuna.federation")


@dataclass(frozen=True)
class Identity:
    origin: str
    key: Ed25519PrivateKey

    @property
    def key_id(self) -> str:
        return key_id_of(self.key.public_key())

    @classmethod
    def from_settings(cls, public_url: str, private_key_pem: str, fallback: Ed25519PrivateKey) -> Identity:
        # Without its own key the deployment signs with the token key: federation still works,
        # but rotating one then rotates the other (deploy/README.md says to set both).
        key = load_private_key(private_key_pem) if private_key_pem else fallback
        return cls(origin=public_url.rstrip("/"), key=key)

    def document(self, communities: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "protocol": "kizuna-federation/1",
            "origin": self.origin,
            "inbox": f"{self.origin}{INBOX}",
            "keys": [{"key_id": self.key_id, "alg": "ed25519", "public_key": public_key_text(self.key.public_key()),
                      "status": "current"}],
            "communities": communities,
        }


async def fetch_document(http: httpx.AsyncClient, origin: str) -> dict[str, Any]:
    response = await http.get(f"{origin}{WELL_KNOWN}", timeout=5.0)
    response.raise_for_status()
    document: dict[str, Any] = response.json()
    if str(document.get("origin", "")).rstrip("/") != origin:
        raise ValueError(f"{origin} publishes itself as {document.get('origin')!r}")
    return document


async def remember_keys(conn: asyncpg.Connection, origin: str, document: dict[str, Any]) -> None:
    for key in document.get("keys", []):
        public_key_from_text(key["public_key"])  # refuse what is not an Ed25519 key before storing it
        await conn.execute("INSERT INTO partner_keys (origin, key_id, public_key) VALUES ($1, $2, $3) "
                           "ON CONFLICT (origin, key_id) DO UPDATE SET public_key = EXCLUDED.public_key, "
                           "fetched_at = now()", origin, key["key_id"], key["public_key"])


async def partner_key(pool: asyncpg.Pool, http: httpx.AsyncClient, origin: str, key_id: str) -> Ed25519PublicKey:
    """The sender's public key: remembered, or fetched from its well-known document (rotation)."""
    async with pool.acquire() as conn:
        text = await conn.fetchval("SELECT public_key FROM partner_keys WHERE origin = $1 AND key_id = $2",
                                   origin, key_id)
        if text is None:
            try:
                await remember_keys(conn, origin, await fetch_document(http, origin))
            except (httpx.HTTPError, ValueError, KeyError) as error:
                log.warning("could not fetch partner keys", extra={"origin": origin, "error": repr(error)})
                raise SignatureRejected(f"the keys of {origin} could not be fetched", "unknown-key") from error
            text = await conn.fetchval("SELECT public_key FROM partner_keys WHERE origin = $1 AND key_id = $2",
                                       origin, key_id)
    if text is None:
        raise SignatureRejected(f"{origin} does not publish the key {key_id}", "unknown-key")
    return public_key_from_text(text)

"""This deployment's federation identity, and the published keys of the deployments it talks to.

Trust model (docs/federation.md §1):

- An identity document is fetched only from an origin this deployment chose: one its owner proposed a
  partnership to, or one it has a proposed, active or suspended partnership with (a partnership an
  owner here accepted). A message naming any other origin causes no outbound request at all.
- Every address a fetch or a delivery would reach is resolved first; private, loopback, link-local
  and other non-global addresses are refused unless ``KIZUNA_FEDERATION_ALLOW_PRIVATE_ADDRESSES``.
- No database connection is held while an HTTP request is in flight.
- A published key has a status (``current``, ``retired``, ``revoked``) and a window
  (``not_before``, ``valid_until``); a key outside its window, revoked, or no longer listed is refused.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg
import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from kizuna.addresses import AddressGuard
from kizuna.auth import load_private_key

from .signing import SignatureRejected, key_id_of, public_key_from_text, public_key_text

WELL_KNOWN = "/.well-known/kizuna-federation"
INBOX = "/federation/inbox"
DOCUMENT_MAX_BYTES = 64 * 1024
FETCH_TIMEOUT_SECONDS = 5.0
# However long a partner says its key may be trusted, it is asked again within a week (as Matrix caps
# valid_until_ts): a key withdrawn from its document is not trusted forever.
LONGEST_TRUST = timedelta(days=7)
# A key published without a window (an older implementation) is trusted this long before asking again.
TRUST_WITHOUT_WINDOW = timedelta(hours=24)
# After a fetch that did not produce the key a message named, the origin is not asked again this soon:
# random key ids in messages naming a partner must not turn this gateway into a flood against it.
REFETCH_COOLDOWN_SECONDS = 30.0
KeyStatus = Literal["current", "retired", "revoked"]
log = logging.getLogger("kizuna.federation")


# ---- this deployment's keys ----

@dataclass(frozen=True)
class RetiredKey:
    """A key this deployment signed with before a rotation, still published until ``expires_at``."""

    public_key: Ed25519PublicKey
    expires_at: datetime
    status: Literal["retired", "revoked"] = "retired"

    @property
    def key_id(self) -> str:
        return key_id_of(self.public_key)


def parse_retired_keys(text: str) -> list[RetiredKey]:
    """``KIZUNA_FEDERATION_RETIRED_KEYS``: a JSON list of {public_key (PEM or base64url), expires_at, status}."""
    if not text.strip():
        return []
    retired = []
    for entry in json.loads(text):
        raw = str(entry["public_key"]).strip()
        if raw.startswith("-----BEGIN"):
            from cryptography.hazmat.primitives.serialization import load_pem_public_key

            loaded = load_pem_public_key(raw.encode())
            if not isinstance(loaded, Ed25519PublicKey):
                raise ValueError("a retired federation key must be an Ed25519 public key")
            key = loaded
        else:
            key = public_key_from_text(raw)
        expires_at = datetime.fromisoformat(str(entry["expires_at"]))
        if expires_at.tzinfo is None:
            raise ValueError("expires_at of a retired federation key needs a UTC offset")
        status = entry.get("status", "retired")
        if status not in ("retired", "revoked"):
            raise ValueError(f"a retired federation key's status is retired or revoked, not {status!r}")
        retired.append(RetiredKey(key, expires_at, status))
    return retired


@dataclass(frozen=True)
class Identity:
    origin: str
    key: Ed25519PrivateKey
    retired: tuple[RetiredKey, ...] = ()
    valid_for: timedelta = timedelta(hours=24)

    @property
    def key_id(self) -> str:
        return key_id_of(self.key.public_key())

    @classmethod
    def from_settings(cls, public_url: str, private_key_pem: str, fallback: Ed25519PrivateKey,
                      retired_keys: str = "", valid_hours: float = 24.0) -> Identity:
        # Without its own key the deployment signs with the token key: federation still works,
        # but rotating one then rotates the other (deploy/README.md says to set both).
        key = load_private_key(private_key_pem) if private_key_pem else fallback
        try:
            retired = tuple(parse_retired_keys(retired_keys))
        except (ValueError, KeyError, TypeError) as error:
            raise SystemExit(f"KIZUNA_FEDERATION_RETIRED_KEYS is not valid: {error}") from error
        return cls(origin=public_url.rstrip("/"), key=key, retired=retired, valid_for=timedelta(hours=valid_hours))

    def published_keys(self, now: datetime) -> list[dict[str, Any]]:
        """The current key with a rolling window, then every retired key until it expires, and revoked keys
        (so a partner that stored one refuses it at once rather than when its window ends)."""
        keys = [{"key_id": self.key_id, "alg": "ed25519", "public_key": public_key_text(self.key.public_key()),
                 "status": "current", "valid_until": (now + self.valid_for).isoformat()}]
        for old in self.retired:
            if old.status == "retired" and old.expires_at <= now:
                continue  # expired: no longer listed, so partners drop it
            keys.append({"key_id": old.key_id, "alg": "ed25519", "public_key": public_key_text(old.public_key),
                         "status": old.status, "valid_until": old.expires_at.isoformat()})
        return keys

    def own_key(self, key_id: str, now: datetime) -> Ed25519PublicKey:
        """One of this deployment's own keys (a message it signed to itself): no fetch needed."""
        if key_id == self.key_id:
            return self.key.public_key()
        for old in self.retired:
            if old.key_id == key_id:
                if old.status == "revoked":
                    raise SignatureRejected(f"the key {key_id} is revoked", "revoked-key")
                if old.expires_at <= now:
                    raise SignatureRejected(f"the key {key_id} expired at {old.expires_at.isoformat()}",
                                            "expired-key")
                return old.public_key
        raise SignatureRejected(f"this deployment has no key {key_id}", "unknown-key")

    def document(self, communities: list[dict[str, Any]], now: datetime | None = None) -> dict[str, Any]:
        return {
            "protocol": "kizuna-federation/1",
            "origin": self.origin,
            "inbox": f"{self.origin}{INBOX}",
            "keys": self.published_keys(now or datetime.now(UTC)),
            "communities": communities,
        }


# Where this gateway may send a request: kizuna.addresses (the same guard as the webhooks' deliveries).


async def fetch_document(http: httpx.AsyncClient, origin: str, guard: AddressGuard) -> dict[str, Any]:
    """The origin's identity document: its address checked first, no redirects, at most 64 KiB."""
    await guard.check(origin)
    async with http.stream("GET", f"{origin}{WELL_KNOWN}", timeout=FETCH_TIMEOUT_SECONDS,
                           follow_redirects=False) as response:
        if response.status_code != 200:
            raise ValueError(f"{origin}{WELL_KNOWN} answered {response.status_code}")
        body = b""
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > DOCUMENT_MAX_BYTES:
                raise ValueError(f"{origin}{WELL_KNOWN} is larger than {DOCUMENT_MAX_BYTES} bytes")
    document = json.loads(body)
    if not isinstance(document, dict):
        raise ValueError(f"{origin}{WELL_KNOWN} is not a JSON object")
    if str(document.get("origin", "")).rstrip("/") != origin:
        raise ValueError(f"{origin} publishes itself as {document.get('origin')!r}")
    return document


# ---- partners' keys ----

@dataclass(frozen=True)
class PublishedKey:
    key_id: str
    public_key: str
    status: KeyStatus
    not_before: datetime | None
    valid_until: datetime

    def usable_at(self, now: datetime) -> bool:
        return self.status != "revoked" and (self.not_before is None or self.not_before <= now) \
            and now < self.valid_until


def _time(value: Any, what: str) -> datetime | None:
    if value in (None, ""):
        return None
    moment = datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        raise ValueError(f"{what} needs a UTC offset")
    return moment


def published_keys(document: dict[str, Any], fetched_at: datetime) -> list[PublishedKey]:
    """The document's keys, each checked (an Ed25519 key whose id is its hash) and its window bounded."""
    entries = document.get("keys", [])
    if not isinstance(entries, list):
        raise ValueError("keys is not a list")
    keys = []
    for entry in entries:
        text = str(entry["public_key"])
        key_id = str(entry["key_id"])
        if key_id_of(public_key_from_text(text)) != key_id:
            raise ValueError(f"the key listed as {key_id} does not have that id")
        status = entry.get("status", "current")
        if status not in ("current", "retired", "revoked"):
            raise ValueError(f"unknown key status {status!r}")
        published_until = _time(entry.get("valid_until") or entry.get("expires_at"), "valid_until")
        horizon = fetched_at + (LONGEST_TRUST if published_until else TRUST_WITHOUT_WINDOW)
        keys.append(PublishedKey(key_id, text, status, _time(entry.get("not_before"), "not_before"),
                                 min(published_until or horizon, horizon)))
    return keys


async def remember_keys(conn: asyncpg.Connection, origin: str, document: dict[str, Any],
                        fetched_at: datetime | None = None) -> list[PublishedKey]:
    """Stores the origin's keys with their windows and forgets any key its document no longer lists."""
    keys = published_keys(document, fetched_at or datetime.now(UTC))
    async with conn.transaction():
        await conn.execute("DELETE FROM partner_keys WHERE origin = $1 AND NOT key_id = ANY($2::text[])",
                           origin, [k.key_id for k in keys])
        await conn.executemany(
            "INSERT INTO partner_keys (origin, key_id, public_key, status, not_before, valid_until) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (origin, key_id) DO UPDATE SET "
            "public_key = EXCLUDED.public_key, status = EXCLUDED.status, not_before = EXCLUDED.not_before, "
            "valid_until = EXCLUDED.valid_until, fetched_at = now()",
            [(origin, k.key_id, k.public_key, k.status, k.not_before, k.valid_until) for k in keys])
    return keys


FETCHABLE_STATES = ("proposed", "active", "suspended")


@dataclass
class PartnerKeys:
    """Finds the key a message names; asks the sender's deployment only if it is a partner chosen here."""

    pool: asyncpg.Pool
    http: httpx.AsyncClient
    guard: AddressGuard
    identity: Identity
    cooldown_seconds: float = REFETCH_COOLDOWN_SECONDS
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    _unhelpful_fetch_at: dict[str, float] = field(default_factory=dict)

    async def key_for(self, origin: str, key_id: str) -> Ed25519PublicKey | None:
        """The trusted key, or None when the origin is no partner of ours and the key is unknown (only a
        proposal may then carry its own key). Raises ``SignatureRejected`` for a revoked, expired or
        unpublished key of a partner."""
        now = datetime.now(UTC)
        if origin == self.identity.origin:
            return self.identity.own_key(key_id, now)
        stored = await self._stored(origin, key_id)
        if stored is not None and stored.status == "revoked":
            raise SignatureRejected(f"{origin} revoked the key {key_id}", "revoked-key")
        if stored is not None and stored.usable_at(now):
            return public_key_from_text(stored.public_key)
        if not await self.is_partner(origin):
            if stored is not None:
                raise SignatureRejected(f"the key {key_id} of {origin} is outside its validity window", "expired-key")
            return None
        stored = await self._refreshed(origin, key_id)
        now = datetime.now(UTC)
        if stored is None:
            raise SignatureRejected(f"{origin} does not publish the key {key_id}", "unknown-key")
        if stored.status == "revoked":
            raise SignatureRejected(f"{origin} revoked the key {key_id}", "revoked-key")
        if not stored.usable_at(now):
            raise SignatureRejected(f"the key {key_id} of {origin} is outside its validity window", "expired-key")
        return public_key_from_text(stored.public_key)

    async def is_partner(self, origin: str) -> bool:
        async with self.pool.acquire() as conn:
            return bool(await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM partnerships WHERE partner_origin = $1 AND status = ANY($2::text[]))",
                origin, list(FETCHABLE_STATES)))

    async def _stored(self, origin: str, key_id: str) -> PublishedKey | None:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT key_id, public_key, status, not_before, valid_until FROM partner_keys "
                                      "WHERE origin = $1 AND key_id = $2", origin, key_id)
        return PublishedKey(**dict(row)) if row else None

    async def _refreshed(self, origin: str, key_id: str) -> PublishedKey | None:
        # One fetch per origin at a time: concurrent messages wait for it (holding no connection).
        lock = self._locks.setdefault(origin, asyncio.Lock())
        async with lock:
            stored = await self._stored(origin, key_id)
            if stored is not None and (stored.status == "revoked" or stored.usable_at(datetime.now(UTC))):
                return stored  # another message's fetch already brought it
            last = self._unhelpful_fetch_at.get(origin)
            if last is not None and time.monotonic() - last < self.cooldown_seconds:
                if stored is not None:
                    return stored  # known and out of its window: refused as such, no need to ask again
                raise SignatureRejected(
                    f"the keys of {origin} were fetched moments ago without {key_id}; retry later",
                    "key-refresh-deferred", status=503)
            try:
                await self.refresh(origin)
            except SignatureRejected:
                self._unhelpful_fetch_at[origin] = time.monotonic()
                raise
            stored = await self._stored(origin, key_id)
            if stored is None or not stored.usable_at(datetime.now(UTC)):
                self._unhelpful_fetch_at[origin] = time.monotonic()
            else:
                self._unhelpful_fetch_at.pop(origin, None)
            return stored

    async def refresh(self, origin: str) -> list[PublishedKey]:
        """Fetches the origin's document (no connection held meanwhile) and stores its keys."""
        try:
            document = await fetch_document(self.http, origin, self.guard)
            async with self.pool.acquire() as conn:
                return await remember_keys(conn, origin, document)
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as error:
            log.warning("could not fetch partner keys", extra={"origin": origin, "error": repr(error)})
            raise SignatureRejected(f"the keys of {origin} could not be fetched", "unknown-key") from error


def key_in(keys: Iterable[PublishedKey], key_id: str, now: datetime) -> PublishedKey | None:
    """The listed key ``key_id`` if it may be used now."""
    return next((k for k in keys if k.key_id == key_id and k.usable_at(now)), None)

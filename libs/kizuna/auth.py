"""Who is calling: the operator (a secret token) or a holder of a signed community token.

Community tokens are EdDSA (Ed25519) JWTs: ``sub`` member id, ``cid`` community id, ``role``,
``scope`` (member, dashboard or partner), ``aud`` "kizuna", ``exp``, ``jti`` and a ``kid``
header naming the key. The gateway issues them and checks revocation; every service verifies
them again with the public keys it is given, so a service trusts nothing it was not given.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from fastapi import Request

from .errors import Forbidden, NotFound, Unauthorized

AUDIENCE = "kizuna"
ISSUER = "kizuna-gateway"
Role = Literal["owner", "facilitator", "member"]
ROLE_RANK = {"member": 1, "facilitator": 2, "owner": 3}
Scope = Literal["member", "dashboard", "partner"]


@dataclass(frozen=True)
class Principal:
    kind: Literal["operator", "member"]
    community_id: str | None = None
    member_id: str | None = None
    role: str | None = None
    scope: str = "member"
    token_id: str | None = None
    expires_at: float | None = None  # the token's ``exp`` (seconds since the epoch)
    # A visitor token for a signed-in person names their account in the community (``acct``); a token
    # exchanged for a browser session names that session (``sid``), so signing out ends the token too.
    account: str | None = None
    session_id: str | None = None

    @property
    def actor(self) -> str:
        return "operator" if self.kind == "operator" else f"member:{self.member_id}"

    @property
    def is_operator(self) -> bool:
        return self.kind == "operator"

    def require_community(self, community_id: str) -> None:
        """Anyone outside the community gets the same 404 as for a community that does not exist."""
        if self.is_operator:
            return
        if self.community_id != str(community_id):
            raise NotFound("community not found")

    def require_role(self, community_id: str, minimum: Role) -> None:
        self.require_community(community_id)
        if self.is_operator:
            return
        if self.scope != "member":
            raise Forbidden(f"a {self.scope} token cannot do this")
        self._require_rank(minimum)

    def require_reader(self, community_id: str, minimum: Role) -> None:
        """Like ``require_role``, but a read-only dashboard token issued for such a member may read too."""
        if self.scope != "dashboard":
            self.require_role(community_id, minimum)
            return
        self.require_community(community_id)
        self._require_rank(minimum)

    def _require_rank(self, minimum: Role) -> None:
        if ROLE_RANK.get(self.role or "", 0) < ROLE_RANK[minimum]:
            raise Forbidden(f"requires the {minimum} role or higher", required_role=minimum)

    def require_writer(self, community_id: str) -> None:
        self.require_role(community_id, "member")

    def is_self(self, member_id: str) -> bool:
        return self.member_id == str(member_id)


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest()[:9]).decode().rstrip("=")


def generate_private_key_pem() -> str:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def load_private_key(pem: str) -> Ed25519PrivateKey:
    # Env files hold a PEM on one line with literal `\n` between its lines (deploy/README.md), as for
    # load_public_keys; a real newline never appears as backslash-n inside base64, so both forms load.
    key = serialization.load_pem_private_key(pem.strip().replace("\\n", "\n").encode(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("expected an Ed25519 private key")
    return key


def public_pem(private_key: Ed25519PrivateKey) -> str:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_public_keys(pems: str) -> dict[str, Ed25519PublicKey]:
    keys: dict[str, Ed25519PublicKey] = {}
    marker = "-----END PUBLIC KEY-----"
    for chunk in pems.replace("\\n", "\n").split(marker):
        if "BEGIN PUBLIC KEY" not in chunk:
            continue
        key = serialization.load_pem_public_key((chunk.strip() + "\n" + marker + "\n").encode())
        if isinstance(key, Ed25519PublicKey):
            keys[key_id(key)] = key
    return keys


def issue_token(private_key: Ed25519PrivateKey, *, community_id: str, member_id: str, role: str,
                scope: str = "member", ttl_seconds: int = 3600, token_id: str | None = None,
                account: str | None = None, session_id: str | None = None) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE, "sub": member_id, "cid": community_id, "role": role,
                              "scope": scope, "iat": now, "nbf": now - 5, "exp": now + ttl_seconds,
                              "jti": token_id or str(uuid.uuid4())}
    if account is not None:
        claims["acct"] = account
    if session_id is not None:
        claims["sid"] = session_id
    return jwt.encode(claims, private_key, algorithm="EdDSA", headers={"kid": key_id(private_key.public_key())})


class Authenticator:
    """Checks bearer tokens. Community tokens that verified are remembered (token → principal, at most
    ``VERIFIED_TOKENS`` of them, least recently used dropped first) until they expire, so a token used
    again skips the signature check; a remembered token is still refused once its ``exp`` has passed or
    its key is no longer accepted. Revocation is not the authenticator's business (the gateway checks it)."""

    VERIFIED_TOKENS = 4096

    def __init__(self, operator_token: str, public_keys: dict[str, Ed25519PublicKey]) -> None:
        self.operator_token = operator_token
        self.public_keys = public_keys
        self._verified: OrderedDict[str, tuple[Principal, float, str, Ed25519PublicKey]] = OrderedDict()

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise Unauthorized("a bearer token is required", slug="missing-token")
        token = authorization[7:].strip()
        if self.operator_token and hmac.compare_digest(token.encode(), self.operator_token.encode()):
            return Principal(kind="operator")
        return self.verify(token)

    def verify(self, token: str) -> Principal:
        remembered = self._verified.get(token)
        if remembered is not None:
            who, expires, signed_by, with_key = remembered
            if expires > time.time() and self.public_keys.get(signed_by) is with_key:
                self._verified.move_to_end(token)
                return who
            del self._verified[token]  # expired or its key retired: verify afresh (and refuse)
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = self.public_keys.get(str(kid))
            if key is None:
                raise Unauthorized("token signed by an unknown key", slug="invalid-token")
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=["EdDSA"], audience=AUDIENCE, issuer=ISSUER,
                options={"require": ["exp", "sub", "cid", "role", "jti"]},
            )
        except jwt.ExpiredSignatureError as error:
            raise Unauthorized("the token has expired", slug="expired-token") from error
        except jwt.PyJWTError as error:
            raise Unauthorized("the token is not valid", slug="invalid-token") from error
        if claims.get("scope") == "operator":  # a person with operator rights, signed in (docs/identity.md)
            who = Principal(kind="operator", scope="operator", token_id=str(claims["jti"]),
                            expires_at=float(claims["exp"]),
                            session_id=str(claims["sid"]) if "sid" in claims else None)
            self._verified[token] = (who, float(claims["exp"]), str(kid), key)
            return who
        who = Principal(kind="member", community_id=str(claims["cid"]), member_id=str(claims["sub"]),
                        role=str(claims["role"]), scope=str(claims.get("scope", "member")),
                        token_id=str(claims["jti"]), expires_at=float(claims["exp"]),
                        account=str(claims["acct"]) if "acct" in claims else None,
                        session_id=str(claims["sid"]) if "sid" in claims else None)
        self._verified[token] = (who, float(claims["exp"]), str(kid), key)
        if len(self._verified) > self.VERIFIED_TOKENS:
            self._verified.popitem(last=False)
        return who


async def principal(request: Request) -> Principal:
    """FastAPI dependency: the authenticated caller of this request. ``async`` although it never waits:
    FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop on every request."""
    authenticator: Authenticator = request.app.state.authenticator
    return authenticator.authenticate(request.headers.get("authorization"))

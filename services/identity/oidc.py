"""The OpenID Connect relying party of the identity service: one ``OidcClient`` per configured provider.

A sign-in has two halves, with the browser travelling between them:

- ``begin`` builds the provider's authorization URL (authorization code flow, S256 PKCE, fresh ``state`` and
  ``nonce``) and returns the ``PendingSignIn`` the server keeps: only ``state`` ever reaches the browser (and
  the nonce and PKCE challenge, which prove nothing without the verifier kept here).
- ``finish`` takes the callback's query parameters, checks them against the pending sign-in, exchanges the code
  at the provider's token endpoint from the server (the code verifier and the client secret never leave it) and
  validates the ID token fully before anything about the person is believed.

No FastAPI here: the identity service's routes call this module and turn ``OidcError`` into a problem response.
Operator documentation: docs/identity-oidc.md.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import quote_plus, urlencode, urlsplit

import httpx
import jwt

from kizuna.errors import Problem

SIGN_IN_LIFETIME_SECONDS: Final = 10 * 60
"""A pending sign-in older than this is refused: the person starts again (a code is short-lived anyway)."""

CLOCK_LEEWAY_SECONDS: Final = 60
"""Allowed disagreement between our clock and the provider's for exp, iat and nbf."""

DISCOVERY_MAX_AGE_SECONDS: Final = 24 * 60 * 60
"""The discovery document is fetched again after a day, so moved endpoints are picked up without a restart."""

JWKS_REFETCH_INTERVAL_SECONDS: Final = 10.0
"""An unknown ``kid`` re-fetches the provider's keys at most this often: a rotated key is found at once, while a
stream of tokens naming keys that do not exist cannot make us hammer the provider."""

HTTP_TIMEOUT: Final = httpx.Timeout(10.0, connect=5.0)

NAME_PATTERN: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")

ASYMMETRIC_ALGORITHMS: Final = frozenset({
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
})
SYMMETRIC_ALGORITHMS: Final = frozenset({"HS256", "HS384", "HS512"})
"""HMAC ID tokens are signed with the client secret (LINE's web login does this); accepted only when configured."""

TOKEN_ENDPOINT_AUTH_METHODS: Final = ("client_secret_basic", "client_secret_post")

class _Absent(enum.Enum):
    NOT_GIVEN = enum.auto()


NOT_GIVEN: Final = _Absent.NOT_GIVEN
"""``finish(iss=...)`` left out: the caller does not pass the callback's iss (RFC 9207 not checked)."""


def callback_path(name: str) -> str:
    """Where a provider sends the browser back; the operator registers ``{origin}`` + this at the provider."""
    return f"/v1/sign-in/oidc/{name}/callback"


@dataclass(frozen=True)
class ProviderConfig:
    name: str                 # url-safe slug, e.g. "line"; the callback is {origin}/v1/sign-in/oidc/{name}/callback
    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    display_name: str         # shown on the sign-in button, e.g. "LINE"
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    # LINE's web login signs with HS256 (the channel secret), its SDKs and LIFF with ES256: see docs/identity-oidc.md.
    id_token_algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
    # None: chosen from discovery's token_endpoint_auth_methods_supported (basic first; basic when it is absent,
    # as OpenID Connect Discovery says). LINE lists none but takes only client_secret_post.
    token_endpoint_auth_method: str | None = None
    # ("groups", "kizuna-operators"): a person whose ID token carries this claim value (or a list holding it)
    # has operator rights while it does (docs/identity.md).
    operator_claim: tuple[str, str] | None = None

    def grants_operator(self, claims: Mapping[str, Any]) -> bool:
        if self.operator_claim is None:
            return False
        name, wanted = self.operator_claim
        value = claims.get(name)
        return value == wanted or (isinstance(value, list) and wanted in value)


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _secure_url(url: str) -> bool:
    """https, or http to this machine (a provider under test or in development)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return True
    return parts.scheme == "http" and _is_loopback(parts.hostname)


def load_providers(environ: Mapping[str, str]) -> list[ProviderConfig]:
    """KIZUNA_OIDC_PROVIDERS=line,google and per name KIZUNA_OIDC_<NAME>_ISSUER, _CLIENT_ID, _CLIENT_SECRET,
    _DISPLAY_NAME (default: the name), _SCOPES (space separated), _ID_TOKEN_ALGORITHMS (space or comma separated),
    _TOKEN_ENDPOINT_AUTH_METHOD (client_secret_basic or client_secret_post; default from discovery).
    A missing or unusable setting raises ValueError naming the variable."""
    listed = environ.get("KIZUNA_OIDC_PROVIDERS", "").strip()
    if not listed:
        return []
    providers: list[ProviderConfig] = []
    for raw_name in listed.split(","):
        name = raw_name.strip()
        if not NAME_PATTERN.fullmatch(name):
            raise ValueError(
                f"KIZUNA_OIDC_PROVIDERS: {name!r} is not a provider name (lower-case letters, digits and '-', "
                "at most 32, as it appears in the callback URL)")
        if any(provider.name == name for provider in providers):
            raise ValueError(f"KIZUNA_OIDC_PROVIDERS: {name!r} is listed twice")
        providers.append(_load_provider(environ, name))
    return providers


def _load_provider(environ: Mapping[str, str], name: str) -> ProviderConfig:
    prefix = f"KIZUNA_OIDC_{name.upper().replace('-', '_')}_"

    def setting(key: str) -> str | None:
        return environ.get(prefix + key, "").strip() or None

    def required(key: str) -> str:
        value = setting(key)
        if value is None:
            raise ValueError(f"{prefix}{key} is required for OpenID Connect provider {name!r}")
        return value

    issuer = required("ISSUER")
    if not _secure_url(issuer):
        raise ValueError(f"{prefix}ISSUER must be an https URL (http only to localhost), not {issuer!r}")
    client_id = required("CLIENT_ID")
    client_secret = required("CLIENT_SECRET")
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    if (raw_scopes := setting("SCOPES")) is not None:
        scopes = tuple(raw_scopes.split())
        if "openid" not in scopes:
            raise ValueError(f"{prefix}SCOPES must include openid (it is what makes the provider send an ID token)")
    algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
    if (raw_algorithms := setting("ID_TOKEN_ALGORITHMS")) is not None:
        algorithms = tuple(raw_algorithms.replace(",", " ").split())
        for algorithm in algorithms:
            if algorithm not in ASYMMETRIC_ALGORITHMS | SYMMETRIC_ALGORITHMS:
                raise ValueError(
                    f"{prefix}ID_TOKEN_ALGORITHMS: {algorithm!r} is not accepted (choose from "
                    f"{' '.join(sorted(ASYMMETRIC_ALGORITHMS | SYMMETRIC_ALGORITHMS))}; never none)")
        if not algorithms:
            raise ValueError(f"{prefix}ID_TOKEN_ALGORITHMS names no algorithm")
    auth_method = setting("TOKEN_ENDPOINT_AUTH_METHOD")
    if auth_method is not None and auth_method not in TOKEN_ENDPOINT_AUTH_METHODS:
        raise ValueError(
            f"{prefix}TOKEN_ENDPOINT_AUTH_METHOD must be one of {', '.join(TOKEN_ENDPOINT_AUTH_METHODS)}, "
            f"not {auth_method!r}")
    operator_claim: tuple[str, str] | None = None
    if (raw_claim := setting("OPERATOR_CLAIM")) is not None:
        claim, separator, wanted = raw_claim.partition("=")
        if not separator or not claim.strip() or not wanted.strip():
            raise ValueError(f"{prefix}OPERATOR_CLAIM must read claim=value (e.g. groups=kizuna-operators)")
        operator_claim = (claim.strip(), wanted.strip())
    return ProviderConfig(
        name=name, issuer=issuer, client_id=client_id, client_secret=client_secret,
        display_name=setting("DISPLAY_NAME") or name, scopes=scopes, id_token_algorithms=algorithms,
        token_endpoint_auth_method=auth_method, operator_claim=operator_claim,
    )


@dataclass(frozen=True)
class PendingSignIn:          # the server keeps it (in the browser session row); never sent to the browser except state
    provider: str
    state: str
    nonce: str
    code_verifier: str = field(repr=False)
    redirect_uri: str
    created_at: float


@dataclass(frozen=True)
class VerifiedIdentity:
    issuer: str
    subject: str
    email: str | None
    email_verified: bool
    name: str | None
    claims: dict[str, Any]


class OidcError(Problem):
    """A sign-in with a provider refused. ``slug`` says which check failed (``oidc-state-mismatch``,
    ``oidc-nonce-mismatch``, ``oidc-invalid-id-token``, ``oidc-provider-error``, ``oidc-code-rejected``,
    ``oidc-sign-in-expired``, ``oidc-issuer-mismatch``, ``oidc-provider-mismatch``,
    ``oidc-provider-unavailable`` (502)); ``reason`` narrows ``oidc-invalid-id-token`` down (``audience``,
    ``issuer``, ``signature``, ``unknown-key``, ``algorithm``, ``expired``, ``not-yet-valid``, ``claims``)."""

    status, slug, title = 400, "oidc-sign-in-failed", "Sign-in with the provider failed"


@dataclass(frozen=True)
class _SigningKey:
    key: Any
    key_type: str           # the JWK's kty
    algorithm: str | None   # the JWK's alg, when it names one

    def fits(self, algorithm: str) -> bool:
        """A key verifies only with its own kind of algorithm, and only with its own alg when it names one."""
        if self.algorithm is not None and self.algorithm != algorithm:
            return False
        families = {"RSA": ("RS", "PS"), "EC": ("ES",), "OKP": ("EdDSA",)}.get(self.key_type, ())
        return bool(families) and algorithm.startswith(families)


def _unavailable(config: ProviderConfig, detail: str) -> OidcError:
    return OidcError(detail, status=502, slug="oidc-provider-unavailable", title="The sign-in provider is unavailable",
                     provider=config.name)


def _invalid_id_token(config: ProviderConfig, reason: str, detail: str) -> OidcError:
    return OidcError(f"the ID token was refused: {detail}", slug="oidc-invalid-id-token",
                     title="Invalid ID token", provider=config.name, reason=reason)


_PRINTABLE = re.compile(r"[\x20-\x7e]{1,200}")


def _printable(value: object) -> str | None:
    """A provider's error code or description, safe to log and to show: printable ASCII, bounded."""
    return value if isinstance(value, str) and _PRINTABLE.fullmatch(value) else None


class OidcClient:
    """The relying party for one provider. Keep one per provider for the process' life: it caches discovery and
    the provider's keys."""

    def __init__(self, config: ProviderConfig, http: httpx.AsyncClient) -> None:
        self.config = config
        self._http = http
        self._discovery: dict[str, Any] | None = None
        self._discovered_at = 0.0
        self._discovery_lock = asyncio.Lock()
        self._keys: dict[str | None, list[_SigningKey]] = {}
        self._keys_fetched_at: float | None = None
        self._keys_lock = asyncio.Lock()
        self.jwks_refetch_interval = JWKS_REFETCH_INTERVAL_SECONDS

    # -- the two halves of a sign-in -------------------------------------------------------------------------

    async def begin(self, redirect_uri: str) -> tuple[str, PendingSignIn]:
        """The authorization URL (code flow, S256 PKCE, fresh random state and nonce) and what to keep."""
        discovery = await self.discovery()
        pending = PendingSignIn(
            provider=self.config.name,
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            code_verifier=secrets.token_urlsafe(48),   # 64 characters of the 43..128 RFC 7636 allows
            redirect_uri=redirect_uri,
            created_at=time.time(),
        )
        challenge = base64.urlsafe_b64encode(hashlib.sha256(pending.code_verifier.encode()).digest()).rstrip(b"=")
        query = urlencode({
            "response_type": "code",
            "client_id": self.config.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(self.config.scopes),
            "state": pending.state,
            "nonce": pending.nonce,
            "code_challenge": challenge.decode(),
            "code_challenge_method": "S256",
        })
        endpoint = discovery["authorization_endpoint"]
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}", pending

    async def finish(self, pending: PendingSignIn, *, state: str | None, code: str | None, error: str | None = None,
                     iss: str | Literal[_Absent.NOT_GIVEN] | None = NOT_GIVEN) -> VerifiedIdentity:
        """Checks state (constant-time), exchanges the code at the token endpoint (client_secret_basic or _post as
        the discovery document allows, with the code_verifier), and validates the ID token fully: signature
        against the provider's JWKS (fetched from discovery's jwks_uri, cached, re-fetched once when an unknown kid
        appears, never trusting a key from the token itself), alg in the allowed list (never ``none``), iss exactly
        the configured issuer, aud contains client_id (and azp == client_id when there are several audiences), exp,
        iat, nbf with 60 s leeway, nonce equal to the pending one. A pending sign-in older than 10 minutes is
        refused.

        ``iss`` is the callback's ``iss`` query parameter (RFC 9207), passed as found (None when absent): when
        passed, it must be the configured issuer, and it must be there when the provider says it sends it. That
        stops a code from one provider being redeemed at another (mix-up)."""
        config = self.config
        if pending.provider != config.name:
            raise OidcError(f"this sign-in was begun with {pending.provider!r}, not {config.name!r}",
                            slug="oidc-provider-mismatch", provider=config.name)
        if not isinstance(state, str) or not hmac.compare_digest(state.encode(), pending.state.encode()):
            raise OidcError("the state in the callback is not the one this browser was sent with; start again",
                            slug="oidc-state-mismatch", provider=config.name)
        age = time.time() - pending.created_at
        if age > SIGN_IN_LIFETIME_SECONDS or age < -CLOCK_LEEWAY_SECONDS:
            raise OidcError(f"the sign-in was begun {int(age)} s ago, longer than {SIGN_IN_LIFETIME_SECONDS} s; "
                            "start again", slug="oidc-sign-in-expired", provider=config.name)
        if error is not None:
            raise OidcError(f"the provider refused the sign-in: {_printable(error) or 'an unreadable error'}",
                            slug="oidc-provider-error", provider=config.name, provider_error=_printable(error))
        discovery = await self.discovery()
        if iss is not NOT_GIVEN:
            if iss is None and discovery.get("authorization_response_iss_parameter_supported") is True:
                raise OidcError("the callback has no iss although the provider sends it", slug="oidc-issuer-mismatch",
                                provider=config.name)
            if iss is not None and iss != config.issuer:
                raise OidcError("the callback comes from another issuer", slug="oidc-issuer-mismatch",
                                provider=config.name)
        if not code:
            raise OidcError("the callback carries no authorization code", slug="oidc-provider-error",
                            provider=config.name)
        id_token = await self._redeem(discovery, pending, code)
        claims = await self._validate_id_token(id_token)
        nonce = claims.get("nonce")
        if not isinstance(nonce, str) or not hmac.compare_digest(nonce.encode(), pending.nonce.encode()):
            raise OidcError("the ID token was not issued for this sign-in (nonce)", slug="oidc-nonce-mismatch",
                            provider=config.name)
        email = claims.get("email")
        name = claims.get("name")
        return VerifiedIdentity(
            issuer=claims["iss"],
            subject=claims["sub"],
            email=email if isinstance(email, str) and email else None,
            # Some providers send the string "true"; anything else, or no claim (LINE), is unverified.
            email_verified=claims.get("email_verified") in (True, "true"),
            name=name if isinstance(name, str) and name else None,
            claims=claims,
        )

    # -- discovery and keys ----------------------------------------------------------------------------------

    async def discovery(self) -> dict[str, Any]:
        """The provider's discovery document, fetched on first use and cached for a day."""
        async with self._discovery_lock:
            if self._discovery is None or time.monotonic() - self._discovered_at > DISCOVERY_MAX_AGE_SECONDS:
                self._discovery = await self._fetch_discovery()
                self._discovered_at = time.monotonic()
            return self._discovery

    async def _fetch_discovery(self) -> dict[str, Any]:
        config = self.config
        url = config.issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = await self._get_json(url, "discovery document")
        if document.get("issuer") != config.issuer:
            # OpenID Connect Discovery 1.0 §4.3: the issuer must be exactly the one we asked.
            raise _unavailable(config, f"the discovery document names issuer {document.get('issuer')!r}, "
                                       f"not the configured {config.issuer!r}")
        for endpoint in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = document.get(endpoint)
            if not isinstance(value, str) or not _secure_url(value):
                raise _unavailable(config, f"the discovery document has no usable {endpoint}")
        return document

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            response = await self._http.get(url, timeout=HTTP_TIMEOUT, follow_redirects=False,
                                            headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise _unavailable(self.config, f"the provider's {what} could not be fetched: "
                                            f"{type(exc).__name__}") from exc
        if response.status_code != 200:
            raise _unavailable(self.config, f"the provider's {what} answered {response.status_code}")
        try:
            document = response.json()
        except ValueError as exc:
            raise _unavailable(self.config, f"the provider's {what} is not JSON") from exc
        if not isinstance(document, dict):
            raise _unavailable(self.config, f"the provider's {what} is not a JSON object")
        return document

    async def _signing_keys(self, kid: str | None, *, refetch_if_unknown: bool) -> list[_SigningKey]:
        async with self._keys_lock:
            known = self._keys_fetched_at is not None and (kid in self._keys or (kid is None and self._keys))
            may_refetch = (self._keys_fetched_at is None
                           or time.monotonic() - self._keys_fetched_at >= self.jwks_refetch_interval)
            if not known and (self._keys_fetched_at is None or (refetch_if_unknown and may_refetch)):
                await self._fetch_keys()
            if kid is None:
                return [key for keys in self._keys.values() for key in keys]
            return list(self._keys.get(kid, []))

    async def _fetch_keys(self) -> None:
        discovery = await self.discovery()
        document = await self._get_json(discovery["jwks_uri"], "signing keys (JWKS)")
        keys: dict[str | None, list[_SigningKey]] = {}
        for entry in document.get("keys", []):
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK(entry)
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
                continue    # a key type we do not verify with (or a malformed one): other keys still count
            named_alg = entry.get("alg")
            keys.setdefault(entry.get("kid"), []).append(
                _SigningKey(key.key, key.key_type or "", named_alg if isinstance(named_alg, str) else None))
        self._keys = keys
        self._keys_fetched_at = time.monotonic()

    # -- the code exchange and the ID token ------------------------------------------------------------------

    def _auth_method(self, discovery: Mapping[str, Any]) -> str:
        if self.config.token_endpoint_auth_method is not None:
            return self.config.token_endpoint_auth_method
        supported = discovery.get("token_endpoint_auth_methods_supported")
        if supported is None:
            return "client_secret_basic"
        for method in TOKEN_ENDPOINT_AUTH_METHODS:
            if method in supported:
                return method
        raise _unavailable(self.config, "the provider takes neither client_secret_basic nor client_secret_post")

    async def _redeem(self, discovery: Mapping[str, Any], pending: PendingSignIn, code: str) -> str:
        config = self.config
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": pending.redirect_uri,
            "code_verifier": pending.code_verifier,
        }
        headers = {"Accept": "application/json"}
        if self._auth_method(discovery) == "client_secret_post":
            form |= {"client_id": config.client_id, "client_secret": config.client_secret}
        else:
            # RFC 6749 §2.3.1: both parts form-encoded before they are joined and base64-encoded.
            credentials = f"{quote_plus(config.client_id)}:{quote_plus(config.client_secret)}"
            headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
        try:
            response = await self._http.post(discovery["token_endpoint"], data=form, headers=headers,
                                             timeout=HTTP_TIMEOUT, follow_redirects=False)
        except httpx.HTTPError as exc:
            raise _unavailable(config, f"the token endpoint could not be reached: {type(exc).__name__}") from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 500 or not isinstance(body, dict):
            raise _unavailable(config, f"the token endpoint answered {response.status_code}")
        if response.status_code != 200:
            provider_error = _printable(body.get("error"))
            raise OidcError(f"the provider would not redeem the code ({provider_error or response.status_code}); "
                            "start again", slug="oidc-code-rejected", provider=config.name,
                            provider_error=provider_error)
        id_token = body.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise _invalid_id_token(config, "claims", "the token response carries no ID token")
        return id_token

    async def _validate_id_token(self, id_token: str) -> dict[str, Any]:
        config = self.config
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError as exc:
            raise _invalid_id_token(config, "claims", "it is not a JWS") from exc
        algorithm = header.get("alg")
        # Only the configured algorithms: never "none", never HMAC unless the operator asked for it. The token's
        # own jwk/jku/x5u/x5c headers are never looked at: keys come from the provider's jwks_uri alone.
        if not isinstance(algorithm, str) or algorithm not in config.id_token_algorithms:
            raise _invalid_id_token(config, "algorithm", f"it is signed with {algorithm!r}, which is not among "
                                                         f"{', '.join(config.id_token_algorithms)}")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise _invalid_id_token(config, "claims", "its kid is not a string")
        key: Any
        if algorithm in SYMMETRIC_ALGORITHMS:
            key = config.client_secret.encode()
        else:
            candidates = [k for k in await self._signing_keys(kid, refetch_if_unknown=True) if k.fits(algorithm)]
            if not candidates:
                raise _invalid_id_token(config, "unknown-key", f"it is signed with a key ({kid!r}) the provider "
                                                               "does not publish")
            if len(candidates) > 1:
                # No kid and several keys of this type: the one that verifies is the one (rare; Google sends kids).
                for candidate in candidates[:-1]:
                    try:
                        return self._decode(id_token, candidate.key, algorithm)
                    except jwt.InvalidSignatureError:
                        continue
            key = candidates[-1].key
        return self._decode(id_token, key, algorithm)

    def _decode(self, id_token: str, key: Any, algorithm: str) -> dict[str, Any]:
        config = self.config
        try:
            claims: dict[str, Any] = jwt.decode(
                id_token, key=key, algorithms=[algorithm], audience=config.client_id, issuer=config.issuer,
                leeway=CLOCK_LEEWAY_SECONDS,
                options={"require": ["iss", "sub", "aud", "exp", "iat"], "verify_signature": True,
                         "strict_aud": False},
            )
        except jwt.InvalidSignatureError as exc:
            raise _invalid_id_token(config, "signature", "its signature does not verify") from exc
        except jwt.ExpiredSignatureError as exc:
            raise _invalid_id_token(config, "expired", "it has expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise _invalid_id_token(config, "not-yet-valid", "it is not valid yet (iat or nbf in the future)") from exc
        except jwt.InvalidAudienceError as exc:
            raise _invalid_id_token(config, "audience", "it was issued to another client (aud)") from exc
        except jwt.InvalidIssuerError as exc:
            raise _invalid_id_token(config, "issuer", "it was issued by another issuer (iss)") from exc
        except jwt.PyJWTError as exc:
            raise _invalid_id_token(config, "claims", f"{exc}") from exc
        audience = claims["aud"]
        audiences = audience if isinstance(audience, list) else [audience]
        azp = claims.get("azp")
        if (len(audiences) > 1 or azp is not None) and azp != config.client_id:
            raise _invalid_id_token(config, "audience", "it was issued to another party (azp)")
        if not isinstance(claims["sub"], str) or not claims["sub"]:
            raise _invalid_id_token(config, "claims", "its sub is not a string")
        return claims

"""services/identity/oidc.py against a real OpenID Provider (oidc-provider 9.x on Node.js).

Every refused ID token here was issued and signed by a real provider instance: the primary (another client's
token, a token from an earlier sign-in), an instance claiming the primary's issuer with keys of its own, one
with the primary's keys under its own issuer, one whose clock is two hours behind. The primary then answers the
relying party's real code exchange with that token (a provider that misbehaves, or a token substituted on the
way), so each test fails if the check it names is missing from ``finish``.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from services.identity.oidc import (
    NOT_GIVEN,
    SIGN_IN_LIFETIME_SECONDS,
    OidcClient,
    OidcError,
    PendingSignIn,
    ProviderConfig,
    callback_path,
    load_providers,
)
from tests.identity.oidc_fixture import (
    OidcProviderFactory,
    OidcProviderProcess,
    callback_parameters,
    new_signing_keys,
    obtain_id_token,
    oidc_provider_factory,  # noqa: F401  (the session fixture, used through the providers fixture below)
    sign_in_at_provider,
)

CALLBACK = "http://127.0.0.1:9" + callback_path("test")   # never requested: the helper stops at the redirect
KIZUNA = {"client_id": "kizuna", "client_secret": "kizuna-test-secret", "redirect_uris": [CALLBACK]}
OTHER_APP = {"client_id": "other-app", "client_secret": "other-app-secret", "redirect_uris": [CALLBACK]}
POST_ONLY = {"client_id": "kizuna-post", "client_secret": "kizuna-post-secret", "redirect_uris": [CALLBACK],
             "token_endpoint_auth_method": "client_secret_post"}
HMAC_SIGNED = {"client_id": "kizuna-hs", "client_secret": "a-channel-secret-of-32-characters-or-more",
               "redirect_uris": [CALLBACK], "id_token_signed_response_alg": "HS256"}
CLIENTS = [KIZUNA, OTHER_APP, POST_ONLY, HMAC_SIGNED]


@dataclasses.dataclass
class Providers:
    primary: OidcProviderProcess
    impostor: OidcProviderProcess          # claims the primary's issuer, signs with a key of its own (its own kid)
    same_kid_impostor: OidcProviderProcess  # the same, but its key carries the primary's kid
    other_issuer: OidcProviderProcess      # the primary's keys, its own issuer
    slow_clock: OidcProviderProcess        # the primary's issuer and keys, its clock two hours behind


@pytest.fixture(scope="module")
def providers(oidc_provider_factory: OidcProviderFactory) -> Iterator[Providers]:  # noqa: F811
    primary = oidc_provider_factory(CLIENTS)
    primary_kid = primary.jwks["keys"][0]["kid"]
    yield Providers(
        primary=primary,
        impostor=oidc_provider_factory(CLIENTS, issuer=primary.issuer),
        same_kid_impostor=oidc_provider_factory(CLIENTS, issuer=primary.issuer, jwks=new_signing_keys(primary_kid)),
        other_issuer=oidc_provider_factory(CLIENTS, jwks=primary.jwks),
        slow_clock=oidc_provider_factory(CLIENTS, issuer=primary.issuer, jwks=primary.jwks,
                                         clock_offset_seconds=-2 * 60 * 60),
    )


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """The identity service's own HTTP client (discovery, keys, code exchange)."""
    async with httpx.AsyncClient() as client:
        yield client


def config_for(provider: OidcProviderProcess, client: dict[str, Any] = KIZUNA, **changes: Any) -> ProviderConfig:
    return dataclasses.replace(
        ProviderConfig(name="test", issuer=provider.issuer, client_id=client["client_id"],
                       client_secret=client["client_secret"], display_name="Test provider"),
        **changes)


async def sign_in(client: OidcClient, login: str) -> tuple[PendingSignIn, dict[str, str]]:
    """begin, then a person signs in at the provider in a browser of their own: the pending sign-in and the
    callback's parameters."""
    url, pending = await client.begin(CALLBACK)
    async with httpx.AsyncClient(timeout=10.0) as browser:
        callback = await sign_in_at_provider(browser, url, login)
    assert callback.startswith(CALLBACK + "?")
    return pending, callback_parameters(callback)


async def finish(client: OidcClient, pending: PendingSignIn, params: dict[str, str]) -> Any:
    return await client.finish(pending, state=params.get("state"), code=params.get("code"),
                               error=params.get("error"), iss=params.get("iss"))


async def refused(client: OidcClient, pending: PendingSignIn, params: dict[str, str]) -> OidcError:
    with pytest.raises(OidcError) as refusal:
        await finish(client, pending, params)
    return refusal.value


# -- the happy path ----------------------------------------------------------------------------------------------

async def test_a_person_signs_in_and_comes_back_with_their_verified_email(
        providers: Providers, http: httpx.AsyncClient) -> None:
    client = OidcClient(config_for(providers.primary), http)
    url, pending = await client.begin(CALLBACK)

    query = {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}
    assert query["response_type"] == "code" and query["code_challenge_method"] == "S256"
    assert query["state"] == pending.state and query["nonce"] == pending.nonce
    assert pending.code_verifier not in url and len(pending.code_verifier) >= 43
    assert set(query["scope"].split()) == {"openid", "email", "profile"}

    async with httpx.AsyncClient(timeout=10.0) as browser:
        params = callback_parameters(await sign_in_at_provider(browser, url, "aiko"))
    identity = await finish(client, pending, params)

    assert identity.issuer == providers.primary.issuer
    assert identity.subject == "aiko"
    assert identity.email == "aiko@example.test" and identity.email_verified is True
    assert identity.name == "Test person aiko"
    assert identity.claims["aud"] == "kizuna"

    _, second = await client.begin(CALLBACK)
    assert (second.state, second.nonce, second.code_verifier) != (pending.state, pending.nonce, pending.code_verifier)


async def test_discovery_and_keys_are_fetched_once_for_many_sign_ins(
        providers: Providers, http: httpx.AsyncClient) -> None:
    client = OidcClient(config_for(providers.primary), http)
    before = await providers.primary.request_counts(http)
    for login in ("hana", "sora", "daiki"):
        identity = await finish(client, *await sign_in(client, login))
        assert identity.subject == login
    after = await providers.primary.request_counts(http)
    assert after["/.well-known/openid-configuration"] - before.get("/.well-known/openid-configuration", 0) == 1
    assert after["/jwks"] - before.get("/jwks", 0) == 1
    assert after["/token"] - before.get("/token", 0) == 3


async def test_a_provider_that_takes_only_client_secret_post_is_configured_so(
        providers: Providers, http: httpx.AsyncClient) -> None:
    # LINE's token endpoint reads the secret from the form only and its discovery names no method: the default
    # (client_secret_basic, as the discovery spec says) is refused, the configured client_secret_post works.
    basic = OidcClient(config_for(providers.primary, POST_ONLY), http)
    refusal = await refused(basic, *await sign_in(basic, "kenji"))
    assert refusal.slug == "oidc-code-rejected" and refusal.extensions["provider_error"] == "invalid_client"

    post = OidcClient(config_for(providers.primary, POST_ONLY, token_endpoint_auth_method="client_secret_post"), http)
    identity = await finish(post, *await sign_in(post, "kenji"))
    assert identity.subject == "kenji" and identity.claims["aud"] == "kizuna-post"


async def test_hmac_signed_id_tokens_only_when_the_operator_allows_them(
        providers: Providers, http: httpx.AsyncClient) -> None:
    # LINE's web login signs ID tokens with HS256 and the channel secret.
    default = OidcClient(config_for(providers.primary, HMAC_SIGNED), http)
    refusal = await refused(default, *await sign_in(default, "yui"))
    assert (refusal.slug, refusal.extensions["reason"]) == ("oidc-invalid-id-token", "algorithm")

    allowed = OidcClient(config_for(providers.primary, HMAC_SIGNED, id_token_algorithms=("HS256",)), http)
    identity = await finish(allowed, *await sign_in(allowed, "yui"))
    assert identity.subject == "yui"

    # An HS256 token whose claims are all right but that was signed with another secret does not verify.
    pending, params = await sign_in(allowed, "yui")
    genuine = await obtain_id_token(providers.primary, HMAC_SIGNED, "yui", nonce=pending.nonce)
    claims = jwt.decode(genuine, options={"verify_signature": False})
    await providers.primary.substitute_next_id_token(
        http, jwt.encode(claims, "another-secret-of-at-least-32-characters", algorithm="HS256"))
    refusal = await refused(allowed, pending, params)
    assert (refusal.slug, refusal.extensions["reason"]) == ("oidc-invalid-id-token", "signature")


# -- state, code, callback --------------------------------------------------------------------------------------

async def test_a_wrong_or_missing_state_is_refused_before_the_code_is_spent(
        providers: Providers, http: httpx.AsyncClient) -> None:
    client = OidcClient(config_for(providers.primary), http)
    pending, params = await sign_in(client, "mika")
    before = await providers.primary.request_counts(http)

    wrong = await refused(client, pending, params | {"state": params["state"][:-1] + "x"})
    assert (wrong.slug, wrong.status) == ("oidc-state-mismatch", 400)
    missing = await refused(client, pending, {key: value for key, value in params.items() if key != "state"})
    assert missing.slug == "oidc-state-mismatch"
    another_sign_in = await refused(client, dataclasses.replace(pending, state=secrets.token_urlsafe(32)), params)
    assert another_sign_in.slug == "oidc-state-mismatch"

    assert (await providers.primary.request_counts(http)).get("/token", 0) == before.get("/token", 0)
    assert (await finish(client, pending, params)).subject == "mika"   # the code was never spent


async def test_a_replayed_code_is_refused(providers: Providers, http: httpx.AsyncClient) -> None:
    client = OidcClient(config_for(providers.primary), http)
    pending, params = await sign_in(client, "ren")
    assert (await finish(client, pending, params)).subject == "ren"
    replay = await refused(client, pending, params)
    assert (replay.slug, replay.extensions["provider_error"]) == ("oidc-code-rejected", "invalid_grant")


async def test_a_sign_in_begun_more_than_ten_minutes_ago_is_refused(
        providers: Providers, http: httpx.AsyncClient) -> None:
    client = OidcClient(config_for(providers.primary), http)
    pending, params = await sign_in(client, "nao")
    stale = dataclasses.replace(pending, created_at=pending.created_at - SIGN_IN_LIFETIME_SECONDS - 1)
    assert (await refused(client, stale, params)).slug == "oidc-sign-in-expired"
    assert (await finish(client, pending, params)).subject == "nao"


async def test_a_provider_error_a_foreign_iss_and_another_providers_sign_in_are_refused(
        providers: Providers, http: httpx.AsyncClient) -> None:
    client = OidcClient(config_for(providers.primary), http)
    pending, params = await sign_in(client, "taro")

    denied = await refused(client, pending, {"state": params["state"], "error": "access_denied"})
    assert (denied.slug, denied.extensions["provider_error"]) == ("oidc-provider-error", "access_denied")
    assert (await refused(client, pending, params | {"iss": providers.other_issuer.issuer})).slug == \
        "oidc-issuer-mismatch"
    # The provider announces RFC 9207 (authorization_response_iss_parameter_supported): a callback without iss is
    # refused when the caller passes what it found...
    assert (await refused(client, pending, {k: v for k, v in params.items() if k != "iss"})).slug == \
        "oidc-issuer-mismatch"
    other = OidcClient(dataclasses.replace(client.config, name="other"), http)
    assert (await refused(other, pending, params)).slug == "oidc-provider-mismatch"
    # ...and not checked when the caller passes nothing.
    identity = await client.finish(pending, state=params["state"], code=params["code"], iss=NOT_GIVEN)
    assert identity.subject == "taro"


# -- ID tokens that real providers issued, substituted into the real code exchange ----------------------------

async def substituted(providers: Providers, http: httpx.AsyncClient, client: OidcClient, login: str,
                      source: OidcProviderProcess, source_client: dict[str, Any], *, nonce: str | None = None
                      ) -> OidcError:
    """A sign-in whose code exchange the primary answers with an ID token ``source`` issued to ``source_client``."""
    pending, params = await sign_in(client, login)
    id_token = await obtain_id_token(source, source_client, login, nonce=nonce or pending.nonce)
    await providers.primary.substitute_next_id_token(http, id_token)
    return await refused(client, pending, params)


async def test_an_id_token_issued_to_another_client_is_refused(providers: Providers, http: httpx.AsyncClient) -> None:
    client = OidcClient(config_for(providers.primary), http)
    refusal = await substituted(providers, http, client, "aiko", providers.primary, OTHER_APP)
    assert (refusal.slug, refusal.extensions["reason"]) == ("oidc-invalid-id-token", "audience")


async def test_an_id_token_from_another_issuer_is_refused(providers: Providers, http: httpx.AsyncClient) -> None:
    client = OidcClient(config_for(providers.primary), http)
    refusal = await substituted(providers, http, client, "aiko", providers.other_issuer, KIZUNA)
    assert (refusal.slug, refusal.extensions["reason"]) == ("oidc-invalid-id-token", "issuer")


async def test_an_id_token_signed_with_an_unknown_key_is_refused_after_one_look_for_new_keys(
        providers: Providers, http: httpx.AsyncClient) -> None:
    client = OidcClient(config_for(providers.primary), http)
    client.jwks_refetch_interval = 0.0     # a rotated key would be looked for at once
    assert (await finish(client, *await sign_in(client, "aiko"))).subject == "aiko"   # the keys are cached now
    before = (await providers.primary.request_counts(http))["/jwks"]

    refusal = await substituted(providers, http, client, "aiko", providers.impostor, KIZUNA)
    assert (refusal.slug, refusal.extensions["reason"]) == ("oidc-invalid-id-token", "unknown-key")
    assert (await providers.primary.request_counts(http))["/jwks"] == before + 1

    # A key that borrows the published kid is not trusted for it: the signature does not verify.
    refusal = await substituted(providers, http, client, "aiko", providers.same_kid_impostor, KIZUNA)
    assert (refusal.slug, refusal.extensions["reason"]) == ("oidc-invalid-id-token", "signature")


async def test_an_id_token_from_an_earlier_sign_in_is_refused_by_its_nonce(
        providers: Providers, http: httpx.AsyncClient) -> None:
    client = OidcClient(config_for(providers.primary), http)
    earlier_nonce = secrets.token_urlsafe(32)
    refusal = await substituted(providers, http, client, "aiko", providers.primary, KIZUNA, nonce=earlier_nonce)
    assert (refusal.slug, refusal.status) == ("oidc-nonce-mismatch", 400)


async def test_an_expired_id_token_is_refused(providers: Providers, http: httpx.AsyncClient) -> None:
    client = OidcClient(config_for(providers.primary), http)
    refusal = await substituted(providers, http, client, "aiko", providers.slow_clock, KIZUNA)
    assert (refusal.slug, refusal.extensions["reason"]) == ("oidc-invalid-id-token", "expired")


async def test_an_unsigned_id_token_is_refused(providers: Providers, http: httpx.AsyncClient) -> None:
    client = OidcClient(config_for(providers.primary), http)
    pending, params = await sign_in(client, "aiko")
    genuine = await obtain_id_token(providers.primary, KIZUNA, "aiko", nonce=pending.nonce)
    claims = jwt.decode(genuine, options={"verify_signature": False})
    unsigned = jwt.encode(claims, key="", algorithm="none")
    await providers.primary.substitute_next_id_token(http, unsigned)
    refusal = await refused(client, pending, params)
    assert (refusal.slug, refusal.extensions["reason"]) == ("oidc-invalid-id-token", "algorithm")


# -- discovery ----------------------------------------------------------------------------------------------------

async def test_a_discovery_document_naming_another_issuer_or_no_provider_is_a_502(
        providers: Providers, http: httpx.AsyncClient) -> None:
    # The impostor listens elsewhere but names the primary as its issuer: configured by its own address, it is
    # not the issuer it claims.
    impostor = OidcClient(config_for(providers.impostor, issuer=providers.impostor.url), http)
    with pytest.raises(OidcError) as refusal:
        await impostor.begin(CALLBACK)
    assert (refusal.value.slug, refusal.value.status) == ("oidc-provider-unavailable", 502)

    gone = OidcClient(config_for(providers.primary, issuer="http://127.0.0.1:9"), http)
    with pytest.raises(OidcError) as refusal:
        await gone.begin(CALLBACK)
    assert (refusal.value.slug, refusal.value.status) == ("oidc-provider-unavailable", 502)


# -- configuration ------------------------------------------------------------------------------------------------

LINE_AND_GOOGLE = {
    "KIZUNA_OIDC_PROVIDERS": "line, google",
    "KIZUNA_OIDC_LINE_ISSUER": "https://access.line.me",
    "KIZUNA_OIDC_LINE_CLIENT_ID": "1234567890",
    "KIZUNA_OIDC_LINE_CLIENT_SECRET": "line-channel-secret",
    "KIZUNA_OIDC_LINE_DISPLAY_NAME": "LINE",
    "KIZUNA_OIDC_LINE_SCOPES": "openid profile email",
    "KIZUNA_OIDC_LINE_ID_TOKEN_ALGORITHMS": "HS256 ES256",
    "KIZUNA_OIDC_LINE_TOKEN_ENDPOINT_AUTH_METHOD": "client_secret_post",
    "KIZUNA_OIDC_GOOGLE_ISSUER": "https://accounts.google.com",
    "KIZUNA_OIDC_GOOGLE_CLIENT_ID": "abc.apps.googleusercontent.com",
    "KIZUNA_OIDC_GOOGLE_CLIENT_SECRET": "google-secret",
}


def test_load_providers_reads_each_named_provider() -> None:
    line, google = load_providers(LINE_AND_GOOGLE)
    assert line == ProviderConfig(name="line", issuer="https://access.line.me", client_id="1234567890",
                                  client_secret="line-channel-secret", display_name="LINE",
                                  scopes=("openid", "profile", "email"), id_token_algorithms=("HS256", "ES256"),
                                  token_endpoint_auth_method="client_secret_post")
    assert (google.name, google.display_name, google.scopes) == ("google", "google", ("openid", "email", "profile"))
    assert google.id_token_algorithms == ("RS256", "ES256", "EdDSA") and google.token_endpoint_auth_method is None
    assert "line-channel-secret" not in repr(line)
    assert load_providers({}) == [] and load_providers({"KIZUNA_OIDC_PROVIDERS": " "}) == []


@pytest.mark.parametrize(("changes", "named"), [
    ({"KIZUNA_OIDC_LINE_ISSUER": ""}, "KIZUNA_OIDC_LINE_ISSUER"),
    ({"KIZUNA_OIDC_GOOGLE_CLIENT_ID": None}, "KIZUNA_OIDC_GOOGLE_CLIENT_ID"),
    ({"KIZUNA_OIDC_LINE_CLIENT_SECRET": None}, "KIZUNA_OIDC_LINE_CLIENT_SECRET"),
    ({"KIZUNA_OIDC_LINE_ID_TOKEN_ALGORITHMS": "none"}, "KIZUNA_OIDC_LINE_ID_TOKEN_ALGORITHMS"),
    ({"KIZUNA_OIDC_LINE_ID_TOKEN_ALGORITHMS": "HS256, none"}, "KIZUNA_OIDC_LINE_ID_TOKEN_ALGORITHMS"),
    ({"KIZUNA_OIDC_LINE_SCOPES": "profile email"}, "KIZUNA_OIDC_LINE_SCOPES"),
    ({"KIZUNA_OIDC_GOOGLE_ISSUER": "http://accounts.google.com"}, "KIZUNA_OIDC_GOOGLE_ISSUER"),
    ({"KIZUNA_OIDC_LINE_TOKEN_ENDPOINT_AUTH_METHOD": "none"}, "KIZUNA_OIDC_LINE_TOKEN_ENDPOINT_AUTH_METHOD"),
    ({"KIZUNA_OIDC_PROVIDERS": "line,Google/x"}, "KIZUNA_OIDC_PROVIDERS"),
    ({"KIZUNA_OIDC_PROVIDERS": "line,line"}, "KIZUNA_OIDC_PROVIDERS"),
])
def test_load_providers_names_the_variable_that_is_missing_or_wrong(changes: dict[str, str | None], named: str) -> None:
    environ = {key: value for key, value in (LINE_AND_GOOGLE | changes).items() if value is not None}
    with pytest.raises(ValueError, match=named):
        load_providers(environ)


def test_an_http_issuer_is_allowed_only_on_this_machine() -> None:
    environ = {"KIZUNA_OIDC_PROVIDERS": "keycloak", "KIZUNA_OIDC_KEYCLOAK_ISSUER": "http://localhost:8080/realms/kz",
               "KIZUNA_OIDC_KEYCLOAK_CLIENT_ID": "kizuna", "KIZUNA_OIDC_KEYCLOAK_CLIENT_SECRET": "s"}
    assert load_providers(environ)[0].issuer == "http://localhost:8080/realms/kz"

"""A real OpenID Provider for the identity tests (panva/oidc-provider 9.x on the machine's Node.js), and the
browserless helpers that sign a person in at it.

``start_oidc_provider`` installs the pinned npm package once (``npm ci`` under a file lock, so parallel pytest
processes do not race), starts ``node provider.mjs`` on a free loopback port and waits for its discovery document.
``oidc_provider_factory`` (session-scoped) starts as many as a test module needs and stops them all at the end.

Several instances make the attack tests real: an instance given another instance's ``issuer`` but keys of its own
issues ID tokens with the right issuer signed by a key nobody published; one given the same keys but its own issuer
issues tokens the relying party's keys verify from another issuer; one whose clock is two hours behind issues tokens
that expired an hour ago. ``obtain_id_token`` signs in at any of them the way an attacker would, and
``OidcProviderProcess.substitute_next_id_token`` makes the primary answer the relying party's code exchange with
such a token. Every refused token was issued and signed by a real provider.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.support import unclaimed_port

PROVIDER_DIR = Path(__file__).parent / "oidc_provider"
INSTALLED_STAMP = PROVIDER_DIR / "node_modules" / ".kizuna-installed-lock-sha256"
START_TIMEOUT_SECONDS = 30.0


def _require_node() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail(
            "the identity tests run a real OpenID Provider on Node.js (>= 20) with npm: "
            f"{'node' if node is None else 'npm'} is not on PATH. Install Node.js 20+ "
            "(e.g. `apt-get install nodejs npm`) and run the tests again.", pytrace=False)
    return node, npm


def ensure_provider_installed() -> str:
    """``npm ci`` the pinned oidc-provider into tests/identity/oidc_provider/node_modules, once per lock file
    version; returns the path of ``node``."""
    node, npm = _require_node()
    lock_digest = hashlib.sha256((PROVIDER_DIR / "package-lock.json").read_bytes()).hexdigest()
    lock_path = Path(tempfile.gettempdir()) / f"kizuna-oidc-provider-npm-{os.getuid()}.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)    # a second pytest process waits here for the first one's install
        try:
            if INSTALLED_STAMP.exists() and INSTALLED_STAMP.read_text() == lock_digest:
                return node
            result = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--prefer-offline"], cwd=PROVIDER_DIR,
                capture_output=True, text=True, timeout=300, check=False)
            if result.returncode != 0:
                pytest.fail(f"npm ci in {PROVIDER_DIR} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}",
                            pytrace=False)
            INSTALLED_STAMP.write_text(lock_digest)
            return node
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def new_signing_keys(kid: str | None = None) -> dict[str, Any]:
    """A private JWK set (one RSA key) for a provider to sign with."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = RSAAlgorithm.to_jwk(private, as_dict=True)
    jwk |= {"kid": kid or secrets.token_hex(8), "alg": "RS256", "use": "sig"}
    return {"keys": [jwk]}


@dataclass
class OidcProviderProcess:
    """A running provider. ``url`` is where it listens; ``issuer`` is what it calls itself (the same, unless it was
    started to impersonate another instance)."""

    issuer: str
    url: str
    clients: list[dict[str, Any]]
    jwks: dict[str, Any] = field(repr=False)
    control_token: str = field(repr=False)
    process: subprocess.Popen[bytes] = field(repr=False)
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def __enter__(self) -> OidcProviderProcess:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _control_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.control_token}"}

    async def substitute_next_id_token(self, http: httpx.AsyncClient, id_token: str) -> None:
        """The next successful token response carries ``id_token`` instead of the one the provider issued."""
        response = await http.post(f"{self.url}/__test__/substitute-id-token", json={"id_token": id_token},
                                   headers=self._control_headers())
        assert response.status_code == 204, response.text

    async def request_counts(self, http: httpx.AsyncClient) -> dict[str, int]:
        """Requests served so far, per path (``/jwks``, ``/token``, ``/.well-known/openid-configuration``...)."""
        response = await http.get(f"{self.url}/__test__/counts", headers=self._control_headers())
        assert response.status_code == 200, response.text
        counts: dict[str, int] = response.json()
        return counts


def start_oidc_provider(workdir: Path, clients: Sequence[dict[str, Any]], *, issuer: str | None = None,
                        jwks: dict[str, Any] | None = None, clock_offset_seconds: int = 0) -> OidcProviderProcess:
    """Starts ``node provider.mjs`` on a free port with these clients (``client_id``, ``client_secret``,
    ``redirect_uris`` and any other client metadata) and waits until its discovery document answers."""
    node = ensure_provider_installed()
    workdir.mkdir(parents=True, exist_ok=True)
    port = unclaimed_port()
    url = f"http://127.0.0.1:{port}"
    keys = jwks or new_signing_keys()
    control_token = secrets.token_urlsafe(24)
    log_path = workdir / f"oidc-provider-{port}.log"
    env = os.environ | {
        "PORT": str(port),
        "ISSUER": issuer or url,
        "OIDC_CLIENTS": json.dumps(list(clients)),
        "JWKS": json.dumps(keys),
        "CLOCK_OFFSET_SECONDS": str(clock_offset_seconds),
        "CONTROL_TOKEN": control_token,
        "NODE_ENV": "test",
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen([node, "provider.mjs"], cwd=PROVIDER_DIR, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
    provider = OidcProviderProcess(issuer=issuer or url, url=url, clients=list(clients), jwks=keys,
                                   control_token=control_token, process=process, log_path=log_path)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the OpenID Provider exited ({process.returncode}):\n{provider.log()}")
        try:
            response = httpx.get(f"{url}/.well-known/openid-configuration", timeout=2.0)
            if response.status_code == 200:
                return provider
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            provider.stop()
            raise RuntimeError(
                f"the OpenID Provider did not answer within {START_TIMEOUT_SECONDS} s:\n{provider.log()}")
        time.sleep(0.05)


OidcProviderFactory = Callable[..., OidcProviderProcess]


@pytest.fixture(scope="session")
def oidc_provider_factory(workdir: Path) -> Iterator[OidcProviderFactory]:
    """``factory(clients, issuer=None, jwks=None, clock_offset_seconds=0)`` starts a provider; all are stopped at
    the end of the session."""
    started: list[OidcProviderProcess] = []

    def factory(clients: Sequence[dict[str, Any]], **options: Any) -> OidcProviderProcess:
        provider = start_oidc_provider(workdir / "oidc", clients, **options)
        started.append(provider)
        return provider

    yield factory
    for provider in started:
        provider.stop()


# -- a browser without a browser ---------------------------------------------------------------------------------

class _FormParser(HTMLParser):
    """The first form on the page, with its inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.method = "get"
        self.fields: list[tuple[str, str, str]] = []     # (name, type, value)
        self._in_form = False
        self._done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {key: value or "" for key, value in attrs}
        if self._done:
            return
        if tag == "form" and not self._in_form:
            self._in_form = True
            self.action = attributes.get("action", "")
            self.method = attributes.get("method", "get").lower()
        elif tag == "input" and self._in_form and attributes.get("name"):
            self.fields.append((attributes["name"], attributes.get("type", "text").lower(),
                                attributes.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self._in_form:
            self._in_form = False
            self._done = True


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


async def sign_in_at_provider(http: httpx.AsyncClient, authorization_url: str, login: str) -> str:
    """Walks the provider's login and consent pages as a browser would (GET, submit the forms, follow redirects
    within the provider, keeping its cookies in ``http``'s jar) and returns the redirect to the relying party's
    callback (with code and state, or error) without requesting it.

    ``http`` is the browser: give each person a client of their own, since a provider session in its cookies
    signs the next sign-in in as that person without a login form."""
    provider_origin = _origin(authorization_url)
    response = await http.get(authorization_url, follow_redirects=False)
    for _ in range(20):
        if response.is_redirect:
            target = urljoin(str(response.url), response.headers["location"])
            if _origin(target) != provider_origin:
                return target
            response = await http.get(target, follow_redirects=False)
            continue
        if response.status_code != 200 or "html" not in response.headers.get("content-type", ""):
            raise AssertionError(f"the provider answered {response.status_code} at {response.url}: {response.text}")
        form = _FormParser()
        form.feed(response.text)
        if form.action is None:
            raise AssertionError(f"no form to submit at {response.url}: {response.text[:2000]}")
        data: dict[str, str] = {}
        for name, kind, value in form.fields:
            if name == "login":
                data[name] = login
            elif kind == "password":
                data[name] = "any password"     # the provider's dev login checks none
            else:
                data[name] = value
        target = urljoin(str(response.url), form.action)
        if form.method == "post":
            response = await http.post(target, data=data, follow_redirects=False)
        else:
            response = await http.get(f"{target}?{urlencode(data)}", follow_redirects=False)
    raise AssertionError(f"no redirect to the relying party after 20 steps, last at {response.url}")


def callback_parameters(callback_url: str) -> dict[str, str]:
    """The callback's query parameters (code, state, iss, or error), as the identity service would read them."""
    return {key: values[0] for key, values in parse_qs(urlsplit(callback_url).query).items()}


async def obtain_id_token(provider: OidcProviderProcess, client: dict[str, Any], login: str, *, nonce: str) -> str:
    """An ID token the provider really issues to ``client`` for ``login`` with this ``nonce``: the whole code flow
    with PKCE against where the provider listens, redeemed with the client's own secret (what an attacker who
    holds a client registration, or a provider that misbehaves, has in hand)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    redirect_uri = client["redirect_uris"][0]
    query = urlencode({
        "response_type": "code", "client_id": client["client_id"], "redirect_uri": redirect_uri,
        "scope": "openid email profile", "state": secrets.token_urlsafe(16), "nonce": nonce,
        "code_challenge": challenge, "code_challenge_method": "S256",
    })
    async with httpx.AsyncClient(timeout=10.0) as browser:
        callback = await sign_in_at_provider(browser, f"{provider.url}/auth?{query}", login)
        code = callback_parameters(callback)["code"]
        response = await browser.post(
            f"{provider.url}/token", auth=(client["client_id"], client["client_secret"]),
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                  "code_verifier": verifier})
    assert response.status_code == 200, response.text
    id_token: str = response.json()["id_token"]
    return id_token

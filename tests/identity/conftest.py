"""Fixtures for people signing in: a real SMTP server and the services a person meets (members, identity and
the gateway in front of them), shared by the tests of this package — each test uses addresses and communities
of its own — so the processes start once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from kizuna.devstack import NatsServer, PostgresServer
from tests.identity.oidc_fixture import oidc_provider_factory  # noqa: F401 - a session fixture for every test here
from tests.identity.smtp import SmtpInbox
from tests.support import Ecosystem

# Every simulated browser comes from an address of its own (tests/identity/journey.py), told to the gateway in
# X-Forwarded-For as a proxy in front of it would: the per-client limits then count people, not the test run.
THROUGH_A_PROXY = {"KIZUNA_TRUSTED_PROXIES": "127.0.0.1/32"}


@pytest.fixture(scope="package")
def people(postgres: PostgresServer, nats_server: NatsServer, workdir: Path, inbox: SmtpInbox) -> Iterator[Ecosystem]:
    """members, identity and the gateway, with sign-in email going to ``inbox``."""
    unique = uuid.uuid4().hex[:10]
    eco = Ecosystem(postgres=postgres, nats=nats_server, prefix=f"t{unique}", workdir=workdir / unique)
    eco.start("members", "identity", "gateway", **inbox.env(), **THROUGH_A_PROXY)
    yield eco
    eco.stop_all()


@pytest.fixture
async def operator(people: Ecosystem) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=people.url("gateway"), headers=people.operator_headers(),
                                 timeout=30) as client:
        yield client

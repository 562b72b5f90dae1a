"""The member app's browser tests share one stack (members, referrals, sessions, identity, gateway and a real
SMTP server) for the package, and a fresh community with two signed-in members for each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from kizuna.devstack import NatsServer, PostgresServer
from tests.identity.conftest import THROUGH_A_PROXY
from tests.identity.smtp import SmtpInbox
from tests.support import Ecosystem, deployment
from tests.webapp.phones import hikari_makers


@pytest.fixture(scope="package")
def community_stack(postgres: PostgresServer, nats_server: NatsServer, workdir: Path,
                    inbox: SmtpInbox) -> Iterator[Ecosystem]:
    with deployment(postgres, nats_server, workdir, **inbox.env(), **THROUGH_A_PROXY) as eco:
        yield eco


@pytest.fixture
async def member_pair(community_stack: Ecosystem,
                      inbox: SmtpInbox) -> AsyncIterator[tuple[str, httpx.AsyncClient, httpx.AsyncClient]]:
    """A community (Hikari Makers) and two of its members, Hana and Ken, each signed in."""
    async with hikari_makers(community_stack, inbox) as pair:
        yield pair

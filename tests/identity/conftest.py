"""Fixtures for people signing in: a real SMTP server and the services a person meets (members, identity and
the gateway in front of them)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.identity.smtp import SmtpInbox
from tests.support import Ecosystem


@pytest.fixture
def inbox(tmp_path: Path) -> Iterator[SmtpInbox]:
    server = SmtpInbox(tmp_path / "maildir").start()
    yield server
    server.stop()


@pytest.fixture
async def people(ecosystem: Ecosystem, inbox: SmtpInbox) -> AsyncIterator[Ecosystem]:
    """members, identity and the gateway, with sign-in email going to ``inbox``."""
    ecosystem.start("members", "identity", "gateway", **inbox.env())
    yield ecosystem


@pytest.fixture
async def operator(people: Ecosystem) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=people.url("gateway"), headers=people.operator_headers(),
                                 timeout=30) as client:
        yield client

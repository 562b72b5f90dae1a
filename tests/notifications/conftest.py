"""A whole deployment with the notifications service and a real SMTP server, shared by this package's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kizuna.devstack import NatsServer, PostgresServer
from tests.identity.conftest import THROUGH_A_PROXY
from tests.identity.smtp import SmtpInbox
from tests.support import Ecosystem, deployment

# Quick retries, so a test sees the SMTP server come back within seconds.
QUICK = {"KIZUNA_NOTIFY_RETRY_BASE_SECONDS": "0.5", "KIZUNA_NOTIFY_RETRY_CAP_SECONDS": "2",
         "KIZUNA_NOTIFY_POLL_SECONDS": "0.2", "KIZUNA_WEBHOOK_ALLOW_PRIVATE_ADDRESSES": "true",
         "KIZUNA_WEBHOOK_RETRY_BASE_SECONDS": "0.3", "KIZUNA_WEBHOOK_RETRY_CAP_SECONDS": "1",
         # An endpoint failing for 12 s is disabled here (three days and more in production).
         "KIZUNA_WEBHOOK_GIVE_UP_HOURS": str(12 / 3600), "KIZUNA_WEBHOOK_POLL_SECONDS": "0.1",
         "KIZUNA_REMINDER_POLL_SECONDS": "0.5", "KIZUNA_DIGEST_POLL_SECONDS": "0.5"}


@pytest.fixture(scope="package")
def notify_stack(postgres: PostgresServer, nats_server: NatsServer, workdir: Path,
                 inbox: SmtpInbox) -> Iterator[Ecosystem]:
    with deployment(postgres, nats_server, workdir, prefix="n", **inbox.env(), **THROUGH_A_PROXY, **QUICK) as eco:
        yield eco

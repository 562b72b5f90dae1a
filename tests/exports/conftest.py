"""Exports are tested on a stack of their own, whose job pauses after each part it gathers, so a test can watch
an export's progress while it runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kizuna.devstack import NatsServer, PostgresServer
from tests.identity.conftest import THROUGH_A_PROXY
from tests.identity.smtp import SmtpInbox
from tests.support import Ecosystem, deployment

STEP_DELAY = {"KIZUNA_EXPORT_STEP_DELAY_SECONDS": "0.4", "KIZUNA_EXPORT_POLL_SECONDS": "0.2"}


@pytest.fixture(scope="package")
def export_stack(postgres: PostgresServer, nats_server: NatsServer, workdir: Path,
                 inbox: SmtpInbox) -> Iterator[Ecosystem]:
    with deployment(postgres, nats_server, workdir, **inbox.env(), **THROUGH_A_PROXY, **STEP_DELAY) as eco:
        yield eco

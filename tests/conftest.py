"""Real servers for the suite: one PostgreSQL and one NATS JetStream from their wheels per run.

Each test gets its own databases and its own subject prefix and stream, so tests never see
one another's events.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from kizuna.devstack import NatsServer, PostgresServer
from tests.identity.smtp import SmtpInbox
from tests.support import SERVICES, BusPublisher, Ecosystem, sessions_behind_gateway


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="kizuna-test-") as path:
        yield Path(path)


@pytest.fixture(scope="session")
def postgres(workdir: Path) -> Iterator[PostgresServer]:
    server = PostgresServer(workdir / "postgres", durable=False).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def nats_server(workdir: Path) -> Iterator[NatsServer]:
    server = NatsServer(workdir / "nats", sync_always=False).start()
    yield server
    server.stop()


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def database_url(postgres: PostgresServer, unique: str) -> str:
    return postgres.create_database(f"t_{unique}")


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    from kizuna.service import migrate

    db = await asyncpg.create_pool(database_url, min_size=1, max_size=30)
    await migrate(db, [])
    yield db
    await db.close()


@pytest.fixture
def ecosystem(postgres: PostgresServer, nats_server: NatsServer, unique: str, workdir: Path) -> Iterator[Ecosystem]:
    """Helpers to run real service processes against this test's own databases and subjects."""
    eco = Ecosystem(postgres=postgres, nats=nats_server, prefix=f"t{unique}", workdir=workdir / unique)
    yield eco
    eco.stop_all()


def pytest_report_header() -> str:
    return f"kizuna: real PostgreSQL + NATS JetStream from wheels (pid {os.getpid()})"


@pytest.fixture(scope="package")
def inbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpInbox]:
    """A real SMTP server (the developer stack's) whose Maildir the tests read as a person reads their inbox."""
    server = SmtpInbox(tmp_path_factory.mktemp("smtp") / "maildir").start()
    yield server
    server.stop()


@pytest.fixture
async def stack(ecosystem: Ecosystem) -> AsyncIterator[tuple[BusPublisher, httpx.AsyncClient]]:
    async with sessions_behind_gateway(ecosystem, "gateway-test") as running:
        yield running
    log = ecosystem.processes["gateway"].log_path.read_text()
    assert "unhandled error" not in log, log[-3000:]


@pytest.fixture
async def every_service(ecosystem: Ecosystem) -> AsyncIterator[httpx.AsyncClient]:
    """All four services as real processes, and a client of their gateway; no service may log an
    unhandled error meanwhile."""
    ecosystem.start(*SERVICES)
    async with httpx.AsyncClient(base_url=ecosystem.url("gateway"), timeout=30) as http:
        yield http
    for name, proc in ecosystem.processes.items():
        assert "unhandled error" not in proc.log_path.read_text(), name

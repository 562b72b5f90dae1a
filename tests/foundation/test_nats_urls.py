"""KIZUNA_NATS_URL names a cluster: a comma-separated list of servers (the Kubernetes ConfigMap lists the three
StatefulSet pods). A service reaches whichever answers, and says so in its log when none does."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from kizuna import bus
from kizuna.devstack import NatsServer
from tests.support import Ecosystem


@pytest.fixture
def dead_nats_url(workdir: Path, unique: str) -> str:
    """The URL of a real NATS server that has been stopped: its port refuses connections."""
    server = NatsServer(workdir / f"nats-dead-{unique}", sync_always=False).start()
    server.stop()
    return server.url


def test_server_list_is_split_on_commas_and_blanks_are_dropped() -> None:
    assert bus.server_list("nats://a:4222, nats://b:4222,,nats://c:4222 ") == [
        "nats://a:4222", "nats://b:4222", "nats://c:4222"]
    assert bus.server_list("nats://only:4222") == ["nats://only:4222"]


def test_an_empty_server_list_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="KIZUNA_NATS_URL"):
        bus.server_list(" , ")


async def test_connect_skips_a_dead_first_server(dead_nats_url: str, nats_server: NatsServer) -> None:
    nc = await bus.connect(f"{dead_nats_url},{nats_server.url}", "kizuna-test-urls", wait_seconds=10)
    try:
        assert nc.is_connected
        assert nc.connected_url is not None and nc.connected_url.port == nats_server.port
    finally:
        await nc.close()


async def test_no_server_answering_is_logged_with_the_urls(dead_nats_url: str,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="kizuna.bus")
    with pytest.raises(Exception):  # noqa: B017 - whichever error nats-py gives up with
        await bus.connect(f"{dead_nats_url},{dead_nats_url}", "kizuna-test-urls", wait_seconds=1)
    failures = [r for r in caplog.records if r.name == "kizuna.bus" and r.levelno >= logging.WARNING]
    assert failures, "a failed connection must be logged"
    assert dead_nats_url in failures[0].getMessage() or dead_nats_url in str(failures[0].__dict__.get("servers"))


def test_a_service_becomes_ready_with_the_first_of_two_servers_dead(ecosystem: Ecosystem, dead_nats_url: str) -> None:
    """The Kubernetes form of the setting, end to end: a real service process, /readyz 200 with NATS up."""
    [members] = ecosystem.start("members", KIZUNA_NATS_URL=f"{dead_nats_url},{ecosystem.nats.url}").values()
    ready = httpx.get(f"{members.url}/readyz", timeout=5)
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["nats"] is True


def test_logged_server_urls_carry_no_credentials() -> None:
    assert bus._without_credentials("nats://kizuna:s3cret@nats-0.nats:4222") == "nats://nats-0.nats:4222"
    assert bus._without_credentials("nats-1.nats:4222") == "nats://nats-1.nats:4222"

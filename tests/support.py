"""Test support: run real service processes on loopback against the test's own servers."""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from kizuna import bus
from kizuna.auth import generate_private_key_pem, issue_token, load_private_key, public_pem
from kizuna.devstack import NatsServer, PostgresServer
from kizuna.envelope import subject_for, to_cloudevent
from kizuna.eventstore import RecordedEvent

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("members", "referrals", "sessions", "identity", "notifications", "gateway")
BEHIND_GATEWAY = ("members", "referrals", "sessions", "notifications")  # what the gateway forwards /v1/communities/… to
# How many processes of every service the fault tests run (issue 18): two in make test, three in make soak.
REPLICAS = int(os.environ.get("KIZUNA_REPLICAS", "2"))


@dataclass
class ServiceProcess:
    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    instance: str = ""
    module: str = ""  # what runs, when not the service of that name (a test's own service)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServiceProcess:
        log = open(self.log_path, "ab")
        self.instance = secrets.token_hex(8)  # /readyz says it back: the process answering is this one
        self.process = subprocess.Popen([sys.executable, "-m", self.module or f"services.{self.name}"],
                                        env={**self.env, "KIZUNA_INSTANCE": self.instance},
                                        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_path.read_text()[-3000:]}")
            try:
                answer = httpx.get(f"{self.url}/readyz", timeout=1)
                if answer.status_code == 200 and answer.headers.get("kizuna-instance") == self.instance:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready: {self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        self.ask_to_stop()
        self.wait_stopped()

    def ask_to_stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait_stopped(self) -> None:
        """Up to 10 s for a graceful stop (a second SIGTERM would make uvicorn skip it), then a kill."""
        if self.process is None:
            return
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


_CLAIMED: set[int] = set()


# Service ports come from below the kernel's ephemeral range (32768-60999 here), where outgoing connections take
# their local ports, each xdist worker from a band of its own: a port chosen now is still free when the service
# binds it moments later (an ephemeral one was once taken meanwhile by another worker's client connection,
# and the test then talked to whatever answered there).
_PORT_BAND, _PORT_BASE = 1500, 20000


def unclaimed_port() -> int:
    """A free port no other ecosystem of this run was given (two stacks are configured before either binds)."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    low = _PORT_BASE + (worker % 8) * _PORT_BAND
    while True:
        port = random.randrange(low, low + _PORT_BAND)
        if port in _CLAIMED:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _CLAIMED.add(port)
        return port


@dataclass
class Ecosystem:
    """One Kizuna deployment's worth of configuration for a test: databases, subjects, keys."""

    postgres: PostgresServer
    nats: NatsServer
    prefix: str
    workdir: Path
    operator_token: str = field(default_factory=lambda: "op-" + os.urandom(16).hex())
    private_key_pem: str = field(default_factory=generate_private_key_pem)
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ports = {name: unclaimed_port() for name in SERVICES}

    def database_url(self, service: str) -> str:
        return self.postgres.create_database(f"{self.prefix}_{service}")

    def env(self, service: str, **overrides: str) -> dict[str, str]:
        urls = ",".join(f"{name}=http://127.0.0.1:{self.ports[name]}" for name in BEHIND_GATEWAY)
        env = {
            **os.environ,
            "KIZUNA_SERVICE_NAME": service,
            "KIZUNA_DATABASE_URL": self.database_url(service),
            "KIZUNA_KEYS_DATABASE_URL": self.database_url("keys"),  # the deployment's one key vault
            "KIZUNA_NATS_URL": self.nats.url,
            "KIZUNA_SUBJECT_PREFIX": self.prefix,
            "KIZUNA_STREAM_NAME": self.prefix.upper(),
            "KIZUNA_HTTP_PORT": str(self.ports[service]),
            "KIZUNA_OPERATOR_TOKEN": self.operator_token,
            "KIZUNA_JWT_PRIVATE_KEY": self.private_key_pem if service == "gateway" else "",
            "KIZUNA_JWT_PUBLIC_KEYS": public_pem(load_private_key(self.private_key_pem)),
            "KIZUNA_SERVICE_URLS": urls,
            "KIZUNA_IDENTITY_URL": f"http://127.0.0.1:{self.ports['identity']}",
            "KIZUNA_PUBLIC_URL": f"http://127.0.0.1:{self.ports['gateway']}",
            "KIZUNA_LOG_LEVEL": "INFO",
        }
        env.update(overrides)
        return env

    def start(self, *services: str, **overrides: str) -> dict[str, ServiceProcess]:
        started = {}
        for name in services:
            proc = ServiceProcess(name, self.ports[name], self.env(name, **overrides),
                                  self.workdir / f"{name}.log").start()
            self.processes[name] = proc
            started[name] = proc
        for proc in started.values():
            proc.wait_ready()
        return started

    def start_replica(self, service: str, **overrides: str) -> ServiceProcess:
        """One more process of a service: its own port, the same database and durable consumers (a replica)."""
        proc = self._launch_replica(service, **overrides)
        proc.wait_ready()
        return proc

    def _launch_replica(self, service: str, **overrides: str) -> ServiceProcess:
        port = unclaimed_port()
        number = 1 + sum(1 for key in self.processes if key.split("#")[0] == service)
        proc = ServiceProcess(service, port, self.env(service, **{**overrides, "KIZUNA_HTTP_PORT": str(port)}),
                              self.workdir / f"{service}-{number}.log").start()
        self.processes[f"{service}#{number}"] = proc
        return proc

    def start_replicated(self, *services: str, replicas: int = REPLICAS, **overrides: str) -> None:
        """``replicas`` processes of every named service, as Kubernetes runs them: each service's replicas share
        its database and durable consumers; the gateways (started last) take turns with every replica behind
        them (``KIZUNA_SERVICE_URLS`` and ``KIZUNA_IDENTITY_URL`` with ``|``). Clients pick a gateway from
        ``replicas_of("gateway")``."""
        behind = [name for name in services if name != "gateway"]
        self.start(*behind, **overrides)
        extra = [self._launch_replica(name, **overrides) for name in behind for _ in range(replicas - 1)]
        for proc in extra:
            proc.wait_ready()
        if "gateway" not in services:
            return
        routes = {**overrides,
                  "KIZUNA_SERVICE_URLS": ",".join(f"{name}={'|'.join(self.replica_urls(name))}"
                                                  for name in BEHIND_GATEWAY),
                  "KIZUNA_IDENTITY_URL": "|".join(self.replica_urls("identity"))}
        self.start("gateway", **routes)
        gateways = [self._launch_replica("gateway", **routes) for _ in range(replicas - 1)]
        for proc in gateways:
            proc.wait_ready()

    def replicas_of(self, service: str) -> list[ServiceProcess]:
        return [proc for key, proc in self.processes.items() if key.split("#")[0] == service]

    def replica_urls(self, service: str) -> list[str]:
        """Where each running process of a service listens (its usual port when none runs yet)."""
        return [proc.url for proc in self.replicas_of(service)] or [self.url(service)]

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def token(self, community_id: str, member_id: str, role: str = "member", scope: str = "member",
              ttl: int = 3600) -> str:
        return issue_token(load_private_key(self.private_key_pem), community_id=str(community_id),
                           member_id=str(member_id), role=role, scope=scope, ttl_seconds=ttl)

    def operator_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.operator_token}"}

    def headers(self, community_id: str, member_id: str, role: str = "member") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(community_id, member_id, role)}"}

    def stop_all(self) -> None:
        """Every process told to stop at once, then each waited for (one after another took up to 20 s a stack
        on a loaded machine)."""
        for proc in self.processes.values():
            proc.ask_to_stop()
        for proc in self.processes.values():
            proc.wait_stopped()


async def eventually(check: Any, timeout: float = 15.0, interval: float = 0.1) -> Any:
    """Polls an async ``check`` until it returns something truthy (read models are eventually consistent)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")


class BusPublisher:
    """Publishes events exactly as a service's relay would."""

    def __init__(self, eco: Ecosystem, js: Any) -> None:
        self.eco, self.js = eco, js
        self.versions: dict[str, int] = {}

    async def publish(self, service: str, stream_id: str, community_id: str, event_type: str,
                      data: dict[str, Any]) -> None:
        version = self.versions[stream_id] = self.versions.get(stream_id, 0) + 1
        event = RecordedEvent(
            global_position=version, transaction_id=1, stream_id=stream_id, stream_version=version,
            event_id=uuid.uuid4(), type=event_type, data={"community_id": community_id, **data},
            metadata={"community_id": community_id, "actor": "test"}, recorded_at=datetime.now(UTC))
        await self.js.publish(subject_for(self.eco.prefix, service, event),
                              json.dumps(to_cloudevent(service, event), default=str).encode(),
                              headers={"Nats-Msg-Id": str(event.event_id)})

    async def found(self, members: dict[str, str], name: str = "Hikari") -> tuple[str, str]:
        """A community with an owner and ``members`` (id → role); returns (community id, owner id)."""
        cid = str(uuid.uuid4())
        owner = "owner-" + cid[:8]
        stream = f"community-{cid}"
        await self.publish("members", stream, cid, "CommunityFounded", {
            "name": name, "purpose": "p", "values": [], "member_cap": 150, "owner_member_id": owner,
            "owner_display_name": "Owner"})
        for member_id, role in members.items():
            await self.publish("members", stream, cid, "MemberJoined", {
                "member_id": member_id, "display_name": member_id.title(), "role": role,
                "joined_via": "invitation"})
        return cid, owner


@asynccontextmanager
async def sessions_behind_gateway(eco: Ecosystem, client_name: str, replicas: int = 1,
                                  **overrides: str) -> AsyncIterator[tuple[BusPublisher, httpx.AsyncClient]]:
    """The sessions service and the gateway (``replicas`` processes of each), a publisher on the test's stream
    (members' events come from it, not from a members service) and a client of the first gateway."""
    if replicas > 1:
        eco.start_replicated("sessions", "gateway", replicas=replicas, **overrides)
    else:
        eco.start("sessions", "gateway", **overrides)
    nc = await bus.connect(eco.nats.url, client_name)
    try:
        js = nc.jetstream()
        await bus.ensure_streams(js, eco.prefix.upper(), eco.prefix)
        async with httpx.AsyncClient(base_url=eco.url("gateway"), timeout=30) as http:
            yield BusPublisher(eco, js), http
    finally:
        await nc.close()


async def issue(http: httpx.AsyncClient, eco: Ecosystem, cid: str, member_id: str, scope: str = "member") -> str:
    """Issues a token through the gateway once its directory has learned the member."""

    async def attempt() -> str | None:
        response = await http.post("/v1/tokens", headers=eco.operator_headers(),
                                   json={"community_id": cid, "member_id": member_id, "scope": scope})
        return response.json()["token"] if response.status_code == 201 else None

    token: str = await eventually(attempt)
    return token


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Debian's Chromium, headless, with nothing that phones home (this machine's network is closed).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


async def launch_chromium(playwright: Any) -> Any:
    return await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


@contextmanager
def deployment(postgres: PostgresServer, nats: NatsServer, workdir: Path, *, prefix: str = "t",
               **env: str) -> Iterator[Ecosystem]:
    """Every service, on databases and streams of their own (a unique prefix), with ``env`` — stopped after."""
    unique = uuid.uuid4().hex[:10]
    eco = Ecosystem(postgres=postgres, nats=nats, prefix=f"{prefix}{unique}", workdir=workdir / unique)
    eco.start(*SERVICES, **env)
    try:
        yield eco
    finally:
        eco.stop_all()

"""The NATS JetStream connection and the streams every service expects."""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import urlsplit

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError

log = logging.getLogger("kizuna.bus")

DUPLICATE_WINDOW_SECONDS = 120.0
# A server that stays away fails every reconnect_time_wait; one warning per this long says so without a flood.
FAILURE_LOG_INTERVAL_SECONDS = 10.0


def dead_letter_subject(prefix: str, consumer: str) -> str:
    return f"{prefix}_dlq.{consumer}"


def server_list(urls: str) -> list[str]:
    """``KIZUNA_NATS_URL`` as nats-py's ``servers``: one URL, or a comma-separated list of a cluster's servers."""
    servers = [url.strip() for url in urls.split(",") if url.strip()]
    if not servers:
        raise ValueError(f"KIZUNA_NATS_URL names no NATS server: {urls!r}")
    return servers


def _without_credentials(server: str) -> str:
    """A server URL fit for a log line: ``nats://user:secret@host`` loses its user and secret."""
    parts = urlsplit(server if "://" in server else f"nats://{server}")
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


class _ConnectionLog:
    """nats-py's callbacks, logged under kizuna.bus with the servers tried (its own default logs nothing useful
    about which URL failed, and a service that never connects otherwise just stays unready in silence)."""

    def __init__(self, name: str, servers: list[str]) -> None:
        self.name, self.servers = name, [_without_credentials(server) for server in servers]
        self._last_failure_logged = float("-inf")
        self.failures = 0

    async def error(self, error: Exception) -> None:
        self.failures += 1
        now = time.monotonic()
        if now - self._last_failure_logged >= FAILURE_LOG_INTERVAL_SECONDS:
            self._last_failure_logged = now
            log.warning("cannot reach NATS at %s: %r (%d failed attempts so far)", ", ".join(self.servers), error,
                        self.failures, extra={"client": self.name, "servers": self.servers, "error": repr(error)})

    async def disconnected(self) -> None:
        log.warning("disconnected from NATS; reconnecting", extra={"client": self.name, "servers": self.servers})

    async def reconnected(self) -> None:
        log.info("reconnected to NATS", extra={"client": self.name, "servers": self.servers})


async def connect(url: str, name: str, *, wait_seconds: float = 60.0) -> NATS:
    """Connect to the first server of ``url`` (one URL or a comma-separated list) that answers, retrying every
    server while none does; reconnects forever once connected. Raises after ``wait_seconds`` without a server."""
    servers = server_list(url)
    callbacks = _ConnectionLog(name, servers)
    nc = NATS()
    # nats-py itself cycles through the servers forever (max_reconnect_attempts=-1 also covers the first
    # connection), so the deadline is kept here.
    connecting = nc.connect(
        # reconnect_time_wait is typed int but used as seconds to sleep: half a second is what we mean.
        servers=servers, name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.5,  # type: ignore[arg-type]
        connect_timeout=2, allow_reconnect=True, error_cb=callbacks.error,
        disconnected_cb=callbacks.disconnected, reconnected_cb=callbacks.reconnected,
    )
    try:
        if wait_seconds == float("inf"):
            await connecting
        else:
            await asyncio.wait_for(connecting, wait_seconds)
    except BaseException as error:
        if not isinstance(error, asyncio.CancelledError):
            log.error("gave up connecting to NATS at %s after %.0f s", ", ".join(callbacks.servers), wait_seconds,
                      extra={"client": name, "servers": callbacks.servers, "error": repr(error)})
        await nc.close()
        raise
    connected = nc.connected_url
    log.info("connected to NATS", extra={"client": name, "server": _without_credentials(connected.geturl())
                                         if connected else None})
    return nc


async def ensure_streams(js: JetStreamContext, stream: str, prefix: str, replicas: int = 1) -> None:
    """The event stream (everything, kept; duplicates by ``Nats-Msg-Id`` dropped) and its dead letters."""
    configs = [
        StreamConfig(
            name=stream, subjects=[f"{prefix}.>"], retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE, duplicate_window=DUPLICATE_WINDOW_SECONDS, num_replicas=replicas,
            discard=DiscardPolicy.OLD,
        ),
        StreamConfig(
            name=f"{stream}_DLQ", subjects=[f"{prefix}_dlq.>"], retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE, num_replicas=replicas,
        ),
    ]
    for config in configs:
        try:
            await js.add_stream(config)
        except BadRequestError:
            await js.update_stream(config)

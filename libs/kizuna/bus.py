"""The NATS JetStream connection and the streams every service expects."""

from __future__ import annotations

import asyncio
import logging

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError

log = logging.getLogger("kizuna.bus")

DUPLICATE_WINDOW_SECONDS = 120.0


def dead_letter_subject(prefix: str, consumer: str) -> str:
    return f"{prefix}_dlq.{consumer}"


async def connect(url: str, name: str, *, wait_seconds: float = 60.0) -> NATS:
    """Connect, retrying while the server is not up yet; reconnects forever once connected."""
    deadline = asyncio.get_running_loop().time() + wait_seconds
    while True:
        try:
            return await nats.connect(
                url, name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                connect_timeout=2, allow_reconnect=True,
            )
        except Exception:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)


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

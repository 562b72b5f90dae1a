"""One trace from an HTTP request through the event store, the relay and NATS to a consumer,
across a real process boundary."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from tests.support import Ecosystem, ServiceProcess, eventually


async def test_trace_follows_a_command_from_http_to_the_consumer(ecosystem: Ecosystem) -> None:
    spans_file = ecosystem.workdir / "spans.jsonl"
    env = ecosystem.env("members", KIZUNA_SERVICE_NAME="echo", KIZUNA_OTEL_EXPORTER="jsonl",
                        KIZUNA_OTEL_FILE=str(spans_file))
    proc = ServiceProcess("echo", ecosystem.ports["members"], env, ecosystem.workdir / "echo.log",
                          module="tests.foundation.echo_service").start()
    try:
        proc.wait_ready()
        caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        async with httpx.AsyncClient(base_url=proc.url) as client:
            response = await client.post(
                "/communities/c1/echoes", headers={
                    **ecosystem.operator_headers(),
                    "traceparent": f"00-{caller_trace}-00f067aa0ba902b7-01",
                })
            assert response.status_code == 201, response.text

            async def consumed() -> bool:
                return (await client.get("/echoes/heard")).json()["count"] == 1

            await eventually(consumed)
        deadline = time.monotonic() + 10
        names: set[str] = set()
        while time.monotonic() < deadline:
            spans = _spans(spans_file)
            names = {s["name"] for s in spans if s["trace_id"] == caller_trace}
            if {"POST /communities/c1/echoes", "eventstore.append", "relay.publish",
                "consume echo-hearer"} <= names:
                break
            time.sleep(0.1)
        assert {"POST /communities/c1/echoes", "eventstore.append", "relay.publish",
                "consume echo-hearer"} <= names, names
    finally:
        proc.stop()


def _spans(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

"""What every benchmark shares: the result row, the servers of the run, and (started once, on first use)
a whole Kizuna deployment on those servers — the same ``tests.support.Ecosystem`` the tests run."""

from __future__ import annotations

import asyncio
import math
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from kizuna.devstack import NatsServer, PostgresServer
from kizuna.service import migrate
from tests.support import SERVICES, Ecosystem

ROOT_DIR = Path(__file__).resolve().parent.parent

# The gateway's per-token limit (20/s, burst 100) would turn a load test into a 429 test.
UNLIMITED = {"KIZUNA_RATE_LIMIT_PER_SECOND": "1000000", "KIZUNA_RATE_LIMIT_BURST": "1000000",
             "KIZUNA_LOG_LEVEL": "WARNING"}


@dataclass
class Result:
    name: str
    ours: float
    baseline: float
    baseline_name: str
    unit: str
    goal: float | None
    ours_text: str | None = None  # replaces "{ours} {unit}" in the table (e.g. "p50 / p95 / p99")
    baseline_text: str | None = None
    goal_text: str | None = None  # an absolute goal ("p99 ≤ 100 ms") instead of "≥ {goal}x"
    goal_met: bool | None = None  # decided by the benchmark when the goal is absolute
    notes: list[str] = field(default_factory=list)  # details printed under the table

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline if self.baseline else 0.0

    @property
    def met(self) -> bool | None:
        if self.goal_met is not None:
            return self.goal_met
        if self.goal is None:
            return None
        return self.ratio >= self.goal


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (no interpolation: p99 of 100 samples is the 99th)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def ms(values: list[float]) -> str:
    return " / ".join(f"{percentile(values, p) * 1000:,.1f}" for p in (50, 95, 99)) + " ms"


@dataclass
class Stack:
    """A running deployment: four service processes on the run's PostgreSQL and NATS."""

    eco: Ecosystem

    @property
    def gateway_port(self) -> int:
        return self.eco.ports["gateway"]

    def stop(self) -> None:
        self.eco.stop_all()


@dataclass
class Servers:
    pg: PostgresServer
    nats: NatsServer
    workdir: Path
    stacks: list[Stack] = field(default_factory=list)
    _stack: Stack | None = None

    async def fresh_pool(self) -> tuple[asyncpg.Pool, str]:
        url = self.pg.create_database(f"bench_{uuid.uuid4().hex[:8]}")
        pool = await asyncpg.create_pool(url, min_size=4, max_size=20)
        await migrate(pool, [])
        return pool, url

    async def new_stack(self, pg: PostgresServer | None = None, nats: NatsServer | None = None,
                        env: dict[str, str] | None = None) -> Stack:
        """Starts all four services (as ``make up`` and the tests do); stopped when the run ends."""
        prefix = f"k{uuid.uuid4().hex[:8]}"
        eco = Ecosystem(postgres=pg or self.pg, nats=nats or self.nats, prefix=prefix,
                        workdir=self.workdir / prefix)
        stack = Stack(eco)
        self.stacks.append(stack)
        await asyncio.to_thread(eco.start, *SERVICES, **{**UNLIMITED, **(env or {})})
        return stack

    async def stack(self) -> Stack:
        """The shared deployment for the benchmarks that need one (end-to-end, gateway)."""
        if self._stack is None:
            self._stack = await self.new_stack()
        return self._stack

    def release_stack(self) -> None:
        """Stops the shared deployment (a later ``stack()`` starts a fresh one)."""
        if self._stack is not None:
            self._stack.stop()
            self._stack = None

    def stop(self) -> None:
        for stack in self.stacks:
            stack.stop()


def payload(n: int) -> dict[str, object]:
    return {"member_id": str(uuid.uuid4()), "display_name": f"Member {n}", "role": "member",
            "joined_via": "invitation", "n": n}


def log_tail(stack: Stack, service: str, chars: int = 2000) -> str:
    proc = stack.eco.processes.get(service)
    return proc.log_path.read_text()[-chars:] if proc else ""


Json = dict[str, Any]

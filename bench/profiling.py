"""Where the time goes: CPU seconds per process over a measured interval (always), and a py-spy sample
of chosen processes (when py-spy is installed; it is not a dependency of the project)."""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.core import Servers, Stack


def _tree_cpu(pid: int, children: bool = True) -> float:
    try:
        proc = psutil.Process(pid)
        procs = [proc, *(proc.children(recursive=True) if children else [])]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


@dataclass
class CpuMeter:
    """CPU seconds used by each service, PostgreSQL (every backend), NATS and this benchmark process."""

    pids: dict[str, int]
    started: dict[str, float] = field(default_factory=dict)
    own = "benchmark client"  # this process: its children are the servers, counted on their own
    wall: float = 0.0

    @classmethod
    def for_stack(cls, servers: Servers, stack: Stack) -> CpuMeter:
        pids = {name: proc.process.pid for name, proc in stack.eco.processes.items() if proc.process}
        if servers.pg.process:
            pids["postgres"] = servers.pg.process.pid
        if servers.nats.process:
            pids["nats"] = servers.nats.process.pid
        pids[cls.own] = psutil.Process().pid
        return cls(pids)

    def start(self) -> None:
        self.started = {name: _tree_cpu(pid, name != self.own) for name, pid in self.pids.items()}
        self.wall = time.perf_counter()

    def stop(self) -> tuple[float, dict[str, float]]:
        """Wall seconds and CPU seconds per process since ``start``."""
        used = {name: _tree_cpu(pid, name != self.own) - self.started.get(name, 0.0)
                for name, pid in self.pids.items()}
        return time.perf_counter() - self.wall, used


def cpu_breakdown(wall: float, used: dict[str, float], per: int, what: str) -> str:
    parts = ", ".join(f"{name} {seconds / per * 1000:.1f}" for name, seconds in
                      sorted(used.items(), key=lambda item: -item[1]))
    total = sum(used.values())
    return (f"CPU per {what} in ms — {parts}; in all {total / per * 1000:.1f} ms, i.e. "
            f"{total / wall:.2f} of the machine's cores busy over {wall:.1f} s")


def py_spy() -> str | None:
    return shutil.which("py-spy") or next((str(p) for p in [Path(sys.executable).parent / "py-spy"] if p.exists()),
                                          None)


class Sampler:
    """``py-spy record`` on some processes for a fixed time, then a short summary of where they spent it."""

    def __init__(self, workdir: Path, pids: dict[str, int], seconds: float) -> None:
        self.binary = py_spy()
        self.files = {name: workdir / f"pyspy-{name}-{time.monotonic_ns()}.txt" for name in pids}
        self.procs: list[subprocess.Popen[bytes]] = []
        if self.binary:
            for name, pid in pids.items():
                self.procs.append(subprocess.Popen(
                    [self.binary, "record", "-p", str(pid), "-d", str(max(int(seconds), 1)), "-r", "100", "-f", "raw",
                     "-o", str(self.files[name]), "--nonblocking"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def summaries(self) -> list[str]:
        for proc in self.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        return [line for name, path in self.files.items() if path.exists()
                for line in [summarise(name, path)] if line]


_OURS = re.compile(r"\((kizuna|services)/")
_BORING = ("serve (", "<module> (", "create_service", "lifespan", "InboxConsumer.run", "InboxConsumer._consume",
           "OutboxRelay.run", "OutboxRelay._publish_forever")
_IDLE = ("EpollSelector.select", "Condition.wait", "Queue.get")
# (label, frames any of which puts a sample in the category, frames that take it out again)
_CATEGORIES = [
    ("HTTP request path outside the endpoint (uvicorn, middleware, routing, validation, serialisation)",
     ("RequestResponseCycle.run_asgi", "BaseHTTPMiddleware", "TaskHandle._run_coro"),
     ("run_endpoint_function", "solve_dependencies")),
    ("FastAPI dependencies (authentication)", ("solve_dependencies",), ()),
    ("endpoints", ("run_endpoint_function",), ()),
    ("consumers, relay and other background tasks", ("InboxConsumer.", "OutboxRelay.", "Deliverer."), ()),
    ("asyncpg pool release (Connection.reset: a reset query per release)", ("Connection.reset",), ()),
    ("httpx client (gateway → service)", ("AsyncClient.send",), ()),
    ("socket sends (syscalls)", ("_SelectorSocketTransport.write", "TcpTransport.writelines"), ()),
    ("pydantic validation", ("BaseModel.model_validate", "TypeAdapter.validate"), ()),
    ("OpenTelemetry spans", ("Tracer.start_span", "Span.end", "_Span.end"), ()),
]


def summarise(name: str, path: Path, top: int = 6) -> str:
    """Shares of the *busy* samples (those not waiting in epoll or on a lock)."""
    inclusive: collections.Counter[str] = collections.Counter()
    categories: collections.Counter[str] = collections.Counter()
    total = idle = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        if frames[-1].startswith(_IDLE):
            idle += n
            continue
        total += n
        for key in set(frames):
            inclusive[key] += n
        for label, into, out in _CATEGORIES:
            if any(f.startswith(into) for f in frames) and not any(f.startswith(out) for f in frames):
                categories[label] += n
    if not total:
        return ""
    ours = [(k, v) for k, v in inclusive.most_common() if _OURS.search(k) and not k.startswith(_BORING)][:top]
    fmt = "; ".join(f"{k.split(' (')[0]} ({k.split(' (')[1].rstrip(')')}) {v / total:.0%}" for k, v in ours)
    cats = "; ".join(f"{label} {v / total:.0%}" for label, v in categories.most_common() if v / total >= 0.02)
    return (f"py-spy, {name}: {total} busy samples at 100 Hz (and {idle} idle); share of the busy ones in each "
            f"function and below — {fmt}. By kind: {cats}")

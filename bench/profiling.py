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


def _tree_cpu(pid: int) -> float:
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
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
    wall: float = 0.0

    @classmethod
    def for_stack(cls, servers: Servers, stack: Stack) -> CpuMeter:
        pids = {name: proc.process.pid for name, proc in stack.eco.processes.items() if proc.process}
        if servers.pg.process:
            pids["postgres"] = servers.pg.process.pid
        if servers.nats.process:
            pids["nats"] = servers.nats.process.pid
        pids["benchmark client"] = psutil.Process().pid
        return cls(pids)

    def start(self) -> None:
        self.started = {name: _tree_cpu(pid) for name, pid in self.pids.items()}
        self.wall = time.perf_counter()

    def stop(self) -> tuple[float, dict[str, float]]:
        """Wall seconds and CPU seconds per process since ``start``."""
        used = {name: _tree_cpu(pid) - self.started.get(name, 0.0) for name, pid in self.pids.items()}
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
_BORING = ("serve (", "<module> (", "create_service", "lifespan")
_LIBRARY_HOTSPOTS = {
    "BaseHTTPMiddleware.__call__": "starlette BaseHTTPMiddleware (a task and memory streams per request)",
    "Connection.reset": "asyncpg pool release (Connection.reset: one more round trip per release)",
    "AsyncClient.send": "httpx client (gateway → service)",
    "_SelectorSocketTransport.write": "socket writes (send syscalls)",
    "EpollSelector.select": "waiting in epoll",
    "BaseModel.model_validate": "pydantic validation",
    "Tracer.start_span": "OpenTelemetry spans",
}


def summarise(name: str, path: Path, top: int = 6) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        seen = set()
        for frame in stack.split(";"):
            key = re.sub(r":\d+\)$", ")", frame)
            if key not in seen:
                seen.add(key)
                inclusive[key] += n
    if not total:
        return ""
    ours = [(k, v) for k, v in inclusive.most_common() if _OURS.search(k) and not k.startswith(_BORING)][:top]
    libs = [(label, sum(v for k, v in inclusive.items() if k.startswith(prefix)))
            for prefix, label in _LIBRARY_HOTSPOTS.items()]
    fmt = "; ".join(f"{k.split(' (')[0]} ({k.split(' (')[1].rstrip(')')}) {v / total:.0%}" for k, v in ours)
    lib = "; ".join(f"{label} {v / total:.0%}" for label, v in libs if v / total >= 0.02)
    return (f"py-spy, {name} ({total} samples at 100 Hz, share of samples in each function and below): {fmt}. "
            f"Libraries: {lib}")

"""A dependency-free progress line for long operations (replays, seeding, benchmarks)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, label: str, total: int | None = None, stream: TextIO = sys.stderr) -> None:
        self.label, self.total, self.stream = label, total, stream
        self.done = 0
        self.started = time.monotonic()
        self._last_draw = 0.0

    def advance(self, count: int = 1) -> None:
        self.done += count
        now = time.monotonic()
        if now - self._last_draw > 0.2 or (self.total is not None and self.done >= self.total):
            self._draw(now)

    def _draw(self, now: float) -> None:
        self._last_draw = now
        rate = self.done / max(now - self.started, 1e-9)
        if self.total:
            share = min(self.done / self.total, 1.0)
            bar = "#" * int(share * 30)
            line = f"\r{self.label} [{bar:<30}] {self.done}/{self.total} ({share:.0%}, {rate:,.0f}/s)"
        else:
            line = f"\r{self.label} {self.done} ({rate:,.0f}/s)"
        self.stream.write(line)
        self.stream.flush()

    def finish(self) -> None:
        self._draw(time.monotonic())
        self.stream.write("\n")
        self.stream.flush()

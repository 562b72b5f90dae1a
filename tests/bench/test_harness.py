"""The benchmark harness runs (at tiny sizes); speed itself is never pass/fail in the suite."""

from __future__ import annotations

import subprocess
import sys

from tests.support import ROOT


def test_quick_benchmark_run_produces_a_report() -> None:
    result = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", "relay", "--no-write"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| relay to JetStream" in result.stdout and "raw nats-py publish_async" in result.stdout
    assert "Machine:" in result.stdout

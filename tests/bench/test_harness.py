"""The benchmark harness runs (at tiny sizes); speed itself is never pass/fail in the suite."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench.core import Result
from bench.profiling import summarise
from tests.support import ROOT, unclaimed_port


def test_quick_benchmark_run_produces_a_report() -> None:
    result = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", "relay", "--no-write"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| relay to JetStream" in result.stdout and "raw nats-py publish_async" in result.stdout
    assert "Machine:" in result.stdout


def test_load_generator_measures_the_bare_baseline(tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"members": 3, "roles": {"owner": 1}}))
    port = unclaimed_port()
    bare = subprocess.Popen([sys.executable, "-m", "bench.bare", str(port), "/v1/communities/c/health", str(body)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/communities/c/health").json()["members"] == 3:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        load = subprocess.run([sys.executable, "-m", "bench.load", "--port", str(port), "--path",
                               "/v1/communities/c/health", "--header", "Authorization: Bearer x", "--seconds", "0.5",
                               "--warmup", "0.2", "--concurrency", "4"],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
    finally:
        bare.terminate()
        bare.wait(10)
    assert load.returncode == 0, load.stderr[-3000:]
    figures = json.loads(load.stdout)
    assert figures["requests"] > 0 and figures["errors"] == 0 and figures["rate"] > 0


def test_report_shows_absolute_goals_details_and_can_be_written_again(tmp_path: Path) -> None:
    rows = [Result("end-to-end latency at 200 joins/s (p50 / p95 / p99)", 0.25, 0.2, "write acknowledged", "ms",
                   None, ours_text="10.0 / 20.0 / 250.0 ms", baseline_text="8.0 / 15.0 / 200.0 ms",
                   goal_text="p99 ≤ 100 ms", goal_met=False, notes=["200/s: 10 of 10 joins visible"]),
            Result("federation: delivery throughput", 5.0, 10.0, "jobs/s acknowledged at the sender", "jobs/s", None,
                   ours_text="5.0 jobs/s", baseline_text="10.0 jobs/s")]
    kept = tmp_path / "figures.json"
    kept.write_text(json.dumps({"when": "2026-01-01 00:00 UTC", "command": "make bench", "context": ["calm"],
                                "results": [r.__dict__ for r in rows]}))
    result = subprocess.run([sys.executable, "-m", "bench", "--from-results", str(kept), "--no-write"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "| end-to-end latency at 200 joins/s (p50 / p95 / p99) | 10.0 / 20.0 / 250.0 ms | 8.0 / 15.0 / 200.0 ms " \
           "(write acknowledged) | 1.25x | p99 ≤ 100 ms | **no** |" in out
    assert "| 5.0 jobs/s | 10.0 jobs/s (jobs/s acknowledged at the sender) | 0.50x | — | — |" in out
    assert "- 200/s: 10 of 10 joins visible" in out and "- calm" in out
    assert "## Where goals are missed, and why" in out and "**end-to-end latency at 200 joins/s" in out
    assert "## What the figures without a goal show" in out and "Run: 2026-01-01 00:00 UTC" in out


def test_profile_summary_splits_busy_samples_by_function_and_kind(tmp_path: Path) -> None:
    raw = tmp_path / "gateway.txt"
    raw.write_text(
        "run (uvicorn/main.py:10);BaseHTTPMiddleware.__call__ (starlette/middleware/base.py:1);"
        "run_endpoint_function (fastapi/routing.py:5);health (services/gateway/projections.py:64) 30\n"
        "run (uvicorn/main.py:10);BaseHTTPMiddleware.__call__ (starlette/middleware/base.py:1) 10\n"
        "run (uvicorn/main.py:10);EpollSelector.select (selectors.py:468) 20\n")
    summary = summarise("gateway", raw)
    assert "40 busy samples at 100 Hz (and 20 idle)" in summary
    assert "health (services/gateway/projections.py) 75%" in summary
    assert "endpoints 75%" in summary and "HTTP request path outside the endpoint" in summary

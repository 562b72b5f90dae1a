"""`make up` as a new user meets it: everything starts, the demo is seeded through the public API,
the dashboard token works, and Ctrl-C stops every process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support import ROOT


def test_make_up_serves_a_seeded_dashboard_and_stops_cleanly(tmp_path: Path) -> None:
    log_path = tmp_path / "up.log"
    env = {**os.environ, "KIZUNA_HOME": str(tmp_path / "home")}
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "kizuna.up"], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while "Kizuna is up" not in log_path.read_text():
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.5)
        time.sleep(0.2)
        text = log_path.read_text()
        gateway = re.search(r"Gateway \(the public API\)\s+(\S+)/v1", text)
        token = re.search(r"/dashboard#token=(\S+)", text)
        community = re.search(r"Community 1\s+Hikari Makers \((\S+)\)", text)
        assert gateway and token and community, text
        headers = {"Authorization": f"Bearer {token.group(1)}"}
        assert httpx.get(f"{gateway.group(1)}/dashboard").status_code == 200

        def health() -> dict[str, object]:
            return httpx.get(f"{gateway.group(1)}/v1/communities/{community.group(1)}/health", headers=headers).json()

        deadline = time.monotonic() + 20
        while health().get("members") != 5 and time.monotonic() < deadline:
            time.sleep(0.3)
        figures = health()
        assert figures["members"] == 5 and figures["jobs"] == {"open": 1, "completed": 0, "cancelled": 0}, figures
        base = f"{gateway.group(1)}/v1/communities/{community.group(1)}"
        links = httpx.get(f"{base}/partnerships", headers=headers).json()
        assert [(p["status"], p["partner"]["name"]) for p in links] == [("active", "Tsubasa Publishing")], links
        write = httpx.post(f"{gateway.group(1)}/v1/communities/{community.group(1)}/jobs", headers=headers, json={})
        assert write.status_code == 403, "the printed dashboard token is read-only"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    assert "stopped; data kept" in log_path.read_text()
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path / "home")], capture_output=True, text=True).stdout
    assert not leftover.strip(), f"processes left running: {leftover}"

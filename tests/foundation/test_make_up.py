"""`make up` as a new user meets it: everything starts, the demo is seeded through the public API,
the dashboard token works; Ctrl-C (SIGINT to the terminal's whole process group) stops the services
before NATS and PostgreSQL with no error logged; an immediate restart comes back at the same address;
a port another process holds stops the start with a message instead of moving."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support import ROOT


def start_up(home: Path, log_path: Path, **env: str) -> subprocess.Popen[bytes]:
    with open(log_path, "w") as log:
        # A session of its own, like a terminal: Ctrl-C is sent to the whole foreground process group.
        return subprocess.Popen([sys.executable, "-m", "kizuna.up"], cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "KIZUNA_HOME": str(home), **env})


def wait_up(proc: subprocess.Popen[bytes], log_path: Path) -> str:
    deadline = time.monotonic() + 90
    while "Kizuna is up" not in log_path.read_text():
        assert proc.poll() is None, log_path.read_text()[-3000:]
        assert time.monotonic() < deadline, log_path.read_text()[-3000:]
        time.sleep(0.5)
    time.sleep(0.2)
    return log_path.read_text()


def ctrl_c(proc: subprocess.Popen[bytes], log_path: Path) -> None:
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(60)
    assert "stopped; data kept" in log_path.read_text(), log_path.read_text()[-2000:]


def error_lines(home: Path) -> list[str]:
    found = []
    for log in (home / "logs").glob("*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if '"level": "error"' in line or "Traceback" in line:
                found.append(f"{log.name}: {line[:300]}")
    return found


def test_make_up_serves_a_seeded_dashboard_stops_cleanly_and_comes_back_at_the_same_address(tmp_path: Path) -> None:
    home, log_path = tmp_path / "home", tmp_path / "up.log"
    proc = start_up(home, log_path)
    try:
        text = wait_up(proc, log_path)
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
        ctrl_c(proc, log_path)
    assert not error_lines(home), error_lines(home)
    leftover = subprocess.run(["pgrep", "-f", str(home)], capture_output=True, text=True).stdout
    assert not leftover.strip(), f"processes left running: {leftover}"

    # Started again at once (its ports may still be in TIME_WAIT): the same address, the same data.
    again_log = tmp_path / "again.log"
    proc = start_up(home, again_log)
    try:
        again = wait_up(proc, again_log)
        assert f"Gateway (the public API)  {gateway.group(1)}/v1" in again, again
        assert health()["members"] == 5
    finally:
        ctrl_c(proc, again_log)
    assert not error_lines(home), error_lines(home)

    # A port of the deployment really taken by another process: say so and stop, never move.
    ports = json.loads((home / "ports.json").read_text())
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", ports["gateway"]))
        squatter.listen()
        taken_log = tmp_path / "taken.log"
        proc = start_up(home, taken_log)
        assert proc.wait(30) == 1
    assert f"port {ports['gateway']}" in taken_log.read_text() and "in use" in taken_log.read_text()

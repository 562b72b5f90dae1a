"""`make up` waits for the process it started, not for whatever answers on its port (docs/operations.md,
"/readyz"): another server answering ready there is not taken for it."""

from __future__ import annotations

import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from kizuna.up import wait_ready


def _answering(instance: str) -> ThreadingHTTPServer:
    class Ready(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            if instance:
                self.send_header("kizuna-instance", instance)
            self.end_headers()
            self.wfile.write(b'{"status": "ready"}')

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ready)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_ready_server_of_another_deployment_on_the_port_is_not_taken_for_the_one_started() -> None:
    ours = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        for other in ("", "someone-elses"):
            server = _answering(other)
            try:
                with pytest.raises(TimeoutError):
                    wait_ready(f"http://127.0.0.1:{server.server_address[1]}", ours, "members", "ours", timeout=1.5)
            finally:
                server.shutdown()
        server = _answering("ours")
        try:
            wait_ready(f"http://127.0.0.1:{server.server_address[1]}", ours, "members", "ours", timeout=5)
        finally:
            server.shutdown()
    finally:
        ours.kill()
        ours.wait()


def test_the_one_started_exiting_meanwhile_is_said_plainly() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    server = _answering("someone-elses")
    try:
        with pytest.raises(RuntimeError, match="exited early"):
            wait_ready(f"http://127.0.0.1:{server.server_address[1]}", gone, "gateway", "ours", timeout=5)
    finally:
        server.shutdown()

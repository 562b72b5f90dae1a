"""Two `make up` deployments federating on one machine (issue 19, item 10), as the README shows: one is
stopped with Ctrl-C and started again at once; it comes back at the same origin and its partner's
deliveries resume — a job shared while it was down arrives within the retry backoff's first minutes."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from tests.foundation.test_make_up import ctrl_c, start_up, wait_up

JOB = {"title": "Label design for a cider", "deadline": "2031-03-01", "visibility": "partners"}


class Deployment:
    def __init__(self, home: Path, log: Path, **env: str) -> None:
        self.home, self.log, self.env = home, log, env
        self.proc: subprocess.Popen[bytes] | None = None
        self.gateway = self.operator = ""

    def up(self) -> str:
        self.proc = start_up(self.home, self.log, **self.env)
        text = wait_up(self.proc, self.log)
        gateway = re.search(r"Gateway \(the public API\)\s+(\S+)/v1", text)
        operator = re.search(r"Operator token\s+(\S+)", text)
        assert gateway and operator, text
        self.gateway, self.operator = gateway.group(1), operator.group(1)
        return self.gateway

    def down(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            ctrl_c(self.proc, self.log)

    def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.operator}"}
        return httpx.request(method, f"{self.gateway}{path}", headers=headers, timeout=30, **kwargs)

    def community(self, name: str) -> tuple[str, str, str]:
        founded = self.call("POST", "/v1/communities", json={"name": name, "owner_display_name": "Owner"})
        assert founded.status_code == 201, founded.text
        cid, owner = founded.json()["community_id"], founded.json()["owner_member_id"]
        token = self.call("POST", "/v1/tokens", json={"community_id": cid, "member_id": owner})
        assert token.status_code == 201, token.text
        return cid, owner, token.json()["token"]


def until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"{what} not within {timeout}s")


def test_a_restarted_partner_comes_back_at_its_address_and_deliveries_resume(tmp_path: Path) -> None:
    a = Deployment(tmp_path / "a", tmp_path / "a.log")
    b = Deployment(tmp_path / "b", tmp_path / "b.log")
    try:
        a.up()
        b_origin = b.up()
        a_cid, _, a_owner = a.community("Ringo makers")
        b_cid, _, b_owner = b.community("Nagano weavers")
        proposed = a.call("POST", f"/v1/communities/{a_cid}/partnerships", a_owner,
                          json={"partner_origin": b_origin, "partner_community_id": b_cid})
        assert proposed.status_code == 201, proposed.text
        pid = proposed.json()["partnership_id"]
        until(lambda: b.call("POST", f"/v1/communities/{b_cid}/partnerships/{pid}/acceptance", b_owner
                             ).status_code == 200, 60, "the proposal reaching the partner and its acceptance")
        until(lambda: any(p["status"] == "active" for p in a.call(
            "GET", f"/v1/communities/{a_cid}/partnerships", a_owner).json()), 60, "the link active at A")

        # B stops (Ctrl-C) and starts again at once; meanwhile A shares a job with its partners.
        b.down()
        posted = a.call("POST", f"/v1/communities/{a_cid}/jobs", a_owner, json=JOB)
        assert posted.status_code == 201, posted.text
        job_id = posted.json()["job_id"]
        assert b.up() == b_origin, "the restarted deployment must come back at the same origin"

        def arrived() -> bool:
            jobs = b.call("GET", f"/v1/communities/{b_cid}/partner-jobs", b_owner)
            return jobs.status_code == 200 and job_id in {j["job_id"] for j in jobs.json()["items"]}

        until(arrived, 180, "the job shared while the partner was down")
    finally:
        b.down()
        a.down()

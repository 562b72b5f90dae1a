"""`make up` as a new user meets it: everything starts, the demo is seeded through the public API,
the dashboard token works; a person signs in through the printed sign-in page with an email read from the
printed local inbox, and joins a demo community by its printed join link; Ctrl-C (SIGINT to the terminal's
whole process group) stops the services before NATS and PostgreSQL with no error logged; an immediate
restart comes back at the same address; a port another process holds stops the start with a message
instead of moving."""

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
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.support import ROOT

# A deployment just started answers its first requests slowly while three test files share two cores (a clean
# run saw the dashboard take more than httpx's default 5 s): the calls below wait as long as a person would.
LOADED = 30


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


def printed(label: str, text: str) -> str:
    found = re.search(rf"│ {re.escape(label)}\s+(\S+)", text)
    assert found, f"{label!r} is not in the printed summary:\n{text}"
    return found.group(1)


def link_in_the_inbox(inbox: str, address: str, seen: set[str]) -> str:
    """The newest sign-in link to ``address`` on the inbox page, as a person finds it in a browser."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        page = httpx.get(inbox, timeout=10)
        assert page.status_code == 200 and page.headers["cache-control"] == "no-store", page.text
        for article in page.text.split("<article>")[1:]:
            if f"To <b>{address}</b>" in article:
                [link, *_] = re.findall(r'<a href="([^"]+/sign-in/email/[^"]+)"', article)
                if link not in seen:
                    seen.add(link)
                    return link
                break  # the newest message to this address is one already used: wait for the new one
        time.sleep(0.3)
    raise AssertionError(f"no new sign-in email to {address} on {inbox}")


def sign_in_and_join_as_a_person(text: str) -> None:
    """Over HTTP like a browser: the printed join link sends a stranger to sign in; the email arrives in
    the printed inbox; its link signs the browser in and leads back to the join page; joining makes the
    person a member, whom their own page (/me) shows."""
    sign_in_page, inbox = printed("Sign-in page", text), printed("Sign-in email", text)
    join_link = printed("Join Hikari Makers", text)
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(sign_in_page))
    cid = urlsplit(join_link).path.rsplit("/", 1)[1]
    assert join_link == f"{origin}/join/{cid}" and sign_in_page == f"{origin}/sign-in"
    # The page is for this machine's browser only: nothing but loopback names may read the links.
    rebound = httpx.get(inbox, headers={"host": f"rebound.example:{urlsplit(inbox).port}"}, timeout=LOADED)
    assert rebound.status_code == 421
    seen: set[str] = set()
    with httpx.Client(base_url=origin, timeout=30, follow_redirects=False,
                      headers={"accept": "text/html", "accept-language": "en"}) as browser:
        form = browser.get(sign_in_page)
        assert form.status_code == 200 and 'name="email"' in form.text, form.text
        sent_away = browser.get(join_link)
        assert sent_away.status_code == 303 and sent_away.headers["location"].startswith("/sign-in?next="), sent_away
        asked = browser.post("/sign-in/email", data={"email": "hana@example.test", "next": f"/join/{cid}"})
        assert asked.status_code == 200, asked.text
        link = link_in_the_inbox(inbox, "hana@example.test", seen)
        assert link.startswith(f"{origin}/sign-in/email/"), link
        confirm = browser.get(urlsplit(link).path)
        assert confirm.status_code == 200 and "<form" in confirm.text
        signed_in = browser.post(urlsplit(link).path)
        assert signed_in.status_code == 303 and signed_in.headers["location"] == f"/join/{cid}", signed_in.text
        assert browser.get(f"/join/{cid}").status_code == 200
        me = browser.get("/v1/me", headers={"accept": "application/json"}).json()
        joined = browser.post(f"/v1/join/{cid}", json={"display_name": "Hana"},
                              headers={"x-csrf-token": me["csrf_token"], "accept": "application/json"})
        assert joined.status_code == 201, joined.text
        deadline = time.monotonic() + 20
        while "Hikari Makers" not in (account := browser.get("/me")).text and time.monotonic() < deadline:
            time.sleep(0.3)
        assert account.status_code == 200 and "Hikari Makers" in account.text, account.text
    # The founder the demo made (Yui, the owner) becomes a person too, with the printed owner's link.
    owner_link = printed("Be its owner (Yui)", text)
    with httpx.Client(base_url=origin, timeout=30, follow_redirects=False,
                      headers={"accept": "text/html", "accept-language": "en"}) as browser:
        claim_path = owner_link.removeprefix(origin)
        to_sign_in = browser.get(claim_path)
        assert to_sign_in.status_code == 303 and to_sign_in.headers["location"].startswith("/sign-in?next=")
        browser.post("/sign-in/email", data={"email": "yui@example.test", "next": claim_path})
        link = urlsplit(link_in_the_inbox(inbox, "yui@example.test", seen)).path
        assert browser.post(link).headers["location"] == claim_path
        me = browser.get("/v1/me", headers={"accept": "application/json"}).json()
        claimed = browser.post(f"/v1/join/{cid}/account-claims", json={"code": claim_path.split("code=", 1)[1]},
                               headers={"x-csrf-token": me["csrf_token"], "accept": "application/json"})
        assert claimed.status_code == 201, claimed.text
        deadline = time.monotonic() + 20
        while "owner" not in (account := browser.get("/me")).text and time.monotonic() < deadline:
            time.sleep(0.3)
        assert "Hikari Makers" in account.text and "owner" in account.text, account.text
        # The member app of the demo, as its owner: the seeded community's home and its stewarding page.
        home = browser.get(f"/app/c/{cid}", headers={"accept-language": "en"})
        assert home.status_code == 200 and "Hikari Makers" in home.text and "Stewarding" in home.text, home.text
        assert browser.get(f"/app/c/{cid}/stewarding").status_code == 200


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
        assert httpx.get(f"{gateway.group(1)}/dashboard", timeout=LOADED).status_code == 200

        def health() -> dict[str, object]:
            return httpx.get(f"{gateway.group(1)}/v1/communities/{community.group(1)}/health", headers=headers,
                             timeout=LOADED).json()

        deadline = time.monotonic() + 20
        while health().get("members") != 5 and time.monotonic() < deadline:
            time.sleep(0.3)
        figures = health()
        assert figures["members"] == 5 and figures["jobs"] == {"open": 1, "completed": 0, "cancelled": 0}, figures
        base = f"{gateway.group(1)}/v1/communities/{community.group(1)}"
        links = httpx.get(f"{base}/partnerships", headers=headers, timeout=LOADED).json()
        assert [(p["status"], p["partner"]["name"]) for p in links] == [("active", "Tsubasa Publishing")], links
        write = httpx.post(f"{gateway.group(1)}/v1/communities/{community.group(1)}/jobs", headers=headers, json={},
                           timeout=LOADED)
        assert write.status_code == 403, "the printed dashboard token is read-only"
        sign_in_and_join_as_a_person(text)
        assert health()["members"] == 6  # Hana, who joined as herself
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
        for label in ("Sign-in page", "Sign-in email", "Join Hikari Makers"):
            assert printed(label, again) == printed(label, text), label
        assert "Be its owner" not in again  # Yui has become herself: no new code
        assert health()["members"] == 6
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
    # The gateway's port is taken here; another test's deployment may hold another of the ports at the same time
    # (make test runs three files at once): any taken port must be named, with what to do.
    assert "in use" in taken_log.read_text() and "port " in taken_log.read_text()


# ---- Two `make up` deployments federating on one machine (issue 19, item 10), as the README shows: one is
# stopped with Ctrl-C and started again at once; it comes back at the same origin and its partner's
# deliveries resume — a job shared while it was down arrives within the retry backoff's first minutes.
# (In this file so the two never start at once: both take the default ports.)

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

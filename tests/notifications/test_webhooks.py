"""Outgoing webhooks (issue 22): a real receiver process verifies every delivery with the Standard Webhooks
reference library (``standardwebhooks``), never Kizuna's own code. It goes away for a while and comes
back: every delivery arrives once, in order; the read policy keeps out what the owner may not see on the
stream; a rotated secret overlaps the old one; an endpoint failing for long is disabled, its owner told,
and enabled again it catches up in order."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx

from kizuna.devstack import free_port
from tests.identity.journey import community_token
from tests.identity.smtp import SmtpInbox
from tests.support import ROOT, Ecosystem, eventually
from tests.webapp.phones import given_role, hikari_makers, member_id_of


class Receiver:
    def __init__(self, folder: Path) -> None:
        self.port, self.secrets, self.out = free_port(), folder / "secrets.txt", folder / "received.jsonl"
        self.secrets.write_text("")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "tests.notifications.receiver", str(self.port),
                                         str(self.secrets), str(self.out)], cwd=ROOT)
        from kizuna.devstack import _wait_for_port

        _wait_for_port(self.port, 15, "receiver", self.process)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def received(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line.strip()]


@contextmanager
def receiver(folder: Path) -> Iterator[Receiver]:
    folder.mkdir(parents=True, exist_ok=True)
    r = Receiver(folder)
    r.start()
    try:
        yield r
    finally:
        r.stop()


@asynccontextmanager
async def an_owner_listening(eco: Ecosystem, inbox: SmtpInbox, folder: Path,
                             event_types: list[str]) -> AsyncIterator[tuple[str, httpx.AsyncClient, dict[str, str],
                                                                            Receiver, dict[str, Any]]]:
    """Hikari Makers with Hana as its owner, a receiver running, and her endpoint for ``event_types``
    registered; the receiver knows its secret."""
    async with hikari_makers(eco, inbox) as (cid, hana, _ken):
        await given_role(eco, cid, await member_id_of(hana, cid), "owner")
        as_hana = await _headers(hana, cid)
        with receiver(folder) as r:
            registered = await hana.post(f"/v1/communities/{cid}/webhooks", headers=as_hana,
                                         json={"url": r.url, "event_types": event_types})
            assert registered.status_code == 201, registered.text
            r.secrets.write_text(registered.json()["secret"] + "\n")
            yield cid, hana, as_hana, r, registered.json()


async def _headers(person: httpx.AsyncClient, cid: str) -> dict[str, str]:
    answer = await community_token(person, cid)
    return {"authorization": f"Bearer {answer.json()['token']}", "accept": "application/json"}


async def _titles_arrived(r: Receiver, titles: list[str], timeout: float = 30) -> list[dict[str, Any]]:
    async def arrived() -> list[dict[str, Any]] | None:
        jobs = [d for d in r.received() if d["type"] == "JobRequestPosted"]
        return jobs if {d["data"]["title"] for d in jobs} >= set(titles) else None

    found: list[dict[str, Any]] = await eventually(arrived, timeout=timeout)
    return found


async def test_deliveries_are_signed_arrive_once_and_in_order_through_an_outage_and_a_secret_rotation(
        notify_stack: Ecosystem, inbox: SmtpInbox, tmp_path: Path) -> None:
    async with hikari_makers(notify_stack, inbox) as (cid, hana, ken):
        await given_role(notify_stack, cid, await member_id_of(hana, cid), "owner")
        as_hana, as_ken = await _headers(hana, cid), await _headers(ken, cid)
        with receiver(tmp_path / "receiver") as r:
            refused = await ken.post(f"/v1/communities/{cid}/webhooks", headers=as_ken,
                                     json={"url": r.url, "event_types": ["*"]})
            assert refused.status_code == 403, refused.text  # a member: not theirs to ask for
            bad = await hana.post(f"/v1/communities/{cid}/webhooks", headers=as_hana,
                                  json={"url": "ftp://example.org", "event_types": ["NoSuchEvent"], "x": 1})
            assert bad.status_code == 422 and {e["field"] for e in bad.json()["errors"]} >= {"event_types", "x"}
            registered = await hana.post(f"/v1/communities/{cid}/webhooks", headers=as_hana, json={
                "url": r.url, "event_types": ["JobRequestPosted", "CalendarLinkIssued", "MemberJoined"],
                "description": "the wall screen"})
            assert registered.status_code == 201, registered.text
            endpoint, secret = registered.json()["endpoint_id"], registered.json()["secret"]
            assert secret.startswith("whsec_")
            r.secrets.write_text(secret + "\n")
            webhooks = f"/v1/communities/{cid}/webhooks/{endpoint}"

            async def post(title: str) -> None:
                answer = await hana.post(f"/v1/communities/{cid}/jobs", headers=as_hana,
                                         json={"title": title, "deadline": "2031-01-01"})
                assert answer.status_code == 201, answer.text

            for n in range(1, 4):
                await post(f"Job {n}")
            await _titles_arrived(r, ["Job 1", "Job 2", "Job 3"])

            r.stop()  # the dashboard is away for a while
            for n in range(4, 7):
                await post(f"Job {n}")

            async def retried() -> bool:
                log = (await hana.get(f"{webhooks}/deliveries", headers=as_hana)).json()
                return any(d["status"] == "pending" and d["attempts"] > 0 for d in log)

            await eventually(retried, timeout=30)
            # Ken makes his calendar address meanwhile: an event only the operator sees on the stream.
            linked = await ken.post(f"/v1/communities/{cid}/calendar/link", headers=as_ken)
            assert linked.status_code == 201, linked.text
            r.start()
            jobs = await _titles_arrived(r, [f"Job {n}" for n in range(1, 7)])
            assert [d["data"]["title"] for d in jobs] == [f"Job {n}" for n in range(1, 7)]  # once each, in order
            assert all(d["verified_with"] == 0 for d in r.received())
            assert len({d["webhook_id"] for d in r.received()}) == len(r.received())

            # A new secret: both sign for a while, so a receiver holding either verifies.
            rotated = await hana.post(f"{webhooks}/secret-rotation", headers=as_hana)
            assert rotated.status_code == 200, rotated.text
            r.secrets.write_text(rotated.json()["secret"] + "\n")
            await post("Job 7")
            await _titles_arrived(r, ["Job 7"])
            r.secrets.write_text(secret + "\n")
            await post("Job 8")
            await _titles_arrived(r, ["Job 8"])
            assert "CalendarLinkIssued" not in {d["type"] for d in r.received()}  # the read policy kept it out

            log = (await hana.get(f"{webhooks}/deliveries", headers=as_hana)).json()
            assert {d["status"] for d in log} == {"delivered"} and len(log) == 8
            first = log[-1]
            again = await hana.post(f"{webhooks}/deliveries/{first['delivery_id']}/redelivery", headers=as_hana)
            assert again.status_code == 201 and again.json()["delivery_id"] != first["delivery_id"], again.text

            async def redelivered() -> bool:
                return [d["event_id"] for d in r.received()].count(first["event_id"]) == 2

            await eventually(redelivered)


async def test_an_endpoint_failing_for_long_is_disabled_its_owner_told_and_enabled_it_catches_up_in_order(
        notify_stack: Ecosystem, inbox: SmtpInbox, tmp_path: Path) -> None:
    async with an_owner_listening(notify_stack, inbox, tmp_path / "receiver", ["JobRequestPosted"]) as (
            cid, hana, as_hana, r, registered):
        r.stop()
        for n in (1, 2):
            await hana.post(f"/v1/communities/{cid}/jobs", headers=as_hana,
                            json={"title": f"Late {n}", "deadline": "2031-01-01"})

        async def disabled() -> bool:
            listed = (await hana.get(f"/v1/communities/{cid}/webhooks", headers=as_hana)).json()
            return listed[0]["status"] == "disabled"

        await eventually(disabled, timeout=40)

        async def told() -> bool:
            box = (await hana.get(f"/v1/communities/{cid}/notifications", headers=as_hana)).json()
            return any(i["kind"] == "webhook-disabled" and i["facts"]["url"] == r.url for i in box["items"])

        await eventually(told)
        r.start()
        enabled = await hana.post(f"/v1/communities/{cid}/webhooks/{registered['endpoint_id']}/enable",
                                  headers=as_hana)
        assert enabled.status_code == 200 and enabled.json()["status"] == "active", enabled.text
        jobs = await _titles_arrived(r, ["Late 1", "Late 2"])
        assert [d["data"]["title"] for d in jobs] == ["Late 1", "Late 2"]


async def test_the_documented_node_verifier_accepts_a_real_delivery_and_rejects_a_forged_one(
        notify_stack: Ecosystem, inbox: SmtpInbox, tmp_path: Path) -> None:
    import re
    import shutil

    node = shutil.which("node")
    assert node, "Node.js runs the docs' verifier (it is on this project's machines)"
    script = re.search(r"```js\n(.*?)```", (ROOT / "docs" / "notifications.md").read_text(), re.S)
    assert script, "docs/notifications.md has the Node.js verifier"
    (tmp_path / "verify.js").write_text(script.group(1))
    async with an_owner_listening(notify_stack, inbox, tmp_path / "receiver", ["JobRequestPosted"]) as (
            cid, hana, as_hana, r, registered):
        await hana.post(f"/v1/communities/{cid}/jobs", headers=as_hana,
                        json={"title": "For the verifier", "deadline": "2031-01-01"})
        await _titles_arrived(r, ["For the verifier"])
        delivery = (tmp_path / "receiver" / "last-delivery.json").read_text()
        ok = subprocess.run([node, str(tmp_path / "verify.js"), registered["secret"]], input=delivery,
                            capture_output=True, text=True, timeout=30)
        assert ok.returncode == 0 and ok.stdout.strip() == "verified", ok.stdout + ok.stderr
        forged = json.loads(delivery)
        forged["body"] = forged["body"].replace("For the verifier", "For the forger")
        bad = subprocess.run([node, str(tmp_path / "verify.js"), registered["secret"]], input=json.dumps(forged),
                             capture_output=True, text=True, timeout=30)
        assert bad.returncode == 1 and bad.stdout.strip() == "REJECTED", bad.stdout + bad.stderr


async def test_the_operators_endpoint_hears_every_community_and_no_owner_can_reach_it(
        notify_stack: Ecosystem, inbox: SmtpInbox, tmp_path: Path) -> None:
    async with httpx.AsyncClient(base_url=notify_stack.url("gateway"), headers=notify_stack.operator_headers(),
                                 timeout=30) as operator, an_owner_listening(
            notify_stack, inbox, tmp_path / "owner", ["JobRequestPosted"]) as (cid, hana, as_hana, _r, _own):
        with receiver(tmp_path / "operator") as r:
            registered = await operator.post("/v1/webhooks", json={
                "url": r.url, "event_types": ["CommunityFounded"], "description": "the operator's wall screen"})
            assert registered.status_code == 201, registered.text
            r.secrets.write_text(registered.json()["secret"] + "\n")
            endpoint = registered.json()["endpoint_id"]
            names = [f"North Circle {endpoint[-6:]}", f"South Circle {endpoint[-6:]}"]
            for name in names:
                founded = await operator.post("/v1/communities", json={"name": name, "owner_display_name": "Aya"})
                assert founded.status_code == 201, founded.text

            async def both() -> bool:
                return {d["data"]["name"] for d in r.received() if d["verified_with"] == 0} >= set(names)

            await eventually(both, timeout=30)
            log = (await operator.get(f"/v1/webhooks/{endpoint}/deliveries")).json()
            assert {d["event_type"] for d in log} == {"CommunityFounded"} and len(log) >= 2

            # An owner neither registers for every community, nor sees or touches the operator's endpoint.
            refused = await hana.post("/v1/webhooks", headers=as_hana,
                                      json={"url": r.url, "event_types": ["CommunityFounded"]})
            assert refused.status_code == 403, refused.text
            assert (await hana.get("/v1/webhooks", headers=as_hana)).status_code == 403
            listed = (await hana.get(f"/v1/communities/{cid}/webhooks", headers=as_hana)).json()
            assert endpoint not in {e["endpoint_id"] for e in listed}
            for method, path in (("GET", "deliveries"), ("POST", "enable"), ("POST", "secret-rotation")):
                reached = await hana.request(method, f"/v1/communities/{cid}/webhooks/{endpoint}/{path}",
                                             headers=as_hana)
                assert reached.status_code == 404, (path, reached.text)
            assert (await hana.delete(f"/v1/communities/{cid}/webhooks/{endpoint}", headers=as_hana)).status_code \
                == 404
            assert (await operator.delete(f"/v1/webhooks/{endpoint}")).status_code == 204
            assert endpoint not in {e["endpoint_id"] for e in (await operator.get("/v1/webhooks")).json()}

"""Two complete deployments on loopback — each with its own NATS, PostgreSQL and four services — link
two communities and share job requests through signed messages between their gateways."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from kizuna.auth import generate_private_key_pem, load_private_key
from kizuna.devstack import NatsServer, PostgresServer
from services.gateway.federation.signing import sign
from tests.support import SERVICES, Ecosystem, eventually

FAST_RETRIES = {"KIZUNA_FEDERATION_RETRY_BASE_SECONDS": "0.2", "KIZUNA_FEDERATION_RETRY_CAP_SECONDS": "1"}
# Both deployments listen on loopback, which federation refuses to reach unless told otherwise.
LOOPBACK_PARTNERS = {"KIZUNA_FEDERATION_ALLOW_PRIVATE_ADDRESSES": "true"}
JOB = {"title": "Label design for a cider", "description": "A label for this year's apple cider",
       "skills": ["Illustration"], "compensation": {"kind": "barter", "barter": "a case of cider"},
       "deadline": "2031-03-01", "visibility": "partners"}


@pytest.fixture(scope="module")
def second_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PostgresServer, NatsServer]]:
    """The partner deployment's own PostgreSQL and NATS, so nothing is shared between the two."""
    root = tmp_path_factory.mktemp("partner")
    postgres = PostgresServer(root / "postgres", durable=False).start()
    nats = NatsServer(root / "nats", sync_always=False).start()
    yield postgres, nats
    nats.stop()
    postgres.stop()


@dataclass
class Deployment:
    eco: Ecosystem
    http: httpx.AsyncClient
    federation_key: str
    cid: str = ""
    owner: str = ""

    @property
    def origin(self) -> str:
        return self.eco.url("gateway")

    def start(self) -> None:
        self.eco.start(*SERVICES, KIZUNA_FEDERATION_PRIVATE_KEY=self.federation_key, **FAST_RETRIES,
                       **LOOPBACK_PARTNERS)

    def as_(self, member_id: str, role: str = "member") -> dict[str, str]:
        return self.eco.headers(self.cid, member_id, role)

    @property
    def as_owner(self) -> dict[str, str]:
        return self.as_(self.owner, "owner")

    async def found(self, name: str) -> None:
        response = await self.http.post("/v1/communities", headers=self.eco.operator_headers(),
                                        json={"name": name, "purpose": "makers", "owner_display_name": "Owner"})
        assert response.status_code == 201, response.text
        self.cid, self.owner = response.json()["community_id"], response.json()["owner_member_id"]

    async def join(self, name: str) -> str:
        response = await self.http.post(f"/v1/communities/{self.cid}/members", headers=self.as_owner,
                                        json={"display_name": name})
        assert response.status_code == 201, response.text
        member_id: str = response.json()["member_id"]
        return member_id

    async def partnership(self, status: str) -> dict[str, Any] | None:
        response = await self.http.get(f"/v1/communities/{self.cid}/partnerships", headers=self.as_owner)
        items = [p for p in response.json() if p["status"] == status]
        return items[0] if items else None


@pytest.fixture
async def deployments(postgres: PostgresServer, nats_server: NatsServer, unique: str, workdir: Path,
                      second_servers: tuple[PostgresServer, NatsServer]) -> AsyncIterator[tuple[Deployment, ...]]:
    ecos = [Ecosystem(postgres=postgres, nats=nats_server, prefix=f"a{unique}", workdir=workdir / f"a{unique}"),
            Ecosystem(postgres=second_servers[0], nats=second_servers[1], prefix=f"b{unique}",
                      workdir=workdir / f"b{unique}")]
    async with httpx.AsyncClient(base_url=ecos[0].url("gateway"), timeout=30) as a, \
            httpx.AsyncClient(base_url=ecos[1].url("gateway"), timeout=30) as b:
        pair = (Deployment(ecos[0], a, generate_private_key_pem()), Deployment(ecos[1], b, generate_private_key_pem()))
        for deployment in pair:
            deployment.start()
        yield pair
    for eco in ecos:
        eco.stop_all()
        for proc in eco.processes.values():
            assert "unhandled error" not in proc.log_path.read_text(), proc.log_path.read_text()[-3000:]


async def test_share_offer_assign_outage_and_end(deployments: tuple[Deployment, Deployment]) -> None:
    a, b = deployments
    await a.found("Ringo makers")
    await b.found("Nagano weavers")
    ken = await a.join("Ken")
    mio = await b.join("Mio")
    profile = await b.http.put(f"/v1/communities/{b.cid}/members/{mio}/profile", headers=b.as_(mio), json={
        "display_name": "Mio", "skills": ["illustration"], "vector": "a studio of my own (private)"})
    assert profile.status_code == 200, profile.text
    consent = await b.http.put(f"/v1/communities/{b.cid}/members/{mio}/consent", headers=b.as_(mio),
                               json={"shared_fields": ["display_name", "skills"]})
    assert consent.status_code == 200, consent.text

    async def gateway_knows_mios_card() -> bool:
        # The card an offer carries comes from B's gateway directory, which hears of the profile on the bus:
        # offering before it has would (rightly) send the card as it was then.
        conn = await asyncpg.connect(b.eco.database_url("gateway"))
        try:
            row = await conn.fetchrow("SELECT skills, shared_fields FROM directory WHERE member_id = $1", mio)
        finally:
            await conn.close()
        return row is not None and list(row["skills"]) == ["illustration"] and "skills" in row["shared_fields"]

    await eventually(gateway_knows_mios_card, timeout=60)

    # A's owner proposes; B's owner sees the request and accepts; A sees the link active.
    proposal = await a.http.post(f"/v1/communities/{a.cid}/partnerships", headers=a.as_owner, json={
        "partner_origin": b.origin, "partner_community_id": b.cid, "note": "apples meet wool"})
    assert proposal.status_code == 201, proposal.text
    pid = proposal.json()["partnership_id"]
    assert proposal.json()["status"] == "proposed"
    requested = await eventually(lambda: b.partnership("requested"))
    assert requested["partnership_id"] == pid and requested["partner"]["name"] == "Ringo makers"
    assert requested["partner"]["origin"] == a.origin
    member_tries = await b.http.post(f"/v1/communities/{b.cid}/partnerships/{pid}/acceptance", headers=b.as_(mio))
    assert member_tries.status_code == 403
    accepted = await b.http.post(f"/v1/communities/{b.cid}/partnerships/{pid}/acceptance", headers=b.as_owner)
    assert accepted.status_code == 200 and accepted.json()["status"] == "active", accepted.text
    await eventually(lambda: a.partnership("active"))

    # A job request marked for partners appears at B — without the requester's identity.
    async def post_once_ken_is_known() -> httpx.Response | None:  # the roster follows the members service
        response = await a.http.post(f"/v1/communities/{a.cid}/jobs", headers=a.as_(ken), json=JOB)
        assert response.status_code in (201, 403), response.text
        return response if response.status_code == 201 else None

    posted = await eventually(post_once_ken_is_known)
    job_id = posted.json()["job_id"]

    async def partner_jobs() -> list[dict[str, Any]]:
        response = await b.http.get(f"/v1/communities/{b.cid}/partner-jobs", headers=b.as_(mio))
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    shared = (await eventually(partner_jobs))[0]
    assert shared["job_id"] == job_id and shared["title"] == JOB["title"]
    assert shared["from_community_name"] == "Ringo makers" and "requester_id" not in json.dumps(shared)

    # Mio offers: only her consented card crosses; Ken assigns her; the status reaches B.
    offer = await b.http.post(f"/v1/communities/{b.cid}/partnerships/{pid}/jobs/{job_id}/offers",
                              headers=b.as_(mio), json={"note": "I draw apples every autumn"})
    assert offer.status_code == 202, offer.text
    offer_id = offer.json()["offer_id"]

    async def partner_offers() -> list[dict[str, Any]]:
        job = (await a.http.get(f"/v1/communities/{a.cid}/jobs/{job_id}", headers=a.as_(ken))).json()
        offers: list[dict[str, Any]] = job["partner_offers"]
        return offers

    card = (await eventually(partner_offers))[0]
    assert card["offer_id"] == offer_id and card["from_community_name"] == "Nagano weavers"
    assert card["card"] == {"display_name": "Mio", "skills": ["illustration"]}  # no vector: not consented
    assigned = await a.http.post(f"/v1/communities/{a.cid}/jobs/{job_id}/assignment", headers=a.as_(ken),
                                 json={"partner_offer_ids": [offer_id]})
    assert assigned.status_code == 200 and assigned.json()["state"] == "assigned", assigned.text

    async def assigned_at_b() -> bool:
        job = next(j for j in await partner_jobs() if j["job_id"] == job_id)
        return job["state"] == "assigned" and job["my_offers"] == [
            {"offer_id": offer_id, "kind": "offer", "status": "assigned"}]

    await _explained(eventually(assigned_at_b), a, b)

    # B goes down; A posts three more; B comes back and receives each exactly once, in order.
    b.eco.stop_all()
    later = []
    for n in range(3):
        response = await a.http.post(f"/v1/communities/{a.cid}/jobs", headers=a.as_(ken),
                                     json={**JOB, "title": f"Harvest help {n}"})
        later.append(response.json()["job_id"])

    async def retrying() -> bool:
        deliveries = (await a.http.get("/v1/federation/deliveries?status=pending",
                                       headers=a.eco.operator_headers())).json()
        return any(item["attempts"] >= 2 and item["last_error"] for item in deliveries["items"])

    await eventually(retrying, timeout=30)
    b.start()
    await _explained(eventually(lambda: _has(partner_jobs, 4), timeout=30), a, b)
    titles = [j["title"] for j in await partner_jobs()]
    assert titles == [JOB["title"], "Harvest help 0", "Harvest help 1", "Harvest help 2"]
    counts = (await a.http.get("/v1/federation/deliveries", headers=a.eco.operator_headers())).json()["counts"]
    assert counts["pending"] == 0 and counts["dead"] == 0 and counts["rejected"] == 0

    # A captured message: replaying it is refused even while the partnership is active.
    message = _message(a, b, pid, "job.shared", {"job_id": str(uuid.uuid4()),
                                                 "job": {"title": "Signed by A", "deadline": "2031-01-01"}})
    body, headers = _signed(a, b, message)
    first = await b.http.post("/federation/inbox", content=body, headers=headers)
    assert first.status_code == 202 and first.json()["status"] == "accepted", first.text
    replayed = await b.http.post("/federation/inbox", content=body, headers=headers)
    assert replayed.status_code == 401 and replayed.json()["type"].endswith("/replayed")
    # It carried no description, skills or compensation: listed with empty ones, never a 500.
    listed = await eventually(lambda: _listed_title(b, "Signed by A"))
    assert listed["description"] == "" and listed["skills"] == [] and listed["compensation"] == {}
    untitled = _message(a, b, pid, "job.shared", {"job_id": str(uuid.uuid4()), "job": {"deadline": "2031-01-01"}})
    body, headers = _signed(a, b, untitled)
    refused_untitled = await b.http.post("/federation/inbox", content=body, headers=headers)
    assert refused_untitled.status_code == 422 and "payload.job.title" in refused_untitled.text, refused_untitled.text

    # A ends the partnership: B drops the shared copies, A drops Mio's card.
    ended = await a.http.post(f"/v1/communities/{a.cid}/partnerships/{pid}/end", headers=a.as_owner,
                              json={"reason": "season over"})
    assert ended.status_code == 200 and ended.json()["status"] == "ended"
    await eventually(lambda: b.partnership("ended"))
    await eventually(lambda: _empty(partner_jobs))
    await eventually(lambda: _empty(partner_offers))

    # After the end: a fresh, properly signed message is refused, as are tampered and unsigned ones.
    late = _message(a, b, pid, "job.shared", {"job_id": str(uuid.uuid4()), "job": {"title": "Too late",
                                                                                   "deadline": "2031-01-01"}})
    body, headers = _signed(a, b, late)
    refused = await b.http.post("/federation/inbox", content=body, headers=headers)
    assert refused.status_code == 403 and refused.json()["type"].endswith("/no-partnership"), refused.text
    body, headers = _signed(a, b, _message(a, b, pid, "job.shared", {"job_id": "x", "job": {}}))
    tampered = await b.http.post("/federation/inbox", content=body.replace(b'"x"', b'"y"'), headers=headers)
    assert tampered.status_code == 401 and tampered.json()["type"].endswith("/digest-mismatch")
    unsigned = await b.http.post("/federation/inbox", content=body, headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401 and unsigned.json()["type"].endswith("/unsigned")
    assert len(await partner_jobs()) == 0


async def test_signature_must_come_from_the_published_key(deployments: tuple[Deployment, Deployment]) -> None:
    a, b = deployments
    await b.found("Nagano weavers")
    impostor = Deployment(a.eco, a.http, generate_private_key_pem())  # claims A's origin, signs with another key
    message = _message(impostor, b, str(uuid.uuid4()), "partnership.proposed",
                       {"sends": ["job_requests"], "receives": [], "community_name": "Fake", "note": ""})
    body, headers = _signed(impostor, b, message)
    response = await b.http.post("/federation/inbox", content=body, headers=headers)
    assert response.status_code == 401, response.text
    stale_body, stale = _signed(a, b, message, created=int(time.time()) - 3600)
    response = await b.http.post("/federation/inbox", content=stale_body, headers=stale)
    assert response.status_code == 401 and response.json()["type"].endswith("/stale-signature")
    assert await b.partnership("requested") is None


def _message(sender: Deployment, receiver: Deployment, pid: str, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"protocol": "kizuna-federation/1", "message_id": str(uuid.uuid4()), "type": kind,
            "partnership_id": pid, "sent_at": "2026-11-27T00:00:00+00:00",
            "from": {"origin": sender.origin, "community_id": sender.cid or "unknown"},
            "to": {"origin": receiver.origin, "community_id": receiver.cid}, "payload": payload}


def _signed(sender: Deployment, receiver: Deployment, message: dict[str, Any],
            created: int | None = None) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(message).encode()
    headers = sign(load_private_key(sender.federation_key), method="POST", path="/federation/inbox", body=body,
                   origin=sender.origin, message_id=message["message_id"], created=created or int(time.time()),
                   nonce=secrets.token_urlsafe(16))
    return body, {**headers, "Content-Type": "application/json"}


async def _explained(waiting: Awaitable[Any], a: Deployment, b: Deployment) -> None:
    """On failure, shows what the sender's outbox and both deployments' logs say."""
    try:
        await waiting
    except AssertionError:
        print("deliveries", (await a.http.get("/v1/federation/deliveries", headers=a.eco.operator_headers())).json())
        for eco in (a.eco, b.eco):
            for proc in eco.processes.values():
                print(eco.prefix, proc.name, proc.log_path.read_text()[-4000:])
        raise


async def _has(check: Any, n: int) -> bool:
    return len(await check()) >= n


async def _empty(check: Any) -> bool:
    return len(await check()) == 0


async def _listed_title(deployment: Deployment, title: str) -> dict[str, Any] | None:
    """The partner job with ``title`` in the community's list (a member's view), once it has arrived."""
    response = await deployment.http.get(f"/v1/communities/{deployment.cid}/partner-jobs", headers=deployment.as_owner)
    assert response.status_code == 200, response.text
    return next((job for job in response.json()["items"] if job["title"] == title), None)

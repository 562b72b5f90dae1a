"""Security of the federation inbox (issue 17, items 5 and 10; issue 19 item 12), against a real gateway.

The other side is a real HTTP server in this test process: as an "internal target" it records every
request it gets (there must be none), and as a partner deployment it publishes a document whose keys
the test rotates, retires, revokes and withdraws, and signs messages as that partner would.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kizuna.addresses import AddressGuard, UnsafeAddress, is_public_address
from kizuna.devstack import free_port
from services.gateway.federation.signing import key_id_of, public_key_text, sign
from tests.support import Ecosystem, eventually

ALLOW_LOOPBACK = {"KIZUNA_FEDERATION_ALLOW_PRIVATE_ADDRESSES": "true"}


@dataclass
class FakeDeployment:
    """A tiny real HTTP server playing a partner deployment (or an internal service an attacker names)."""

    port: int = field(default_factory=free_port)
    keys: list[dict[str, Any]] = field(default_factory=list)
    document_delay: float = 0.0
    requests: list[str] = field(default_factory=list)
    inbox: list[dict[str, Any]] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def well_known_fetches(self) -> int:
        return sum(1 for r in self.requests if r.startswith("GET /.well-known/kizuna-federation"))

    def publish(self, *entries: tuple[Ed25519PrivateKey, str, datetime | None]) -> None:
        self.keys = [{"key_id": key_id_of(k.public_key()), "alg": "ed25519",
                      "public_key": public_key_text(k.public_key()), "status": status,
                      **({"valid_until": until.isoformat()} if until else {})} for k, status, until in entries]

    def serve(self) -> ThreadingHTTPServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake.requests.append(f"GET {self.path}")
                time.sleep(fake.document_delay)
                body = json.dumps({"protocol": "kizuna-federation/1", "origin": fake.origin,
                                   "inbox": f"{fake.origin}/federation/inbox", "keys": fake.keys,
                                   "communities": []}).encode()
                self._answer(200, body)

            def do_POST(self) -> None:
                fake.requests.append(f"POST {self.path}")
                length = int(self.headers.get("Content-Length", 0))
                fake.inbox.append(json.loads(self.rfile.read(length) or b"{}"))
                self._answer(202, b'{"status": "accepted"}')

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


@pytest.fixture
def fake() -> Iterator[FakeDeployment]:
    deployment = FakeDeployment()
    server = deployment.serve()
    yield deployment
    server.shutdown()
    server.server_close()


@dataclass
class Gateway:
    eco: Ecosystem
    http: httpx.AsyncClient
    cid: str = ""
    owner: str = ""

    @property
    def origin(self) -> str:
        return self.eco.url("gateway")

    @property
    def as_owner(self) -> dict[str, str]:
        return self.eco.headers(self.cid, self.owner, "owner")

    async def found(self, name: str) -> tuple[str, str]:
        response = await self.http.post("/v1/communities", headers=self.eco.operator_headers(),
                                        json={"name": name, "owner_display_name": "Owner"})
        assert response.status_code == 201, response.text
        self.cid, self.owner = response.json()["community_id"], response.json()["owner_member_id"]
        await known_to_the_gateway(self.http, self.eco, self.cid, self.owner)
        return self.cid, self.owner

    async def partnership(self, pid: str) -> dict[str, Any]:
        response = await self.http.get(f"/v1/communities/{self.cid}/partnerships/{pid}", headers=self.as_owner)
        assert response.status_code == 200, response.text
        view: dict[str, Any] = response.json()
        return view


async def known_to_the_gateway(http: httpx.AsyncClient, eco: Ecosystem, cid: str, owner: str) -> None:
    """The gateway learns a founded community from the bus: until then its inbox answers 404 for it."""

    async def known() -> bool:
        response = await http.get(f"/v1/communities/{cid}/federation-listing",
                                  headers=eco.headers(cid, owner, "owner"))
        return response.status_code == 200

    await eventually(known)


async def _gateway(ecosystem: Ecosystem, **env: str) -> AsyncIterator[Gateway]:
    ecosystem.start("members", "gateway", **env)
    async with httpx.AsyncClient(base_url=ecosystem.url("gateway"), timeout=30) as http:
        gateway = Gateway(ecosystem, http)
        await gateway.found("Hikari makers")
        yield gateway
    log = ecosystem.processes["gateway"].log_path.read_text()
    assert "unhandled error" not in log, log[-3000:]


@pytest.fixture
async def gateway(ecosystem: Ecosystem) -> AsyncIterator[Gateway]:
    async for running in _gateway(ecosystem, **ALLOW_LOOPBACK):
        yield running


@pytest.fixture
async def strict_gateway(ecosystem: Ecosystem) -> AsyncIterator[Gateway]:
    async for running in _gateway(ecosystem):
        yield running


def message(origin: str, gateway: Gateway, kind: str, payload: dict[str, Any], pid: str | None = None,
            from_cid: str = "c-partner") -> dict[str, Any]:
    return {"protocol": "kizuna-federation/1", "message_id": str(uuid.uuid4()), "type": kind,
            "partnership_id": pid or str(uuid.uuid4()), "sent_at": datetime.now(UTC).isoformat(),
            "from": {"origin": origin, "community_id": from_cid},
            "to": {"origin": gateway.origin, "community_id": gateway.cid}, "payload": payload}


async def post_signed(gateway: Gateway, key: Ed25519PrivateKey, origin: str, body: dict[str, Any]) -> httpx.Response:
    raw = json.dumps(body).encode()
    headers = sign(key, method="POST", path="/federation/inbox", body=raw, origin=origin,
                   message_id=body["message_id"], created=int(time.time()), nonce=secrets.token_urlsafe(16))
    return await gateway.http.post("/federation/inbox", content=raw,
                                   headers={**headers, "Content-Type": "application/json"})


def carried_key(key: Ed25519PrivateKey) -> dict[str, str]:
    return {"key_id": key_id_of(key.public_key()), "alg": "ed25519", "public_key": public_key_text(key.public_key())}


def proposal(key: Ed25519PrivateKey | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"sends": ["job_requests"], "receives": ["job_requests"],
                               "community_name": "Partner weavers", "note": "hello"}
    return {**payload, "proposer_key": carried_key(key)} if key else payload


def slug(response: httpx.Response) -> str:
    return str(response.json()["type"]).rsplit("/", 1)[-1]


async def propose_to(gateway: Gateway, fake: FakeDeployment) -> str:
    response = await gateway.http.post(f"/v1/communities/{gateway.cid}/partnerships", headers=gateway.as_owner,
                                       json={"partner_origin": fake.origin, "partner_community_id": "c-partner"})
    assert response.status_code == 201, response.text
    pid: str = response.json()["partnership_id"]
    return pid


# ---- item 5: nothing is fetched for an origin no partnership here chose ----

async def test_unknown_origins_cause_no_request_and_no_pool_exhaustion(gateway: Gateway,
                                                                       fake: FakeDeployment) -> None:
    fake.document_delay = 4.0  # an internal service that answers slowly: each fetch would hold its caller
    fake.publish((Ed25519PrivateKey.generate(), "current", None))

    async def attack(n: int) -> httpx.Response:
        key = Ed25519PrivateKey.generate()
        kind, payload = ("job.shared", {"job_id": "j", "job": {}}) if n % 2 else ("partnership.proposed", proposal())
        return await post_signed(gateway, key, fake.origin, message(fake.origin, gateway, kind, payload))

    started = time.monotonic()
    answers = await asyncio.gather(*(attack(n) for n in range(20)))
    normal = await gateway.http.get(f"/v1/communities/{gateway.cid}/partnerships", headers=gateway.as_owner)
    took = time.monotonic() - started
    assert [r.status_code for r in answers] == [401] * 20, [r.text for r in answers]
    assert {slug(r) for r in answers} == {"unknown-key"}
    assert normal.status_code == 200 and took < 3.0, (normal.status_code, took)
    await asyncio.sleep(0.5)
    assert fake.requests == [], "the gateway reached the address an unauthenticated message named"


async def test_a_partners_slow_document_holds_no_database_connection(gateway: Gateway, fake: FakeDeployment) -> None:
    fake.publish((Ed25519PrivateKey.generate(), "current", None))
    await propose_to(gateway, fake)  # a partner chosen here: its document may be fetched
    assert fake.well_known_fetches() == 1
    fake.document_delay = 3.0

    async def unknown_key() -> httpx.Response:
        body = message(fake.origin, gateway, "job.shared", {"job_id": "j", "job": {}})
        return await post_signed(gateway, Ed25519PrivateKey.generate(), fake.origin, body)

    burst = asyncio.gather(*(unknown_key() for _ in range(20)))
    await asyncio.sleep(0.5)  # the fetch is in flight now
    started = time.monotonic()
    normal = await gateway.http.get(f"/v1/communities/{gateway.cid}/partnerships", headers=gateway.as_owner)
    listing = await gateway.http.get("/.well-known/kizuna-federation")
    took = time.monotonic() - started
    assert normal.status_code == 200 and listing.status_code == 200
    assert took < 1.5, f"normal requests waited {took:.1f} s behind the partner's slow document"
    answers = await burst
    # One fetch for the whole burst; the other messages are told to come back later (their sender retries).
    assert fake.well_known_fetches() == 2
    assert sorted({(r.status_code, slug(r)) for r in answers}) == [(401, "unknown-key"), (503, "key-refresh-deferred")]


async def test_private_addresses_are_refused_unless_allowed(strict_gateway: Gateway, fake: FakeDeployment) -> None:
    gateway = strict_gateway
    fake.publish((Ed25519PrivateKey.generate(), "current", None))
    for origin in (fake.origin, f"http://localhost:{fake.port}"):
        response = await gateway.http.post(f"/v1/communities/{gateway.cid}/partnerships", headers=gateway.as_owner,
                                           json={"partner_origin": origin, "partner_community_id": "c-partner"})
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "partner_origin" and "refused" in response.text
    assert fake.requests == []
    for address in ("127.0.0.1", "10.1.2.3", "192.168.0.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "::1",
                    "fe80::1%eth0", "::ffff:127.0.0.1", "fc00::1", "224.0.0.1"):
        assert not is_public_address(address), address
    assert is_public_address("8.8.8.8") and is_public_address("2001:4860:4860::8888")
    with pytest.raises(UnsafeAddress):
        await AddressGuard().check("http://user:secret@example.org")
    await AddressGuard(allow_private=True).check(fake.origin)  # allowed when the setting says so


# ---- item 5: first contact is quarantined until the owner accepts ----

async def test_a_forged_proposal_is_quarantined_and_its_acceptance_refused(gateway: Gateway,
                                                                           fake: FakeDeployment) -> None:
    real, forger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    fake.publish((real, "current", None))
    # Someone claims to be the fake deployment, signing with their own key and carrying it.
    forged = message(fake.origin, gateway, "partnership.proposed", proposal(forger))
    answer = await post_signed(gateway, forger, fake.origin, forged)
    assert answer.status_code == 202, answer.text
    assert fake.requests == [], "a proposal's arrival fetches nothing"
    forged_pid = forged["partnership_id"]
    assert (await gateway.partnership(forged_pid))["status"] == "requested"
    # While waiting, the carried key vouches for nothing but the proposal: nothing else crosses.
    sneaky = await post_signed(gateway, forger, fake.origin, message(
        fake.origin, gateway, "job.shared", {"job_id": "j", "job": {"title": "x"}}, pid=forged_pid))
    assert sneaky.status_code == 403 and slug(sneaky) == "no-partnership", sneaky.text
    # The owner accepts: only now is the claimed origin asked, and it does not publish the forger's key.
    refused = await gateway.http.post(f"/v1/communities/{gateway.cid}/partnerships/{forged_pid}/acceptance",
                                      headers=gateway.as_owner)
    assert refused.status_code == 409 and slug(refused) == "proposal-unverified", refused.text
    assert fake.well_known_fetches() == 1
    assert (await gateway.partnership(forged_pid))["status"] == "requested"

    # The genuine proposal, signed with the published key, is accepted and the partner is told our name.
    genuine = message(fake.origin, gateway, "partnership.proposed", proposal(real))
    assert (await post_signed(gateway, real, fake.origin, genuine)).status_code == 202
    accepted = await gateway.http.post(
        f"/v1/communities/{gateway.cid}/partnerships/{genuine['partnership_id']}/acceptance", headers=gateway.as_owner)
    assert accepted.status_code == 200 and accepted.json()["status"] == "active", accepted.text

    async def told() -> list[dict[str, Any]]:
        return [m for m in fake.inbox if m["type"] == "partnership.accepted"]

    sent = (await eventually(told))[0]
    assert sent["payload"]["community_name"] == "Hikari makers"
    assert sent["partnership_id"] == genuine["partnership_id"]


# ---- item 5: keys with a lifetime ----

async def test_rotated_keys_work_until_they_expire_and_revoked_or_withdrawn_keys_never(
        gateway: Gateway, fake: FakeDeployment) -> None:
    k1, k2, k3, k4 = (Ed25519PrivateKey.generate() for _ in range(4))
    soon = datetime.now(UTC) + timedelta(hours=1)
    fake.publish((k1, "current", soon))
    pid = await propose_to(gateway, fake)
    proposed = await eventually(lambda: _inbox_of(fake, "partnership.proposed"))
    our_key = proposed[0]["payload"]["proposer_key"]
    assert our_key["key_id"] in {k["key_id"] for k in
                                 (await gateway.http.get("/.well-known/kizuna-federation")).json()["keys"]}

    def from_partner(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        return message(fake.origin, gateway, kind, payload, pid=pid)

    def job() -> dict[str, Any]:
        return from_partner("job.shared", {"job_id": str(uuid.uuid4()),
                                           "job": {"title": "t", "deadline": "2031-01-01"}})

    accepted = await post_signed(gateway, k1, fake.origin,
                                 from_partner("partnership.accepted", {"community_name": "Partner weavers"}))
    assert accepted.status_code == 202, accepted.text
    view = await eventually(lambda: _active(gateway, pid))
    assert view["partner"]["name"] == "Partner weavers", "the acceptance names a community that is not listed"

    # Rotation: k2 becomes current, k1 stays listed as retired for a few seconds.
    retired_until = datetime.now(UTC) + timedelta(seconds=4)
    fake.publish((k2, "current", soon), (k1, "retired", retired_until))
    assert (await post_signed(gateway, k2, fake.origin, job())).status_code == 202  # unknown id: fetched again
    assert (await post_signed(gateway, k1, fake.origin, job())).status_code == 202  # retired, still in its window

    # Revocation: k2 is published as revoked; refused at once, without asking again.
    fake.publish((k3, "current", soon), (k1, "retired", retired_until), (k2, "revoked", None))
    assert (await post_signed(gateway, k3, fake.origin, job())).status_code == 202
    fetches = fake.well_known_fetches()
    revoked = await post_signed(gateway, k2, fake.origin, job())
    assert revoked.status_code == 401 and slug(revoked) == "revoked-key", revoked.text
    assert fake.well_known_fetches() == fetches

    # Withdrawal: k3 disappears from the document; once it is fetched again, k3 is not trusted.
    fake.publish((k4, "current", soon), (k1, "retired", retired_until))
    assert (await post_signed(gateway, k4, fake.origin, job())).status_code == 202
    withdrawn = await post_signed(gateway, k3, fake.origin, job())
    assert withdrawn.status_code == 401 and slug(withdrawn) == "unknown-key", withdrawn.text

    # Expiry: past its window the retired key is refused, though the document still lists it.
    await asyncio.sleep(max(0.0, (retired_until - datetime.now(UTC)).total_seconds()) + 0.5)
    expired = await post_signed(gateway, k1, fake.origin, job())
    assert expired.status_code == 401 and slug(expired) == "expired-key", expired.text
    assert (await post_signed(gateway, k4, fake.origin, job())).status_code == 202

    # Issue 19 item 12: each delivery names what it carries, in a typed response.
    deliveries = (await gateway.http.get("/v1/federation/deliveries", headers=gateway.eco.operator_headers())).json()
    item = next(i for i in deliveries["items"] if i["kind"] == "partnership.proposed")
    assert item["partnership_id"] == pid and item["partner_community_id"] == "c-partner"
    assert item["destination"] == fake.origin and item["status"] == "delivered" and item["job_id"] is None
    schema = (await gateway.http.get("/openapi.json")).json()
    answer = schema["paths"]["/v1/federation/deliveries"]["get"]["responses"]["200"]["content"]["application/json"]
    assert answer["schema"] == {"$ref": "#/components/schemas/Deliveries"}
    carried = schema["components"]["schemas"]["Delivery"]["properties"]
    assert {"kind", "partnership_id", "job_id", "offer_id", "offering_id", "pledge_id", "referral_id"} <= set(carried)


async def _inbox_of(fake: FakeDeployment, kind: str) -> list[dict[str, Any]]:
    return [m for m in fake.inbox if m.get("type") == kind]


async def _active(gateway: Gateway, pid: str) -> dict[str, Any] | None:
    view = await gateway.partnership(pid)
    return view if view["status"] == "active" else None


# ---- item 10: communities choose to be listed ----

async def test_the_federation_document_lists_only_communities_that_chose_to_be(gateway: Gateway) -> None:
    hikari, hikari_owner = gateway.cid, gateway.owner
    other = Gateway(gateway.eco, gateway.http)
    kaki, kaki_owner = await other.found("Kaki growers")

    async def listed() -> list[str]:
        document = (await gateway.http.get("/.well-known/kizuna-federation")).json()
        assert all(k["status"] in ("current", "retired", "revoked") and k["valid_until"] for k in document["keys"])
        return [c["community_id"] for c in document["communities"]]

    assert await listed() == [], "no community is listed unless its owner chose it"
    url = f"/v1/communities/{hikari}/federation-listing"
    as_hikari_owner = gateway.eco.headers(hikari, hikari_owner, "owner")
    joined = await gateway.http.post(f"/v1/communities/{hikari}/members", headers=as_hikari_owner,
                                     json={"display_name": "Aiko"})
    assert joined.status_code == 201, joined.text
    as_member = gateway.eco.headers(hikari, joined.json()["member_id"], "member")

    async def member_refused() -> httpx.Response | None:  # once the gateway's directory knows her
        response = await gateway.http.put(url, headers=as_member, json={"listed": True})
        return response if response.status_code == 403 else None

    await eventually(member_refused)
    foreign = await gateway.http.put(url, headers=gateway.eco.headers(kaki, kaki_owner, "owner"),
                                     json={"listed": True})
    assert foreign.status_code == 404, "another community's owner is answered as for a missing community"
    invalid = await gateway.http.put(url, headers=as_hikari_owner, json={"listed": "yes"})
    assert invalid.status_code == 422 and invalid.json()["errors"][0]["field"].endswith("listed"), invalid.text
    chosen = await gateway.http.put(url, headers=as_hikari_owner, json={"listed": True})
    assert chosen.status_code == 200 and chosen.json() == {"community_id": hikari, "listed": True}
    assert await listed() == [hikari]
    shown = await gateway.http.get(url, headers=as_hikari_owner)
    assert shown.json()["listed"] is True
    assert (await gateway.http.put(url, headers=as_hikari_owner, json={"listed": False})).status_code == 200
    assert await listed() == []

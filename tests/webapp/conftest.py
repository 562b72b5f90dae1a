"""The member app's browser tests share one stack (members, referrals, sessions, identity, gateway and a real
SMTP server) for the package, and a fresh community with two signed-in members for each test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from kizuna.devstack import NatsServer, PostgresServer
from tests.identity.conftest import THROUGH_A_PROXY
from tests.identity.journey import browser, csrf, sign_in_by_email
from tests.identity.smtp import SmtpInbox
from tests.support import Ecosystem, eventually
from tests.webapp.phones import JSON, everyone_knows


@pytest.fixture(scope="package")
def community_stack(postgres: PostgresServer, nats_server: NatsServer, workdir: Path,
                    inbox: SmtpInbox) -> Iterator[Ecosystem]:
    unique = uuid.uuid4().hex[:10]
    eco = Ecosystem(postgres=postgres, nats=nats_server, prefix=f"t{unique}", workdir=workdir / unique)
    eco.start("members", "referrals", "sessions", "identity", "gateway", **inbox.env(), **THROUGH_A_PROXY)
    yield eco
    eco.stop_all()


@pytest.fixture
async def member_pair(community_stack: Ecosystem,
                      inbox: SmtpInbox) -> AsyncIterator[tuple[str, httpx.AsyncClient, httpx.AsyncClient]]:
    """A community (Hikari Makers) and two of its members, Hana and Ken, each signed in."""
    async with httpx.AsyncClient(base_url=community_stack.url("gateway"), timeout=30,
                                 headers=community_stack.operator_headers()) as operator:
        founded = await operator.post("/v1/communities", json={
            "name": "Hikari Makers", "owner_display_name": "Yui", "purpose": "Makers helping makers",
            "values": ["trust", "craft"]})
        assert founded.status_code == 201, founded.text
    cid = str(founded.json()["community_id"])
    async with browser(community_stack) as hana, browser(community_stack) as ken:
        for person, name in ((hana, "Hana"), (ken, "Ken")):
            await sign_in_by_email(person, inbox, f"{name.lower()}-{cid[:8]}@app.test")

            async def joined(person: httpx.AsyncClient = person, name: str = name) -> bool:
                answer = await person.post(f"/v1/join/{cid}", json={"display_name": name},
                                           headers={"x-csrf-token": await csrf(person), **JSON})
                return answer.status_code == 201 or "already" in answer.text

            await eventually(joined)

            async def active(person: httpx.AsyncClient = person) -> bool:
                me = (await person.get("/v1/me", headers=JSON)).json()
                return any(m["community_id"] == cid and m["status"] == "active" for m in me["memberships"])

            await eventually(active)
        # Every read model a page's command is decided on knows the community's three members: without this
        # the first post can meet a roster a second behind (403 not-a-member), as clean runs have shown.
        await eventually(lambda: everyone_knows(community_stack, cid, 3), timeout=30)
        yield cid, hana, ken
